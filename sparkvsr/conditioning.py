"""The SparkVSR model math, shared by the ``dit`` engine and the trainer (one piece of code).

These are the facts the released weights were trained with (see DESIGN.md, "Engine dit"); change
one and the weights produce garbage. Every function is small and side-effect free: tensors in,
tensors out. Layouts:

- pixel videos ``[B, 3, F, H, W]``; values in [0, 1] ("unit") or [-1, 1] ("signed") as named;
- VAE latents ``[B, 16, F_lat, H/8, W/8]`` already multiplied by ``LATENT_SCALE``, with
  ``F_lat = (F - 1) // 4 + 1``;
- transformer tensors ``[B, F, C, H, W]`` (frames before channels, as diffusers' CogVideoX wants).

The one-step restoration: ``z`` = LR latent, ``v = transformer([z ; ref], t=399, ofs=2)``,
``x0 = sqrt(abar) z - sqrt(1 - abar) v``, decoded with ``vae.decode(x0 / 0.7)``. Reference-free
guidance mixes an unconditioned (zero reference) and a conditioned prediction; x0 is affine in v,
so ``x0(s) = x0_u + s (x0_c - x0_u)`` and the mix can be done on cached x0 latents.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from sparkvsr.errors import EngineError, KeyframeError

UPSCALE = 4  # the model restores at x4 of the LR input
LATENT_SCALE = 0.7  # trained with x0.7 (ignore the pipeline's invert_scale_latents)
TIMESTEP = 399  # the single denoising step
OFS = 2.0  # CogVideoX1.5-I2V ofs embedding input
SPATIAL_COMPRESSION = 8  # VAE pixels per latent pixel
TEMPORAL_COMPRESSION = 4  # VAE frames per latent frame (after the first)
PIXEL_MULTIPLE = 16  # upscaled size must be a multiple of this (VAE x8, patch 2)
FRAME_MULTIPLE = 8  # frame counts are 8k + 1


# ---------------------------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------------------------


def padded_frame_count(num_frames: int) -> int:
    """Smallest ``8k + 1 >= num_frames`` (the frame counts the model was trained on)."""
    if num_frames < 1:
        raise EngineError(f"a chunk needs at least one frame, got {num_frames}")
    return FRAME_MULTIPLE * math.ceil((num_frames - 1) / FRAME_MULTIPLE) + 1


def padded_lr_size(height: int, width: int, scale: int = UPSCALE) -> tuple[int, int]:
    """LR (height, width) after zero padding so that ``scale`` x it is a multiple of 16."""
    step = PIXEL_MULTIPLE // math.gcd(PIXEL_MULTIPLE, scale)
    return step * math.ceil(height / step), step * math.ceil(width / step)


def latent_frame_count(num_frames: int) -> int:
    """Latent frames the VAE makes from ``num_frames`` (8k+1 or 4k+1) pixel frames."""
    return (num_frames - 1) // TEMPORAL_COMPRESSION + 1


def latent_slot(local_frame: int) -> int:
    """The latent slot a keyframe at local frame ``f`` is written to: ``f // 4`` (trained)."""
    return local_frame // TEMPORAL_COMPRESSION


# ---------------------------------------------------------------------------------------------
# Pixels in
# ---------------------------------------------------------------------------------------------


