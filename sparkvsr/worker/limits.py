"""Limits every request is checked against before any work: types and ranges of settings, sizes
of uploads and decoded images. The worker checks them itself (so an in-process caller cannot save
a setting that breaks rendering) and the HTTP server checks the same numbers before decoding.
"""

from __future__ import annotations

import math
from typing import Any

from sparkvsr.errors import SparkVSRError

# Inclusive ranges of the render settings a client may change. A chunk is bounded twice: by frame
# count here, and by the bytes one chunk of output frames takes (``MAX_CHUNK_BYTES``).
SETTING_RANGES: dict[str, tuple[int, int]] = {
    "chunk": (1, 1025),
    "overlap": (0, 1024),
    "tile": (0, 16384),
    "tile_overlap": (0, 4096),
    "crf": (0, 51),
}
GUIDANCE_RANGE = (0.0, 10.0)
MAX_CHUNK_BYTES = 8 << 30
"""Output bytes of one chunk (frames x width x height x 3) a render may hold at once."""

UPLOAD_PIXEL_FACTOR = 4
"""A Reference image may have up to this many times the pixels of the output frame (the clip's
size times the engine's scale): enough for any editor's result, far below a decompression bomb."""


class RequestError(SparkVSRError):
    """A request field has the wrong type or a value outside its range (HTTP 422)."""


class TooLarge(SparkVSRError):
    """A request, upload or image is larger than this worker accepts (HTTP 413)."""


def check_int(name: str, value: Any, low: int, high: int) -> int:
    """``value`` as a plain int in ``[low, high]``; RequestError naming ``name`` otherwise
    (floats such as 8.5 or 8.0, strings and booleans are refused, not rounded)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(
            f"{name} must be a whole number from {low} to {high}; got {value!r} "
            f"({type(value).__name__})"
        )
    if not low <= value <= high:
        raise RequestError(f"{name} {value} is out of range: use {low} to {high}")
    return value


def check_float(name: str, value: Any, low: float, high: float) -> float:
    """``value`` as a finite float in ``[low, high]`` (ints accepted); RequestError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(
            f"{name} must be a number from {low:g} to {high:g}; got {value!r} "
            f"({type(value).__name__})"
        )
    if not math.isfinite(value) or not low <= value <= high:
        raise RequestError(f"{name} {value} is out of range: use {low:g} to {high:g}")
    return float(value)


def check_range(frames: Any, num_frames: int) -> tuple[int, int]:
    """A range render's ``(start, stop)``: whole numbers with ``0 <= start < stop <= num_frames``
    (frames ``start <= i < stop``); RequestError naming the fix otherwise."""
    if not isinstance(frames, tuple | list) or len(frames) != 2:
        raise RequestError(f"frames must be (start, stop); got {frames!r}")
    start = check_int("range start", frames[0], 0, max(0, num_frames - 1))
    stop = check_int("range stop", frames[1], 1, num_frames)
    if stop <= start:
        raise RequestError(
            f"the range's out point (frame {stop - 1}) is before its in point (frame {start}); "
            "set the in point first, then an out point after it"
        )
    return start, stop


def check_settings(changes: dict[str, Any], output_size: tuple[int, int]) -> None:
    """Check render-setting changes (``{name: value}``, None = unchanged) before they are saved.

    output_size: (width, height) of the output frames, which bounds the chunk by memory.
    """
    for name, (low, high) in SETTING_RANGES.items():
        if changes.get(name) is not None:
            check_int(name, changes[name], low, high)
    if changes.get("guidance") is not None:
        check_float("guidance", changes["guidance"], *GUIDANCE_RANGE)
    if changes.get("color_fix") is not None and not isinstance(changes["color_fix"], str):
        raise RequestError(f"color_fix must be a name; got {changes['color_fix']!r}")
    chunk = changes.get("chunk")
    if chunk is not None:
        width, height = output_size
        frame_bytes = max(1, width * height * 3)
        most = max(1, MAX_CHUNK_BYTES // frame_bytes)
        if chunk > most:
            raise RequestError(
                f"chunk {chunk} would hold {chunk * frame_bytes / 2**30:.1f} GiB of "
                f"{width}x{height} output frames at once; use at most {most} frames"
            )


def upload_pixel_limit(output_size: tuple[int, int]) -> int:
    """The most pixels a Reference image for frames of ``output_size`` may decode to."""
    width, height = output_size
    return max(1, width * height * UPLOAD_PIXEL_FACTOR)


def check_image_pixels(width: int, height: int, limit: int) -> None:
    """Refuse an image header announcing more than ``limit`` pixels (before decoding it)."""
    if width * height > limit:
        raise TooLarge(
            f"the image is {width}x{height} ({width * height / 1e6:.1f} Mpx); references for "
            f"this clip may have at most {limit / 1e6:.1f} Mpx. Resize it and upload again."
        )
