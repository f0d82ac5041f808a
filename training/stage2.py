"""Stage 2: pixel-space training, jointly on videos and single images.

    accelerate launch -m training.stage2 --config stage2.yaml --pretrained runs/stage1/export

Each step is a video batch or (``image_ratio``, 50%) an image batch with the zero reference.
The predicted x0 is decoded per sample as one video (frame i of the decode is frame i of the
clip) and supervised with MSE + DISTS + frame-difference L1. Video batches use the keyframes the
sampler drew for each clip, not always frame 0.
"""

from __future__ import annotations

import sys

import torch

from sparkvsr.conditioning import signed_to_unit
from training.config import LossConfig, TrainConfig
from training.data import Batch
from training.loop import TrainResult, stage_main, train
from training.losses import Perceptual, load_perceptual, pixel_loss
from training.model import Restorer


class PixelObjective:
    """Stage 2 loss: decode x0 frame-aligned, then MSE + DISTS + frame-difference L1."""

    def __init__(self, weights: LossConfig, perceptual: Perceptual | None):
        self.weights = weights
        self.perceptual = perceptual

    def __call__(
        self, model: Restorer, batch: Batch, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        lr_latent = model.lr_latent(batch.lr, generator)
        reference = model.reference_latent(lr_latent, batch, generator)
        x0 = model.predict_x0(lr_latent, reference)
        pixels = model.decode_aligned(x0, batch.hr.shape[2])
        # Unclamped [0, 1] mapping for MSE and frame differences: clamping would stop gradients.
        prediction = (pixels + 1.0) / 2.0
        target = signed_to_unit(batch.hr)
        loss, parts = pixel_loss(prediction, target, self.weights, self.perceptual)
        parts["image_batch"] = float(batch.is_image)
        return loss, parts


def train_stage2(config: TrainConfig, perceptual: Perceptual | None = None) -> TrainResult:
    """Run stage 2; ``perceptual`` replaces DISTS (tests inject a small network)."""

    def make_objective(device: torch.device) -> PixelObjective:
        model = perceptual
        if model is None and config.loss.dists:
            model = load_perceptual(config.loss.perceptual, device)
        if isinstance(model, torch.nn.Module):
            model = model.to(device).requires_grad_(False).eval()
        return PixelObjective(config.loss, model)

    return train(config, make_objective)


def main(argv: list[str] | None = None) -> int:
    return stage_main(2, argv, train_stage2)


if __name__ == "__main__":
    sys.exit(main())
