"""Restoring a clip without a project: the engine's chunks stream straight into the writer
(no resume).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from sparkvsr import media
from sparkvsr.engines.base import CancelFn, Engine, RestoreOptions, check_references
from sparkvsr.errors import EngineError
from sparkvsr.render.progress import (
    ProgressCallback,
    RenderClock,
    RenderProgress,
    RenderResult,
    emit_progress,
    forward_engine_progress,
)
from sparkvsr.render.settings import DETERMINISTIC_X264, output_size
from sparkvsr.render.steps import check_chunk


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
        clock = RenderClock()

        def emit(update: RenderProgress) -> None:
            emit_progress(progress, clock.stamp(update))

        counts = [0]
        engine_progress = forward_engine_progress(emit, options.start, total, 0, counts)
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
                    check_chunk(chunk.start, chunk.frames, expected)
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
