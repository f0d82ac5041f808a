"""Bounded caches the flow engine keeps between frames: named work buffers reused by one thread
(``_Scratch``) and a least-recently-used dict (``_Lru``)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np


class _Scratch:
    """Float32 work buffers by name, reused from frame to frame by one thread.

    A fresh 15 MB HR array for every step of every frame makes the kernel fault in and zero new
    pages: restoring the 100-frame 1280x960 benchmark clip took 20-30k page faults, 2-4k with
    these buffers reused.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def array(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """The float32 buffer ``name`` with ``shape`` (contents undefined)."""
        array = self._arrays.get(name)
        if array is None or array.shape != shape:
            array = self._arrays[name] = np.empty(shape, np.float32)
        return array


class _Lru:
    """A dict that forgets its least recently used entries beyond ``capacity`` entries or, for
    arrays, beyond ``max_bytes`` (the newest entry is always kept)."""

    def __init__(self, capacity: int, max_bytes: int | None = None):
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._items: OrderedDict = OrderedDict()
        self._bytes = 0

    def get(self, key):
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key, value) -> None:
        old = self._items.pop(key, None)
        self._bytes += _nbytes(value) - _nbytes(old)
        self._items[key] = value
        while len(self._items) > self.capacity or (
            self.max_bytes is not None and self._bytes > self.max_bytes and len(self._items) > 1
        ):
            _, dropped = self._items.popitem(last=False)
            self._bytes -= _nbytes(dropped)

    def __len__(self) -> int:
        return len(self._items)


def _nbytes(value) -> int:
    return value.nbytes if isinstance(value, np.ndarray) else 0
