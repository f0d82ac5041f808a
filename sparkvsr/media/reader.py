"""Reading frames: a probed clip whose frames are read on demand by display index.

Frames are RGB ``uint8`` arrays shaped ``[N, H, W, 3]``, always as displayed: rotation applied,
YUV converted with the source's own matrix and range, and interlaced sources deinterlaced
(FFmpeg's bwdif through PyAV's filter graph, one frame per frame) unless fields are kept.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from sparkvsr.errors import MediaError
from sparkvsr.frames import check_range
from sparkvsr.media.colour import frame_to_rgb, hdr_to_rgb
from sparkvsr.media.images import read_image
from sparkvsr.media.probing import ClipInfo, ffmpeg_reason, image_files, open_container, probe

DEINTERLACER = "bwdif"
DEINTERLACE_MODES = {
    False: "mode=send_frame:parity=auto:deint=all",  # one frame per frame
    True: "mode=send_field:parity=auto:deint=all",  # one frame per field: twice the rate
}


class Clip:
    """A probed clip whose frames are read on demand by display index (a FrameSource).

    Sequential reads continue the open decoder; a jump seeks to the nearest keyframe at or
    before the window. ``frames_decoded`` counts decoded frames, so tests can check the cost.
    """

    def __init__(
        self,
        info: ClipInfo,
        *,
        deinterlace: bool = True,
        field_rate: bool = False,
        tonemap: bool = False,
    ):
        self.deinterlace = deinterlace and info.interlaced
        # Field rate needs a next frame to time the last one's second field.
        self.field_rate = field_rate and self.deinterlace and info.num_frames > 1
        self.info = field_rate_info(info) if self.field_rate else info
        self._file_pts = info.frame_pts
        self.tonemap = tonemap and bool(info.colour.hdr)
        self.frames_decoded = 0
        self._container: av.container.InputContainer | None = None
        self._decoder: Iterator[av.VideoFrame] | None = None
        self._next_index = -1  # display index the decoder yields next; -1 = needs a seek
        self._seeked_at = 0  # seek point the open decoder started from
        self._bad_seeks: set[int] = set()  # seek points that decoded corrupt frames
        self._index_of_pts = {p: i for i, p in enumerate(self.info.frame_pts)}
        self._files = image_files(Path(info.path)) if info.codec == "images" else None

    # FrameSource -------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return self.info.num_frames

    @property
    def size(self) -> tuple[int, int]:
        return self.info.width, self.info.height

    @property
    def identity(self) -> str:
        stat = Path(self.info.path).stat()
        fields = ":fields" if self.info.interlaced and not self.deinterlace else ""
        fields = ":field-rate" if self.field_rate else fields
        sdr = ":sdr" if self.tonemap else ""
        return f"{Path(self.info.path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}{fields}{sdr}"

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start <= i < stop`` as ``[N, H, W, 3]`` uint8 RGB, as displayed."""
        check_range(start, stop, self.num_frames)
        if self._files is not None:
            self.frames_decoded += stop - start
            return np.stack([self._read_file(i) for i in range(start, stop)])
        out = np.empty((stop - start, self.info.height, self.info.width, 3), np.uint8)
        for index, frame in self._decode_from(start):
            if index >= start:
                out[index - start] = self._to_rgb(frame)
            if index == stop - 1:
                return out
        raise MediaError(
            f"{self.info.path} ended before frame {stop - 1}; the file changed since it was probed "
            "or is damaged. Reopen it."
        )

    @property
    def notes(self) -> tuple[str, ...]:
        """What reading does to the source that a user should know (deinterlacing, alpha)."""
        notes = []
        if self.deinterlace:
            notes.append(
                f"interlaced source (field order {self.info.field_order}): deinterlaced with "
                + (
                    f"bwdif to the field rate ({self.info.fps:g} fps, one frame per field)"
                    if self.field_rate
                    else "bwdif, frame rate kept (--field-rate: one frame per field)"
                )
                + "; pass --keep-fields to keep the fields"
            )
        elif self.info.interlaced:
            notes.append("interlaced source: fields kept as they are (no deinterlacing)")
        if self.tonemap:
            notes.append(
                f"HDR source ({self.info.colour.hdr.upper()}, BT.2020) tone-mapped to SDR BT.709 "
                "(reference white 203 nits = 100%, highlights rolled off); the output is 8-bit SDR"
            )
        if self.info.alpha:
            notes.append(
                f"the source's alpha channel ({self.info.pix_fmt}) is dropped: restored frames "
                "are opaque RGB"
            )
        return tuple(notes)

    # Conveniences ------------------------------------------------------------------------
    def frame(self, index: int) -> np.ndarray:
        """One frame ``[H, W, 3]`` uint8 RGB."""
        return self.read(index, index + 1)[0]

    def iter_chunks(self, size: int, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first index, frames)`` windows of ``size`` frames from ``start`` to the end."""
        for first in range(start, self.num_frames, size):
            yield first, self.read(first, min(first + size, self.num_frames))

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container, self._decoder, self._next_index = None, None, -1

    def __enter__(self) -> Clip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Internals ---------------------------------------------------------------------------
    def _read_file(self, index: int) -> np.ndarray:
        assert self._files is not None
        image = read_image(self._files[index])
        if image.shape[:2] != (self.info.height, self.info.width):
            raise MediaError(
                f"{self._files[index]} is {image.shape[1]}x{image.shape[0]} but the sequence is "
                f"{self.info.width}x{self.info.height}; all frames of a folder must match"
            )
        return image

    def _decode_from(self, start: int) -> Iterator[tuple[int, av.VideoFrame]]:
        """Yield ``(display index, frame)`` from at or before ``start`` onward."""
        # Container key flags can lie (a "sync sample" that needs earlier frames decodes as
        # garbage): such a seek point is dropped and the next earlier one is tried.
        # The deinterlacer reads the frame before as well: start decoding at or before that one,
        # so a window read after a seek equals the same frames read straight through.
        per_frame = 2 if self.field_rate else 1  # output frames per decoded frame
        before = (start // per_frame - 1) * per_frame if self.deinterlace else start
        before = max(before, 0)
        while True:
            points = [i for i in self.info.seek_frames if i <= before and i not in self._bad_seeks]
            seek_to = max(points, default=0)
            # Keep decoding forward when that is cheaper than a seek (sequential, short jumps).
            if not (self._decoder is not None and seek_to <= self._next_index <= start):
                self._seek(seek_to)
            result = yield from self._decode_checked(start)
            if result is None:
                return
            self._bad_seeks.add(result)
            self.close()

    def _decode_checked(self, start: int) -> Iterator[tuple[int, av.VideoFrame]]:
        """Decode forward; return None at the end, or the seek point to drop when it failed."""
        assert self._decoder is not None
        seeked_at = self._seeked_at
        try:
            for frame in self._decoder:
                self.frames_decoded += 1
                stamp = frame.pts if frame.pts is not None else frame.dts
                index = self._index_of_pts.get(stamp, -1) if stamp is not None else -1
                if index < 0:
                    continue
                if seeked_at > 0 and index >= start and frame.is_corrupt:
                    return seeked_at
                self._next_index = index + 1
                yield index, frame
        except av.error.FFmpegError as e:
            self.close()
            raise MediaError(
                f"{self.info.path} could not be decoded near frame {start}: {ffmpeg_reason(e)}"
            ) from e
        self._next_index = -1
        return None

    def _seek(self, seek_frame: int, exact: bool = False) -> None:
        # To the start, a fresh open is cheaper and safer than seeking before the first packet.
        if self._container is not None and (seek_frame == 0 or exact):
            self._container.close()
            self._container = None
        fresh = self._container is None
        if fresh:
            self._container = open_container(Path(self.info.path))
            self._container.streams.video[0].thread_type = "AUTO"
        assert self._container is not None
        stream = self._container.streams.video[0]
        if seek_frame and not exact:
            # On the file's own clock (at field rate, output frame 2i is the file's frame i).
            target = (
                self._file_pts[seek_frame // 2]
                if self.field_rate
                else self.info.frame_pts[seek_frame]
            )
            self._container.seek(target, stream=stream, backward=True, any_frame=False)
        frames = self._container.decode(stream)
        if self.deinterlace:
            frames = _deinterlaced(frames, stream, self.field_rate, self.info.time_base)
        self._decoder = frames
        self._next_index = -1
        self._seeked_at = seek_frame

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        if self.tonemap:
            rgb = hdr_to_rgb(frame, self.info.colour)
        else:
            rgb = frame_to_rgb(frame, self.info.colour).to_ndarray()
        turns = self.info.rotation // 90
        return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def open_clip(
    path: str | os.PathLike,
    *,
    deinterlace: bool = True,
    field_rate: bool = False,
    tonemap: bool = False,
) -> Clip:
    """Probe ``path`` (a video file or a folder of images) and return a Clip to read from.
    ``deinterlace``: interlaced sources are deinterlaced (bwdif) unless False (fields kept);
    with ``field_rate`` into one frame per field (twice the frames, twice the rate).
    ``tonemap``: HDR (PQ, HLG) sources are read tone-mapped to SDR BT.709 (default: as they are,
    so the output stays HDR)."""
    return Clip(probe(path), deinterlace=deinterlace, field_rate=field_rate, tonemap=tonemap)


def _deinterlaced(
    frames: Iterator[av.VideoFrame], stream: av.VideoStream, field_rate: bool, time_base: Fraction
) -> Iterator[av.VideoFrame]:
    """``frames`` through FFmpeg's bwdif: one output frame per frame (pts kept) or, with
    ``field_rate``, per field (pts on a clock of half the stream's time base, as
    ``field_rate_info`` lists them); ``time_base``: the clock the output pts are put on.

    bwdif looks one frame ahead, so each frame comes out after the next one went in; a fresh
    filter starts at every seek, where the first frame is interpolated from the next alone.
    """
    graph = av.filter.Graph()
    source = graph.add_buffer(template=stream)
    deinterlacer = graph.add(DEINTERLACER, DEINTERLACE_MODES[field_rate])
    sink = graph.add("buffersink")
    source.link_to(deinterlacer)
    deinterlacer.link_to(sink)
    graph.configure()
    for frame in frames:
        graph.push(frame)
        yield from _drain(graph, time_base)
    graph.push(None)
    yield from _drain(graph, time_base)


def field_rate_info(info: ClipInfo) -> ClipInfo:
    """``info`` as bwdif's field-rate output shows the clip: two frames per frame, on a clock
    of half the time base. Timestamps follow FFmpeg's rule exactly (first field ``2 p``, second
    ``p + next p``; the last frame's next is extrapolated as ``2 p - previous p``), since reads
    find frames by them."""
    raw = info.frame_pts
    pts: list[int] = []
    for i, p in enumerate(raw):
        following = raw[i + 1] if i + 1 < len(raw) else 2 * p - raw[i - 1]
        pts += [2 * p, p + following]
    rate = info.frame_rate * 2
    return replace(
        info,
        num_frames=2 * info.num_frames,
        fps=float(rate),
        frame_rate=rate,
        frame_pts=tuple(pts),
        time_base=info.time_base / 2,
        iframes=tuple(2 * i for i in info.iframes),
        seek_frames=tuple(2 * i for i in info.seek_frames),
        header_frames=2 * info.header_frames,
    )


def _drain(graph: av.filter.Graph, time_base: Fraction) -> Iterator[av.VideoFrame]:
    """Frames the graph has ready, back on the stream's clock (bwdif halves the time base)."""
    while True:
        try:
            frame = graph.pull()
        except (BlockingIOError, av.error.EOFError):
            return
        if frame.pts is not None and frame.time_base and frame.time_base != time_base:
            frame.pts = round(frame.pts * Fraction(frame.time_base) / time_base)
            frame.time_base = time_base
        yield frame
