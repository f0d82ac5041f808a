"""Still images: read as RGB with EXIF orientation applied, write losslessly by suffix."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sparkvsr.errors import MediaError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def check_exists(path: Path) -> None:
    if not path.exists():
        raise MediaError(f"{path} does not exist: check the path (relative to {Path.cwd()})")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as ``[H, W, 3]`` uint8 RGB (EXIF orientation applied, alpha dropped)."""
    path = Path(path)
    check_exists(path)
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise MediaError(
            f"{path} is not a readable image ({e}); use PNG, JPEG, WebP, BMP or TIFF"
        ) from e


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write ``[H, W, 3]`` uint8 RGB to ``path`` (format from the suffix; PNG is lossless)."""
    path = Path(path)
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise MediaError(
            f"cannot write {path}: expected uint8 [H, W, 3], got {image.dtype} {image.shape}"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
    except (OSError, ValueError) as e:
        raise MediaError(f"cannot write {path}: {e}") from e
    return path
