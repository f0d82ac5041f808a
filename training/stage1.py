"""Stage 1: latent-space training of the one-step restorer.

    accelerate launch -m training.stage1 --config stage1.yaml [--set optim.lr=2e-5 ...]

Loss: MSE between the predicted x0 latent and the HR clip's latent (both x0.7 scaled), with the
LR latent as z, the sampled keyframes' augmented References at their slots (none for 10% of
clips), t = 399 and ofs = 2, exactly as the ``dit`` engine runs the model.
"""

from __future__ import annotations

import sys

import torch

from training.config import TrainConfig
from training.data import Batch
from training.loop import TrainResult, stage_main, train
from training.losses import latent_mse
from training.model import Restorer


def latent_objective(
    model: Restorer, batch: Batch, generator: torch.Generator
) -> tuple[torch.Tensor, dict[str, float]]:
    """Encode HR and LR, build the reference latent, predict x0, compare latents."""
    lr_latent, target = model.lr_and_hr_latents(batch, generator)
    reference = model.reference_latent(lr_latent, batch, generator)
    prediction = model.predict_x0(lr_latent, reference)
    loss = latent_mse(prediction, target)
    return loss, {"latent_mse": float(loss.detach())}


def train_stage1(config: TrainConfig) -> TrainResult:
    """Run stage 1 (latent MSE) for ``config``."""
    return train(config, lambda device: latent_objective)


def main(argv: list[str] | None = None) -> int:
    return stage_main(1, argv, train_stage1)


if __name__ == "__main__":
    sys.exit(main())
