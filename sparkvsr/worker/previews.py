"""Previews: one coalescing slot per session (the latest request wins) and a cache of finished
preview frames shared by every session of the same clip.

The engine thread serves the sessions' slots round-robin, so one busy session cannot starve the
others; a preview already computed for the same clip, frame, guidance, options and References
(by content hash) is answered from the cache without queueing at all.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import asdict, dataclass, replace

import numpy as np

from sparkvsr.project import ProjectState
from sparkvsr.worker.requests import PreviewRequest


@dataclass(eq=False)
class PreviewSlot:
    """The one queued preview of a session and everyone waiting for it."""

    request: PreviewRequest
    waiters: list[tuple[Future, PreviewRequest]]


def preview_key(clip_identity: str, state: ProjectState, frame: int, guidance: float) -> tuple:
    """What a preview frame depends on: the clip file, the frame, the guidance, the engine
    options, and the content hashes of the pinned keyframes' References."""
    options = replace(state.restore_options(), guidance=0.0, start=0)
    references = tuple(
        (r.frame, r.content_hash) for r in state.references if r.frame in set(state.keyframes)
    )
    return (
        clip_identity,
        frame,
        float(guidance),
        tuple(sorted(asdict(options).items())),
        references,
    )


class PreviewCache:
    """Finished preview frames by ``preview_key``, least recently used first out, bounded by
    bytes. Thread-safe."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0

    def get(self, key: tuple) -> np.ndarray | None:
        with self._lock:
            image = self._items.get(key)
            if image is not None:
                self._items.move_to_end(key)
                self.hits += 1
            return image

    def put(self, key: tuple, image: np.ndarray) -> None:
        if image.nbytes > self.max_bytes:
            return
        image.setflags(write=False)  # shared between sessions: nobody may change it
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = image
            self._bytes += image.nbytes
            while self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)
