"""The project's state: a tree of frozen dataclasses (``ProjectState``: the clip, keyframes,
References, options, output settings, the render and range render records) and the names of
the folder's files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sparkvsr.engines.base import RestoreOptions
from sparkvsr.errors import ProjectError
from sparkvsr.references.base import Provenance

FORMAT = "sparkvsr-project"
FORMAT_VERSION = 1
MANIFEST = "project.json"
REFERENCES_DIR = "references"
CHUNKS_DIR = "chunks"
CHUNK_LOG = "chunks.log"
DEFAULT_OUTPUT = "output.mp4"


@dataclass(frozen=True)
class ClipSummary:
    """What the project remembers about its clip (from ``media.probe``).

    path: absolute path of the clip; frame_rate: exact rate as "num/den"; identity: the clip
    file's path, size and modification time (a changed file invalidates finished chunks).
    """

    path: str
    num_frames: int
    width: int
    height: int
    fps: float
    frame_rate: str
    codec: str = ""
    has_audio: bool = False
    iframes: tuple[int, ...] = ()
    identity: str = ""

    @classmethod
    def from_info(cls, info: Any) -> ClipSummary:
        """Build from a ``sparkvsr.media.ClipInfo``."""
        path = Path(info.path).resolve()
        rate = info.frame_rate
        return cls(
            path=str(path),
            num_frames=int(info.num_frames),
            width=int(info.width),
            height=int(info.height),
            fps=float(info.fps),
            frame_rate=f"{rate.numerator}/{rate.denominator}",
            codec=str(info.codec),
            has_audio=bool(info.audio),
            iframes=tuple(int(i) for i in info.iframes),
            identity=file_identity(path),
        )


@dataclass(frozen=True)
class ReferenceEntry:
    """A Reference saved beside the manifest: ``file`` is relative to the project folder;
    ``raw_file`` the editor's image before registration moved it ("" when it was not moved)."""

    frame: int
    file: str
    content_hash: str
    provenance: Provenance
    raw_file: str = ""


@dataclass(frozen=True)
class EngineSettings:
    """Which engine renders this project (a name from ``sparkvsr.engines.ENGINES``)."""

    name: str = "flow"
    model: str = ""


OUTPUT_CODECS = ("h264", "h265", "prores", "ffv1", "png")
"""Codecs a project's output may use: H.264 / H.265 (CRF), ProRes 422, FFV1 and a PNG sequence
(both lossless)."""
OUTPUT_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
OUTPUT_SUFFIX = {"h264": ".mp4", "h265": ".mp4", "prores": ".mov", "ffv1": ".mkv", "png": ""}
"""The file suffix each codec's output gets ("" = a folder of PNG frames)."""


@dataclass(frozen=True)
class OutputSettings:
    """Where and how the final clip is written.

    path:    the output file, relative to the project folder unless absolute.
    crf:     H.264 / H.265 constant rate factor (lower = better, 18 is visually lossless).
    codec:   one of ``OUTPUT_CODECS``; preset: the x264/x265 speed preset.
    audio:   copy the source's audio tracks (False: video only).
    ten_bit: write 10-bit 4:2:0 (H.264 / H.265) instead of following the source's depth.
    square_pixels: resample anamorphic sources to square pixels.
    deinterlace: read interlaced sources deinterlaced (False keeps the fields).
    tonemap: read HDR sources tone-mapped to SDR BT.709 (False keeps HDR).
    """

    path: str = DEFAULT_OUTPUT
    crf: int = 18
    codec: str = "h264"
    preset: str = "fast"
    audio: bool = True
    ten_bit: bool = False
    square_pixels: bool = False
    deinterlace: bool = True
    tonemap: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.crf <= 51:
            raise ProjectError(f"crf {self.crf} is out of range: use 0 (lossless) to 51")
        if self.codec not in OUTPUT_CODECS:
            raise ProjectError(
                f"codec {self.codec!r} is unknown; choose one of {', '.join(OUTPUT_CODECS)}"
            )
        if self.preset not in OUTPUT_PRESETS:
            raise ProjectError(
                f"preset {self.preset!r} is unknown; choose one of {', '.join(OUTPUT_PRESETS)}"
            )
        if self.ten_bit and self.codec not in ("h264", "h265"):
            raise ProjectError(
                f"10-bit applies to H.264 and H.265, not {self.codec} (ProRes is 10-bit already; "
                "FFV1 and PNG are lossless RGB)"
            )


@dataclass(frozen=True)
class ChunkEntry:
    """A finished output chunk: frames ``start <= i < stop`` in ``file`` (lossless)."""

    start: int
    stop: int
    file: str
    sha256: str


@dataclass(frozen=True)
class RenderState:
    """The last render: its settings fingerprint, finished chunks, and the output when complete."""

    fingerprint: str
    chunks: tuple[ChunkEntry, ...] = ()
    complete: bool = False
    output: str = ""
    notes: tuple[str, ...] = ()  # what the output changed or dropped (media notes), when complete

    @property
    def resume_frame(self) -> int:
        """The first frame not yet rendered (chunks are contiguous from frame 0)."""
        return self.chunks[-1].stop if self.chunks else 0


@dataclass(frozen=True)
class RangeRender:
    """The last range render: frames ``start <= i < stop`` with settings ``fingerprint``.

    chunks: the chunks this range rendered itself, sorted and non-overlapping (frames the full
    render had finished with the same settings are read from its chunks instead, so there may
    be gaps). output: the range's clip once complete; notes as ``RenderState.notes``.
    """

    fingerprint: str
    start: int
    stop: int
    chunks: tuple[ChunkEntry, ...] = ()
    complete: bool = False
    output: str = ""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProjectState:
    """Everything in the manifest. ``options.guidance`` always equals ``guidance``."""

    clip: ClipSummary
    keyframes: tuple[int, ...] = ()
    references: tuple[ReferenceEntry, ...] = ()
    guidance: float = 1.0
    engine: EngineSettings = field(default_factory=EngineSettings)
    options: RestoreOptions = field(default_factory=RestoreOptions)
    output: OutputSettings = field(default_factory=OutputSettings)
    render: RenderState | None = None
    range_render: RangeRender | None = None
    version: int = FORMAT_VERSION

    def reference(self, frame: int) -> ReferenceEntry | None:
        return next((r for r in self.references if r.frame == frame), None)

    def restore_options(self) -> RestoreOptions:
        """Options for ``engine.restore`` (guidance from the project, the whole clip)."""
        return replace(self.options, guidance=self.guidance, start=0, stop=None)


def file_identity(path: str | os.PathLike) -> str:
    """``path:size:mtime_ns`` of a file or folder (empty when it does not exist)."""
    try:
        stat = Path(path).stat()
    except OSError:
        return ""
    return f"{Path(path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
