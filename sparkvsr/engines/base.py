"""The Engine contract shared by every engine (``flow``, ``dit``).

An engine propagates HR References through a clip. It reads LR frames from a ``FrameSource``,
takes References as ``{frame index: HR image}`` and yields finished output frames chunk by chunk,
so a writer can encode and free them: memory depends on the chunk size, never on the clip length.

Guidance ``s`` means the same in every engine: 0 = blind restoration (References ignored),
1 = plain keyframe-guided, > 1 = stronger adherence to the References.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sparkvsr.errors import Cancelled, EngineError
from sparkvsr.frames import FrameSource
from sparkvsr.keyframes import validate_keyframes

COLOR_FIXES = ("none", "wavelet", "adain")
MAX_KEYFRAME_WEIGHT = 2.0


@dataclass(frozen=True)
class KeyframeGuidance:
    """The user's say over one keyframe's Reference, on top of the global guidance.

    frame:       the keyframe.
    weight:      how much this Reference counts, 0 to 2 (1 = as fitted); None = automatic, from
                 how well it fits its frame (``references.fit.assess``: 1 when it fits, low when
                 its content differs).
    keep_colors: propagate the Reference's low-frequency colour / tone change too (a deliberate
                 grade). Off by default: the output keeps the clip's colours and only the
                 Reference's detail propagates. Structural differences never propagate.
                 (``flow``; the ``dit`` model follows the clip's colours as it was trained
                 to, with colour-jittered References, and ignores this switch.)

    The CLI's ``restore --keyframe-weight 16=0.5 --keep-colors 16`` builds these; a project keeps
    them with its options.
    """

    frame: int
    weight: float | None = None
    keep_colors: bool = False

    def __post_init__(self) -> None:
        if self.weight is not None and not 0.0 <= self.weight <= MAX_KEYFRAME_WEIGHT:
            raise EngineError(
                f"keyframe {self.frame}'s weight {self.weight} is out of range: use 0 to "
                f"{MAX_KEYFRAME_WEIGHT:g}, or leave it automatic"
            )


@dataclass(frozen=True)
class RestoreOptions:
    """How to restore. Built from CLI flags or UI values at the edge.

    guidance:     RFG scale s (0 = blind, 1 = keyframe-guided, > 1 = stronger adherence).
    scale:        upscale factor the engine works at (the dit model is trained for 4).
    output_size:  (width, height) to resize the engine's output to, or None for scale x input.
    chunk:        temporal chunk length in frames (8k+1 for dit).
    overlap:      frames shared by consecutive chunks, feather-blended.
    tile:         spatial tile size in LR pixels; 0 = whole frames.
    tile_overlap: LR pixels shared by neighbouring tiles, feather-blended.
    color_fix:    colour correction against the LR input: "none", "wavelet" or "adain".
    start:        first frame to yield (resume); earlier frames are not yielded.
    stop:         first frame not to yield (a range render: frames ``start <= i < stop``);
                  None = to the clip's end. Frames of a range equal the same frames of the
                  whole clip's restore (every keyframe still counts, chunk plans are the clip's).
    keyframe_guidance: per-keyframe weights and colour switches (``KeyframeGuidance``); a
                  keyframe not listed gets the defaults (automatic weight, the clip's colours).
    """

    guidance: float = 1.0
    scale: int = 4
    output_size: tuple[int, int] | None = None
    chunk: int = 33
    overlap: int = 8
    tile: int = 0
    tile_overlap: int = 32
    color_fix: str = "none"
    start: int = 0
    stop: int | None = None
    keyframe_guidance: tuple[KeyframeGuidance, ...] = ()

    def __post_init__(self) -> None:
        # JSON (a project manifest, the HTTP wire) gives lists of dicts: normalise at the edge
        entries = tuple(
            e if isinstance(e, KeyframeGuidance) else KeyframeGuidance(**dict(e))
            for e in self.keyframe_guidance
        )
        object.__setattr__(self, "keyframe_guidance", entries)
        frames = [e.frame for e in entries]
        if len(set(frames)) != len(frames):
            raise EngineError(f"keyframe guidance lists a keyframe twice: {sorted(frames)}")
        if not (0.0 <= self.guidance <= 10.0):
            raise EngineError(f"guidance {self.guidance} is out of range: use 0 to 10 (1 = plain)")
        if self.scale < 1:
            raise EngineError(f"scale {self.scale} must be a positive integer (the model uses 4)")
        if self.chunk < 1:
            raise EngineError(f"chunk {self.chunk} must be at least 1 frame")
        if not (0 <= self.overlap < self.chunk):
            raise EngineError(
                f"overlap {self.overlap} must be at least 0 and below the chunk length {self.chunk}"
            )
        if self.tile < 0 or self.tile_overlap < 0 or (self.tile and self.tile_overlap >= self.tile):
            raise EngineError(
                f"tile {self.tile} / tile_overlap {self.tile_overlap}: use tile 0 (off) or a tile "
                "larger than its overlap"
            )
        if self.color_fix not in COLOR_FIXES:
            raise EngineError(
                f"color_fix {self.color_fix!r} is unknown; choose one of {', '.join(COLOR_FIXES)}"
            )
        if self.start < 0:
            raise EngineError(f"start frame {self.start} must be 0 or more")
        if self.stop is not None and self.stop <= self.start:
            raise EngineError(
                f"stop frame {self.stop} must be after the start frame {self.start} (frames "
                "start <= i < stop are restored)"
            )
        if self.output_size is not None and min(self.output_size) < 1:
            raise EngineError(f"output size {self.output_size} must be positive (width, height)")

    def end(self, num_frames: int) -> int:
        """The first frame not to yield for a clip of ``num_frames``: ``stop`` or the end
        (EngineError when ``start`` or ``stop`` lies past the clip's end)."""
        stop = num_frames if self.stop is None else self.stop
        if self.start > num_frames or stop > num_frames:
            raise EngineError(
                f"frames {self.start} to {stop - 1} are not all inside the clip ({num_frames} "
                f"frames: 0 to {num_frames - 1})"
            )
        return stop

    def for_keyframe(self, frame: int) -> KeyframeGuidance:
        """Keyframe ``frame``'s guidance: the listed one, or the defaults."""
        for entry in self.keyframe_guidance:
            if entry.frame == frame:
                return entry
        return KeyframeGuidance(frame)


@dataclass(frozen=True)
class RestoredChunk:
    """Finished output frames ``start <= i < start + len(frames)``: ``[N, H, W, 3]`` uint8 RGB."""

    start: int
    frames: np.ndarray

    @property
    def stop(self) -> int:
        return self.start + len(self.frames)


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` units (chunks, tiles, frames: ``unit`` says) finished."""

    done: int
    total: int
    unit: str = "chunks"
    message: str = ""


@dataclass(frozen=True)
class EngineStatus:
    """What the UI shows about an engine: which one, where it runs, what it has cached."""

    name: str
    device: str
    model: str
    cache_entries: int = 0
    cache_bytes: int = 0
    detail: str = ""


ProgressFn = Callable[[Progress], None]
CancelFn = Callable[[], bool]
References = Mapping[int, np.ndarray]
"""HR References by LR frame index: ``[H * scale, W * scale, 3]`` uint8 RGB images."""


class Engine(Protocol):
    """What the worker and the CLI call. Engines own their models and caches for their lifetime."""

    name: str

    def restore(
        self,
        source: FrameSource,
        references: References,
        options: RestoreOptions,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
    ) -> Iterator[RestoredChunk]:
        """Yield finished output frames in order, from ``options.start`` to ``options.stop``
        (None: the clip's end).

        Chunks are contiguous and non-overlapping. ``cancel`` is checked between chunks (and
        tiles); when it returns True the generator raises ``Cancelled``. A restore resumed with
        ``options.start = k`` yields exactly the frames an uninterrupted restore yields from k,
        and a range (``stop``) exactly the frames a whole-clip restore yields there.
        """
        ...

    def preview(
        self, source: FrameSource, references: References, frame: int, options: RestoreOptions
    ) -> np.ndarray:
        """One output frame ``[H, W, 3]`` uint8 for a live view; cheap when only guidance moved."""
        ...

    def status(self) -> EngineStatus: ...


def raise_if_cancelled(cancel: CancelFn | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled("cancelled by the user; finished chunks are kept")


def check_references(source: FrameSource, references: References, scale: int) -> list[int]:
    """Validate References against a clip; return their sorted frame indices.

    Indices must be inside the clip and at least 4 apart; each image must be uint8 RGB of exactly
    ``scale`` x the LR size (editors fit their output to that size).
    """
    indices = list(validate_keyframes(references.keys(), source.num_frames))
    width, height = source.size
    want = (height * scale, width * scale, 3)
    for index in indices:
        image = np.asarray(references[index])
        if image.dtype != np.uint8 or image.shape != want:
            raise EngineError(
                f"reference for frame {index} is {image.dtype} {tuple(image.shape)}; the engine "
                f"needs uint8 {want} ({scale}x the {width}x{height} clip). Remake it with an "
                "editor, which fits images to that size."
            )
    return indices
