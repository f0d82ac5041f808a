"""The resumable render of a project: ``render_steps`` (one saved chunk per step, then the
final encode), ``render_project`` (all of them), ``ensure_project`` (a project matching the
given settings), and the checks before and during the run.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from sparkvsr import media
from sparkvsr.engines.base import (
    CancelFn,
    Engine,
    RestoreOptions,
    check_references,
    raise_if_cancelled,
)
from sparkvsr.errors import EngineError, ProjectError
from sparkvsr.project import ClipSummary, EngineSettings, OutputSettings, Project, ProjectState
from sparkvsr.render.assembly import assemble, assemble_batch
from sparkvsr.render.progress import (
    ProgressCallback,
    RenderClock,
    RenderProgress,
    RenderResult,
    emit_progress,
    forward_engine_progress,
    resume_message,
)
from sparkvsr.render.settings import (
    RENDER_CHUNK_BYTES,
    bounded_options,
    checked_codec,
    output_size,
    render_fingerprint,
)


@dataclass(frozen=True)
class RenderSnapshot:
    """What a render renders: the project's state and Reference images (``{frame: [H, W, 3]
    uint8}``) as they were when it was asked for, so a render that waits behind other work
    never picks up edits made meanwhile (those apply to the next render)."""

    state: ProjectState
    references: dict[int, np.ndarray]


def take_snapshot(project: Project) -> RenderSnapshot:
    return RenderSnapshot(project.state, project.reference_images())


def render_steps(
    engine: Engine,
    project: Project,
    *,
    output: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelFn | None = None,
    chunk_bytes: int = RENDER_CHUNK_BYTES,
    snapshot: RenderSnapshot | None = None,
) -> Generator[RenderProgress, None, RenderResult]:
    """Render ``project`` one chunk per step: yields a RenderProgress after each saved chunk
    and returns the RenderResult. ``progress`` also receives the engine's finer updates.

    ``output`` overrides the project's output path (relative paths are inside the project).
    ``chunk_bytes``: the most bytes one chunk of output frames may take; the project's chunk is
    shortened to fit (``chunk_within``), so memory follows the output frame size.
    ``snapshot``: the settings and References to render (default: the project's now).
    Raises Cancelled (chunks kept), ProjectError (disk, manifest), EngineError, MediaError.
    """
    # 1. check the project and open the clip
    clock = RenderClock()

    def emit(update: RenderProgress) -> RenderProgress:
        update = clock.stamp(update)
        emit_progress(progress, update)
        return update

    taken = snapshot or take_snapshot(project)
    state, references = taken.state, taken.references
    out_path = output_path(project, output if output is not None else state.output.path)
    check_clip_present(project)
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
        check_before_restoring(project, clip, references, options, settings, out_path, total)

        # 3. restore from the first unfinished frame, saving every chunk; where a range render
        #    of the same settings made the next chunk, adopt it instead of rendering it again
        if start < total:
            emit(RenderProgress("render", start, total, 0, resumed, resume_message(start, resumed)))
        counts = [0]  # chunks rendered so far, read by the engine-progress forwarder
        bounded = bounded_options(engine, clip, options, chunk_bytes)
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
            engine_progress = forward_engine_progress(emit, at, total, resumed, counts)
            chunks = engine.restore(
                clip,
                references,
                replace(bounded, start=at, stop=upto),
                progress=engine_progress,
                cancel=cancel,
            )
            try:
                for chunk in chunks:
                    check_chunk(chunk.start, chunk.frames, project.state.render.resume_frame)
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
        batch = assemble_batch(clip, project)
        frames = project.iter_frames(batch)
        notes = assemble(project, clip, out_path, settings, frames, encoded, cancel)

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


def output_path(project: Project, output: str | os.PathLike | None) -> Path:
    chosen = Path(output) if output is not None else Path(project.state.output.path)
    path = chosen if chosen.is_absolute() else project.folder / chosen
    if path.suffix.lower() not in (".mp4", ".mov", ".mkv", ".zip"):
        raise ProjectError(
            f"output {path} must end in .mp4, .mov or .mkv (a video) or .zip (a PNG sequence)"
        )
    return path


def check_clip_present(project: Project) -> None:
    clip_path = Path(project.state.clip.path)
    if not clip_path.exists():
        raise ProjectError(
            f"the clip {clip_path} of project {project.folder} is missing; move it back or "
            "relink the project to its new location"
        )


def check_before_restoring(
    project: Project,
    clip: media.Clip,
    references: dict,
    options: RestoreOptions,
    settings: OutputSettings,
    out_path: Path,
    frames: int,
) -> None:
    """Every check a render (full or range) makes once its clip is open, before any engine
    work: the clip is the project's, the References fit it, the output can take ``frames``."""
    check_clip_unchanged(project, clip)
    check_references(clip, references, options.scale)
    codec, lossless = checked_codec(settings)
    media.check_output(
        clip.info.path,
        out_path,
        output_size(clip.info, options),
        frames,
        source_size=clip.size,
        codec=codec,
        lossless=lossless,
    )


def check_clip_unchanged(project: Project, clip: media.Clip) -> None:
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


def check_chunk(start: int, frames: np.ndarray, expected: int) -> None:
    if start != expected:
        raise EngineError(
            f"the engine yielded a chunk at frame {start} but frame {expected} was expected next; "
            "engines must yield contiguous chunks"
        )
    if frames.ndim != 4 or frames.dtype != np.uint8 or len(frames) == 0:
        raise EngineError(
            f"the engine yielded frames {frames.dtype} {frames.shape}; expected uint8 [N, H, W, 3]"
        )
