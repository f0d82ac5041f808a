"""The render loop shared by the CLI, the worker and batch.

With a project (``render_steps`` / ``render_project``)::

    1. check the project (clip present, references readable) and open the clip
    2. fingerprint the render settings; keep finished chunks made with the same settings
    3. engine.restore(...) from the first unfinished frame; save each chunk losslessly
    4. assemble the saved chunks into the final H.264 clip (source fps, audio copied)
    5. mark the render complete in the project

A render killed at any point resumes at step 3 from the last saved chunk, and because chunks are
stored losslessly the resumed output equals an uninterrupted one frame for frame. Without a
project (``render_clip``) the engine's chunks stream straight into the writer.

A range render (``render_range_steps``: frames ``start <= i < stop``, a short preview before the
full clip) runs the same steps on the range: frames finished already with the same settings are
read, the engine restores only the rest (its frames equal the full render's: the engine plans
the whole clip), and the range is encoded with the clip's timing and the audio of that span.
The full render of the same settings adopts the range's chunks instead of rendering them again.

Progress arrives as ``RenderProgress`` (frames done of total, which stage, frames encoded in the
final encode, elapsed time and the time left at the recent pace); ``cancel`` is a callable the
engine checks between chunks, raising ``Cancelled`` (finished chunks are kept).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from sparkvsr import media
from sparkvsr.engines.base import (
    CancelFn,
    Engine,
    Progress,
    RestoreOptions,
    check_references,
    raise_if_cancelled,
)
from sparkvsr.errors import Cancelled, EngineError, MediaError, ProjectError
from sparkvsr.project import (
    OUTPUT_SUFFIX,
    ClipSummary,
    EngineSettings,
    OutputSettings,
    Project,
    ProjectState,
    file_identity,
    frame_gaps,
)


@dataclass(frozen=True)
class RenderProgress:
    """Where a render stands.

    stage: "render" (engine running), "assemble" (encoding the final clip) or "done".
    frames_done / total_frames: output frames finished (saved chunks count as done).
    chunks_rendered: chunks the engine made in this run; chunks_resumed: chunks kept from an
    earlier, interrupted run of the same settings; chunks_reused: chunks a range render of the
    same settings made (adopted by the full render), or for a range, finished chunks it read.
    first: the first frame of a range render (its frames are ``first <= i < first +
    total_frames``; 0 for the whole clip).
    output: the final clip's path once stage is "done".
    encoded: stage "assemble": frames of the final clip encoded so far (of total_frames).
    elapsed: seconds since this run started (all stages).
    eta: seconds left in the current stage at the recent pace (``Pace``); None = not known yet.
    rate: frames a second of the current stage over its recent frames (0 = not known yet).
    """

    stage: str
    frames_done: int
    total_frames: int
    chunks_rendered: int = 0
    chunks_resumed: int = 0
    message: str = ""
    output: str = ""
    encoded: int = 0
    elapsed: float = 0.0
    eta: float | None = None
    rate: float = 0.0
    chunks_reused: int = 0
    first: int = 0

    @property
    def fraction(self) -> float:
        """The current stage's share done: frames rendered, or while encoding frames encoded."""
        if not self.total_frames:
            return 0.0
        done = self.encoded if self.stage == "assemble" else self.frames_done
        return min(1.0, done / self.total_frames)


