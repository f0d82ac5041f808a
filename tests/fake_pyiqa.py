"""A stand-in for pyiqa, loaded by tests under the name ``pyiqa``.

It has pyiqa's public call shape: ``create_metric(name, device=None, as_loss=False)`` returns a
callable that takes NCHW RGB tensors in [0, 1] and returns one score per image. Full-reference
metrics score the mean absolute difference, no-reference ones the mean brightness; ``musiq``
fails to build the way an offline machine fails to download weights.
"""

import torch

CREATED: list[str] = []


class _Metric:
    def __init__(self, name: str):
        self.name = name
        self.lower_better = name in ("lpips", "dists", "niqe")

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[1] == 3 and float(x.max()) <= 1.0
        if y is None:
            return x.mean(dim=(1, 2, 3))[:, None]
        return (x - y).abs().mean(dim=(1, 2, 3))


def create_metric(name: str, device=None, as_loss: bool = False) -> _Metric:
    if name == "musiq":
        raise RuntimeError("cannot download musiq weights: no network")
    CREATED.append(name)
    return _Metric(name)
