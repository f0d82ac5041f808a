"""Temporal chunk plans, spatial tile grids and feather weights. Pure: numbers in, plans out.

A clip too long for one transformer pass is cut into overlapping chunks; a frame too large is cut
into overlapping tiles. Overlaps are blended with feather weights (smooth ramps, never hard
cuts) normalised so that the weights of every piece covering a position sum to exactly 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sparkvsr.errors import EngineError


@dataclass(frozen=True)
class Span:
    """Half-open interval ``start <= i < stop`` along one axis (frames or pixels)."""

    start: int
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start

    def scaled(self, factor: int) -> Span:
        return Span(self.start * factor, self.stop * factor)


@dataclass(frozen=True)
class Tile:
    """A rectangle ``rows x cols`` of a frame."""

    rows: Span
    cols: Span


def chunk_plan(num_frames: int, chunk: int, overlap: int, granularity: int = 8) -> tuple[Span, ...]:
    """Temporal chunks covering ``[0, num_frames)``.

    Chunks are ``chunk`` frames long and start every ``chunk - overlap`` frames. The last chunk is
    the shortest ``granularity*k + 1`` length that reaches the end from its nominal start, placed to
    end exactly at the clip's end (so it needs no frame padding and overlaps its neighbour by at
    least ``overlap``). A clip shorter than ``chunk`` is one chunk.
    """
    if num_frames < 1:
        raise EngineError(f"the clip has {num_frames} frames; nothing to restore")
    if chunk < 1 or not 0 <= overlap < chunk:
        raise EngineError(
            f"chunk {chunk} / overlap {overlap}: need chunk >= 1, 0 <= overlap < chunk"
        )
    if num_frames <= chunk:
        return (Span(0, num_frames),)
    stride = chunk - overlap
    spans = [Span(0, chunk)]
    while spans[-1].stop < num_frames:
        nominal = spans[-1].start + stride
        if nominal + chunk <= num_frames:
            spans.append(Span(nominal, nominal + chunk))
            continue
        remaining = num_frames - nominal
        length = min(chunk, granularity * math.ceil((remaining - 1) / granularity) + 1)
        spans.append(Span(num_frames - length, num_frames))
    return tuple(spans)


def axis_spans(size: int, tile: int, overlap: int, multiple: int = 1) -> tuple[Span, ...]:
    """Overlapping spans of at most ``tile`` covering ``[0, size)``, starts on ``multiple``.

    ``tile`` is rounded down and ``overlap`` up to ``multiple``; ``tile <= 0`` or ``tile >= size``
    gives one span. The last span ends at ``size``.
    """
    if size < 1:
        raise EngineError(f"cannot tile an axis of size {size}")
    if tile <= 0 or tile >= size:
        return (Span(0, size),)
    tile = max(multiple, tile - tile % multiple)
    overlap = min(tile - multiple, multiple * math.ceil(overlap / multiple))
    if tile >= size:
        return (Span(0, size),)
    stride = tile - overlap
    starts = [*range(0, size - tile, stride), size - tile]
    return tuple(Span(s, s + tile) for s in sorted(set(starts)))


def tile_plan(
    height: int, width: int, tile: int, overlap: int, multiple: int = 1
) -> tuple[Tile, ...]:
    """Row-major grid of tiles (``tile`` x ``tile`` at most) covering ``height x width``."""
    rows = axis_spans(height, tile, overlap, multiple)
    cols = axis_spans(width, tile, overlap, multiple)
    return tuple(Tile(r, c) for r in rows for c in cols)


def _ramp(n: int) -> np.ndarray:
    """``n`` values rising smoothly (cosine) from near 0 to near 1, all strictly inside (0, 1)."""
    x = np.arange(1, n + 1, dtype=np.float64) / (n + 1)
    return 0.5 - 0.5 * np.cos(np.pi * x)


def axis_weights(spans: Sequence[Span]) -> tuple[np.ndarray, ...]:
    """Feather weights, one float32 array of ``span.length`` per span.

    Each span weighs 1 in its interior and ramps down across the parts it shares with a
    neighbour; the weights are then normalised so that at every position the spans covering it
    sum to 1. Spans must be sorted by start (as plans are).
    """
    raw = []
    for i, span in enumerate(spans):
        weight = np.ones(span.length, dtype=np.float64)
        if i > 0 and spans[i - 1].stop > span.start:
            shared = min(spans[i - 1].stop - span.start, span.length)
            weight[:shared] = np.minimum(weight[:shared], _ramp(shared))
        if i + 1 < len(spans) and spans[i + 1].start < span.stop:
            shared = min(span.stop - spans[i + 1].start, span.length)
            weight[span.length - shared :] = np.minimum(
                weight[span.length - shared :], _ramp(shared)[::-1]
            )
        raw.append(weight)
    origin = min(s.start for s in spans)
    total = np.zeros(max(s.stop for s in spans) - origin, dtype=np.float64)
    for span, weight in zip(spans, raw):
        total[span.start - origin : span.stop - origin] += weight
    return tuple(
        (weight / total[span.start - origin : span.stop - origin]).astype(np.float32)
        for span, weight in zip(spans, raw)
    )


def tile_weights(tiles: Sequence[Tile]) -> tuple[np.ndarray, ...]:
    """Per-tile ``[rows, cols]`` float32 feather weights that sum to 1 at every pixel."""
    rows = sorted({t.rows for t in tiles}, key=lambda s: s.start)
    cols = sorted({t.cols for t in tiles}, key=lambda s: s.start)
    row_w = dict(zip(rows, axis_weights(rows)))
    col_w = dict(zip(cols, axis_weights(cols)))
    return tuple(np.outer(row_w[t.rows], col_w[t.cols]).astype(np.float32) for t in tiles)
