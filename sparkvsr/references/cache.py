"""A disk cache for editor results, so asking an editor the same thing twice costs nothing.

Entries are PNG images named by a key hashed from everything that determines the result (frame
hash, prompts, model, size...). Writes are atomic (temporary file + rename), so a crash never
leaves half an entry, and an unreadable entry counts as a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def default_cache_dir() -> Path:
    """``$SPARKVSR_CACHE`` if set, else ``$XDG_CACHE_HOME/sparkvsr`` (``~/.cache/sparkvsr``)."""
    if os.environ.get("SPARKVSR_CACHE"):
        return Path(os.environ["SPARKVSR_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sparkvsr"


def cache_key(**parts: object) -> str:
    """A stable hex key for the named parts (any JSON-serialisable values)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


class ImageCache:
    """PNG images under ``root``, by key. ``hits`` and ``misses`` count lookups."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.png"

    def get(self, key: str) -> np.ndarray | None:
        """The cached ``[H, W, 3]`` uint8 RGB image, or None."""
        path = self._path(key)
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"), dtype=np.uint8)
        except (OSError, ValueError):
            self.misses += 1
            return None
        self.hits += 1
        return array

    def put(self, key: str, image: np.ndarray) -> None:
        """Store ``image`` (``[H, W, 3]`` uint8 RGB) under ``key``, atomically."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(
                    stream, format="PNG"
                )
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
