"""Previews smaller than the LR frame: the clip's frames area-downscaled, and how far.

A viewer about 600 pixels wide shows a 1280x720 clip's frame at half its LR size or less. A
preview propagated on the LR frames shrunk to what is shown computes its flows, weights and
warps on a quarter of the pixels (a new frame of a 720p clip: ~400 -> ~100 ms of engine time)
and keeps a quarter of the LR caches; the render, and previews at 100 % and above, always
propagate the full LR frames.
"""

from __future__ import annotations

import cv2
import numpy as np

from sparkvsr.frames import FrameSource, check_range
from sparkvsr.viewport import View

# The shrunk frames keep at least this many pixels on their short side, so the flows still
# follow motion (DIS needs a dozen rows of 8-pixel patches at its finest level)
MIN_SHRUNK_SIDE = 120


def lr_shrink(view: View, scale: int, lr_size: tuple[int, int]) -> int:
    """The integer factor the LR frame can be shrunk by for ``view`` (of an output at ``scale``)
    while it still has at least ``view.size`` pixels across ``view.box``: 1 (not at all) unless
    the view shows the box at half the LR frame's pixels or fewer."""
    box_w, box_h = view.box_size
    # LR pixels across the box, per delivered pixel
    spare = min(box_w / (scale * view.size[0]), box_h / (scale * view.size[1]))
    factor = max(1, int(spare + 1e-9))
    while factor > 1 and min(lr_size) / factor < MIN_SHRUNK_SIDE:
        factor -= 1
    return factor


class ShrunkFrames:
    """A FrameSource of ``source``'s frames area-downscaled by ``factor`` (sizes rounded)."""

    def __init__(self, source: FrameSource, factor: int):
        self.source = source
        self.factor = factor
        width, height = source.size
        self._size = (max(1, round(width / factor)), max(1, round(height / factor)))

    @property
    def num_frames(self) -> int:
        return self.source.num_frames

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    @property
    def identity(self) -> str:
        return f"{self.source.identity}/shrunk{self.factor}"

    def read(self, start: int, stop: int) -> np.ndarray:
        check_range(start, stop, self.num_frames)
        frames = self.source.read(start, stop)
        width, height = self._size
        out = np.empty((len(frames), height, width, 3), np.uint8)
        for i, frame in enumerate(frames):
            cv2.resize(frame, self._size, dst=out[i], interpolation=cv2.INTER_AREA)
        return out
