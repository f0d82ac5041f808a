"""The final encode: the saved chunks read one ahead and encoded block by block (cancellable)
into a temp file that replaces the output only when complete.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from pathlib import Path

import numpy as np

from sparkvsr import media
from sparkvsr.engines.base import CancelFn, raise_if_cancelled
from sparkvsr.errors import Cancelled, MediaError, ProjectError
from sparkvsr.project import OutputSettings, Project
from sparkvsr.render.settings import output_size, writer_options

ASSEMBLE_BYTES = 256 << 20
"""Decoded output frames the final encode holds per write (the writer keeps one write in
flight): the encode's memory follows this, not the chunk length."""
# Frames handed to the encoder at once while assembling: the encode stage's progress moves and
# cancel is checked every block (the encoder runs one block behind, so a cancel stops the encode
# within about two blocks of frames).
ASSEMBLE_BLOCK = 4


def assemble(
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
    if settings.codec == "png":
        return _assemble_png_sequence(clip, out_path, partial, frames, encoded, cancel)
    with _replacing(partial, f"the final clip {out_path}"):
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
    return tuple(writer.notes)


def _assemble_png_sequence(
    clip: media.Clip,
    out_path: Path,
    partial: Path,
    frames: Iterator[tuple[int, np.ndarray]],
    encoded: Callable[[int], object] | None,
    cancel: CancelFn | None,
) -> tuple[str, ...]:
    """The frames as PNGs in one zip (``frame_<clip index>.png``), via the temp file like a clip."""
    with _replacing(partial, f"the PNG sequence {out_path}"):
        with media.PngSequenceZip(partial) as sequence, _prefetched(frames, cancel) as batches:
            for start, batch in batches:
                for i in range(0, len(batch), ASSEMBLE_BLOCK):
                    raise_if_cancelled(cancel)
                    sequence.write(start + i, batch[i : i + ASSEMBLE_BLOCK])
                    if encoded is not None:
                        encoded(sequence.frames_written)
        raise_if_cancelled(cancel)
        os.replace(partial, out_path)
    notes = list(clip.notes)
    if clip.info.audio:
        notes.append("a PNG sequence holds no sound: the clip's audio is not in the zip")
    if clip.info.vfr:
        notes.append(
            "a PNG sequence has no frame times: the variable frame rate is not kept (play the "
            f"frames at {clip.info.fps:g} fps)"
        )
    return tuple(notes)


@contextlib.contextmanager
def _replacing(partial: Path, what: str) -> Iterator[None]:
    """Around an encode into ``partial``: on cancel or failure the temp file goes (the chunks
    stay), and a failure says what could not be written and how to finish it."""
    try:
        yield
    except Cancelled:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    except (MediaError, OSError) as e:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise ProjectError(
            f"cannot write {what}: {e}. The rendered chunks are kept; free space and render "
            "again to assemble without re-rendering."
        ) from e


def assemble_batch(clip: media.Clip, project: Project) -> int:
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
