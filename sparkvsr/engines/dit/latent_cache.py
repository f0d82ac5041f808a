"""The x0 latent cache of the dit engine: one entry per chunk, tile and guidance branch.

Keys are content keys (model identity, dtype, seed, clip identity, chunk span, tile, and for the
conditioned branch the chunk's References): moving the guidance slider re-mixes two cached
entries (``x0(s) = x0_u + s (x0_c - x0_u)``) and costs a VAE decode, not a transformer pass.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import torch

from sparkvsr.errors import EngineError

DEFAULT_CACHE_BYTES = 4 << 30


class LatentCache:
    """Tensors by content key, least recently used first out, within ``budget`` bytes in memory.

    Entries pushed out of memory are written to ``spill_dir`` (when given) and read back on
    demand, so a long clip's latents survive a slider move without holding them all in RAM.
    """

    def __init__(self, budget: int, spill_dir: Path | None = None):
        self.budget = int(budget)
        self.spill_dir = Path(spill_dir) if spill_dir is not None else None
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self.spilled = 0

    @staticmethod
    def digest(key: tuple) -> str:
        return hashlib.sha256(repr(key).encode()).hexdigest()[:40]

    def _spill_path(self, name: str) -> Path | None:
        return None if self.spill_dir is None else self.spill_dir / f"x0-{name}.pt"

    def get(self, key: tuple) -> torch.Tensor | None:
        name = self.digest(key)
        if name in self._memory:
            self._memory.move_to_end(name)
            return self._memory[name]
        path = self._spill_path(name)
        if path is not None and path.exists():
            try:
                tensor = torch.load(path, weights_only=True)
            except Exception:  # a torn or foreign file is a miss, not a failure
                return None
            self._remember(name, tensor)
            return tensor
        return None

    def put(self, key: tuple, tensor: torch.Tensor) -> None:
        self._remember(self.digest(key), tensor.detach().to("cpu").contiguous())

    def _remember(self, name: str, tensor: torch.Tensor) -> None:
        if name in self._memory:
            self._bytes -= nbytes(self._memory.pop(name))
        self._memory[name] = tensor
        self._bytes += nbytes(tensor)
        while self._bytes > self.budget and len(self._memory) > 1:
            old_name, old = self._memory.popitem(last=False)
            self._bytes -= nbytes(old)
            path = self._spill_path(old_name)
            if path is not None and not path.exists():
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    torch.save(old, path.with_suffix(".tmp"))
                    os.replace(path.with_suffix(".tmp"), path)
                    self.spilled += 1
                except OSError as e:
                    raise EngineError(f"cannot spill the latent cache to {path.parent}: {e}") from e

    @property
    def entries(self) -> int:
        return len(self._memory)

    @property
    def bytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        self._memory.clear()
        self._bytes = 0


def nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()
