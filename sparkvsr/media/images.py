"""Still images: read as RGB with EXIF orientation applied, write losslessly by suffix; a PNG
sequence packed in one zip file."""

from __future__ import annotations

import io
import os
import zipfile
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


class PngSequenceZip:
    """A PNG sequence in one zip file (what a browser can download): ``frame_000123.png`` per
    frame, named by its frame index; stored, not deflated (PNG is compressed already).

        with PngSequenceZip(path) as sequence:
            sequence.write(start, frames)   # [N, H, W, 3] uint8, frames start, start + 1, ...
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.frames_written = 0
        try:
            self._archive = zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_STORED)
        except OSError as e:
            raise MediaError(f"cannot write {self.path}: {e}") from e

    def write(self, start: int, frames: np.ndarray) -> None:
        for offset, image in enumerate(np.asarray(frames)):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise MediaError(
                    f"cannot write {self.path}: expected uint8 [H, W, 3] frames, got "
                    f"{image.dtype} {image.shape}"
                )
            data = io.BytesIO()
            Image.fromarray(image).save(data, format="PNG", compress_level=1)
            try:
                self._archive.writestr(f"frame_{start + offset:06d}.png", data.getvalue())
            except OSError as e:
                raise MediaError(f"cannot write {self.path}: {e}") from e
            self.frames_written += 1

    def close(self) -> None:
        try:
            self._archive.close()
        except OSError as e:
            raise MediaError(f"cannot write {self.path}: {e}") from e

    def __enter__(self) -> PngSequenceZip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
