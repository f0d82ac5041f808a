"""The trainable one-step restorer, built on the shared model math in ``sparkvsr.conditioning``.

Nothing here re-derives the SparkVSR conditioning: LR pre-upscaling, x0.7 latents, the
reference latent at slot ``f // 4``, the ``[LR ; ref]`` concat with the frame-0 copy, t = 399,
ofs, RoPE and x0-from-v are all ``sparkvsr.conditioning`` calls, exactly what the ``dit`` engine
runs at inference. This module adds what only training needs: loading the parts of a pipeline
folder (transformer trainable, VAE frozen, the empty-prompt T5 embedding computed once and
cached), batched encoding with seeded sampling, and frame-aligned decoding for stage 2.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from sparkvsr import conditioning as cond
from training.config import TrainingError
from training.data import Batch


@dataclass
class Components:
    """What a pipeline folder gives the trainer: modules live on ``device``.

    transformer:     CogVideoXTransformer3DModel in float32 (master weights; autocast runs bf16).
    vae:             AutoencoderKLCogVideoX, frozen, in ``weight_dtype``.
    prompt_embeds:   ``[1, 226, D]`` T5 embedding of the empty prompt.
    alphas_cumprod:  the scheduler's ᾱ table (for x0 from v at t = 399).
    """

    transformer: torch.nn.Module
    vae: torch.nn.Module
    prompt_embeds: torch.Tensor
    alphas_cumprod: torch.Tensor


def load_components(
    pretrained: str | os.PathLike,
    cache_dir: str | os.PathLike | None,
    device: torch.device,
    weight_dtype: torch.dtype,
) -> Components:
    """Load a CogVideoX-I2V pipeline folder (or hub id) for training.

    The T5 encoder is loaded only when ``cache_dir`` does not hold this pipeline's empty-prompt
    embedding yet, used once, and freed (T5-XXL is ~10 GB and never needed again).
    """
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXTransformer3DModel,
    )

    try:
        transformer = CogVideoXTransformer3DModel.from_pretrained(
            pretrained, subfolder="transformer", torch_dtype=torch.float32
        )
        vae = AutoencoderKLCogVideoX.from_pretrained(
            pretrained, subfolder="vae", torch_dtype=weight_dtype
        )
        scheduler = CogVideoXDDIMScheduler.from_pretrained(pretrained, subfolder="scheduler")
    except (OSError, ValueError) as e:
        raise TrainingError(
            f"cannot load the CogVideoX-I2V pipeline {pretrained!r} (transformer/, vae/, "
            f"scheduler/): {e}. Set `pretrained` to a pipeline folder or hub id."
        ) from e
    vae.requires_grad_(False).eval().to(device)
    max_length = int(getattr(transformer.config, "max_text_seq_length", 226))
    cache = prompt_cache_path(cache_dir, pretrained, max_length) if cache_dir else None
    embeds = empty_prompt_embeds(pretrained, cache, max_length)
    return Components(transformer.to(device), vae, embeds.to(device), scheduler.alphas_cumprod)


def prompt_cache_path(
    cache_dir: str | os.PathLike, pretrained: str | os.PathLike, length: int
) -> Path:
    """Where the empty-prompt embedding of ``pretrained`` is cached: keyed by the pipeline's
    text encoder files (or hub id) so another base model never reuses a stale embedding."""
    folder = Path(pretrained) / "text_encoder"
    if folder.is_dir():
        stats = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir())
        key = repr((str(folder.resolve()), stats))
    else:
        key = str(pretrained)
    digest = hashlib.sha256(f"{key}:{length}".encode()).hexdigest()[:16]
    return Path(cache_dir) / f"empty-prompt-{digest}.pt"


def empty_prompt_embeds(
    pretrained: str | os.PathLike, cache: str | os.PathLike | None, max_length: int = 226
) -> torch.Tensor:
    """``[1, max_length, D]`` float32 T5 embedding of "" (padded as CogVideoX pads prompts)."""
    if cache is not None and Path(cache).is_file():
        return torch.load(cache, weights_only=True)
    from transformers import AutoTokenizer, T5EncoderModel

    try:
        tokenizer = AutoTokenizer.from_pretrained(pretrained, subfolder="tokenizer")
        encoder = T5EncoderModel.from_pretrained(pretrained, subfolder="text_encoder")
    except (OSError, ValueError) as e:
        raise TrainingError(f"cannot load the T5 text encoder of {pretrained!r}: {e}") from e
    embeds = cond.empty_prompt_embedding(tokenizer, encoder, max_length)
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        partial = Path(str(cache) + ".partial")
        torch.save(embeds, partial)
        partial.replace(cache)
    return embeds


class ConfiguredModel:
    """A wrapped model (DDP, FSDP, DeepSpeed) that still answers ``.config``.

    ``sparkvsr.conditioning.predict_x0`` reads ``transformer.config``; distributed wrappers hide
    it. Calling this object calls the wrapper, so gradient sync and autocast stay in charge.
    """

    def __init__(self, wrapped: torch.nn.Module, config):
        self.wrapped = wrapped
        self.config = config

    def __call__(self, *args, **kwargs):
        return self.wrapped(*args, **kwargs)


@dataclass
class Restorer:
    """The one-step model as the trainer drives it.

    transformer:  the (possibly wrapped) transformer with its config (``ConfiguredModel``).
    vae:          frozen, in ``weight_dtype``.
    abar:         ᾱ_399 in the model's compute dtype (bf16 under bf16 training, as the released
                  weights were trained; see ``conditioning.alpha_bar``).
    """

    transformer: ConfiguredModel
    vae: torch.nn.Module
    prompt_embeds: torch.Tensor
    abar: torch.Tensor
    weight_dtype: torch.dtype

    @torch.no_grad()
    def encode(self, video: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``[B, 3, F, H, W]`` in [-1, 1] -> float32 latent ``[B, 16, F_lat, H/8, W/8]`` (x0.7)."""
        latent = cond.encode_latents(self.vae, video.to(self.weight_dtype), generator)
        return latent.float()

    @staticmethod
    def upscale(lr_unit: torch.Tensor) -> torch.Tensor:
        """LR ``[B, 3, F, h, w]`` in [0, 1] -> bilinear x4 in [-1, 1], the model's input (as trained)."""
        return cond.unit_to_signed(cond.upscale_bilinear(lr_unit, cond.UPSCALE))

    def lr_latent(self, lr_unit: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """LR ``[B, 3, F, h, w]`` in [0, 1] -> latent of its bilinear x4 upscale."""
        return self.encode(self.upscale(lr_unit), generator)

    def lr_and_hr_latents(
        self, batch: Batch, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(LR latent, HR latent) from ONE VAE pass over both clips (same shapes after x4)."""
        both = self.encode(torch.cat([self.upscale(batch.lr), batch.hr]), generator)
        return both.chunk(2, dim=0)

    def reference_latent(
        self, lr_latent: torch.Tensor, batch: Batch, generator: torch.Generator
    ) -> torch.Tensor:
        """Per sample: its augmented keyframes, each encoded as a single frame, at slot f // 4.

        Every keyframe of the batch goes through the VAE in one pass (not one pass per sample).
        Samples without keyframes (10% of clips, and every image) get the zero reference.
        """
        counts = [len(keyframes) for keyframes in batch.keyframes]
        encoded: tuple[torch.Tensor, ...] = ()
        if sum(counts):
            frames = torch.cat(batch.references)[:, :, None]  # [sum K, 3, 1, H, W]
            encoded = self.encode(frames, generator).split(counts)  # [K, 16, 1, h, w] each
        per_sample = []
        for index, keyframes in enumerate(batch.keyframes):
            latents = {f: encoded[index][k : k + 1] for k, f in enumerate(keyframes)}
            per_sample.append(cond.build_reference_latent(lr_latent[index : index + 1], latents))
        return torch.cat(per_sample, dim=0)

    def predict_x0(self, lr_latent: torch.Tensor, reference_latent: torch.Tensor) -> torch.Tensor:
        """x0 ``[B, 16, F_lat, h, w]`` from one transformer pass (gradients flow).

        Latents enter in the compute dtype (bf16 under bf16 training, as DeepSpeed's bf16
        engine needs and as the dit engine runs), so x0 is formed exactly as at inference.
        """
        x0 = cond.predict_x0(
            self.transformer,
            lr_latent.to(self.weight_dtype),
            [reference_latent.to(self.weight_dtype)],
            self.prompt_embeds,
            self.abar,
        )
        return torch.cat(x0, dim=0)

    def decode_aligned(self, x0: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x0 ``[B, 16, F_lat, h, w]`` -> pixels ``[B, 3, num_frames, 8h, 8w]`` in about [-1, 1].

        Each sample's latents are decoded as one video along time (the VAE is causal: pixel
        frame 0 from latent 0, frames 4k-3..4k from latent k), never as a stack of unrelated
        single frames. The frame count is checked so pixel frame i is always HR frame i.
        """
        pixels = cond.decode_latents(self.vae, x0.to(self.weight_dtype)).float()
        if pixels.shape[2] != num_frames:
            raise TrainingError(
                f"decoding {x0.shape[2]} latent frames gave {pixels.shape[2]} frames, not the "
                f"{num_frames} of the target clip; use 8k+1 frames per clip"
            )
        return pixels
