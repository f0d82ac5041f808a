"""A project's finished output chunks (a mixin of ``Project``): the render's, saved in order
and resumed, and a range render's, which the full render of the same settings adopts; which
frames of some settings are finished (``cover``, ``frame_gaps``), and the audit log.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import PurePosixPath

import numpy as np

from sparkvsr.errors import ProjectError
from sparkvsr.project.files import (
    checked_frames,
    decode_chunk,
    decode_frames,
    file_sha256,
    unlink_quietly,
    write_chunk,
)
from sparkvsr.project.state import (
    CHUNK_LOG,
    CHUNKS_DIR,
    ChunkEntry,
    ProjectState,
    RangeRender,
    RenderState,
)


class RenderChunks:
    """The render records' chunks of a ``Project`` (a mixin: the state, the lock and
    ``_commit`` are the Project's)."""

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
            frames = checked_frames(frames)
            stop = start + len(frames)
            relative = f"{CHUNKS_DIR}/{start:06d}-{stop:06d}.npz"
            (self.folder / CHUNKS_DIR).mkdir(exist_ok=True)
            digest = write_chunk(self.folder / relative, start, frames, f"chunk {start}-{stop}")
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
        return decode_chunk(data, self.folder / entry.file)

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
            if file_sha256(path) != entry.sha256:
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
                        yield first + i, decode_frames(blobs, path)
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
            frames = checked_frames(frames)
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
            digest = write_chunk(self.folder / relative, start, frames, f"chunk {start}-{stop}")
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

    def _intact(self, entry: ChunkEntry) -> bool:
        try:
            return file_sha256(self.folder / entry.file) == entry.sha256
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
                unlink_quietly(path)

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
