"""The chunk x tile geometry of a dit restore: its plan (chunks, tiles, feather and keyframe
weights), which References a chunk holds, a tile's model input, the temporal blend that hands
out finished frames, and progress inside a chunk."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sparkvsr import conditioning as cond
from sparkvsr.engines.base import Progress, ProgressFn, RestoreOptions
from sparkvsr.tiling import Span, Tile, axis_weights, chunk_plan, tile_plan, tile_weights

TILE_MULTIPLE = (
    cond.PIXEL_MULTIPLE // cond.UPSCALE
)  # LR pixels; keeps tiles on the latent/patch grid


@dataclass(frozen=True)
class ChunkRefs:
    """References inside one chunk: local frame -> content hash (the conditioned cache key)."""

    frames: tuple[tuple[int, str], ...]

    @property
    def empty(self) -> bool:
        return not self.frames


def tile_video(unit: torch.Tensor, tile: Tile) -> torch.Tensor:
    """Cut one tile from the padded LR chunk ``[1, 3, F, H, W]`` in [0, 1] and bring it to the
    model input ``[1, 3, F, 4h, 4w]`` in [-1, 1].

    The tile is upscaled with one LR pixel of context on each inner side and then cropped, which
    makes it exactly the matching crop of the whole-frame bilinear upscale (no seams).
    """
    height, width = unit.shape[-2:]
    r0, r1 = max(0, tile.rows.start - 1), min(height, tile.rows.stop + 1)
    c0, c1 = max(0, tile.cols.start - 1), min(width, tile.cols.stop + 1)
    up = cond.upscale_bilinear(unit[..., r0:r1, c0:c1])
    top, left = (tile.rows.start - r0) * 4, (tile.cols.start - c0) * 4
    up = up[..., top : top + tile.rows.length * 4, left : left + tile.cols.length * 4]
    return cond.unit_to_signed(up)


class TemporalBlender:
    """Sums feather-weighted chunk frames ``[F, H, W, 3]`` (torch, any device); hands out the
    frames no later chunk will touch."""

    def __init__(self, origin: int):
        self.origin = origin
        self.buffer: torch.Tensor | None = None

    def add(self, start: int, frames: torch.Tensor) -> None:
        if start < self.origin:
            frames = frames[self.origin - start :]
            start = self.origin
        offset = start - self.origin
        needed = offset + len(frames)
        if self.buffer is None:
            self.buffer = frames.new_zeros((needed, *frames.shape[1:]))
        elif needed > len(self.buffer):
            grow = frames.new_zeros((needed - len(self.buffer), *frames.shape[1:]))
            self.buffer = torch.cat([self.buffer, grow])
        self.buffer[offset:needed] += frames

    def pop(self, until: int) -> tuple[int, torch.Tensor]:
        """Frames ``[origin, until)``; they leave the buffer."""
        assert self.buffer is not None
        count = until - self.origin
        done, self.buffer = self.buffer[:count], self.buffer[count:]
        start, self.origin = self.origin, until
        return start, done


class ChunkSteps:
    """Progress inside one chunk, so a long chunk's bar moves: its work in ``steps`` equal parts
    (per tile: the VAE encode, the transformer pass, then each temporal slice the VAE decodes;
    a tile whose latents are cached skips the first two at once), reported as output frames
    between ``base`` (finished before the chunk) and ``end`` (finished with it) of ``total``."""

    def __init__(
        self,
        report: ProgressFn | None,
        base: int,
        end: int,
        total: int,
        steps: int,
        label: str,
    ):
        self.report, self.base, self.end, self.total = report, base, end, total
        self.steps, self.label, self.done = max(1, steps), label, 0

    def step(self, what: str, count: int = 1) -> None:
        self.done = min(self.steps, self.done + count)
        if self.report is not None:
            frames = self.base + (self.end - self.base) * self.done // self.steps
            self.report(Progress(frames, self.total, "frames", f"{self.label}: {what}"))


@dataclass(frozen=True, eq=False)
class RestorePlan:
    """What a restore (or a preview of one of its frames) works through: the whole clip's
    temporal chunks and spatial tiles (LR pixels of the padded frame) with their feather
    weights, and each keyframe's content hash and weight (``RestoreOptions.keyframe_guidance``
    or automatic). A preview uses the render's plan, so its frame is the render's frame."""

    chunks: tuple[Span, ...]
    chunk_weights: tuple[np.ndarray, ...]
    tiles: tuple[Tile, ...]
    tile_weights: tuple[np.ndarray, ...]
    hashes: dict[int, str]
    weights: dict[int, float]
    guidance: float

    @classmethod
    def build(
        cls,
        num_frames: int,
        lr_size: tuple[int, int],
        options: RestoreOptions,
        hashes: dict[int, str],
        weights: dict[int, float],
    ) -> RestorePlan:
        """The plan for a clip of ``num_frames`` LR frames of ``lr_size`` (width, height)."""
        padded_h, padded_w = cond.padded_lr_size(lr_size[1], lr_size[0])
        chunks = chunk_plan(num_frames, options.chunk, options.overlap)
        tiles = tile_plan(padded_h, padded_w, options.tile, options.tile_overlap, TILE_MULTIPLE)
        scaled = [Tile(t.rows.scaled(cond.UPSCALE), t.cols.scaled(cond.UPSCALE)) for t in tiles]
        return cls(
            chunks=tuple(chunks),
            chunk_weights=tuple(axis_weights(chunks)),
            tiles=tuple(tiles),
            tile_weights=tuple(tile_weights(scaled)),
            hashes=dict(hashes),
            weights=dict(weights),
            guidance=options.guidance,
        )

    def refs(self, span: Span) -> ChunkRefs:
        """The References inside chunk ``span``, by local frame."""
        return ChunkRefs(
            tuple(
                (i - span.start, h)
                for i, h in sorted(self.hashes.items())
                if span.start <= i < span.stop
            )
        )

    def scales(self, span: Span) -> tuple[float, ...]:
        """The guidance of each latent frame of chunk ``span`` (``conditioning.latent_guidance``)."""
        return cond.latent_guidance(
            cond.latent_frame_count(cond.padded_frame_count(span.length)),
            {local: self.weights[span.start + local] for local, _ in self.refs(span).frames},
            self.guidance,
        )
