"""Images the page shows, written as files Gradio serves (the folder is in ``allowed_paths``).

Two qualities for one purpose: while the guidance slider moves the page gets a small JPEG
(cheap to encode and send, so the view keeps up with the hand); on release it gets the full
resolution at near-lossless quality. Small LR frames are sent as PNG so the user sees exactly
what the clip holds.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

CHEAP_WIDTH = 640
"""Width the live (dragging) preview is shrunk to."""
LOSSLESS_PIXELS = 640 * 360
"""Frames up to this many pixels are sent as PNG."""


class ViewImages:
    """Writes ``[H, W, 3]`` uint8 RGB images to ``folder`` under per-session slot names.

    Each (session, slot) overwrites its previous file: Gradio copies a returned file into its
    cache before the next event of that slot runs, so the folder stays small.
    """

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder or tempfile.mkdtemp(prefix="sparkvsr-studio-")).absolute()
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, session_id: str, slot: str, suffix: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_-]", "", f"{session_id[:16]}-{slot}")
        return self.folder / f"{safe}.{suffix}"

    def frame(self, session_id: str, slot: str, image: np.ndarray) -> str:
        """An image at full resolution: PNG when small, else JPEG at quality 92."""
        picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
        if image.shape[0] * image.shape[1] <= LOSSLESS_PIXELS:
            target = self.path(session_id, slot, "png")
            picture.save(target, format="PNG", compress_level=1)
        else:
            target = self.path(session_id, slot, "jpg")
            picture.save(target, format="JPEG", quality=92, subsampling=0)
        return str(target)

    def full(self, session_id: str, slot: str, image: np.ndarray) -> str:
        """A restored frame at full resolution, near-lossless (JPEG q95, no chroma subsampling)."""
        target = self.path(session_id, slot, "jpg")
        Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(
            target, format="JPEG", quality=95, subsampling=0
        )
        return str(target)

    def cheap(self, session_id: str, slot: str, image: np.ndarray) -> str:
        """A restored frame for the live view: at most ``CHEAP_WIDTH`` wide, JPEG q80."""
        picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
        if picture.width > CHEAP_WIDTH:
            height = max(1, round(picture.height * CHEAP_WIDTH / picture.width))
            picture = picture.resize((CHEAP_WIDTH, height), Image.Resampling.BILINEAR)
        target = self.path(session_id, slot, "jpg")
        picture.save(target, format="JPEG", quality=80)
        return str(target)


def upscale_for_compare(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An LR frame ``[h, w, 3]`` brought to ``size`` (W, H) with bicubic, for before/after views."""
    picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    return np.asarray(picture.resize(tuple(size), Image.Resampling.BICUBIC))
