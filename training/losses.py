"""Training losses. Videos are ``[B, 3, F, H, W]``; pixel losses take values in [0, 1].

Perceptual models take ``[N, 3, H, W]`` in [0, 1] (prediction, target) and return a scalar
distance, lower is better. DISTS comes from pyiqa, an optional extra (it pulls torchvision,
which our CPU machines cannot import); tests inject a small stand-in network instead.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from training.config import LossConfig, TrainingError

Perceptual = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def latent_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Stage 1: mean squared error of predicted x0 and the HR latent (float32)."""
    return F.mse_loss(prediction.float(), target.float())


def frame_difference_l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between consecutive-frame differences ``x[t+1] - x[t]`` (temporal consistency).

    Zero for single frames (images), where there is no motion to match.
    """
    if prediction.shape[2] < 2:
        return prediction.sum() * 0.0
    predicted = prediction[:, :, 1:] - prediction[:, :, :-1]
    wanted = target[:, :, 1:] - target[:, :, :-1]
    return (predicted - wanted).abs().mean()


def frames_of(video: torch.Tensor) -> torch.Tensor:
    """``[B, 3, F, H, W]`` -> ``[B * F, 3, H, W]`` (per-frame image models)."""
    b, c, f, h, w = video.shape
    return video.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)


def pixel_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    weights: LossConfig,
    perceptual: Perceptual | None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Stage 2: ``mse * MSE + dists * DISTS + frame_diff * FD-L1`` on videos in [0, 1].

    Returns the total and its parts (floats, for logging).
    """
    mse = F.mse_loss(prediction, target)
    difference = frame_difference_l1(prediction, target)
    total = weights.mse * mse + weights.frame_diff * difference
    parts = {"mse": float(mse.detach()), "frame_diff": float(difference.detach())}
    if weights.dists:
        if perceptual is None:
            raise TrainingError("loss.dists > 0 needs a perceptual model (see load_perceptual)")
        distance = perceptual(frames_of(prediction.clamp(0, 1)), frames_of(target))
        total = total + weights.dists * distance
        parts["dists"] = float(distance.detach())
    return total, parts


class PyiqaDists(torch.nn.Module):
    """DISTS from pyiqa as a loss: ``[N, 3, H, W]`` in [0, 1] x2 -> mean distance."""

    def __init__(self, device: torch.device):
        super().__init__()
        try:
            import pyiqa
        except ImportError as e:
            raise TrainingError(
                "stage 2 uses DISTS from the optional extra pyiqa, which is not installed: "
                "`pip install pyiqa` (it needs torchvision), or set loss.dists=0"
            ) from e
        try:
            self.metric = pyiqa.create_metric("dists", as_loss=True, device=device)
        except Exception as e:  # pyiqa downloads weights on first use; offline that fails
            raise TrainingError(
                f"pyiqa could not build DISTS ({e}); put its weights in pyiqa's cache "
                "(~/.cache/torch/hub/pyiqa) on a machine without internet, or set loss.dists=0"
            ) from e
        if isinstance(self.metric, torch.nn.Module):  # frozen: only the input needs gradients
            self.metric.requires_grad_(False)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.metric(prediction.float(), target.float()).mean()


def load_perceptual(name: str, device: torch.device) -> Perceptual:
    """The perceptual distance named in ``loss.perceptual`` ("dists")."""
    if name == "dists":
        return PyiqaDists(device)
    raise TrainingError(f"perceptual loss {name!r} is unknown; use dists")
