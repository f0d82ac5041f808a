"""Range renders: frames ``start <= i < stop`` at the output settings, equal to the full
render's frames (finished ones are read, the rest restored and saved as the full render's
chunks), encoded with the clip's timing and the audio of that span.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from dataclasses import replace
from pathlib import Path

from sparkvsr import media
from sparkvsr.engines.base import CancelFn, Engine, raise_if_cancelled
from sparkvsr.errors import EngineError, ProjectError
from sparkvsr.project import Project, frame_gaps
from sparkvsr.render.assembly import assemble, assemble_batch
from sparkvsr.render.progress import (
    ProgressCallback,
    RenderClock,
    RenderProgress,
    RenderResult,
    emit_progress,
    forward_engine_progress,
)
from sparkvsr.render.settings import (
    RENDER_CHUNK_BYTES,
    bounded_options,
    render_fingerprint,
)
from sparkvsr.render.steps import (
    RenderSnapshot,
    check_before_restoring,
    check_chunk,
    check_clip_present,
    output_path,
    take_snapshot,
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
    snapshot: RenderSnapshot | None = None,
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
    clock = RenderClock()
    start, stop = (int(v) for v in frames)
    count = stop - start

    def emit(update: RenderProgress) -> RenderProgress:
        update = clock.stamp(replace(update, first=start))
        emit_progress(progress, update)
        return update

    taken = snapshot or take_snapshot(project)
    state, references = taken.state, taken.references
    if output is None:
        output = range_name(state.output.path, start, stop)
    out_path = output_path(project, output)
    check_clip_present(project)
    total = state.clip.num_frames
    if not 0 <= start < stop <= total:
        raise ProjectError(
            f"range {start}-{stop - 1} is not inside the clip (frames 0 to {total - 1}); set the "
            "in point before the out point, both inside the clip"
        )
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
    settings = state.output
    reading = {"deinterlace": settings.deinterlace, "tonemap": settings.tonemap}
    with media.open_clip(state.clip.path, **reading) as clip:
        # the checks come before the range record is reset: a refused range loses no earlier one
        check_before_restoring(project, clip, references, options, settings, out_path, count)
        project.begin_range(fingerprint, start, stop)
        pieces = project.frame_pieces(fingerprint, start, stop)
        gaps = frame_gaps(pieces, start, stop)
        reused = len(pieces)
        rendered = 0
        done = count - sum(b - a for a, b in gaps)

        # 3. restore the frames not finished yet, gap by gap, saving every chunk
        emit(RenderProgress("render", done, count, message=f"range {start}-{stop - 1}"))
        bounded = bounded_options(engine, clip, options, chunk_bytes)
        for gap_start, gap_stop in gaps:
            counts = [rendered]
            forward = forward_engine_progress(emit, done, count, 0, counts)
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
                    check_chunk(chunk.start, chunk.frames, expected)
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
        batch = assemble_batch(clip, project)
        frames_iter = project.iter_pieces(pieces, batch)
        notes = assemble(
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
