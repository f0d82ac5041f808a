"""Colour correction of restored frames against the LR input. Arrays in, arrays out.

Diffusion restorers can drift in colour; both fixes pull the output's colour back to the input's
while keeping the restored detail:

- ``adain``: per frame and channel, match the output's mean and standard deviation to the LR's.
- ``wavelet``: keep the output's high-frequency bands and take the lowest band (the colour and
  shading) from the LR, using an à trous (dilated) blur pyramid.

Inputs are float ``[N, H, W, 3]`` (or ``[H, W, 3]``) in [0, 1]; ``reference`` is the LR upscaled to
the same size. Outputs are float32 in [0, 1], same shape.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from sparkvsr.errors import EngineError

FIXES = ("none", "wavelet", "adain")
_KERNEL = np.array([0.25, 0.5, 0.25], dtype=np.float32)  # B3-like 3-tap, dilated per level


def _as_batch(image: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3:
        raise EngineError(f"{name} must be [N, H, W, 3] or [H, W, 3], got {array.shape}")
    return array


def adain(content: np.ndarray, reference: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Match per-frame, per-channel mean/std of ``content`` to ``reference``."""
    c, r = _as_batch(content, "content"), _as_batch(reference, "reference")
    _check_same(c, r)
    c_mean, c_std = c.mean(axis=(1, 2), keepdims=True), c.std(axis=(1, 2), keepdims=True)
    r_mean, r_std = r.mean(axis=(1, 2), keepdims=True), r.std(axis=(1, 2), keepdims=True)
    out = (c - c_mean) / (c_std + eps) * r_std + r_mean
    return np.clip(out, 0.0, 1.0).reshape(np.shape(content)).astype(np.float32)


def _blur(image: np.ndarray, dilation: int) -> np.ndarray:
    """Separable dilated 3-tap blur over H and W of ``[N, H, W, 3]`` (edges reflected)."""
    kernel = np.zeros(2 * dilation + 1, dtype=np.float32)
    kernel[[0, dilation, 2 * dilation]] = _KERNEL
    out = ndimage.convolve1d(image, kernel, axis=1, mode="reflect")
    return ndimage.convolve1d(out, kernel, axis=2, mode="reflect")


def _low_band(image: np.ndarray, levels: int) -> np.ndarray:
    low = image
    for level in range(levels):
        low = _blur(low, 2**level)
    return low


def wavelet(content: np.ndarray, reference: np.ndarray, levels: int = 5) -> np.ndarray:
    """``content``'s high frequencies on ``reference``'s low band (``levels`` à trous levels)."""
    c, r = _as_batch(content, "content"), _as_batch(reference, "reference")
    _check_same(c, r)
    out = c - _low_band(c, levels) + _low_band(r, levels)
    return np.clip(out, 0.0, 1.0).reshape(np.shape(content)).astype(np.float32)


def color_fix(content: np.ndarray, reference: np.ndarray, method: str) -> np.ndarray:
    """Apply ``method`` ("none", "wavelet" or "adain"); "none" returns ``content`` as float32."""
    if method == "none":
        return np.asarray(content, dtype=np.float32)
    if method == "wavelet":
        return wavelet(content, reference)
    if method == "adain":
        return adain(content, reference)
    raise EngineError(f"colour fix {method!r} is unknown; choose one of {', '.join(FIXES)}")


def _check_same(content: np.ndarray, reference: np.ndarray) -> None:
    if content.shape != reference.shape:
        raise EngineError(
            f"colour reference {reference.shape} must match the restored frames {content.shape}"
        )