class Pace:
    """Frames a second over the last ``window`` frames of a stage, and the time left at it.

    A running average of recent frames, not of the whole run: a resumed render, a slow first
    chunk or a busy machine moves the estimate within a few frames. ``clock`` is injectable
    for tests (seconds, monotonic).
    """

    def __init__(self, window: int = 24, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._samples: deque[tuple[float, int]] = deque(maxlen=window + 1)

    def update(self, count: int) -> None:
        """``count`` frames are finished now (counts only grow; a repeated count is ignored)."""
        if self._samples and count <= self._samples[-1][1]:
            return
        self._samples.append((self.clock(), count))

    def start(self, count: int) -> None:
        """The stage starts now at ``count`` frames (the first sample of the average)."""
        self._samples.clear()
        self._samples.append((self.clock(), count))

    @property
    def rate(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, c0), (t1, c1) = self._samples[0], self._samples[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0

    def eta(self, remaining: int) -> float | None:
        """Seconds for ``remaining`` frames at the recent rate, counted from the last frame."""
        if remaining <= 0:
            return 0.0
        rate = self.rate
        if rate <= 0:
            return None
        since_last = self.clock() - self._samples[-1][0]
        return max(0.0, remaining / rate - since_last)


class _RenderClock:
    """Stamps a run's RenderProgress updates with elapsed time, pace and time left."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.started = clock()
        self.stage = ""
        self.pace = Pace(clock=clock)

    def stamp(self, update: RenderProgress) -> RenderProgress:
        count = update.encoded if update.stage == "assemble" else update.frames_done
        if update.stage != self.stage:
            self.stage = update.stage
            self.pace.start(count)
        else:
            self.pace.update(count)
        eta = 0.0 if update.stage == "done" else self.pace.eta(update.total_frames - count)
        elapsed = self.clock() - self.started
        return replace(update, elapsed=elapsed, eta=eta, rate=self.pace.rate)


@dataclass(frozen=True)
class RenderResult:
    """A finished render: the output clip and how much work this run did."""

    output: Path
    frames: int
    chunks_rendered: int
    chunks_resumed: int
    resumed_from: int
    skipped: bool = False
    notes: tuple[str, ...] = ()
    chunks_reused: int = 0


ProgressCallback = Callable[[RenderProgress], None]

# x264's macroblock-tree rate control is not repeatable on some content (measured: identical
# frames encoded five times gave five different streams), and then a resumed render would not
# equal an uninterrupted one. Without it the encode is a pure function of the frames.
DETERMINISTIC_X264 = "mbtree=0"
RENDER_CHUNK_BYTES = 128 << 20
"""Output frames one render chunk may hold (at 4x of 720p: 3 frames instead of 33)."""
CHUNK_FORM = {"dit": 8}
"""Engines whose chunks must be ``form * k + 1`` frames (the dit model's latent frames)."""
ASSEMBLE_BYTES = 256 << 20
"""Decoded output frames the final encode holds per write (the writer keeps one write in
flight): the encode's memory follows this, not the chunk length."""
# Frames handed to the encoder at once while assembling: the encode stage's progress moves and
# cancel is checked every block (the encoder runs one block behind, so a cancel stops the encode
# within about two blocks of frames).
ASSEMBLE_BLOCK = 4


def _options_key(options: RestoreOptions) -> dict:
    """The options as the fingerprint hashes them: without ``stop`` (a range render has the
    same settings as the full one; projects made before ranges keep their fingerprints)."""
    values = asdict(options)
    values.pop("stop")
    return values


def render_fingerprint(state: ProjectState, engine: Engine) -> str:
    """A hash of everything that changes output frames: the clip file, engine and model,
    restore options, guidance, and each used Reference's content hash.
    """
    used = [(r.frame, r.content_hash) for r in state.references if r.frame in set(state.keyframes)]
    settings = {
        # the clip file as it is now: an edited or replaced clip invalidates finished chunks
        "clip": [
            file_identity(state.clip.path),
            state.clip.num_frames,
            state.clip.width,
            state.clip.height,
        ],
        "engine": [getattr(engine, "name", type(engine).__name__), _engine_model(engine)],
        "options": _options_key(state.restore_options()),
        "references": used,
    }
    # How frames are read changes them; listed only when not the default, so the fingerprints
    # of projects made before these settings existed stay the same.
    # The encoding ones change the final clip (not the chunks), so a change re-renders.
    out = state.output
    read = {
        "deinterlace": out.deinterlace,
        "tonemap": out.tonemap,
        "codec": out.codec,
        "square_pixels": out.square_pixels,
    }
    if read != {"deinterlace": True, "tonemap": False, "codec": "h264", "square_pixels": False}:
        settings["read"] = read
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def render_steps(
    engine: Engine,
    project: Project,
    *,
    output: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelFn | None = None,
    chunk_bytes: int = RENDER_CHUNK_BYTES,
) -> Generator[RenderProgress, None, RenderResult]:
    """Render ``project`` one chunk per step: yields a RenderProgress after each saved chunk
    and returns the RenderResult. ``progress`` also receives the engine's finer updates.

    ``output`` overrides the project's output path (relative paths are inside the project).
    ``chunk_bytes``: the most bytes one chunk of output frames may take; the project's chunk is
    shortened to fit (``chunk_within``), so memory follows the output frame size.
    Raises Cancelled (chunks kept), ProjectError (disk, manifest), EngineError, MediaError.
    """
    # 1. check the project and open the clip
    clock = _RenderClock()

    def emit(update: RenderProgress) -> RenderProgress:
        update = clock.stamp(update)
        _emit(progress, update)
        return update

    state = project.state
    out_path = _output_path(project, output)
    _check_clip_present(project)
    references = project.reference_images()
    options = state.restore_options()
    total = state.clip.num_frames

    # 2. fingerprint; keep chunks made with the same settings
    fingerprint = render_fingerprint(state, engine)
    if _already_done(project, fingerprint, out_path):
        yield emit(
            RenderProgress("done", total, total, output=str(out_path), message="already rendered")
        )
        return RenderResult(out_path, total, 0, len(state.render.chunks), total, skipped=True)
    render = project.begin_render(fingerprint)
    resumed = len(render.chunks)
    start = render.resume_frame
    rendered = reused = 0

    settings = state.output
    reading = {"deinterlace": settings.deinterlace, "tonemap": settings.tonemap}
    with media.open_clip(state.clip.path, **reading) as clip:
        _check_clip_unchanged(project, clip)
        check_references(clip, references, options.scale)
        media.check_output(
            clip.info.path,
            out_path,
            output_size(clip.info, options),
            total,
            source_size=clip.size,
            codec=settings.codec if settings.codec in media.CODECS else "h264",
            lossless=settings.codec == "ffv1",
        )

        # 3. restore from the first unfinished frame, saving every chunk; where a range render
        #    of the same settings made the next chunk, adopt it instead of rendering it again
        if start < total:
            emit(
                RenderProgress("render", start, total, 0, resumed, _resume_message(start, resumed))
            )
        counts = [0]  # chunks rendered so far, read by the engine-progress forwarder
        bounded = _bounded_options(engine, clip, options, chunk_bytes)
        while (at := project.state.render.resume_frame) < total:
            if project.adopt_range_chunk() is not None:
                reused += 1
                done = project.state.render.resume_frame
                yield emit(
                    RenderProgress(
                        "render",
                        done,
                        total,
                        rendered,
                        resumed,
                        "reusing the range render's frames",
                        chunks_reused=reused,
                    )
                )
                continue
            upto = project.next_range_chunk()
            engine_progress = _forward_engine_progress(emit, at, total, resumed, counts)
            chunks = engine.restore(
                clip,
                references,
                replace(bounded, start=at, stop=upto),
                progress=engine_progress,
                cancel=cancel,
            )
            try:
                for chunk in chunks:
                    _check_chunk(chunk.start, chunk.frames, project.state.render.resume_frame)
                    project.save_chunk(chunk.start, chunk.frames)
                    rendered += 1
                    counts[0] = rendered
                    yield emit(
                        RenderProgress(
                            "render", chunk.stop, total, rendered, resumed, chunks_reused=reused
                        )
                    )
            finally:
                chunks.close()
            if project.state.render.resume_frame == at:
                break  # the engine yielded nothing: reported below
        if project.state.render.resume_frame != total:
            raise EngineError(
                f"the engine stopped at frame {project.state.render.resume_frame} of {total}; "
                "render again to continue from there"
            )

        # 4. assemble the saved chunks into the final clip: a stage with its own progress, and
        # a step of its own, so a caller can run it on another thread than the engine's
        # (the worker does); cancellable between blocks of frames
        raise_if_cancelled(cancel)

        def encoded(frames: int) -> RenderProgress:
            return emit(
                RenderProgress(
                    "assemble",
                    total,
                    total,
                    rendered,
                    resumed,
                    "encoding",
                    encoded=frames,
                    chunks_reused=reused,
                )
            )

        yield encoded(0)
        batch = _assemble_batch(clip, project)
        frames = project.iter_frames(batch)
        notes = _assemble(project, clip, out_path, settings, frames, encoded, cancel)

    # 5. mark the render complete (the notes go into the manifest)
    project.finish_render(out_path, notes)
    message = "; ".join(notes)
    yield emit(
        RenderProgress(
            "done",
            total,
            total,
            rendered,
            resumed,
            message,
            output=str(out_path),
            encoded=total,
            chunks_reused=reused,
        )
    )
    return RenderResult(
        out_path, total, rendered, resumed, start, notes=notes, chunks_reused=reused
    )


def render_range_steps(
    engine: Engine,
    project: Project,
    frames: tuple[int, int],
    *,
    output: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelFn | None = None,
    chunk_bytes: int = RENDER_CHUNK_BYTES,
) -> Generator[RenderProgress, None, RenderResult]:
    """Render frames ``start <= i < stop`` of ``project`` (``frames = (start, stop)``) at its
    output settings, one chunk per step (like ``render_steps``; progress counts the range's
    frames, ``RenderProgress.first`` says where it starts).

    Its frames equal the same frames of the full render with the same settings: finished ones
    (the full render's or an earlier range's chunks) are read as they are, the engine restores
    the rest with the whole clip's plans. The chunks go into the project's range record, where
    the full render of these settings adopts them. The clip keeps the source's frame timing and
    the audio of that span (video and audio start at 0 together). ``output``: default
    ``range_name(project output, start, stop)``. Raises like ``render_steps``; ProjectError for a
    range outside the clip.
    """
    # 1. check the project and the range, open the clip
    clock = _RenderClock()
    start, stop = (int(v) for v in frames)
    count = stop - start

    def emit(update: RenderProgress) -> RenderProgress:
        update = clock.stamp(replace(update, first=start))
        _emit(progress, update)
        return update

    state = project.state
    if output is None:
        output = range_name(state.output.path, start, stop)
    out_path = _output_path(project, output)
    _check_clip_present(project)
    total = state.clip.num_frames
    if not 0 <= start < stop <= total:
        raise ProjectError(
            f"range {start}-{stop - 1} is not inside the clip (frames 0 to {total - 1}); set the "
            "in point before the out point, both inside the clip"
        )
    references = project.reference_images()
    options = state.restore_options()

    # 2. fingerprint; frames of these settings finished already are read, not rendered
    fingerprint = render_fingerprint(state, engine)
    ranged = state.range_render
    if (
        ranged is not None
        and ranged.complete
        and (ranged.fingerprint, ranged.start, ranged.stop) == (fingerprint, start, stop)
        and Path(ranged.output) == out_path
        and out_path.is_file()
    ):
        yield emit(
            RenderProgress("done", count, count, output=str(out_path), message="already rendered")
        )
        return RenderResult(out_path, count, 0, 0, start, skipped=True)
    project.begin_range(fingerprint, start, stop)
    gaps = frame_gaps(project.frame_pieces(fingerprint, start, stop), start, stop)
    reused = len(project.frame_pieces(fingerprint, start, stop))
    rendered = 0
    done = count - sum(b - a for a, b in gaps)

    settings = state.output
    reading = {"deinterlace": settings.deinterlace, "tonemap": settings.tonemap}
    with media.open_clip(state.clip.path, **reading) as clip:
        _check_clip_unchanged(project, clip)
        check_references(clip, references, options.scale)
        media.check_output(
            clip.info.path,
            out_path,
            output_size(clip.info, options),
            count,
            source_size=clip.size,
            codec=settings.codec if settings.codec in media.CODECS else "h264",
            lossless=settings.codec == "ffv1",
        )

        # 3. restore the frames not finished yet, gap by gap, saving every chunk
        emit(RenderProgress("render", done, count, message=f"range {start}-{stop - 1}"))
        bounded = _bounded_options(engine, clip, options, chunk_bytes)
        for gap_start, gap_stop in gaps:
            counts = [rendered]
            forward = _forward_engine_progress(emit, done, count, 0, counts)
            chunks = engine.restore(
                clip,
                references,
                replace(bounded, start=gap_start, stop=gap_stop),
                progress=forward,
                cancel=cancel,
            )
            expected = gap_start
            try:
                for chunk in chunks:
                    _check_chunk(chunk.start, chunk.frames, expected)
                    if chunk.stop > gap_stop:
                        raise EngineError(
                            f"the engine yielded frames up to {chunk.stop - 1} for a range "
                            f"ending at {gap_stop - 1}; engines must stop at options.stop"
                        )
                    project.save_range_chunk(chunk.start, chunk.frames)
                    expected = chunk.stop
                    rendered += 1
                    counts[0] = rendered
                    done += len(chunk.frames)
                    yield emit(
                        RenderProgress("render", done, count, rendered, chunks_reused=reused)
                    )
            finally:
                chunks.close()
            if expected != gap_stop:
                raise EngineError(
                    f"the engine stopped at frame {expected} of the range {start}-{stop - 1}; "
                    "render the range again to continue from there"
                )

        # 4. encode the range from the finished chunks: the clip's timing, the span's audio
        raise_if_cancelled(cancel)

        def encoded(frames_done: int) -> RenderProgress:
            return emit(
                RenderProgress(
                    "assemble",
                    count,
                    count,
                    rendered,
                    message="encoding",
                    encoded=frames_done,
                    chunks_reused=reused,
                )
            )

        yield encoded(0)
        pieces = project.frame_pieces(fingerprint, start, stop)
        batch = _assemble_batch(clip, project)
        frames_iter = project.iter_pieces(pieces, batch)
        notes = _assemble(
            project, clip, out_path, settings, frames_iter, encoded, cancel, span=(start, stop)
        )

    # 5. mark the range complete
    project.finish_range(out_path, notes)
    yield emit(
        RenderProgress(
            "done",
            count,
            count,
            rendered,
            message="; ".join(notes),
            output=str(out_path),
            encoded=count,
            chunks_reused=reused,
        )
    )
    return RenderResult(out_path, count, rendered, 0, start, notes=notes, chunks_reused=reused)


def range_name(output: str, start: int, stop: int) -> str:
    """The file name of a range render beside ``output``: ``clip_x4_flow_g1.0_f120-195.mp4``
    for frames 120 to 195 (``start=120, stop=196``; the numbers are the in and out frames)."""
    path = Path(output)
    return str(path.with_name(f"{path.stem}_f{start}-{stop - 1}{path.suffix}"))


def _bounded_options(
    engine: Engine, clip: media.Clip, options: RestoreOptions, chunk_bytes: int
) -> RestoreOptions:
    """``options`` with the chunk shortened to ``chunk_bytes`` of output frames: the same for a
    range and the full render, so the dit engine's chunk plan (and its frames) are the same."""
    return render_chunk(
        getattr(engine, "name", ""), options, output_size(clip.info, options), chunk_bytes
    )


def render_chunk(
    engine_name: str,
    options: RestoreOptions,
    frame_size: tuple[int, int],
    chunk_bytes: int = RENDER_CHUNK_BYTES,
) -> RestoreOptions:
    """``options`` with the chunk a render on engine ``engine_name`` uses for output frames of
    ``frame_size`` (width, height): shortened to ``chunk_bytes`` of frames, in the engine's chunk
    form (``CHUNK_FORM``: 8k+1 for dit). The render and the studio's estimate both ask here."""
    width, height = frame_size
    return chunk_within(options, width * height * 3, chunk_bytes, CHUNK_FORM.get(engine_name, 1))


def render_project(
    engine: Engine,
    project: Project,
    *,
    output: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelFn | None = None,
) -> RenderResult:
    """Render ``project`` to its output clip, resuming finished chunks (see ``render_steps``)."""
    steps = render_steps(engine, project, output=output, progress=progress, cancel=cancel)
    while True:
        try:
            next(steps)
        except StopIteration as finished:
            return finished.value


def render_clip(
    engine: Engine,
    clip: str | os.PathLike | media.Clip,
    references: Mapping[int, np.ndarray],
    options: RestoreOptions,
    output: str | os.PathLike,
    *,
    crf: int = 18,
    lossless: bool = False,
    codec: str = "h264",
    square_pixels: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelFn | None = None,
) -> RenderResult:
    """Restore a clip without a project: chunks stream straight into the writer (no resume).

    ``clip``: a path, or a Clip already open (so it is not probed again). ``references``:
    ``{frame: [H*scale, W*scale, 3] uint8}``. ``output``: .mp4/.mov/.mkv, or a folder for PNG
    frames; ``lossless`` writes FFV1 (.mkv) or PNGs; ``codec``: "h264" or "h265";
    ``square_pixels``: anamorphic sources are resampled to square pixels (else their sample
    aspect ratio is kept). The output is checked (not the source, encodable size, writable, disk
    space) before the engine starts. Memory depends on the chunk size, not the clip length.
    """
    output = Path(output)
    if options.stop is not None:
        raise EngineError(
            f"render_clip writes from frame {options.start} to the clip's end (stop "
            f"{options.stop} given); render a range inside a project with render_range_steps"
        )
    owned = not isinstance(clip, media.Clip)
    source = media.open_clip(clip) if owned else clip
    try:
        total = source.num_frames
        check_references(source, references, options.scale)
        media.check_output(
            source.info.path,
            output,
            output_size(source.info, options),
            total - options.start,
            source_size=source.size,
            codec=codec,
            lossless=lossless,
        )
        clock = _RenderClock()

        def emit(update: RenderProgress) -> None:
            _emit(progress, clock.stamp(update))

        counts = [0]
        engine_progress = _forward_engine_progress(emit, options.start, total, 0, counts)
        rendered = 0
        with media.VideoWriter.like(
            output,
            source.info,
            crf=crf,
            lossless=lossless,
            codec=codec,
            square_pixels=square_pixels,
            tonemapped=source.tonemap,
            notes=source.notes,
            x264_params=DETERMINISTIC_X264 if codec == "h264" else "",
        ) as writer:
            chunks = engine.restore(
                source, references, options, progress=engine_progress, cancel=cancel
            )
            try:
                expected = options.start
                for chunk in chunks:
                    _check_chunk(chunk.start, chunk.frames, expected)
                    writer.write(chunk.frames)
                    expected = chunk.stop
                    rendered += 1
                    counts[0] = rendered
                    emit(RenderProgress("render", chunk.stop, total, rendered))
            finally:
                chunks.close()
        notes = tuple(writer.notes)
    finally:
        if owned:
            source.close()
    message = "; ".join(notes)
    emit(RenderProgress("done", total, total, rendered, message=message, output=str(output)))
    return RenderResult(output, total - options.start, rendered, 0, options.start, notes=notes)


def ensure_project(
    folder: str | os.PathLike,
    clip_path: str | os.PathLike,
    engine: Engine,
    options: RestoreOptions,
    output: OutputSettings,
    *,
    lock: str | None = None,
    wait: float = 0.0,
) -> Project:
    """Open the project in ``folder`` (it must belong to ``clip_path``) or create it, then make
    its options and output match the ones given. Same settings as last time: the next render
    resumes; other settings: the fingerprint changes and the render starts over.

    lock: hold the project's writer lock for this purpose until ``project.close()`` (another
    holder: ProjectLocked naming it, after waiting up to ``wait`` seconds).
    """
    folder = Path(folder)
    if Project.is_project(folder):
        project = Project.open(folder, lock=lock, wait=wait)
        if Path(clip_path).resolve() != Path(project.state.clip.path):
            project.close()
            raise ProjectError(
                f"project {folder} belongs to {project.state.clip.path}, not {clip_path}; use "
                "another project folder for this clip"
            )
    else:
        status = engine.status()
        project = Project.create(
            folder,
            ClipSummary.from_info(media.probe(clip_path)),
            engine=EngineSettings(status.name, status.model),
            options=options,
            lock=lock,
            wait=wait,
        )
    if project.state.restore_options() != replace(options, start=0, stop=None):
        project.set_options(options)
        project.set_guidance(options.guidance)
    if project.state.output != output:
        project.set_output(output)
    return project


# ---------------------------------------------------------------------------------------------
# Helpers


def _engine_model(engine: Engine) -> str:
    try:
        return engine.status().model
    except Exception:  # a status failure must not block a render; the name still counts
        return ""


def output_size(info: media.ClipInfo, options: RestoreOptions) -> tuple[int, int]:
    """The size of the frames the engine hands over: ``output_size``, else scale x the clip."""
    return options.output_size or (info.width * options.scale, info.height * options.scale)


def working_scale(engine: str, options: RestoreOptions, size: tuple[int, int]) -> int:
    """The scale an engine should work at for ``options``: with an ``output_size`` below
    ``scale`` x the clip ``size`` (width, height), the smallest integer scale that still
    reaches it, so memory and time follow the output size. The ``dit`` model is trained for
    its scale and keeps it."""
    if options.output_size is None or engine == "dit":
        return options.scale
    need = max(options.output_size[0] / size[0], options.output_size[1] / size[1])
    return max(1, min(options.scale, math.ceil(need - 1e-9)))


def _output_path(project: Project, output: str | os.PathLike | None) -> Path:
    chosen = Path(output) if output is not None else Path(project.state.output.path)
    path = chosen if chosen.is_absolute() else project.folder / chosen
    if path.suffix.lower() not in (".mp4", ".mov", ".mkv"):
        raise ProjectError(f"output {path} must end in .mp4, .mov or .mkv")
    return path


def _check_clip_present(project: Project) -> None:
    clip_path = Path(project.state.clip.path)
    if not clip_path.exists():
        raise ProjectError(
            f"the clip {clip_path} of project {project.folder} is missing; move it back or "
            "relink the project to its new location"
        )


def _check_clip_unchanged(project: Project, clip: media.Clip) -> None:
    summary = project.state.clip
    if (clip.num_frames, clip.size) != (summary.num_frames, (summary.width, summary.height)):
        raise ProjectError(
            f"{summary.path} changed since the project was made: it now has {clip.num_frames} "
            f"frames of {clip.size[0]}x{clip.size[1]}, the project expects {summary.num_frames} of "
            f"{summary.width}x{summary.height}. Start a new project for the new clip."
        )


def _already_done(project: Project, fingerprint: str, out_path: Path) -> bool:
    render = project.state.render
    return (
        render is not None
        and render.complete
        and render.fingerprint == fingerprint
        and Path(render.output) == out_path
        and out_path.is_file()
    )


def _check_chunk(start: int, frames: np.ndarray, expected: int) -> None:
    if start != expected:
        raise EngineError(
            f"the engine yielded a chunk at frame {start} but frame {expected} was expected next; "
            "engines must yield contiguous chunks"
        )
    if frames.ndim != 4 or frames.dtype != np.uint8 or len(frames) == 0:
        raise EngineError(
            f"the engine yielded frames {frames.dtype} {frames.shape}; expected uint8 [N, H, W, 3]"
        )


def _resume_message(start: int, resumed: int) -> str:
    if resumed:
        return f"resuming at frame {start} ({resumed} finished chunks kept)"
    return "starting"


def _forward_engine_progress(
    progress: ProgressCallback | None, start: int, total: int, resumed: int, counts: list[int]
) -> Callable[[Progress], None] | None:
    if progress is None:
        return None

    def forward(update: Progress) -> None:
        if update.unit == "frames":
            done = min(total, start + update.done)
        else:
            share = update.done / update.total if update.total else 0.0
            done = min(total, start + round(share * (total - start)))
        progress(RenderProgress("render", done, total, counts[0], resumed, update.message))

    return forward


def _emit(progress: ProgressCallback | None, update: RenderProgress) -> None:
    if progress is not None:
        progress(update)


def chunk_within(
    options: RestoreOptions, frame_bytes: int, budget: int, form: int = 1
) -> RestoreOptions:
    """``options`` with the chunk shortened so one chunk of ``frame_bytes`` frames fits in
    ``budget`` bytes, never below 1 frame. ``form``: chunks must be ``form * k + 1`` frames
    (8 for the dit model; at least ``form + 1``). Frames of the flow engine do not depend on
    the chunk."""
    most = max(1, budget // max(1, frame_bytes))
    if options.chunk <= most:
        return options
    chunk = most
    if form > 1:
        chunk = max(form + 1, (most - 1) // form * form + 1)
    if chunk >= options.chunk:
        return options
    return replace(options, chunk=chunk, overlap=min(options.overlap, chunk - 1))


def writer_options(settings: OutputSettings, out_path: Path) -> dict:
    """``VideoWriter.like`` keyword options for a project's output settings (the codec must
    match the output's suffix: ``OUTPUT_SUFFIX``)."""
    suffix = OUTPUT_SUFFIX[settings.codec]
    # H.264 and H.265 go into any of the writer's containers (.mp4, .mov, .m4v, .mkv).
    fitting = media.VIDEO_SUFFIXES if settings.codec in ("h264", "h265") else (suffix,)
    if suffix and out_path.suffix.lower() not in fitting:
        raise ProjectError(
            f"output {out_path.name} does not fit codec {settings.codec}: name it *{suffix}"
        )
    if settings.codec == "ffv1":
        return {"lossless": True}
    if settings.codec not in media.CODECS:
        raise MediaError(
            f"{settings.codec} output is not supported by this build's writer; choose one of "
            f"{', '.join(media.CODECS)} or ffv1"
        )
    deterministic = DETERMINISTIC_X264 if settings.codec == "h264" else ""
    return {
        "codec": settings.codec,
        "crf": settings.crf,
        "preset": settings.preset,
        "x264_params": deterministic,
    }


def _assemble(
    project: Project,
    clip: media.Clip,
    out_path: Path,
    settings: OutputSettings,
    frames: Iterator[tuple[int, np.ndarray]],
    encoded: Callable[[int], object] | None = None,
    cancel: CancelFn | None = None,
    span: tuple[int, int] | None = None,
) -> tuple[str, ...]:
    """Encode ``frames`` (``(start, [N, H, W, 3] uint8)`` batches read from the saved chunks)
    to ``out_path`` via a temp file, so a crash never leaves a half-written clip under the final
    name. Returns the notes (reading and writing). ``span``: the frames are the clip's frames
    ``start <= i < stop`` (a range: its timing and the audio of that span). ``encoded(n)`` hears
    how many frames are encoded, every ``ASSEMBLE_BLOCK`` frames. ``cancel`` is checked between
    blocks (Cancelled: the temp file is removed, the chunks are kept)."""
    partial = out_path.with_name(f".{out_path.stem}.partial{out_path.suffix}")
    options = writer_options(settings, out_path)
    try:
        with (
            media.VideoWriter.like(
                partial,
                clip.info,
                square_pixels=settings.square_pixels,
                tonemapped=clip.tonemap,
                notes=clip.notes,
                span=span,
                **options,
            ) as writer,
            _prefetched(frames, cancel) as batches,
        ):
            if not settings.audio:
                writer.audio_from = None  # video only (read when the first frames arrive)
            if settings.ten_bit and not writer.colour.pix_fmt.endswith("10le"):
                writer.colour = replace(writer.colour, pix_fmt="yuv420p10le")
            for _, frames in batches:
                for i in range(0, len(frames), ASSEMBLE_BLOCK):
                    raise_if_cancelled(cancel)
                    block = frames[i : i + ASSEMBLE_BLOCK]
                    writer.write(block)  # returns once the block before it is encoded
                    if encoded is not None:
                        encoded(writer.frames_written - len(block))
        raise_if_cancelled(cancel)
        if encoded is not None:
            encoded(writer.frames_written)
        os.replace(partial, out_path)
    except Cancelled:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    except (MediaError, OSError) as e:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise ProjectError(
            f"cannot write the final clip {out_path}: {e}. The rendered chunks are kept; free "
            "space and render again to assemble without re-rendering."
        ) from e
    return tuple(writer.notes)


def _assemble_batch(clip: media.Clip, project: Project) -> int:
    """Frames the final encode decodes at once: half of ``ASSEMBLE_BYTES`` of output frames,
    as one batch is read ahead while the other is encoded."""
    width, height = output_size(clip.info, project.state.restore_options())
    return max(1, ASSEMBLE_BYTES // 2 // max(1, width * height * 3))


@contextlib.contextmanager
def _prefetched(
    items: Iterator[tuple[int, np.ndarray]], cancel: CancelFn | None
) -> Iterator[Iterator[tuple[int, np.ndarray]]]:
    """``items`` read one ahead on a thread (a chunk decodes while the previous one encodes).
    Waiting for it checks ``cancel``, and a cancelled wait leaves the read behind, so a cancel
    is not held up by a chunk being decoded."""
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="assemble-read")

    def ahead() -> Iterator[tuple[int, np.ndarray]]:
        pending = reader.submit(next, items, None)
        while True:
            while True:
                try:
                    item = pending.result(timeout=0.05)
                    break
                except FutureTimeout:
                    raise_if_cancelled(cancel)
            if item is None:
                return
            pending = reader.submit(next, items, None)
            yield item

    try:
        yield ahead()
    finally:
        reader.shutdown(wait=False, cancel_futures=True)
