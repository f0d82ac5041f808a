"""A frame's guidance-independent parts (``_Parts``) and how they become output pixels for a
guidance ``s``: the whole frame, a box of it, or the plain upscale."""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from sparkvsr.engines.base import (
    RestoreOptions,
)
from sparkvsr.engines.flow.caches import _Scratch
from sparkvsr.engines.flow.resampling import _bands, _upscale_rows
from sparkvsr.engines.flow.settings import UPSCALERS

# The largest float HR base the finish makes in one piece (see _finish)
WHOLE_FINISH_BYTES = 64 << 20


def _parts_bytes(parts: _Parts) -> int:
    arrays = (parts.lr, parts.residual, parts.correction)
    return sum(a.nbytes for a in arrays if a is not None)


@dataclass(frozen=True)
class _Parts:
    """Frame ``t`` for any guidance ``s``: ``Output(s) = U(lr + s * correction) + s * residual``.

    ``U(lr + s * C) = U(lr) + s * U(C)`` because the upscale is linear, so the back-projection
    correction rides along with the base upscale: one HR resize per frame instead of two, and no
    HR buffer that depends on ``s``.
    """

    lr: np.ndarray  # [h, w, 3] float32 in [0, 255]: LR_t
    residual: np.ndarray | None  # [H, W, 3] float32: the propagated residual (a keyframe's D_k)
    correction: np.ndarray | None  # [h, w, 3] float32: back-projection's LR correction, or None


def _finish(
    parts: _Parts,
    options: RestoreOptions,
    upscaler: str,
    out: np.ndarray | None = None,
    scratch: _Scratch | None = None,
) -> np.ndarray:
    """``U(lr + s * C) + s * D`` rounded (half to even) and clipped to uint8 ``[H, W, 3]``, then
    resized to ``options.output_size``; written into ``out`` (that final size) when given.

    At ``s = 0`` this is ``U(lr)`` rounded, the plain upscale; at a keyframe with ``s = 1`` it is
    ``U(lr) + (R - U(lr))``, the same float sum that rebuilds ``R`` exactly. The rounding equals
    ``np.rint`` then ``np.clip``.
    """
    s = float(options.guidance)
    residual = parts.residual
    lr = parts.lr
    if residual is None or s == 0:
        s, residual = 0.0, None
    elif parts.correction is not None:
        lr = cv2.scaleAdd(parts.correction, s, lr)
    scale = options.scale
    height, width = lr.shape[0] * scale, lr.shape[1] * scale
    resized = options.output_size is not None and options.output_size != (width, height)
    frame = out if out is not None and not resized else np.empty((height, width, 3), np.uint8)
    # Large frames band by band (``_upscale_rows`` equals the whole-frame resize row for row):
    # their float HR base never exists whole (177 MB at x4 of 720p). Smaller ones in one resize:
    # the resize's per-call setup (~0.2 ms) outweighs the cache gain there.
    scratch = _Scratch() if scratch is None else scratch
    whole = height * width * 3 * 4 <= WHOLE_FINISH_BYTES
    for first, last in [(0, lr.shape[0])] if whole else _bands(lr.shape[0]):
        base = _upscale_rows(lr, first, last, scale, UPSCALERS[upscaler], scratch, "base")
        rows = frame[first * scale : last * scale]
        if residual is None:
            cv2.addWeighted(base, 1.0, base, 0.0, 0.0, dst=rows, dtype=cv2.CV_8U)
        elif s == 1:  # 2x addWeighted's speed
            cv2.add(base, residual[first * scale : last * scale], dst=rows, dtype=cv2.CV_8U)
        else:
            band = residual[first * scale : last * scale]
            cv2.addWeighted(base, 1.0, band, s, 0.0, dst=rows, dtype=cv2.CV_8U)
    if resized:
        shrink = options.output_size[0] < width
        frame = cv2.resize(
            frame,
            options.output_size,
            dst=out,
            interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC,
        )
    return frame


def _finish_box(
    parts: _Parts, options: RestoreOptions, upscaler: str, box: tuple[int, int, int, int]
) -> np.ndarray:
    """``_finish`` for the output pixels in ``box`` (x0, y0, x1, y1) only: the parts are cut
    to the LR rows and columns the box needs plus the upscaler's reach, so the result equals
    the same box of the whole finished frame."""
    scale = options.scale
    height, width = parts.lr.shape[:2]
    margin = 4  # Lanczos reaches 4 LR pixels, bicubic 2
    lx0, ly0 = max(0, box[0] // scale - margin), max(0, box[1] // scale - margin)
    lx1 = min(width, -(-box[2] // scale) + margin)
    ly1 = min(height, -(-box[3] // scale) + margin)

    def cut(lr_image: np.ndarray | None, factor: int) -> np.ndarray | None:
        if lr_image is None:
            return None
        return lr_image[ly0 * factor : ly1 * factor, lx0 * factor : lx1 * factor]

    part = _Parts(cut(parts.lr, 1), cut(parts.residual, scale), cut(parts.correction, 1))
    frame = _finish(part, replace(options, output_size=None), upscaler)
    x0, y0 = box[0] - lx0 * scale, box[1] - ly0 * scale
    return np.ascontiguousarray(frame[y0 : y0 + box[3] - box[1], x0 : x0 + box[2] - box[0]])


def plain_upscale(frame: np.ndarray, scale: int, upscaler: str = "bicubic") -> np.ndarray:
    """The engine's base image as uint8: what ``restore`` yields for every frame at s = 0.

    ``frame`` ``[h, w, 3]`` uint8 -> ``[h * scale, w * scale, 3]`` uint8 (float resize, rounded).
    """
    height, width = frame.shape[:2]
    up = cv2.resize(
        frame.astype(np.float32), (width * scale, height * scale), interpolation=UPSCALERS[upscaler]
    )
    return np.clip(np.rint(up), 0, 255).astype(np.uint8)
