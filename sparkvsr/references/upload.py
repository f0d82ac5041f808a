"""``upload``: the user's own HR image for a keyframe, made with any tool in the world.

The image is checked (it decodes, it is RGB or convertible, its size is sane) and fitted like every
other editor's output: an aspect ratio more than 2% away from the clip's is centre-cropped (the
user is told through ``Provenance.notes``), then it is resized with bicubic to the target size.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from sparkvsr.errors import EditorError
from sparkvsr.references.base import EditRequest, Provenance, Reference
from sparkvsr.references.fit import (
    ASPECT_TOLERANCE,
    MAX_SIDE,
    aspect_error,
    check_frame,
    check_target_size,
    fit_to_size,
    fitted_reference,
)

MIN_SIDE = 16


def decode_upload(data: bytes, check_size: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Decode an uploaded image file's bytes (PNG, JPEG, WebP, TIFF...) to ``[H, W, 3]`` uint8.

    ``check_size(width, height)`` sees the size from the file's header before any pixel is
    decoded, so it can refuse a small file that would decode to gigabytes (its error propagates).
    """
    try:
        with warnings.catch_warnings():
            # with a check_size the caller's own cap applies, far below PIL's bomb guard
            if check_size is not None:
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        with image:
            if check_size is not None:
                check_size(*image.size)
            image.load()
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise EditorError(
            f"the uploaded file ({len(data)} bytes) is not an image that can be decoded; "
            "upload a PNG, JPEG, WebP or TIFF file"
        ) from e


def _as_rgb(image: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Accept gray, RGB or RGBA in uint8 or uint16; return RGB uint8 and what was converted."""
    notes: list[str] = []
    if image.dtype == np.uint16:
        image = (image.astype(np.uint32) * 255 + 32767) // 65535
        image = image.astype(np.uint8)
        notes.append("the 16-bit image was reduced to 8 bits per channel")
    elif image.dtype == np.bool_:
        image = image.astype(np.uint8) * 255
    if image.dtype != np.uint8:
        raise EditorError(
            f"the uploaded image has pixel type {image.dtype}; expected 8- or 16-bit integers"
        )
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
        notes.append("the grayscale image was converted to RGB")
    elif image.ndim == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
        notes.append("the grayscale image was converted to RGB")
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
        notes.append("the image's transparency (alpha channel) was dropped")
    if image.ndim != 3 or image.shape[2] != 3:
        raise EditorError(
            f"the uploaded image is shaped {tuple(image.shape)}; expected H x W with 1, 3 or 4 "
            "channels"
        )
    return np.ascontiguousarray(image), tuple(notes)


def check_upload(image: np.ndarray | None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Validate an upload: returns RGB ``[H, W, 3]`` uint8 and notes about conversions."""
    if image is None:
        raise EditorError("the upload editor needs an image: choose a file to upload first")
    image, notes = _as_rgb(np.asarray(image))
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE or max(height, width) > MAX_SIDE:
        raise EditorError(
            f"the uploaded image is {width}x{height} pixels; each side must be between "
            f"{MIN_SIDE} and {MAX_SIDE}"
        )
    return image, notes


def _used_size(
    size: tuple[int, int], target_size: tuple[int, int], cropped: bool
) -> tuple[int, int]:
    """The part of an image of ``size`` that survives the centre crop to the target's aspect."""
    if not cropped:
        return size
    aspect = target_size[0] / target_size[1]
    width, height = size
    if width / height > aspect:
        return min(width, round(height * aspect)), height
    return width, min(height, round(width / aspect))


class UploadEditor:
    """Validates and fits the image in ``EditRequest.upload`` to the target size."""

    name = "upload"

    def availability(self) -> str | None:
        return None

    def make(
        self, lr_frame: np.ndarray, target_size: tuple[int, int], request: EditRequest
    ) -> Reference:
        """Reference ``[H, W, 3]`` uint8 at ``target_size`` (W, H) from ``request.upload``.

        ``lr_frame`` is not used for pixels (the upload replaces it); the upload is registered
        to it and judged against it (``fit.fitted_reference``).
        """
        # 1. Inputs.
        lr_frame = check_frame(lr_frame)
        target_size = check_target_size(target_size)
        image, notes = check_upload(request.upload)
        height, width = image.shape[:2]

        # 2. Fit: crop only when the aspect is clearly different, so nothing is stretched > 2%.
        error = aspect_error((width, height), target_size)
        fitted, cropped = fit_to_size(image, target_size, "bicubic", tolerance=ASPECT_TOLERANCE)
        if cropped:
            notes += (
                f"the uploaded image is {width}x{height}, its aspect ratio differs from the "
                f"clip's ({target_size[0]}x{target_size[1]}) by {error:.0%}; it was "
                "centre-cropped to fit",
            )
        used_width, used_height = _used_size((width, height), target_size, cropped)
        if used_width < target_size[0] or used_height < target_size[1]:
            notes += (
                f"the uploaded image ({used_width}x{used_height} used) is smaller than the target "
                f"{target_size[0]}x{target_size[1]}; it was enlarged and will look soft",
            )

        # 3. Reference, registered to its frame, with where it came from and how well it fits.
        return fitted_reference(
            fitted,
            lr_frame,
            Provenance(
                editor=self.name,
                model="user upload",
                content_prompt=request.content_prompt,
                notes=notes,
            ),
        )
