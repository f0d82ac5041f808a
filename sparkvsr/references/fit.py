"""Fitting an image to a target size: the shared last step of every editor.

A Reference must be exactly the target size (W, H) with the clip's aspect ratio. Editors that get
an image of another shape (an upload, an image model's output) centre-crop it to the target's
aspect ratio first, so nothing is stretched, then resize. Images are ``[H, W, 3]`` uint8 RGB.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from sparkvsr.errors import EditorError

# Aspect ratios closer than this (relative) are treated as equal: resizing stretches by < 2%.
ASPECT_TOLERANCE = 0.02
MAX_SIDE = 16384

_RESAMPLING = {
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "bilinear": Image.Resampling.BILINEAR,
}


def check_target_size(target_size: tuple[int, int]) -> tuple[int, int]:
    """Return ``(W, H)`` as ints, or raise EditorError naming the bad size."""
    try:
        width, height = (int(v) for v in target_size)
    except (TypeError, ValueError) as e:
        raise EditorError(f"target size must be (width, height); got {target_size!r}") from e
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise EditorError(
            f"target size {width}x{height} is outside 1..{MAX_SIDE} pixels per side; "
            "choose a size such as 4x the clip's size"
        )
    return width, height


def check_frame(frame: np.ndarray) -> np.ndarray:
    """Return an LR frame as contiguous ``[h, w, 3]`` uint8, or raise EditorError."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise EditorError(
            f"an editor needs one RGB frame shaped [H, W, 3] uint8; got {frame.dtype} "
            f"{tuple(frame.shape)}"
        )
    if min(frame.shape[:2]) < 1:
        raise EditorError(f"the frame is empty ({frame.shape[1]}x{frame.shape[0]} pixels)")
    return np.ascontiguousarray(frame)


def aspect_error(size: tuple[int, int], target_size: tuple[int, int]) -> float:
    """Relative difference of the aspect ratios (W/H) of two sizes: 0.0 when equal."""
    aspect = size[0] / size[1]
    target = target_size[0] / target_size[1]
    return abs(aspect - target) / target


def center_crop_to_aspect(image: np.ndarray, aspect: float) -> np.ndarray:
    """The largest centred crop of ``image`` whose W/H equals ``aspect`` (to the pixel)."""
    height, width = image.shape[:2]
    if width / height > aspect:  # too wide: trim left and right
        new_width = max(1, min(width, round(height * aspect)))
        left = (width - new_width) // 2
        return image[:, left : left + new_width]
    new_height = max(1, min(height, round(width / aspect)))
    top = (height - new_height) // 2
    return image[top : top + new_height, :]


def resize(image: np.ndarray, size: tuple[int, int], method: str = "bicubic") -> np.ndarray:
    """Resize ``[H, W, 3]`` uint8 to ``size`` = (W, H) with antialiasing when shrinking."""
    if method not in _RESAMPLING:
        raise ValueError(
            f"unknown resize method {method!r}; choose one of {', '.join(_RESAMPLING)}"
        )
    width, height = size
    if image.shape[1] == width and image.shape[0] == height:
        return np.ascontiguousarray(image)
    resized = Image.fromarray(np.ascontiguousarray(image)).resize(
        (width, height), _RESAMPLING[method]
    )
    return np.asarray(resized, dtype=np.uint8)


def fit_to_size(
    image: np.ndarray,
    target_size: tuple[int, int],
    method: str = "bicubic",
    tolerance: float = 0.0,
) -> tuple[np.ndarray, bool]:
    """Centre-crop ``image`` to the aspect of ``target_size`` (W, H), then resize to it.

    Aspects within ``tolerance`` (relative) are resized without cropping. Returns the fitted
    ``[H, W, 3]`` uint8 image and whether a crop happened.
    """
    height, width = image.shape[:2]
    cropped = aspect_error((width, height), target_size) > tolerance
    if cropped:
        image = center_crop_to_aspect(image, target_size[0] / target_size[1])
        cropped = image.shape[:2] != (height, width)
    return resize(image, target_size, method), cropped
