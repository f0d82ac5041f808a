"""Frame sources: what engines read low-resolution frames through.

An engine never opens files. It reads frames by index range from a ``FrameSource``: a probed video
(``sparkvsr.media.Clip``), a folder of images, or frames already in memory (``ArrayFrames``, used by
tests and by the trainer). Frames are RGB ``uint8`` arrays shaped ``[N, H, W, 3]``.
"""

from __future__ import annotations

import hashlib
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class FrameSource(Protocol):
    """Random access to a clip's frames.

    ``identity`` is a short string that changes whenever the frames could change (a file's path,
    size and mtime; an array's content hash). Engines key their caches on it.
    """

    @property
    def num_frames(self) -> int: ...

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of every frame."""
        ...

    @property
    def identity(self) -> str: ...

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start <= i < stop`` as ``[stop - start, H, W, 3]`` uint8 RGB."""
        ...


class ArrayFrames:
    """A FrameSource over frames held in memory, ``[N, H, W, 3]`` uint8 RGB."""

    def __init__(self, frames: np.ndarray, identity: str | None = None):
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(
                f"ArrayFrames needs uint8 frames shaped [N, H, W, 3]; got {frames.dtype} "
                f"{tuple(frames.shape)}"
            )
        if len(frames) == 0:
            raise ValueError("ArrayFrames needs at least one frame")
        self._frames = frames
        self._identity = identity or "array:" + hashlib.sha1(frames.tobytes()).hexdigest()[:16]
        self.frames_read = 0  # how many frames callers pulled; tests count work with it

    @property
    def num_frames(self) -> int:
        return len(self._frames)

    @property
    def size(self) -> tuple[int, int]:
        return int(self._frames.shape[2]), int(self._frames.shape[1])

    @property
    def identity(self) -> str:
        return self._identity

    def read(self, start: int, stop: int) -> np.ndarray:
        check_range(start, stop, self.num_frames)
        self.frames_read += stop - start
        return self._frames[start:stop].copy()


def check_range(start: int, stop: int, num_frames: int) -> None:
    """Raise IndexError naming the bad range unless ``0 <= start < stop <= num_frames``."""
    if not (0 <= start < stop <= num_frames):
        raise IndexError(
            f"frame range [{start}, {stop}) is outside the clip's {num_frames} frames "
            f"(valid: 0 <= start < stop <= {num_frames})"
        )