def frames_to_unit(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``[F, H, W, 3]`` uint8 RGB -> ``[1, 3, F, H, W]`` float32 in [0, 1]."""
    if isinstance(frames, torch.Tensor):
        tensor = frames
    else:
        array = np.asarray(frames)
        if not (array.flags.writeable and array.flags.c_contiguous):
            array = np.array(array)  # torch cannot wrap read-only memory (decoded video frames)
        tensor = torch.from_numpy(array)
    if tensor.ndim != 4 or tensor.shape[-1] != 3:
        raise EngineError(f"frames must be [F, H, W, 3] RGB, got {tuple(tensor.shape)}")
    return (tensor.permute(3, 0, 1, 2).unsqueeze(0).float() / 255.0).contiguous()


def pad_frames(video: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Pad ``[B, C, F, H, W]`` to ``num_frames`` frames by repeating the last frame."""
    missing = num_frames - video.shape[2]
    if missing < 0:
        raise EngineError(f"cannot pad {video.shape[2]} frames down to {num_frames}")
    if missing == 0:
        return video
    last = video[:, :, -1:].expand(-1, -1, missing, -1, -1)
    return torch.cat([video, last], dim=2)


def pad_spatial(video: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Zero-pad ``[..., H, W]`` at the bottom and right to ``(height, width)``."""
    pad_h, pad_w = height - video.shape[-2], width - video.shape[-1]
    if pad_h < 0 or pad_w < 0:
        raise EngineError(
            f"cannot pad {video.shape[-2]}x{video.shape[-1]} to a smaller {height}x{width}"
        )
    if pad_h == 0 and pad_w == 0:
        return video
    return F.pad(video, (0, pad_w, 0, pad_h))


def upscale_bilinear(video: torch.Tensor, factor: int = UPSCALE) -> torch.Tensor:
    """``[B, C, F, H, W]`` -> ``[B, C, F, H*factor, W*factor]``, bilinear, align_corners=False.

    Per frame: the model was trained on bilinear x4 (not bicubic) pre-upscaled LR video.
    """
    b, c, f, h, w = video.shape
    flat = video.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
    up = F.interpolate(flat, scale_factor=factor, mode="bilinear", align_corners=False)
    return up.reshape(b, f, c, h * factor, w * factor).permute(0, 2, 1, 3, 4).contiguous()


def unit_to_signed(video: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]."""
    return video * 2.0 - 1.0


def prepare_lr_video(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """LR frames ``[F, H, W, 3]`` uint8 -> model input ``[1, 3, F', 4H', 4W']`` in [-1, 1].

    Steps (trained order): pad frames to 8k+1 by repeating the last; zero-pad bottom/right so the
    x4 size is a multiple of 16; bilinear x4; scale to [-1, 1].
    """
    video = frames_to_unit(frames)
    video = pad_frames(video, padded_frame_count(video.shape[2]))
    video = pad_spatial(video, *padded_lr_size(video.shape[-2], video.shape[-1]))
    return unit_to_signed(upscale_bilinear(video))


def prepare_reference(image: np.ndarray | torch.Tensor, height: int, width: int) -> torch.Tensor:
    """HR reference ``[H, W, 3]`` uint8 -> ``[1, 3, 1, height, width]`` in [-1, 1].

    Zero-padded bottom/right like the LR video so reference and LR pixels stay aligned.
    """
    video = frames_to_unit(np.asarray(image)[None])
    return unit_to_signed(pad_spatial(video, height, width))


# ---------------------------------------------------------------------------------------------
# Latents
# ---------------------------------------------------------------------------------------------


def encode_latents(
    vae: torch.nn.Module, video: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``[B, 3, F, H, W]`` in [-1, 1] -> scaled latent ``[B, 16, F_lat, H/8, W/8]``.

    ``latent_dist.sample() * 0.7`` as in training; pass a seeded ``generator`` for repeatable
    results (the engine re-seeds per call so equal inputs give equal latents).
    """
    return vae.encode(video).latent_dist.sample(generator=generator) * LATENT_SCALE


def encode_reference_frame(
    vae: torch.nn.Module, image: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One HR keyframe ``[B, 3, H, W]`` in [-1, 1] -> ``[B, 16, 1, H/8, W/8]`` (x0.7).

    Encoded as a single-frame video, as in training; the result goes to ``build_reference_latent``.
    """
    return encode_latents(vae, image.unsqueeze(2), generator)


def decode_latents(vae: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latent ``[B, 16, F_lat, h, w]`` -> video ``[B, 3, F, 8h, 8w]`` in about [-1, 1]."""
    return vae.decode(latents / LATENT_SCALE).sample


def build_reference_latent(
    lr_latent: torch.Tensor, keyframe_latents: Mapping[int, torch.Tensor]
) -> torch.Tensor:
    """The reference latent for one chunk: zeros like ``lr_latent`` ``[B, C, F_lat, h, w]``;
    each ``{local frame f: latent [B or 1, C, 1, h, w]}`` (an HR image encoded as a single frame,
    x0.7) written at slot ``f // 4`` and nowhere else.

    Keyframes closer than 4 frames could share a slot, so they are refused.
    """
    reference = torch.zeros_like(lr_latent)
    ordered = sorted(keyframe_latents)
    for previous, current in itertools.pairwise(ordered):
        if current - previous < TEMPORAL_COMPRESSION:
            raise KeyframeError(
                f"keyframes at local frames {previous} and {current} are {current - previous} "
                f"frames apart; they must be at least {TEMPORAL_COMPRESSION} apart"
            )
    for frame in ordered:
        slot = latent_slot(frame)
        if not 0 <= slot < lr_latent.shape[2]:
            raise EngineError(
                f"keyframe at local frame {frame} maps to latent slot {slot}, outside the "
                f"chunk's {lr_latent.shape[2]} latent frames"
            )
        latent = keyframe_latents[frame]
        if latent.ndim != 5 or latent.shape[2] != 1 or latent.shape[-2:] != lr_latent.shape[-2:]:
            raise EngineError(
                f"keyframe latent for frame {frame} is {tuple(latent.shape)}; expected "
                f"[B, {lr_latent.shape[1]}, 1, {lr_latent.shape[-2]}, {lr_latent.shape[-1]}]"
            )
        reference[:, :, slot : slot + 1] = latent.to(reference.dtype)
    return reference


def transformer_input(
    lr_latent: torch.Tensor, reference_latent: torch.Tensor, patch_size_t: int | None = 2
) -> tuple[torch.Tensor, bool]:
    """``[LR ; ref]`` channel concat, ``[B, C, F, h, w]`` x2 -> ``[B, F(+1), 2C, h, w]``.

    With ``patch_size_t`` 2 an odd latent frame count gets one copy of latent frame 0 prepended
    (as trained); the returned flag says so, and ``drop_frame_copy`` removes it afterwards.
    """
    hidden = torch.cat([lr_latent, reference_latent], dim=1).permute(0, 2, 1, 3, 4)
    copied = bool(patch_size_t and patch_size_t > 1 and hidden.shape[1] % patch_size_t)
    if copied:
        hidden = torch.cat([hidden[:, :1], hidden], dim=1)
    return hidden.contiguous(), copied


def drop_frame_copy(prediction: torch.Tensor, copied: bool) -> torch.Tensor:
    """Transformer output ``[B, F(+1), C, h, w]`` -> ``[B, C, F, h, w]`` without the copy."""
    if copied:
        prediction = prediction[:, 1:]
    return prediction.permute(0, 2, 1, 3, 4)


def rotary_embedding(
    transformer_config, latent_frames: int, latent_height: int, latent_width: int, device=None
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Slice RoPE (cos, sin) for a transformer input of ``latent_frames`` (after the frame-0
    copy) x ``latent_height`` x ``latent_width``; None when the model has no rotary embeddings.

    With grid_type "slice" the positions are the integers from 0 cut to the grid, so max_size
    only has to cover the grid: we pass the larger of the config's sample size and the grid.
    """
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    if not getattr(transformer_config, "use_rotary_positional_embeddings", False):
        return None
    p = transformer_config.patch_size
    p_t = transformer_config.patch_size_t or 1
    grid_h, grid_w = latent_height // p, latent_width // p
    base_h = max(transformer_config.sample_height // p, grid_h)
    base_w = max(transformer_config.sample_width // p, grid_w)
    return get_3d_rotary_pos_embed(
        embed_dim=transformer_config.attention_head_dim,
        crops_coords=None,
        grid_size=(grid_h, grid_w),
        temporal_size=math.ceil(latent_frames / p_t),
        grid_type="slice",
        max_size=(base_h, base_w),
        device=device,
    )


TEXT_LENGTH = 226  # CogVideoX pads every prompt to 226 T5 tokens


def empty_prompt_embedding(
    tokenizer, text_encoder: torch.nn.Module, length: int = TEXT_LENGTH
) -> torch.Tensor:
    """T5 embedding of the empty prompt, padded as CogVideoX pads prompts: ``[1, length, D]``
    float32 on the CPU. SparkVSR conditions on it alone, so callers compute it once per model
    and cache it; the text encoder can be freed afterwards.
    """
    device = next(text_encoder.parameters()).device
    tokens = tokenizer(
        "",
        padding="max_length",
        max_length=length,
        truncation=True,
        add_special_tokens=True,
        return_tensors="pt",
    )
    # no_grad, not inference_mode: the trainer feeds this tensor into autograd-tracked passes.
    with torch.no_grad():
        embeds = text_encoder(tokens.input_ids.to(device))[0]
    return embeds.float().cpu().contiguous()


def alpha_bar(alphas_cumprod: torch.Tensor, dtype: torch.dtype, t: int = TIMESTEP) -> torch.Tensor:
    """ᾱ_t from the scheduler's ``alphas_cumprod``, cast to the model dtype first.

    The public code casts ᾱ to the latent dtype before taking square roots; in bf16 that gives
    coefficients ≈ 0.625 / 0.78125 instead of 0.6273 / 0.7789, which the weights were trained
    with. (ᾱ_399 = 0.39354 with zero-terminal-SNR rescaling.)
    """
    return alphas_cumprod[t].to(dtype)


def x0_from_v(z: torch.Tensor, v: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """v-prediction -> clean latent: ``x0 = sqrt(ᾱ) z - sqrt(1 - ᾱ) v``, all in ``abar``'s dtype."""
    abar = abar.to(device=z.device)
    return abar.sqrt() * z - (1 - abar).sqrt() * v


def rfg_combine(
    unconditioned: torch.Tensor, conditioned: torch.Tensor, s: float | Sequence[float]
) -> torch.Tensor:
    """Reference-free guidance: ``u + s (c - u)``; valid for v and (being affine) for x0.

    ``s`` is one scale, or one per latent frame (``latent_guidance``) for latents
    ``[B, C, F_lat, h, w]``: per-keyframe weights cost nothing beyond the two cached branches.
    """
    if not isinstance(s, int | float):
        scales = [float(v) for v in s]
        if len(set(scales)) > 1:
            if len(scales) != conditioned.shape[2]:
                raise ValueError(
                    f"{len(scales)} guidance scales for {conditioned.shape[2]} latent frames"
                )
            per_frame = torch.tensor(scales, dtype=conditioned.dtype, device=conditioned.device)
            per_frame = per_frame.view(1, 1, -1, 1, 1)
            return unconditioned + per_frame * (conditioned - unconditioned)
        s = scales[0]
    if s == 1.0:
        return conditioned
    if s == 0.0:
        return unconditioned
    return unconditioned + s * (conditioned - unconditioned)


def latent_guidance(
    num_latent: int, keyframe_weights: Mapping[int, float], s: float
) -> tuple[float, ...]:
    """The guidance scale of each latent frame of a chunk: ``s`` times its keyframes' weights.

    ``keyframe_weights`` maps local frames of the chunk to per-keyframe weights (0 to 2). A
    keyframe's weight holds at its slot ``f // 4`` and is interpolated linearly between
    neighbouring keyframes' slots; before the first and after the last it is held. A chunk
    without keyframes has ``s`` everywhere (both branches are the same prediction there).
    """
    slots = sorted((latent_slot(f), float(w)) for f, w in keyframe_weights.items())
    if not slots:
        return (float(s),) * num_latent
    positions = np.array([slot for slot, _ in slots], dtype=np.float64)
    weights = np.array([w for _, w in slots], dtype=np.float64)
    per_frame = np.interp(np.arange(num_latent, dtype=np.float64), positions, weights)
    return tuple(float(s) * float(w) for w in per_frame)


def guidance_branches(scales: Sequence[float]) -> tuple[bool, bool]:
    """Which x0 branches ``rfg_combine`` needs for these scales: (unconditioned, conditioned)."""
    return any(v != 1.0 for v in scales), any(v != 0.0 for v in scales)


def predict_v(
    transformer: torch.nn.Module,
    hidden: torch.Tensor,
    prompt_embeds: torch.Tensor,
    rotary: tuple[torch.Tensor, torch.Tensor] | None,
) -> torch.Tensor:
    """One transformer forward at t=399, ofs=2: ``hidden [B, F, 32, h, w]`` -> v ``[B, F, 16, h, w]``.

    ``prompt_embeds`` ``[1, 226, D]`` (the empty prompt) is shared by the whole batch.
    """
    batch = hidden.shape[0]
    timestep = torch.full((batch,), TIMESTEP, device=hidden.device, dtype=torch.long)
    ofs = None
    if getattr(transformer.config, "ofs_embed_dim", None):
        ofs = torch.full((batch,), OFS, device=hidden.device, dtype=hidden.dtype)
    embeds = prompt_embeds.to(device=hidden.device, dtype=hidden.dtype).expand(batch, -1, -1)
    return transformer(
        hidden_states=hidden,
        encoder_hidden_states=embeds,
        timestep=timestep,
        ofs=ofs,
        image_rotary_emb=rotary,
        return_dict=False,
    )[0]


def predict_x0(
    transformer: torch.nn.Module,
    lr_latent: torch.Tensor,
    reference_latents: Sequence[torch.Tensor],
    prompt_embeds: torch.Tensor,
    abar: torch.Tensor,
) -> list[torch.Tensor]:
    """x0 for each reference latent in ONE batched transformer pass.

    ``lr_latent`` ``[1, 16, F_lat, h, w]`` (model dtype); ``reference_latents``: one tensor like it
    per branch (zeros for the unconditioned branch). Returns one ``[1, 16, F_lat, h, w]`` x0 per
    branch, computed in the model dtype.
    """
    config = transformer.config
    inputs = [transformer_input(lr_latent, ref, config.patch_size_t) for ref in reference_latents]
    hidden = torch.cat([h for h, _ in inputs], dim=0)
    copied = inputs[0][1]
    rotary = rotary_embedding(
        config, hidden.shape[1], hidden.shape[-2], hidden.shape[-1], hidden.device
    )
    v = drop_frame_copy(predict_v(transformer, hidden, prompt_embeds, rotary), copied)
    x0 = x0_from_v(lr_latent, v.to(lr_latent.dtype), abar)
    return list(x0.split(1, dim=0))


# ---------------------------------------------------------------------------------------------
# Pixels out
# ---------------------------------------------------------------------------------------------


def signed_to_unit(video: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped."""
    return ((video.float() + 1.0) / 2.0).clamp(0.0, 1.0)


def unit_to_uint8(video: torch.Tensor) -> np.ndarray:
    """``[F, H, W, 3]`` (or any layout) in [0, 1] -> uint8, rounded (not truncated)."""
    return (video.float() * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
