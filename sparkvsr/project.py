"""The Project: everything a user did on one clip, in a folder, autosaved after every change.

Layout of a project folder::

    project.json                 the manifest (versioned JSON, rewritten atomically)
    references/frame_000040.png  one lossless PNG per Reference (provenance + hash in the manifest);
                                 ``..._raw.png`` beside it: the editor's image before registration
                                 moved it (only when it did), for the user's before/after
    chunks/000000-000009.npz     finished output chunks of the last render (lossless PNG frames)
    chunks/range-000040-000046-<fingerprint>.npz   chunks a range render made (same format)
    chunks.log                   one line per chunk ever saved: "start stop fingerprint" (audit)
    output.mp4                   the assembled render (default name; see OutputSettings)
    proxy/                       the clip's player video and filmstrip (``media.proxy``)

Rules the folder keeps:

- Every change rewrites the manifest atomically (temp file, fsync, rename, fsync the folder), so a
  crash or ``kill -9`` leaves either the old or the new manifest, never a torn one.
- A manifest that cannot be read (corrupt, or written by a newer version) raises ``ProjectError``
  and is never overwritten: opening fails before any save can happen.
- A failed write (disk full, permissions) raises ``ProjectError`` and leaves the previous state,
  in memory and on disk, unchanged.
- Finished chunks carry the render-settings fingerprint they were made with; a render with other
  settings discards them instead of resuming stale frames.
- A range render (a preview of frames ``start <= i < stop``) keeps its chunks in its own record;
  the full render of the same fingerprint adopts them instead of rendering those frames again,
  and a range reads whatever frames of its settings are finished already (``frame_pieces``).

State is a tree of frozen dataclasses (``ProjectState``); a ``Project`` is the handle that changes
it and persists each change.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import threading
import zipfile
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from sparkvsr.engines.base import RestoreOptions
from sparkvsr.errors import ClipMissing, EngineError, KeyframeError, ProjectError
from sparkvsr.keyframes import validate_keyframes
from sparkvsr.project_lock import ProjectLock
from sparkvsr.references.base import Provenance, Reference, image_hash

FORMAT = "sparkvsr-project"
FORMAT_VERSION = 1
MANIFEST = "project.json"
REFERENCES_DIR = "references"
CHUNKS_DIR = "chunks"
CHUNK_LOG = "chunks.log"
DEFAULT_OUTPUT = "output.mp4"
_CODEC_THREADS = max(1, min(8, os.cpu_count() or 1))


# ---------------------------------------------------------------------------------------------
# State (frozen dataclasses)


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


# ---------------------------------------------------------------------------------------------
# The Project handle


class Project:
    """A project folder. Methods that change state save the manifest before they return.

    Thread-safe: a lock serialises changes, so a worker may call it from several threads.
    """

    def __init__(self, folder: Path, state: ProjectState, lock: ProjectLock | None = None):
        # Use Project.create / Project.open; this constructor trusts its arguments.
        self.folder = folder
        self._state = state
        self._lock = threading.RLock()
        self.lock = lock  # the folder's writer lock, when opened with ``lock=``

    # Opening ------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        folder: str | os.PathLike,
        clip: ClipSummary,
        *,
        engine: EngineSettings | None = None,
        options: RestoreOptions | None = None,
        output: OutputSettings | None = None,
        lock: str | None = None,
        wait: float = 0.0,
    ) -> Project:
        """Start a new project for ``clip`` in ``folder`` (created; must not hold a manifest).

        lock: hold the folder's writer lock (``sparkvsr.project_lock``) until ``close()``, naming
        this purpose ("restore (CLI)"...); wait: seconds to wait for another holder.
        """
        folder = Path(folder).absolute()
        held = ProjectLock.acquire(folder, lock, wait=wait) if lock else None
        try:
            return cls._create(folder, clip, engine, options, output, held)
        except BaseException:
            if held is not None:
                held.release()
            raise

    @classmethod
    def _create(
        cls,
        folder: Path,
        clip: ClipSummary,
        engine: EngineSettings | None,
        options: RestoreOptions | None,
        output: OutputSettings | None,
        held: ProjectLock | None,
    ) -> Project:
        if (folder / MANIFEST).exists():
            raise ProjectError(
                f"{folder} already holds a project ({MANIFEST}); open it instead of creating one"
            )
        options = options or RestoreOptions()
        state = ProjectState(
            clip=clip,
            guidance=options.guidance,
            engine=engine or EngineSettings(),
            options=replace(options, start=0, stop=None),
            output=output or OutputSettings(),
        )
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ProjectError(f"cannot create the project folder {folder}: {e}") from e
        project = cls(folder, state, held)
        project._save(state)
        return project

    @classmethod
    def open(
        cls,
        folder: str | os.PathLike,
        *,
        require_clip: bool = True,
        lock: str | None = None,
        wait: float = 0.0,
    ) -> Project:
        """Reopen a project. Raises ProjectError, touching nothing, when the manifest is missing,
        corrupt or from a newer version, or (with ``require_clip``) when the clip is gone.

        lock: hold the folder's writer lock until ``close()`` (the manifest is read under it, so
        the state is current); ProjectLocked names the holder when another one has it.
        """
        folder = Path(folder).absolute()
        if not lock:
            return cls._open(folder, require_clip, None)
        if not (folder / MANIFEST).is_file():  # no lock file in a folder that is no project
            raise ProjectError(f"{folder} is not a project: it has no {MANIFEST}")
        held = ProjectLock.acquire(folder, lock, wait=wait)
        try:
            return cls._open(folder, require_clip, held)
        except BaseException:
            held.release()
            raise

    @classmethod
    def _open(cls, folder: Path, require_clip: bool, held: ProjectLock | None) -> Project:
        manifest = folder / MANIFEST
        if not manifest.is_file():
            raise ProjectError(f"{folder} is not a project: it has no {MANIFEST}")
        try:
            text = manifest.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ProjectError(f"cannot read {manifest}: {e}") from e
        state = parse_manifest(text, manifest)
        project = cls(folder, state, held)
        if require_clip and not Path(state.clip.path).exists():
            raise ClipMissing(
                f"the clip of project {folder.name} is missing: {state.clip.path} does not "
                "exist. Move it back, or relink the project to the clip's new location (the "
                "studio offers Relink…); the project itself is intact."
            )
        return project

    @classmethod
    def is_project(cls, folder: str | os.PathLike) -> bool:
        return (Path(folder) / MANIFEST).is_file()

    def close(self) -> None:
        """Release the writer lock, if this project holds it (the folder stays as it is)."""
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Reading ------------------------------------------------------------------------------
    @property
    def state(self) -> ProjectState:
        return self._state

    @property
    def manifest_path(self) -> Path:
        return self.folder / MANIFEST

    def reference_image(self, frame: int) -> np.ndarray:
        """The saved Reference for ``frame`` as ``[H, W, 3]`` uint8 RGB (hash-checked)."""
        entry = self._state.reference(frame)
        if entry is None:
            raise KeyframeError(f"frame {frame} has no Reference in project {self.folder}")
        image = _decode_png(self._read_bytes(entry.file), self.folder / entry.file)
        if image_hash(image) != entry.content_hash:
            raise ProjectError(
                f"{self.folder / entry.file} does not match its recorded hash: the file was "
                "changed outside SparkVSR. Remake the Reference for that keyframe."
            )
        return image

    def reference_images(self) -> dict[int, np.ndarray]:
        """``{frame: HR image}`` for every pinned keyframe that has a Reference."""
        return {
            r.frame: self.reference_image(r.frame)
            for r in self._state.references
            if r.frame in self._state.keyframes
        }

    def resolve(self, relative: str) -> Path:
        """The file ``relative`` inside this project folder, or ProjectError for any path that
        would leave it (absolute, ``..``, or a symlink that points outside).
        """
        return safe_join(self.folder, relative)

    # Changing -----------------------------------------------------------------------------
    def set_keyframes(self, frames: tuple[int, ...] | list[int]) -> ProjectState:
        """Replace the keyframe set (validated: inside the clip, at least 4 apart)."""
        with self._lock:
            keyframes = validate_keyframes(frames, self._state.clip.num_frames)
            return self._commit(replace(self._state, keyframes=keyframes))

    def add_keyframe(self, frame: int) -> ProjectState:
        with self._lock:
            if frame in self._state.keyframes:
                return self._state
            return self.set_keyframes((*self._state.keyframes, frame))

    def remove_keyframe(self, frame: int) -> ProjectState:
        """Unpin ``frame``. Its Reference stays on disk and comes back if it is pinned again."""
        with self._lock:
            if frame not in self._state.keyframes:
                raise KeyframeError(
                    f"frame {frame} is not a keyframe; pinned: {list(self._state.keyframes)}"
                )
            keyframes = tuple(k for k in self._state.keyframes if k != frame)
            return self._commit(replace(self._state, keyframes=keyframes))

    def set_reference(self, frame: int, reference: Reference) -> ProjectState:
        """Save ``reference`` as the Reference of keyframe ``frame`` (PNG + manifest entry)."""
        with self._lock:
            if frame not in self._state.keyframes:
                raise KeyframeError(
                    f"frame {frame} is not pinned; pin it as a keyframe before giving it a "
                    f"Reference (pinned: {list(self._state.keyframes)})"
                )
            image = np.asarray(reference.image)
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ProjectError(
                    f"reference for frame {frame} must be uint8 [H, W, 3]; got {image.dtype} "
                    f"{image.shape}"
                )
            content_hash = image_hash(image)
            # The hash in the name keeps the previous PNG valid until the manifest points away.
            relative = f"{REFERENCES_DIR}/frame_{frame:06d}_{content_hash[:12]}.png"
            (self.folder / REFERENCES_DIR).mkdir(exist_ok=True)
            atomic_write(self.folder / relative, _encode_png(image))
            raw = getattr(reference, "raw", None)
            raw_relative = ""
            if raw is not None:  # the editor's image before registration (for the user to see)
                raw_relative = f"{REFERENCES_DIR}/frame_{frame:06d}_{content_hash[:12]}_raw.png"
                atomic_write(self.folder / raw_relative, _encode_png(np.asarray(raw)))
            entry = ReferenceEntry(
                frame, relative, content_hash, reference.provenance, raw_file=raw_relative
            )
            others = tuple(r for r in self._state.references if r.frame != frame)
            old = self._state.reference(frame)
            state = self._commit(
                replace(self._state, references=tuple(sorted((*others, entry), key=_by_frame)))
            )
            if old is not None and old.file != relative:
                _unlink_quietly(self.folder / old.file)
            if old is not None and old.raw_file and old.raw_file != raw_relative:
                _unlink_quietly(self.folder / old.raw_file)
            return state

    def set_guidance(self, guidance: float) -> ProjectState:
        with self._lock:
            try:
                options = replace(self._state.options, guidance=float(guidance))
            except EngineError as e:
                raise ProjectError(str(e)) from e
            return self._commit(replace(self._state, guidance=float(guidance), options=options))

    def set_options(self, options: RestoreOptions) -> ProjectState:
        """Engine options (chunking, tiling, colour fix...); guidance stays the project's."""
        with self._lock:
            options = replace(options, guidance=self._state.guidance, start=0, stop=None)
            return self._commit(replace(self._state, options=options))

    def set_engine(self, engine: EngineSettings) -> ProjectState:
        with self._lock:
            return self._commit(replace(self._state, engine=engine))

    def set_output(self, output: OutputSettings) -> ProjectState:
        with self._lock:
            return self._commit(replace(self._state, output=output))

    def relink_clip(self, clip: ClipSummary) -> ProjectState:
        """Point the project at a moved clip. It must have the same frame count and size."""
        with self._lock:
            old = self._state.clip
            if (clip.num_frames, clip.width, clip.height) != (
                old.num_frames,
                old.width,
                old.height,
            ):
                raise ProjectError(
                    f"{clip.path} has {clip.num_frames} frames of {clip.width}x{clip.height}, but "
                    f"the project's clip had {old.num_frames} of {old.width}x{old.height}; open it "
                    "as a new project instead"
                )
            return self._commit(replace(self._state, clip=clip))

    def moved_from(self, old_folder: str | os.PathLike) -> ProjectState:
        """After the folder was renamed or copied from ``old_folder``: the finished render's
        and range render's output paths follow it (other paths in the manifest are relative)."""
        with self._lock:
            old = Path(old_folder).absolute()
            moved = {}
            for name in ("render", "range_render"):
                record = getattr(self._state, name)
                if record is None or not record.output:
                    continue
                if Path(record.output).is_relative_to(old):
                    output = str(self.folder / Path(record.output).relative_to(old))
                    moved[name] = replace(record, output=output)
            if not moved:
                return self._state
            return self._commit(replace(self._state, **moved))

    def forget_chunks(self) -> ProjectState:
        """Drop the finished chunks from the manifest (their files may then be deleted); a
        complete render keeps its output and stays complete. The next render of other settings
        starts at frame 0; the same settings with its output present are still done."""
        with self._lock:
            render, ranged = self._state.render, self._state.range_render
            if render is not None and render.chunks:
                render = replace(render, chunks=()) if render.complete else None
            if ranged is not None and ranged.chunks:
                ranged = replace(ranged, chunks=()) if ranged.complete else None
            if (render, ranged) == (self._state.render, self._state.range_render):
                return self._state
            return self._commit(replace(self._state, render=render, range_render=ranged))

    # Render chunks ------------------------------------------------------------------------
    def begin_render(self, fingerprint: str) -> RenderState:
        """Start or resume a render with settings ``fingerprint``.

        Chunks made with the same fingerprint are kept (the render resumes after them; a
        missing or damaged chunk file truncates the list there); chunks from other settings
        are discarded.
        """
        with self._lock:
            current = self._state.render
            if current is not None and current.fingerprint == fingerprint:
                kept = self._intact_prefix(current.chunks)
                render = replace(
                    current,
                    chunks=kept,
                    complete=current.complete and bool(kept) and kept == current.chunks,
                )
            else:
                render = RenderState(fingerprint=fingerprint)
            self._commit(replace(self._state, render=render))
            self._remove_unlisted_chunks()
            self._complete_log(render)
            return render

    def save_chunk(self, start: int, frames: np.ndarray) -> ChunkEntry:
        """Save finished frames ``[N, H, W, 3]`` uint8 starting at ``start`` (must follow the
        last saved chunk). Raises ProjectError on a write error, leaving the state as it was.
        """
        with self._lock:
            render = self._require_render()
            if start != render.resume_frame:
                raise ProjectError(
                    f"chunk starting at frame {start} does not follow the last saved chunk "
                    f"(next expected frame: {render.resume_frame})"
                )
            frames = _checked_frames(frames)
            stop = start + len(frames)
            relative = f"{CHUNKS_DIR}/{start:06d}-{stop:06d}.npz"
            (self.folder / CHUNKS_DIR).mkdir(exist_ok=True)
            digest = _write_chunk(self.folder / relative, start, frames, f"chunk {start}-{stop}")
            entry = ChunkEntry(start, stop, relative, digest)
            self._commit(
                replace(self._state, render=replace(render, chunks=(*render.chunks, entry)))
            )
            self._log_chunk(entry, render.fingerprint)
            return entry

    def load_chunk(self, entry: ChunkEntry) -> np.ndarray:
        """The frames of a saved chunk, ``[N, H, W, 3]`` uint8, exactly as saved."""
        data = self._read_bytes(entry.file)
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise ProjectError(
                f"{self.folder / entry.file} is damaged (hash mismatch); render again to replace it"
            )
        return _decode_chunk(data, self.folder / entry.file)

    def iter_chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, frames)`` for every saved chunk of the current render, in order."""
        render = self._require_render()
        for entry in render.chunks:
            yield entry.start, self.load_chunk(entry)

    def iter_frames(self, max_frames: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, frames)`` of the current render in order, at most ``max_frames`` frames
        ``[N, H, W, 3]`` uint8 decoded at a time (each chunk file is hash-checked first,
        streamed): memory follows ``max_frames``, not the chunk length."""
        render = self._require_render()
        yield from self.iter_pieces([(c, c.start, c.stop) for c in render.chunks], max_frames)

    def iter_pieces(
        self, pieces: list[tuple[ChunkEntry, int, int]], max_frames: int
    ) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, frames)`` of frames ``first <= i < last`` of each ``(entry, first, last)``
        piece (``frame_pieces``), in order, at most ``max_frames`` frames ``[N, H, W, 3]``
        uint8 decoded at a time; each chunk file is hash-checked first."""
        step = max(1, max_frames)
        for entry, first, last in pieces:
            path = self.resolve(entry.file)
            if _file_sha256(path) != entry.sha256:
                raise ProjectError(f"{path} is damaged (hash mismatch); render again to replace it")
            try:
                with np.load(path) as archive:
                    names = sorted(n for n in archive.files if n.startswith("f"))
                    if len(names) != entry.stop - entry.start:
                        raise ValueError(
                            f"{len(names)} frames, expected {entry.stop - entry.start}"
                        )
                    names = names[first - entry.start : last - entry.start]
                    for i in range(0, len(names), step):
                        blobs = [archive[n].tobytes() for n in names[i : i + step]]
                        yield first + i, _decode_frames(blobs, path)
            except (OSError, ValueError, KeyError) as e:
                raise ProjectError(f"{path} is not a readable chunk ({e}); render again") from e

    def finish_render(self, output: str | os.PathLike, notes: tuple[str, ...] = ()) -> ProjectState:
        """Mark the current render complete, its clip written to ``output``; ``notes``: what
        the user should know about the output (re-encoded or dropped tracks, HDR, ...)."""
        with self._lock:
            render = self._require_render()
            if render.resume_frame != self._state.clip.num_frames:
                raise ProjectError(
                    f"render is not finished: frames {render.resume_frame} to "
                    f"{self._state.clip.num_frames - 1} are missing"
                )
            done = replace(render, complete=True, output=str(output), notes=tuple(notes))
            return self._commit(replace(self._state, render=done))

    # Range renders ------------------------------------------------------------------------
    def begin_range(self, fingerprint: str, start: int, stop: int) -> RangeRender:
        """Start or resume a range render of frames ``start <= i < stop`` with settings
        ``fingerprint``. The last range's intact chunks of the same fingerprint are kept (they
        are frames of these settings wherever they lie); other settings' are discarded (unless
        the full render adopted them)."""
        with self._lock:
            total = self._state.clip.num_frames
            if not 0 <= start < stop <= total:
                raise ProjectError(
                    f"range {start}-{stop - 1} is not inside the clip (frames 0 to {total - 1}); "
                    "set the in point before the out point, both inside the clip"
                )
            current = self._state.range_render
            if current is not None and current.fingerprint == fingerprint:
                kept = tuple(c for c in current.chunks if self._intact(c))
                same = (current.start, current.stop, kept) == (start, stop, current.chunks)
                ranged = replace(
                    current,
                    start=start,
                    stop=stop,
                    chunks=kept,
                    complete=current.complete and same,
                    output=current.output if same else "",
                    notes=current.notes if same else (),
                )
            else:
                ranged = RangeRender(fingerprint, start, stop)
            self._commit(replace(self._state, range_render=ranged))
            self._remove_unlisted_chunks()
            return ranged

    def save_range_chunk(self, start: int, frames: np.ndarray) -> ChunkEntry:
        """Save finished frames ``[N, H, W, 3]`` uint8 of the current range render from
        ``start`` (inside the range, overlapping none of its chunks)."""
        with self._lock:
            ranged = self._state.range_render
            if ranged is None:
                raise ProjectError("no range render has been started (call begin_range)")
            frames = _checked_frames(frames)
            stop = start + len(frames)
            clash = [c for c in ranged.chunks if c.start < stop and start < c.stop]
            if not ranged.start <= start < stop <= ranged.stop or clash:
                raise ProjectError(
                    f"chunk {start}-{stop} does not fit the range {ranged.start}-{ranged.stop} "
                    f"beside its chunks {[(c.start, c.stop) for c in ranged.chunks]}"
                )
            tag = ranged.fingerprint[:12]
            relative = f"{CHUNKS_DIR}/range-{start:06d}-{stop:06d}-{tag}.npz"
            (self.folder / CHUNKS_DIR).mkdir(exist_ok=True)
            digest = _write_chunk(self.folder / relative, start, frames, f"chunk {start}-{stop}")
            entry = ChunkEntry(start, stop, relative, digest)
            chunks = tuple(sorted((*ranged.chunks, entry), key=lambda c: c.start))
            self._commit(replace(self._state, range_render=replace(ranged, chunks=chunks)))
            self._log_chunk(entry, ranged.fingerprint)
            return entry

    def finish_range(self, output: str | os.PathLike, notes: tuple[str, ...] = ()) -> ProjectState:
        """Mark the current range render complete, its clip written to ``output``."""
        with self._lock:
            ranged = self._state.range_render
            if ranged is None:
                raise ProjectError("no range render has been started (call begin_range)")
            done = replace(ranged, complete=True, output=str(output), notes=tuple(notes))
            return self._commit(replace(self._state, range_render=done))

    def frame_pieces(
        self, fingerprint: str, start: int, stop: int
    ) -> list[tuple[ChunkEntry, int, int]]:
        """Where finished frames of settings ``fingerprint`` in ``[start, stop)`` are:
        ``(chunk, first, last)`` pieces in order (the full render's chunks first, then the
        range's); frames in no piece are not rendered yet (``frame_gaps``)."""
        entries: list[ChunkEntry] = []
        for record in (self._state.render, self._state.range_render):
            if record is not None and record.fingerprint == fingerprint:
                entries.extend(record.chunks)
        return cover(entries, start, stop)

    def adopt_range_chunk(self) -> ChunkEntry | None:
        """Take the range render's chunk that starts where the current render resumes, when
        both have the same settings: the full render lists it (the same file) instead of
        rendering those frames again. None when there is no such chunk."""
        with self._lock:
            render = self._require_render()
            ranged = self._state.range_render
            if ranged is None or ranged.fingerprint != render.fingerprint:
                return None
            at = render.resume_frame
            entry = next((c for c in ranged.chunks if c.start == at), None)
            if entry is None or not self._intact(entry):
                return None
            self._commit(
                replace(self._state, render=replace(render, chunks=(*render.chunks, entry)))
            )
            return entry

    def next_range_chunk(self) -> int | None:
        """The first frame after the current render's resume frame where a chunk of the range
        render with the same settings starts (render up to there, then adopt), or None."""
        render = self._require_render()
        ranged = self._state.range_render
        if ranged is None or ranged.fingerprint != render.fingerprint:
            return None
        at = render.resume_frame
        return min((c.start for c in ranged.chunks if c.start > at), default=None)

    def chunk_log(self) -> list[tuple[int, int, str]]:
        """Every chunk ever finished in this folder, in order: ``(start, stop, fingerprint)``.

        A chunk is finished when the manifest lists it; a chunk listed twice for one
        fingerprint would mean a resumed render redid finished work.
        """
        path = self.folder / CHUNK_LOG
        if not path.exists():
            return []
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) == 3:
                rows.append((int(parts[0]), int(parts[1]), parts[2]))
        return rows

    # Internals ----------------------------------------------------------------------------
    def _require_render(self) -> RenderState:
        if self._state.render is None:
            raise ProjectError("no render has been started in this project (call begin_render)")
        return self._state.render

    def _commit(self, state: ProjectState) -> ProjectState:
        """Persist ``state``, then adopt it: a failed save leaves the old state in place."""
        self._save(state)
        self._state = state
        return state

    def _save(self, state: ProjectState) -> None:
        text = json.dumps(manifest_dict(state), indent=2, sort_keys=False) + "\n"
        if self.lock is not None and self.lock.held:
            atomic_write(self.manifest_path, text.encode("utf-8"), what="the project manifest")
            return
        # Opened without the lock: write only while no one else holds it (one writer).
        with ProjectLock.acquire(self.folder, "a save"):
            atomic_write(self.manifest_path, text.encode("utf-8"), what="the project manifest")

    def _read_bytes(self, relative: str) -> bytes:
        path = self.resolve(relative)
        try:
            return path.read_bytes()
        except OSError as e:
            raise ProjectError(f"cannot read {path}: {e}") from e

    def _intact(self, entry: ChunkEntry) -> bool:
        try:
            return _file_sha256(self.folder / entry.file) == entry.sha256
        except ProjectError:
            return False

    def _intact_prefix(self, chunks: tuple[ChunkEntry, ...]) -> tuple[ChunkEntry, ...]:
        kept: list[ChunkEntry] = []
        for entry in chunks:
            if not self._intact(entry):
                break
            kept.append(entry)
        return tuple(kept)

    def _remove_unlisted_chunks(self) -> None:
        folder = self.folder / CHUNKS_DIR
        if not folder.is_dir():
            return
        listed = {
            PurePosixPath(c.file).name
            for record in (self._state.render, self._state.range_render)
            if record is not None
            for c in record.chunks
        }
        for path in folder.iterdir():
            if path.name not in listed:
                _unlink_quietly(path)

    def _complete_log(self, render: RenderState) -> None:
        # A kill between the manifest commit (the moment a chunk is finished) and the log
        # append leaves a finished chunk unlogged; record it now, once.
        logged = set(self.chunk_log())
        for entry in render.chunks:
            if (entry.start, entry.stop, render.fingerprint) not in logged:
                self._log_chunk(entry, render.fingerprint)

    def _log_chunk(self, entry: ChunkEntry, fingerprint: str) -> None:
        # The audit trail lets anyone check that a resumed render never redid a chunk.
        try:
            with open(self.folder / CHUNK_LOG, "a", encoding="utf-8") as log:
                log.write(f"{entry.start} {entry.stop} {fingerprint}\n")
                log.flush()
                os.fsync(log.fileno())
        except OSError as e:
            raise ProjectError(f"cannot append to {self.folder / CHUNK_LOG}: {e}") from e


