"""Writing video: a streaming encoder that keeps the source's timing, sync, aspect, colour and
tracks (``VideoWriter.like``), one chunk of RGB frames at a time.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from sparkvsr.errors import MediaError
from sparkvsr.media.colour import SDR_BT709, OutputColour, output_colour
from sparkvsr.media.guards import check_encodable
from sparkvsr.media.images import write_image
from sparkvsr.media.probing import ClipInfo, ffmpeg_reason, open_container
from sparkvsr.media.timing import FINE_TIME_BASE, OutputTiming, constant_timing, plan_timing
from sparkvsr.media.tracks import TracksPlan, audio_info, container_key, plan_tracks

log = logging.getLogger(__name__)

MP4_LIKE = {".mp4", ".mov", ".m4v"}
VIDEO_SUFFIXES = (*sorted(MP4_LIKE), ".mkv")
# Video codecs for the encoded outputs: the name users pick -> (FFmpeg encoder, its options).
CODECS = {
    "h264": ("libx264", "x264-params"),
    "h265": ("libx265", "x265-params"),
    "prores": ("prores_ks", ""),
}
CODEC_NAMES = {"h264": "H.264", "h265": "H.265", "prores": "ProRes 422 HQ"}
# ProRes is 10-bit 4:2:2 whatever the source; its quality is the profile's, not a CRF.
PRORES_PIX_FMT = "yuv422p10le"
PRORES_OPTIONS = {"profile": "3", "vendor": "apl0"}  # 3 = 422 HQ
PRORES_SUFFIXES = (".mov", ".mkv")


class VideoWriter:
    """Streaming encoder: ``write`` chunks of ``[N, H, W, 3]`` uint8 RGB frames as they come.

    Formats, chosen from the path, ``codec`` and ``lossless``:
    - ``.mp4``/``.mov``/``.mkv``: H.264 (or H.265 with ``codec="h265"``) at ``crf`` (+faststart
      for MP4), 4:2:0, 8- or 10-bit (``colour``), always tagged. Odd sizes are padded by one edge
      pixel to even (``notes`` says so).
    - ``lossless=True`` with ``.mkv``: FFV1, bit-exact RGB.
    - a path without a suffix (or an existing folder): a PNG sequence ``000000.png``, ...

    ``audio_from``: a media file whose audio (and, where the container holds them, subtitle)
    streams are copied without re-encoding, or re-encoded to AAC with their channel layout where
    the container cannot hold the codec (``tracks`` decides; ``notes`` says). ``timing``: the
    output's timestamps and the shift every copied stream gets (see ``timing.plan_timing``);
    by default frames are spaced at ``frame_rate``. ``display_aspect``: the display aspect to
    keep (the sample aspect ratio is set so that frames of any size show at it), or with
    ``square_pixels`` frames are resampled to square pixels of that aspect. ``audio_window``:
    (from, to) in output seconds: only copied audio and subtitle packets starting inside it are
    kept (a range of the source; ``like(span=...)`` sets it).

    Encoding runs on a background thread, one ``write`` behind the caller, so a producer (an
    engine) computes its next chunk while this one is encoded. Memory: at most one chunk in
    flight besides the caller's.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        frame_rate: Fraction | float,
        *,
        crf: int = 18,
        preset: str = "fast",
        x264_params: str = "",
        lossless: bool = False,
        audio_from: str | os.PathLike | None = None,
        frame_times: Sequence[float] | None = None,
        timing: OutputTiming | None = None,
        colour: OutputColour = SDR_BT709,
        codec: str = "h264",
        display_aspect: Fraction | None = None,
        square_pixels: bool = False,
        tracks: TracksPlan | None = None,
        notes: Sequence[str] = (),
        audio_window: tuple[float, float] | None = None,
    ):
        self.path = Path(path)
        self.frame_rate = Fraction(frame_rate).limit_denominator(100000)
        if self.frame_rate <= 0:
            raise MediaError(f"frame rate {frame_rate} must be positive")
        if codec not in CODECS:
            raise MediaError(f"codec {codec!r} is unknown; choose one of {', '.join(CODECS)}")
        self.crf, self.preset, self.lossless, self.codec = crf, preset, lossless, codec
        self.x264_params = x264_params  # extra encoder settings, "key=value:key=value"
        self.audio_from = Path(audio_from) if audio_from else None
        if timing is None and frame_times is not None:
            pts = tuple(round(t / FINE_TIME_BASE) for t in frame_times)
            timing = OutputTiming(FINE_TIME_BASE, pts[0] if pts else 0, pts)
        self.timing = timing or constant_timing(self.frame_rate)
        self.colour = replace(colour, pix_fmt=PRORES_PIX_FMT) if codec == "prores" else colour
        self.display_aspect = display_aspect
        self.square_pixels = square_pixels
        self.mode = self._choose_mode()
        self.tracks = tracks
        self.audio_window = audio_window
        self.frames_written = 0
        self.notes: list[str] = list(notes)
        self._size: tuple[int, int] | None = None  # (width, height) of incoming frames
        self._frame_size: tuple[int, int] | None = None  # (width, height) encoded
        self._container: av.container.OutputContainer | None = None
        self._video: av.VideoStream | None = None
        self._audio_in: av.container.InputContainer | None = None
        self._audio_packets: Iterator[av.Packet] | None = None
        self._audio_map: dict[int, av.stream.Stream] = {}
        self._audio_transcode: dict[int, _Transcode] = {}
        self._pending_audio: av.Packet | None = None
        self._encoder: ThreadPoolExecutor | None = None
        self._in_flight: Future | None = None  # the chunk being encoded
        self._stopping = False  # set by abort: the encoder stops between frames
        self._encoded = 0  # frames the encoder thread has finished (frames_written: handed over)

    @classmethod
    def like(
        cls,
        path: str | os.PathLike,
        info: ClipInfo,
        *,
        codec: str = "h264",
        square_pixels: bool = False,
        lossless: bool = False,
        tonemapped: bool = False,
        notes: Sequence[str] = (),
        span: tuple[int, int] | None = None,
        **options,
    ) -> VideoWriter:
        """A writer that keeps ``info``'s timing (VFR exactly, CFR at its exact rate), the offset
        of every copied stream, display aspect, colour (matrix, range, transfer, primaries, bit
        depth, HDR) and tracks (audio layouts, languages, subtitles where the container holds
        them). ``tonemapped``: the frames are HDR already mapped to SDR (``Clip(tonemap=True)``),
        so the output is SDR BT.709. ``span``: the frames written are the clip's frames
        ``start <= i < stop`` (a range): their timing, starting at 0, and the audio and subtitles
        of that span, in sync with them."""
        path = Path(path)
        if path.is_dir() or not path.suffix:  # PNG frames: pictures only
            dropped = [f"{s.kind} #{s.index}" for s in info.streams if s.kind != "data"]
            frames_notes = [f"PNG frames carry no {', '.join(dropped)}"] if dropped else []
            return cls(path, info.frame_rate, notes=[*notes, *frames_notes], **options)
        container = container_key(path.suffix, lossless)
        tracks = plan_tracks(info.audio, info.streams, container)
        copied = {t.index for t in tracks.tracks if t.action != "drop"}
        starts = [s.start for s in info.streams if s.index in copied and s.start is not None]
        window = None
        if span is None:
            timing = plan_timing(
                info.frame_times, info.time_base, info.frame_rate, info.vfr, starts
            )
        else:
            timing, window = span_timing(info, *span)
        colour, colour_notes = output_colour(info.colour, CODEC_NAMES[codec])
        if codec == "prores":
            colour = replace(colour, pix_fmt=PRORES_PIX_FMT)
        if tonemapped:
            colour, colour_notes = SDR_BT709, []
        if lossless:  # FFV1 here is 8-bit RGB: no matrix, but the transfer and primaries tagged
            colour_notes = (
                [
                    f"HDR source ({info.colour.hdr.upper()}): the lossless RGB output keeps the HDR "
                    "signal in 8 bits per channel, tagged with its transfer and primaries"
                ]
                if colour.hdr
                else []
            )
        aspect = info.dar if info.sar != 1 else None
        source = info.path if copied else None
        return cls(
            path,
            info.frame_rate,
            audio_from=source,
            timing=timing,
            colour=colour,
            codec=codec,
            display_aspect=aspect,
            square_pixels=square_pixels,
            lossless=lossless,
            tracks=tracks,
            notes=[*notes, *colour_notes, *tracks.notes],
            audio_window=window,
            **options,
        )

    def _choose_mode(self) -> str:
        suffix = self.path.suffix.lower()
        if self.path.is_dir() or not suffix:
            return "png"
        if self.lossless:
            if suffix != ".mkv":
                raise MediaError(
                    f"lossless output {self.path} needs a .mkv name (FFV1) or a folder (PNG frames)"
                )
            return "ffv1"
        if suffix not in VIDEO_SUFFIXES:
            raise MediaError(f"output {self.path}: use .mp4, .mov or .mkv (or a folder for PNGs)")
        if self.codec == "prores" and suffix not in PRORES_SUFFIXES:
            raise MediaError(
                f"ProRes output {self.path}: name it .mov (or .mkv); MP4 cannot hold it"
            )
        return self.codec

    # Writing ------------------------------------------------------------------------------
    def write(self, frames: np.ndarray) -> None:
        """Append ``[N, H, W, 3]`` (or one ``[H, W, 3]``) uint8 RGB frames.

        Returns once the previous chunk is encoded and this one is handed to the encoder thread:
        ``frames`` is read until the next ``write`` or ``close`` returns, so leave it unchanged
        until then. An encoding error is raised by that next call.
        """
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise MediaError(
                f"{self.path}: frames must be uint8 [N, H, W, 3]; got {frames.dtype} {frames.shape}"
            )
        size = (frames.shape[2], frames.shape[1])
        if self._size is None:
            self._start(size)
        elif size != self._size:
            raise MediaError(
                f"{self.path}: frame size changed from {self._size[0]}x{self._size[1]} to "
                f"{size[0]}x{size[1]}; every frame of a video must have the same size"
            )
        self._wait_for_encoder()
        if self._encoder is None:
            self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="video-writer")
        self._in_flight = self._encoder.submit(self._encode, frames)
        self.frames_written += len(frames)

    def _encode(self, frames: np.ndarray) -> None:
        """The encoder thread's work for one chunk; the only code that touches the container
        while a chunk is in flight."""
        try:
            for frame in frames:
                if self._stopping:
                    return
                self._write_one(frame)
        except (OSError, av.error.FFmpegError) as e:
            raise MediaError(f"cannot write {self.path}: {ffmpeg_reason(e)}") from e

    def _wait_for_encoder(self) -> None:
        """Wait until the chunk in flight is encoded; raise its error, if it had one."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()

    def _stop_encoder(self) -> None:
        if self._encoder is not None:
            self._encoder.shutdown(wait=True)
            self._encoder = None

    def _start(self, size: tuple[int, int]) -> None:
        self._size = size
        if self.mode == "png":
            self.path.mkdir(parents=True, exist_ok=True)
            return
        if self.mode in CODECS:
            check_encodable(self._encoded_size(size), self.mode, size)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            options = {"movflags": "+faststart"} if self.path.suffix.lower() in MP4_LIKE else {}
            self._container = av.open(str(self.path), "w", options=options)
            self._video = self._add_video_stream(size)
            self._add_audio_streams()
        except (OSError, av.error.FFmpegError) as e:
            raise MediaError(f"cannot create {self.path}: {ffmpeg_reason(e)}") from e

    def _encoded_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """Frame size after square-pixel resampling and padding to even."""
        width, height = size
        if self.square_pixels and self.display_aspect is not None:
            width = max(2, round(height * self.display_aspect))
        if self.mode in CODECS:
            width, height = width + width % 2, height + height % 2
        return width, height

    def _add_video_stream(self, size: tuple[int, int]) -> av.VideoStream:
        assert self._container is not None
        width, height = self._encoded_size(size)
        rate = self.frame_rate
        if self.mode == "ffv1":
            stream = self._container.add_stream("ffv1", rate=rate)
            stream.pix_fmt = "bgr0"
            context = stream.codec_context
            context.colorspace, context.color_range = 0, 2  # RGB, full range
            context.color_primaries, context.color_trc = self.colour.primaries, self.colour.transfer
        else:
            encoder, params_key = CODECS[self.mode]
            params = self.x264_params
            if self.mode == "h265":
                params = ":".join(p for p in ("log-level=error", params) if p)
            options = {"crf": str(self.crf), "preset": self.preset}
            if params_key and params:
                options[params_key] = params
            if self.mode == "prores":
                options = dict(PRORES_OPTIONS)
            stream = self._container.add_stream(encoder, rate=rate, options=options)
            stream.pix_fmt = self.colour.pix_fmt
            self.colour.tag(stream.codec_context)
            if self.mode == "h265" and self.path.suffix.lower() in MP4_LIKE:
                with contextlib.suppress(AttributeError, ValueError):
                    stream.codec_tag = "hvc1"  # what Apple players need to open H.265 in MP4
            shown = (size[0] + size[0] % 2, size[1] + size[1] % 2)
            if self._encoded_size(size) == shown and shown != size:
                self.notes.append(
                    f"{size[0]}x{size[1]} is odd; 4:2:0 video needs even sizes, so the output is "
                    f"padded to {shown[0]}x{shown[1]} by repeating the edge"
                )
                log.warning(self.notes[-1])
        if self.display_aspect is not None and not self.square_pixels:
            sar = (self.display_aspect * height / width).limit_denominator(10000)
            stream.codec_context.sample_aspect_ratio = sar
            stream.sample_aspect_ratio = sar
        elif self.display_aspect is not None:
            self.notes.append(
                f"non-square pixels resampled to square: {size[0]}x{size[1]} -> {width}x{height}"
            )
        stream.width, stream.height = width, height
        # The stream and the encoder must count time in the same unit.
        stream.time_base = self.timing.time_base
        stream.codec_context.time_base = self.timing.time_base
        stream.thread_type = "AUTO"
        return stream

    def _add_audio_streams(self) -> None:
        if self.audio_from is None:
            return
        source = open_container(self.audio_from)
        assert self._container is not None
        # Without a plan from ``like``: the source's audio, by the same table.
        plan = self.tracks or plan_tracks(
            tuple(audio_info(s) for s in source.streams.audio),
            (),
            container_key(self.path.suffix, self.mode == "ffv1"),
        )
        inputs = []
        for stream in source.streams:
            action = plan.action(stream.index)
            if action == "drop" or stream.type not in ("audio", "subtitle"):
                continue
            if action == "copy":
                out = self._container.add_stream_from_template(stream)
            else:
                rate = aac_rate(stream.codec_context.sample_rate)
                out = self._container.add_stream("aac", rate=rate)
                out.layout = stream.codec_context.layout.name
                self._audio_transcode[stream.index] = _Transcode(out, stream, self.timing.shift)
                if rate != stream.codec_context.sample_rate:
                    self.notes.append(
                        f"audio #{stream.index}: {stream.codec_context.sample_rate} Hz is beyond "
                        f"AAC; resampled to {rate} Hz"
                    )
            _copy_tags(stream, out)
            self._audio_map[stream.index] = out
            inputs.append(stream)
        for note in plan.notes:
            if note not in self.notes:
                self.notes.append(note)
        if not inputs:
            source.close()
            return
        if self.audio_window is not None:
            # a range: start reading a second before it (the demuxer lands on a packet at or
            # before the time asked; packets before the window are dropped as they come)
            source_start = float(self.audio_window[0] - self.timing.shift)
            with contextlib.suppress(av.error.FFmpegError, OSError, ValueError):
                source.seek(max(0, int((source_start - 1.0) * av.time_base)), backward=True)
        self._audio_in = source
        self._audio_packets = source.demux(*inputs)

    def _write_one(self, frame: np.ndarray) -> None:
        index = self._encoded
        if self.mode == "png":
            write_image(self.path / f"{index:06d}.png", frame)
            self._encoded += 1
            return
        assert self._video is not None and self._container is not None
        width, height = self._video.width, self._video.height
        if self.square_pixels and self.display_aspect is not None:
            square = max(2, round(frame.shape[0] * self.display_aspect))
            frame = cv2.resize(frame, (square, frame.shape[0]), interpolation=cv2.INTER_CUBIC)
        if frame.shape[0] != height or frame.shape[1] != width:
            pad = ((0, height - frame.shape[0]), (0, width - frame.shape[1]), (0, 0))
            frame = np.pad(frame, pad, mode="edge")
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        if self.mode in CODECS:
            video_frame = self.colour.rgb_to_yuv(video_frame)
        video_frame.pts = self.timing.pts(index)
        video_frame.time_base = self.timing.time_base
        for packet in self._video.encode(video_frame):
            self._container.mux(packet)
        self._encoded += 1
        self._mux_audio_until(self._frame_time(index + 1))

    def _frame_time(self, index: int) -> float:
        return self.timing.seconds(index)

    def _mux_audio_until(self, seconds: float | None) -> None:
        """Interleave source audio up to output time ``seconds`` (None: all that is left)."""
        if self._audio_packets is None:
            return
        assert self._container is not None
        shift = float(self.timing.shift)
        while True:
            packet = self._pending_audio or next(self._audio_packets, None)
            self._pending_audio = None
            if packet is None:
                self._audio_packets = None
                return
            if packet.dts is None and packet.size == 0:
                continue
            ahead = packet.pts is not None and seconds is not None
            if ahead and float(packet.pts * packet.time_base) + shift > seconds + 0.5:
                self._pending_audio = packet
                return
            if self.audio_window is not None and packet.pts is not None:
                at = float(packet.pts * packet.time_base) + shift
                if at >= self.audio_window[1] + 1.0:
                    self._audio_packets = None  # interleaved streams: all are past the range
                    return
                if at >= self.audio_window[1]:
                    continue  # after the range (another stream may still be inside it)
                if at < self.audio_window[0] - 1e-6:
                    continue  # before the range
            self._mux_audio_packet(packet)

    def _mux_audio_packet(self, packet: av.Packet) -> None:
        assert self._container is not None
        index = packet.stream.index
        if index in self._audio_transcode:
            for encoded in self._audio_transcode[index].packets(packet):
                self._container.mux(encoded)
            return
        ticks = round(self.timing.shift / Fraction(packet.time_base))
        if packet.pts is not None:
            packet.pts += ticks
        if packet.dts is not None:
            packet.dts += ticks
        packet.stream = self._audio_map[index]
        self._container.mux(packet)

    # Closing ------------------------------------------------------------------------------
    def close(self) -> None:
        """Finish encoding, flush the encoder, copy the remaining audio, and finish the file."""
        try:
            self._wait_for_encoder()
        except BaseException:
            self.abort()
            raise
        self._stop_encoder()
        if self._container is None:
            if self.mode != "png" and self._size is None and self.frames_written == 0:
                raise MediaError(f"{self.path}: no frames were written, so no video was made")
            return
        try:
            assert self._video is not None
            for packet in self._video.encode(None):
                self._container.mux(packet)
            self._mux_audio_until(None)
            for transcode in self._audio_transcode.values():
                for packet in transcode.flush():
                    self._container.mux(packet)
            self._container.close()
        except (OSError, av.error.FFmpegError) as e:
            raise MediaError(f"cannot finish {self.path}: {ffmpeg_reason(e)}") from e
        finally:
            self._container = None
            if self._audio_in is not None:
                self._audio_in.close()
                self._audio_in = None

    def abort(self) -> None:
        """Stop without finishing (after an error): stop the encoder after its current frame,
        close handles, leave the partial file."""
        self._stopping = True
        with contextlib.suppress(Exception):  # the error that led here is the one to report
            self._wait_for_encoder()
        self._stop_encoder()
        for handle in (self._container, self._audio_in):
            if handle is not None:
                with contextlib.suppress(OSError, av.error.FFmpegError):
                    handle.close()
        self._container = self._audio_in = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _Transcode:
    """Audio re-encoded to AAC: same rate and channel layout, timestamps shifted like the video's
    and counted in samples from the first decoded frame (so the offset is kept)."""

    def __init__(self, out: av.AudioStream, source: av.AudioStream, shift: Fraction):
        self.out = out
        self.shift = shift
        self.rate = out.codec_context.sample_rate
        self.resampler = av.AudioResampler(
            format="fltp", layout=source.codec_context.layout.name, rate=self.rate
        )
        self.next_pts: int | None = None

    def packets(self, packet: av.Packet) -> Iterator[av.Packet]:
        for frame in packet.decode():
            if self.next_pts is None and frame.pts is not None:
                start = Fraction(frame.pts) * Fraction(frame.time_base) + self.shift
                self.next_pts = round(start * self.rate)
            yield from self._encode(self.resampler.resample(frame))

    def flush(self) -> Iterator[av.Packet]:
        yield from self._encode(self.resampler.resample(None))
        yield from self.out.encode(None)

    def _encode(self, frames) -> Iterator[av.Packet]:
        for frame in frames:
            frame.pts = self.next_pts or 0
            frame.time_base = Fraction(1, self.rate)
            self.next_pts = frame.pts + frame.samples
            yield from self.out.encode(frame)


def span_timing(info: ClipInfo, start: int, stop: int) -> tuple[OutputTiming, tuple[float, float]]:
    """The timing of frames ``start <= i < stop`` of ``info`` written as a clip of their own
    (their first frame at 0; variable rate kept exactly) and the window of output seconds the
    audio and subtitles of that span fall in. Every stream moves by the same shift, so sync
    is the source's."""
    if not 0 <= start < stop <= info.num_frames:
        raise MediaError(
            f"frames {start} to {stop - 1} are not inside the clip ({info.num_frames} frames)"
        )
    times = info.frame_times
    if len(times) != info.num_frames:  # a folder of images: frames at the rate
        timing = constant_timing(info.frame_rate)
        timing = replace(timing, shift=-Fraction(start) / Fraction(info.frame_rate))
    else:
        timing = plan_timing(times[start:stop], info.time_base, info.frame_rate, info.vfr, [])
    end = timing.seconds(stop - start)  # where the frame after the span would start
    return timing, (0.0, end)


def aac_rate(rate: int) -> int:
    """``rate`` if AAC can carry it, else the nearest rate it can (AAC stops at 96 kHz)."""
    rates = av.Codec("aac", "w").audio_rates or (rate,)
    return rate if rate in rates else min(rates, key=lambda r: (abs(r - rate), -r))


def _copy_tags(source: av.stream.Stream, out: av.stream.Stream) -> None:
    """Language, title and disposition (default, forced, ...) travel with the stream."""
    for key in ("language", "title"):
        value = source.metadata.get(key)
        if value:
            out.metadata[key] = value
    with contextlib.suppress(AttributeError, TypeError, ValueError):
        out.disposition = source.disposition


def even_size(width: int, height: int) -> tuple[int, int]:
    """The size an H.264 yuv420p output of ``width`` x ``height`` frames will have."""
    return width + width % 2, height + height % 2