# ---------------------------------------------------------------------------------------------
# Manifest <-> state


def manifest_dict(state: ProjectState) -> dict[str, Any]:
    """The JSON-ready manifest for ``state``."""
    options = asdict(state.options)
    options.pop("guidance")
    options.pop("start")
    options.pop("stop")
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "clip": asdict(state.clip),
        "keyframes": list(state.keyframes),
        "references": [
            {
                "frame": r.frame,
                "file": r.file,
                "content_hash": r.content_hash,
                "provenance": asdict(r.provenance),
                "raw_file": r.raw_file,
            }
            for r in state.references
        ],
        "guidance": state.guidance,
        "engine": asdict(state.engine),
        "options": options,
        "output": asdict(state.output),
        "render": None if state.render is None else asdict(state.render),
        "range_render": None if state.range_render is None else asdict(state.range_render),
    }


def parse_manifest(text: str, where: Path | str = MANIFEST) -> ProjectState:
    """Parse a manifest; ProjectError (naming the problem) for anything unreadable."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProjectError(
            f"{where} is corrupt (not valid JSON: {e}); it was left untouched. Restore it from a "
            "backup or delete the folder to start over."
        ) from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ProjectError(f"{where} is not a SparkVSR project manifest; it was left untouched")
    version = data.get("version")
    if not isinstance(version, int) or version < 1:
        raise ProjectError(f"{where} has an invalid version {version!r}; it was left untouched")
    if version > FORMAT_VERSION:
        raise ProjectError(
            f"{where} was written by a newer SparkVSR (manifest version {version}; this one reads "
            f"up to {FORMAT_VERSION}). Upgrade SparkVSR to open it; the file was left untouched."
        )
    try:
        return _state_from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError, EngineError, KeyframeError) as e:
        raise ProjectError(
            f"{where} is corrupt ({type(e).__name__}: {e}); it was left untouched. Restore it "
            "from a backup or delete the folder to start over."
        ) from e


def _state_from_dict(data: Mapping[str, Any]) -> ProjectState:
    clip_data = dict(data["clip"])
    clip_data["iframes"] = tuple(int(i) for i in clip_data.get("iframes", ()))
    clip = ClipSummary(**clip_data)
    guidance = float(data["guidance"])
    options_data = dict(data["options"])
    if options_data.get("output_size") is not None:
        options_data["output_size"] = tuple(int(v) for v in options_data["output_size"])
    options = RestoreOptions(**options_data, guidance=guidance)
    references = tuple(
        ReferenceEntry(
            frame=int(r["frame"]),
            file=_checked_relative(str(r["file"])),
            content_hash=str(r["content_hash"]),
            provenance=_provenance(r["provenance"]),
            raw_file=_checked_relative(str(r["raw_file"])) if r.get("raw_file") else "",
        )
        for r in data["references"]
    )
    render_data = data.get("render")
    render = None
    if render_data is not None:
        render = RenderState(
            fingerprint=str(render_data["fingerprint"]),
            chunks=_chunk_entries(render_data["chunks"]),
            complete=bool(render_data["complete"]),
            output=str(render_data.get("output", "")),
            notes=tuple(str(n) for n in render_data.get("notes", ())),
        )
    range_data = data.get("range_render")  # absent in manifests from before range renders
    ranged = None
    if range_data is not None:
        ranged = RangeRender(
            fingerprint=str(range_data["fingerprint"]),
            start=int(range_data["start"]),
            stop=int(range_data["stop"]),
            chunks=_chunk_entries(range_data["chunks"]),
            complete=bool(range_data["complete"]),
            output=str(range_data.get("output", "")),
            notes=tuple(str(n) for n in range_data.get("notes", ())),
        )
    return ProjectState(
        clip=clip,
        keyframes=validate_keyframes(data["keyframes"], clip.num_frames),
        references=references,
        guidance=guidance,
        engine=EngineSettings(**data["engine"]),
        options=options,
        output=OutputSettings(**data["output"]),
        render=render,
        range_render=ranged,
        version=FORMAT_VERSION,
    )


def _chunk_entries(rows: Any) -> tuple[ChunkEntry, ...]:
    return tuple(
        ChunkEntry(int(c["start"]), int(c["stop"]), _checked_relative(c["file"]), c["sha256"])
        for c in rows
    )


def cover(
    entries: list[ChunkEntry] | tuple[ChunkEntry, ...], start: int, stop: int
) -> list[tuple[ChunkEntry, int, int]]:
    """Pieces ``(entry, first, last)`` of ``entries`` covering as much of ``[start, stop)``
    as they can, in frame order, without overlaps (an earlier-listed entry wins). Pure."""
    pieces: list[tuple[ChunkEntry, int, int]] = []
    at = start
    while at < stop:
        holding = next((e for e in entries if e.start <= at < e.stop), None)
        if holding is not None:
            last = min(holding.stop, stop)
            pieces.append((holding, at, last))
            at = last
            continue
        at = min((e.start for e in entries if at < e.start < stop), default=stop)
    return pieces


def frame_gaps(
    pieces: list[tuple[ChunkEntry, int, int]], start: int, stop: int
) -> list[tuple[int, int]]:
    """The spans ``[a, b)`` of ``[start, stop)`` that no piece covers, in order. Pure."""
    gaps, at = [], start
    for _, first, last in pieces:
        if first > at:
            gaps.append((at, first))
        at = max(at, last)
    if at < stop:
        gaps.append((at, stop))
    return gaps


def _provenance(data: Mapping[str, Any]) -> Provenance:
    known = {f.name for f in fields(Provenance)}
    values = {k: v for k, v in data.items() if k in known}
    values["notes"] = tuple(values.get("notes", ()))
    return Provenance(**values)


def _checked_relative(relative: str) -> str:
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"file {relative!r} must be a path inside the project folder")
    return relative


def _by_frame(entry: ReferenceEntry) -> int:
    return entry.frame


# ---------------------------------------------------------------------------------------------
# Files


def safe_join(folder: str | os.PathLike, relative: str) -> Path:
    """``folder / relative`` when it stays inside ``folder`` after resolving symlinks.

    Refuses (ProjectError) absolute paths, ``..`` components, backslashes and NUL bytes, and any
    path whose real location (symlinks followed) is outside ``folder``.
    """
    root = Path(folder).resolve()
    text = str(relative)
    pure = PurePosixPath(text)
    if (
        not text
        or "\x00" in text
        or "\\" in text
        or pure.is_absolute()
        or Path(text).is_absolute()
        or ".." in pure.parts
    ):
        raise ProjectError(
            f"path {relative!r} is refused: give a path inside the project folder, without "
            "'..' or a leading '/'"
        )
    target = (root / pure).resolve()
    if not target.is_relative_to(root):
        raise ProjectError(f"path {relative!r} is refused: it leads outside the project folder")
    return target


def atomic_write(path: Path, data: bytes, *, what: str | None = None) -> None:
    """Replace ``path`` with ``data`` all at once: temp file in the same folder, fsync, rename,
    fsync the folder. On any error the old file is untouched and the temp file removed.
    """
    what = what or str(path)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except OSError as e:
        _unlink_quietly(Path(temp))
        raise ProjectError(
            f"cannot save {what} to {path}: {e.strerror or e}. Free disk space or check "
            "permissions; the previous state was kept."
        ) from e
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _checked_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise ProjectError(
            f"chunk frames must be uint8 [N, H, W, 3]; got {frames.dtype} {frames.shape}"
        )
    return frames


def _encode_png(image: np.ndarray) -> bytes:
    # Compression level 1: several times faster than the default, still lossless.
    ok, data = cv2.imencode(
        ".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1]
    )
    if not ok:
        raise ProjectError(f"could not encode a {image.shape} image as PNG")
    return data.tobytes()


def _decode_png(data: bytes, where: Path) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ProjectError(f"{where} is not a readable PNG; remake it")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _write_chunk(path: Path, start: int, frames: np.ndarray, what: str) -> str:
    """Write a chunk file atomically (like ``atomic_write``) and return its sha256: an
    uncompressed .npz of per-frame PNG bytes (each PNG compresses itself).

    Frames are encoded in parallel threads (OpenCV releases the GIL), a few at a time, and
    written as they come: memory stays a few PNGs above the frames themselves, whatever the
    chunk length (a chunk of 4x 720p frames is over a gigabyte of PNG data).
    """
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                _write_member(archive, "start", np.int64(start))
                with ThreadPoolExecutor(max_workers=_CODEC_THREADS) as pool:
                    for first in range(0, len(frames), _CODEC_THREADS):
                        window = frames[first : first + _CODEC_THREADS]
                        for i, data in enumerate(pool.map(_encode_png, window), first):
                            _write_member(archive, f"f{i:05d}", np.frombuffer(data, np.uint8))
            handle.flush()
            os.fsync(handle.fileno())
        digest = _file_sha256(Path(temp))
        os.replace(temp, path)
    except OSError as e:
        _unlink_quietly(Path(temp))
        raise ProjectError(
            f"cannot save {what} to {path}: {e.strerror or e}. Free disk space or check "
            "permissions; the previous state was kept."
        ) from e
    except BaseException:
        _unlink_quietly(Path(temp))
        raise
    _fsync_folder(path.parent)
    return digest


def _write_member(archive: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    except OSError as e:
        raise ProjectError(f"cannot read {path}: {e}") from e
    return digest.hexdigest()


def _decode_frames(blobs: list[bytes], where: Path) -> np.ndarray:
    """PNG blobs decoded in parallel into one ``[N, H, W, 3]`` array (no per-frame copies)."""
    first = _decode_png(blobs[0], where)
    out = np.empty((len(blobs), *first.shape), np.uint8)
    out[0] = first

    def into(i: int) -> None:
        image = _decode_png(blobs[i], where)
        if image.shape != first.shape:
            raise ProjectError(f"{where}: frame {i} is {image.shape}, frame 0 {first.shape}")
        out[i] = image

    with ThreadPoolExecutor(max_workers=_CODEC_THREADS) as pool:
        list(pool.map(into, range(1, len(blobs))))
    return out


def _decode_chunk(data: bytes, where: Path) -> np.ndarray:
    try:
        with np.load(io.BytesIO(data)) as archive:
            names = sorted(n for n in archive.files if n.startswith("f"))
            blobs = [archive[n].tobytes() for n in names]
        return _decode_frames(blobs, where)
    except (OSError, ValueError, KeyError) as e:
        raise ProjectError(f"{where} is not a readable chunk ({e}); render again") from e
