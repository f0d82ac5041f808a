"""Video and image I/O: probe, streaming decode by index, streaming encode with the source audio.

The only module (with ``project``) that touches media files. Frames are RGB ``uint8`` arrays shaped
``[N, H, W, 3]`` (a single image is ``[H, W, 3]``), always as displayed: rotation metadata is applied.

Why probe decodes every frame once: headers lie. Frame counts in AVI headers can be doubled, MP4
edit lists hide frames, and codecs mark only IDR frames as ``key_frame`` while other I-frames
exist. The probe records each displayed frame's timestamp so that reads can seek straight to the
keyframe before a window and decode forward: a read costs O(window + GOP), never O(clip).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import re
import statistics
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sparkvsr.errors import MediaError
from sparkvsr.frames import check_range

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
FOLDER_FPS = Fraction(25)
# Audio codecs an MP4 can carry as they are; anything else is re-encoded to AAC (and said so).
MP4_AUDIO_COPY = {"aac", "mp3", "mp3float", "ac3", "eac3", "alac", "opus", "flac"}
MP4_LIKE = {".mp4", ".mov", ".m4v"}


@dataclass(frozen=True)
class AudioInfo:
    """One audio stream of a clip."""

    index: int
    codec: str
    sample_rate: int
    channels: int
    duration: float


@dataclass(frozen=True)
class ClipInfo:
    """What ``probe`` found. ``width``/``height`` are as displayed (after rotation).

    fps / frame_rate: the real rate measured from frame timestamps (``frame_rate`` exact, e.g.
    30000/1001); for variable frame rate (``vfr``) clips, the average.
    iframes: display indices of every I-frame (from decoded picture types, not just key flags).
    seek_frames: display indices the demuxer can seek to (packets flagged key).
    frame_pts: each displayed frame's timestamp in ``time_base`` units.
    """

    path: str
    num_frames: int
    fps: float
    frame_rate: Fraction
    vfr: bool
    width: int
    height: int
    rotation: int
    pix_fmt: str
    codec: str
    duration: float
    audio: tuple[AudioInfo, ...]
    iframes: tuple[int, ...]
    seek_frames: tuple[int, ...] = field(repr=False)
    frame_pts: tuple[int, ...] = field(repr=False)
    time_base: Fraction = field(repr=False, default=Fraction(1, 1))
    header_frames: int = 0

    def summary(self) -> dict:
        """A JSON-ready description (what ``probe --json`` prints and projects store)."""
        data = asdict(self)
        for key in ("seek_frames", "frame_pts", "time_base"):
            data.pop(key)
        data["frame_rate"] = f"{self.frame_rate.numerator}/{self.frame_rate.denominator}"
        data["fps"] = round(self.fps, 6)
        data["iframes"] = list(self.iframes)
        data["audio"] = [asdict(a) for a in self.audio]
        return data

    def timestamp(self, index: int) -> float:
        """Seconds from the first frame to frame ``index``."""
        return float((self.frame_pts[index] - self.frame_pts[0]) * self.time_base)


# ---------------------------------------------------------------------------------------------
# Probe


def probe(path: str | os.PathLike) -> ClipInfo:
    """Describe a video file (or a folder of images) by decoding it once.

    Raises MediaError for a missing path, an empty or non-video file, a file without a video
    stream, zero decodable frames, a truncated or corrupt file, or an unsupported codec.
    """
    path = Path(path)
    _check_exists(path)
    if path.is_dir():
        return _probe_folder(path)
    stat = path.stat()
    if stat.st_size == 0:
        raise MediaError(f"{path} is empty (0 bytes): the copy or download did not finish")
    # Probing decodes every frame, and opening a clip, a project and a render each need it:
    # the result is kept per file identity, so a changed file is probed afresh.
    info = _probe_file(path.resolve(), (stat.st_size, stat.st_mtime_ns, stat.st_ino))
    return info if info.path == str(path) else replace(info, path=str(path))


@functools.lru_cache(maxsize=64)
def _probe_file(path: Path, identity: tuple[int, int, int]) -> ClipInfo:
    """Probe an absolute ``path``; ``identity`` (size, mtime, inode) is only the cache key."""
    container = _open_container(path)
    try:
        stream = _video_stream(container, path)
        _check_not_truncated(stream, path)
        frames = _scan_frames(container, stream, path)
        audio = tuple(_audio_info(s) for s in container.streams.audio)
        header_frames = int(stream.frames or 0)
        codec = stream.codec_context.name
        pix_fmt = stream.codec_context.format.name if stream.codec_context.format else "unknown"
        time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1)
        guess = Fraction(stream.average_rate or stream.guessed_rate or 25)
    finally:
        container.close()
    pts = [f.pts for f in frames]
    frame_rate, vfr, duration = _measure_rate(pts, time_base, guess)
    rotation = frames[0].rotation
    width, height = frames[0].width, frames[0].height
    if rotation % 180:
        width, height = height, width
    return ClipInfo(
        path=str(path),
        num_frames=len(frames),
        fps=float(frame_rate),
        frame_rate=frame_rate,
        vfr=vfr,
        width=width,
        height=height,
        rotation=rotation,
        pix_fmt=pix_fmt,
        codec=codec,
        duration=duration,
        audio=audio,
        iframes=tuple(i for i, f in enumerate(frames) if f.intra),
        seek_frames=tuple(i for i, f in enumerate(frames) if f.key) or (0,),
        frame_pts=tuple(pts),
        time_base=time_base,
        header_frames=header_frames,
    )


@dataclass(frozen=True)
class _FrameMeta:
    pts: int
    key: bool
    intra: bool
    width: int
    height: int
    rotation: int


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise MediaError(f"{path} does not exist: check the path (relative to {Path.cwd()})")


def _open_container(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as e:
        raise MediaError(
            f"{path} is not a readable video: {_ffmpeg_reason(e)}. It may be truncated, corrupt, "
            "or not a video at all; re-export or re-download it (mp4, mkv, mov, avi, webm work)."
        ) from e


def _ffmpeg_reason(error: Exception) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return text.rstrip(".").lower()


def _video_stream(container: av.container.InputContainer, path: Path) -> av.VideoStream:
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
        raise MediaError(
            f"{path} has no video stream (it holds: {kinds}); open a video file instead"
        )
    stream = container.streams.video[0]
    if stream.codec_context is None or stream.codec_context.codec is None:
        raise MediaError(f"{path}: its video codec is not supported by this build of FFmpeg")
    stream.thread_type = "AUTO"
    return stream


def _check_not_truncated(stream: av.VideoStream, path: Path) -> None:
    """An MP4 index that points past the end of the file means the file was cut short."""
    entries = stream.index_entries
    if not entries:
        return
    last = max(entries, key=lambda e: e.pos)
    if last.pos + last.size > path.stat().st_size:
        raise MediaError(
            f"{path} is truncated: its index expects {last.pos + last.size} bytes but the file has "
            f"{path.stat().st_size}. Copy or download it again."
        )


def _scan_frames(
    container: av.container.InputContainer, stream: av.VideoStream, path: Path
) -> list[_FrameMeta]:
    frames: list[_FrameMeta] = []
    try:
        for frame in container.decode(stream):
            pts = frame.pts if frame.pts is not None else len(frames)
            frames.append(
                _FrameMeta(
                    pts=pts,
                    key=bool(frame.key_frame),
                    intra=frame.pict_type == av.video.frame.PictureType.I,
                    width=frame.width,
                    height=frame.height,
                    rotation=_rotation(frame),
                )
            )
    except av.error.FFmpegError as e:
        raise MediaError(
            f"{path} is corrupt after frame {len(frames)}: {_ffmpeg_reason(e)}. Re-export it or "
            "cut the clip before the damage."
        ) from e
    if not frames:
        raise MediaError(
            f"{path} has a video stream but no decodable frames; it is empty or corrupt"
        )
    if len({f.pts for f in frames}) != len(frames):
        # Timestamps that repeat cannot address frames; number them instead.
        frames = [
            _FrameMeta(i, f.key, f.intra, f.width, f.height, f.rotation)
            for i, f in enumerate(frames)
        ]
    return frames


def _rotation(frame: av.VideoFrame) -> int:
    """Display rotation in degrees counter-clockwise, snapped to a multiple of 90."""
    try:
        angle = frame.rotation
    except (AttributeError, ValueError):
        return 0
    return round((angle or 0) / 90.0) * 90 % 360


def _measure_rate(
    pts: Sequence[int], time_base: Fraction, guess: Fraction
) -> tuple[Fraction, bool, float]:
    """Frame rate from timestamps, whether it varies, and the clip duration in seconds."""
    if len(pts) < 2:
        rate = guess if guess > 0 else FOLDER_FPS
        return rate, False, float(1 / rate)
    deltas = [b - a for a, b in itertools.pairwise(pts)]
    typical = statistics.median(deltas)
    # Containers round timestamps to their time base (1 ms in MKV), so allow that jitter.
    tolerance = max(2, 0.25 * typical)
    vfr = sum(abs(d - typical) > tolerance for d in deltas) > max(1, len(deltas) // 100)
    span = (pts[-1] - pts[0]) * time_base
    mean_rate = Fraction(len(pts) - 1) / span if span > 0 else guess
    if vfr:
        rate = mean_rate.limit_denominator(1001)
    elif guess > 0 and abs(float(guess) - float(mean_rate)) <= 0.01 * float(mean_rate):
        rate = guess
    else:
        rate = mean_rate.limit_denominator(1001)
    duration = float(span) + float(1 / rate)
    return rate, vfr, duration


def _audio_info(stream: av.AudioStream) -> AudioInfo:
    context = stream.codec_context
    duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
    return AudioInfo(
        index=stream.index,
        codec=context.name,
        sample_rate=int(context.sample_rate or 0),
        channels=int(getattr(context, "channels", 0) or 0),
        duration=duration,
    )


def _probe_folder(path: Path) -> ClipInfo:
    files = _image_files(path)
    first = read_image(files[0])
    height, width = first.shape[:2]
    return ClipInfo(
        path=str(path),
        num_frames=len(files),
        fps=float(FOLDER_FPS),
        frame_rate=FOLDER_FPS,
        vfr=False,
        width=width,
        height=height,
        rotation=0,
        pix_fmt="rgb24",
        codec="images",
        duration=len(files) / float(FOLDER_FPS),
        audio=(),
        iframes=tuple(range(len(files))),
        seek_frames=tuple(range(len(files))),
        frame_pts=tuple(range(len(files))),
        time_base=1 / FOLDER_FPS,
        header_frames=len(files),
    )


def _image_files(path: Path) -> list[Path]:
    def natural(p: Path) -> list:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]

    files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural)
    if not files:
        raise MediaError(
            f"{path} is a folder with no images ({', '.join(IMAGE_SUFFIXES)}); point to a video "
            "file or a folder of frames"
        )
    return files


# ---------------------------------------------------------------------------------------------
# Reading frames


class Clip:
    """A probed clip whose frames are read on demand by display index (a FrameSource).

    Sequential reads continue the open decoder; a jump seeks to the nearest keyframe at or
    before the window. ``frames_decoded`` counts decoded frames, so tests can check the cost.
    """

    def __init__(self, info: ClipInfo):
        self.info = info
        self.frames_decoded = 0
        self._container: av.container.InputContainer | None = None
        self._decoder: Iterator[av.VideoFrame] | None = None
        self._next_index = -1  # display index the decoder yields next; -1 = needs a seek
        self._seeked_at = 0  # seek point the open decoder started from
        self._bad_seeks: set[int] = set()  # seek points that decoded corrupt frames
        self._index_of_pts = {p: i for i, p in enumerate(info.frame_pts)}
        self._files = _image_files(Path(info.path)) if info.codec == "images" else None

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
        return f"{Path(self.info.path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"

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
        while True:
            points = [i for i in self.info.seek_frames if i <= start and i not in self._bad_seeks]
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
                index = self._index_of_pts.get(frame.pts, -1) if frame.pts is not None else -1
                if index < 0:
                    continue
                if seeked_at > 0 and index >= start and frame.is_corrupt:
                    return seeked_at
                self._next_index = index + 1
                yield index, frame
        except av.error.FFmpegError as e:
            self.close()
            raise MediaError(
                f"{self.info.path} could not be decoded near frame {start}: {_ffmpeg_reason(e)}"
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
            self._container = _open_container(Path(self.info.path))
            self._container.streams.video[0].thread_type = "AUTO"
        assert self._container is not None
        stream = self._container.streams.video[0]
        if seek_frame and not exact:
            self._container.seek(
                self.info.frame_pts[seek_frame], stream=stream, backward=True, any_frame=False
            )
        self._decoder = self._container.decode(stream)
        self._next_index = -1
        self._seeked_at = seek_frame

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        rgb = frame.to_ndarray(format="rgb24")
        turns = self.info.rotation // 90
        return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def open_clip(path: str | os.PathLike) -> Clip:
    """Probe ``path`` (a video file or a folder of images) and return a Clip to read from."""
    return Clip(probe(path))


# ---------------------------------------------------------------------------------------------
# Images


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as ``[H, W, 3]`` uint8 RGB (EXIF orientation applied, alpha dropped)."""
    path = Path(path)
    _check_exists(path)
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise MediaError(
            f"{path} is not a readable image ({e}); use PNG, JPEG, WebP, BMP or TIFF"
        ) from e


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write ``[H, W, 3]`` uint8 RGB to ``path`` (format from the suffix; PNG is lossless)."""
    path = Path(path)
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise MediaError(
            f"cannot write {path}: expected uint8 [H, W, 3], got {image.dtype} {image.shape}"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
    except (OSError, ValueError) as e:
        raise MediaError(f"cannot write {path}: {e}") from e
    return path


# ---------------------------------------------------------------------------------------------
# Writing video


class VideoWriter:
    """Streaming encoder: ``write`` chunks of ``[N, H, W, 3]`` uint8 RGB frames as they come.

    Formats, chosen from the path and ``lossless``:
    - ``.mp4``/``.mov``/``.mkv``: H.264 yuv420p at ``crf`` (+faststart for MP4). Odd sizes are
      padded by one edge pixel to even (``notes`` says so).
    - ``lossless=True`` with ``.mkv``: FFV1, bit-exact RGB.
    - a path without a suffix (or an existing folder): a PNG sequence ``000000.png``, ...

    ``audio_from``: a media file whose audio streams are copied without re-encoding (re-encoded to
    AAC only where the container cannot hold the codec). ``frame_times``: per-frame seconds for
    variable-frame-rate output; otherwise frames are spaced at ``frame_rate``.

    Encoding runs on a background thread, one ``write`` behind the caller, so a producer (an
    engine) computes its next chunk while this one is encoded: the two used to take turns, and
    on a 2-core machine the encode of a restored 1280x960 clip took as long as the flow engine.
    Memory: at most one chunk in flight besides the caller's.
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
    ):
        self.path = Path(path)
        self.frame_rate = Fraction(frame_rate).limit_denominator(100000)
        if self.frame_rate <= 0:
            raise MediaError(f"frame rate {frame_rate} must be positive")
        self.crf, self.preset, self.lossless = crf, preset, lossless
        self.x264_params = x264_params  # extra libx264 settings, "key=value:key=value"
        self.audio_from = Path(audio_from) if audio_from else None
        self.frame_times = list(frame_times) if frame_times is not None else None
        self.mode = self._choose_mode()
        self.frames_written = 0
        self.notes: list[str] = []
        self._size: tuple[int, int] | None = None  # (width, height) of incoming frames
        self._container: av.container.OutputContainer | None = None
        self._video: av.VideoStream | None = None
        self._audio_in: av.container.InputContainer | None = None
        self._audio_packets: Iterator[av.Packet] | None = None
        self._audio_map: dict[int, av.stream.Stream] = {}
        self._audio_transcode: dict[int, tuple[av.AudioStream, av.AudioResampler]] = {}
        self._pending_audio: av.Packet | None = None
        self._encoder: ThreadPoolExecutor | None = None
        self._in_flight: Future | None = None  # the chunk being encoded
        self._stopping = False  # set by abort: the encoder stops between frames
        self._encoded = 0  # frames the encoder thread has finished (frames_written: handed over)

    @classmethod
    def like(cls, path: str | os.PathLike, info: ClipInfo, **options) -> VideoWriter:
        """A writer that keeps ``info``'s frame rate, timing and audio."""
        times = [info.timestamp(i) for i in range(info.num_frames)] if info.vfr else None
        audio = info.path if info.audio else None
        return cls(path, info.frame_rate, audio_from=audio, frame_times=times, **options)

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
        if suffix not in MP4_LIKE | {".mkv"}:
            raise MediaError(f"output {self.path}: use .mp4, .mov or .mkv (or a folder for PNGs)")
        return "h264"

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
            raise MediaError(f"cannot write {self.path}: {_ffmpeg_reason(e)}") from e

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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            options = {"movflags": "+faststart"} if self.path.suffix.lower() in MP4_LIKE else {}
            self._container = av.open(str(self.path), "w", options=options)
            self._video = self._add_video_stream(size)
            self._add_audio_streams()
        except (OSError, av.error.FFmpegError) as e:
            raise MediaError(f"cannot create {self.path}: {_ffmpeg_reason(e)}") from e

    def _add_video_stream(self, size: tuple[int, int]) -> av.VideoStream:
        assert self._container is not None
        width, height = size
        if self.mode == "ffv1":
            stream = self._container.add_stream("ffv1", rate=self.frame_rate)
            stream.pix_fmt = "bgr0"
        else:
            stream = self._container.add_stream(
                "libx264",
                rate=self.frame_rate,
                options={
                    "crf": str(self.crf),
                    "preset": self.preset,
                    **({"x264-params": self.x264_params} if self.x264_params else {}),
                },
            )
            stream.pix_fmt = "yuv420p"
            if width % 2 or height % 2:
                self.notes.append(
                    f"{width}x{height} is odd; H.264 yuv420p needs even sizes, so the output is "
                    f"padded to {width + width % 2}x{height + height % 2} by repeating the edge"
                )
                log.warning(self.notes[-1])
                width, height = width + width % 2, height + height % 2
        stream.width, stream.height = width, height
        if self.frame_times is not None:
            stream.time_base = Fraction(1, 90000)
        else:
            stream.time_base = 1 / self.frame_rate
        stream.thread_type = "AUTO"
        return stream

    def _add_audio_streams(self) -> None:
        if self.audio_from is None:
            return
        source = _open_container(self.audio_from)
        if not source.streams.audio:
            source.close()
            return
        assert self._container is not None
        for stream in source.streams.audio:
            copyable = self.mode == "ffv1" or self.path.suffix.lower() == ".mkv"
            if copyable or stream.codec_context.name in MP4_AUDIO_COPY:
                self._audio_map[stream.index] = self._container.add_stream_from_template(stream)
            else:
                out = self._container.add_stream("aac", rate=stream.codec_context.sample_rate)
                self._audio_map[stream.index] = out
                self._audio_transcode[stream.index] = (
                    out,
                    av.AudioResampler(format="fltp", layout=stream.codec_context.layout.name),
                )
                self.notes.append(
                    f"audio codec {stream.codec_context.name} cannot go into {self.path.suffix}; "
                    "re-encoded to AAC"
                )
        self._audio_in = source
        self._audio_packets = source.demux(*source.streams.audio)

    def _write_one(self, frame: np.ndarray) -> None:
        index = self._encoded
        if self.mode == "png":
            write_image(self.path / f"{index:06d}.png", frame)
            self._encoded += 1
            return
        assert self._video is not None and self._container is not None
        if self.mode == "h264" and (frame.shape[0] % 2 or frame.shape[1] % 2):
            pad = ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0))
            frame = np.pad(frame, pad, mode="edge")
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        if self.frame_times is not None:
            video_frame.pts = round(self.frame_times[index] * 90000)
        else:
            video_frame.pts = index
        for packet in self._video.encode(video_frame):
            self._container.mux(packet)
        self._encoded += 1
        self._mux_audio_until(self._frame_time(index + 1))

    def _frame_time(self, index: int) -> float:
        if self.frame_times is not None and index < len(self.frame_times):
            return self.frame_times[index]
        return float(index / self.frame_rate)

    def _mux_audio_until(self, seconds: float | None) -> None:
        """Interleave source audio up to ``seconds`` (None: all that is left)."""
        if self._audio_packets is None:
            return
        assert self._container is not None
        while True:
            packet = self._pending_audio or next(self._audio_packets, None)
            self._pending_audio = None
            if packet is None:
                self._audio_packets = None
                return
            if packet.dts is None and packet.size == 0:
                continue
            ahead = packet.pts is not None and seconds is not None
            if ahead and float(packet.pts * packet.time_base) > seconds + 0.5:
                self._pending_audio = packet
                return
            self._mux_audio_packet(packet)

    def _mux_audio_packet(self, packet: av.Packet) -> None:
        assert self._container is not None
        index = packet.stream.index
        if index in self._audio_transcode:
            out, resampler = self._audio_transcode[index]
            for frame in packet.decode():
                for resampled in resampler.resample(frame):
                    resampled.pts = None
                    for encoded in out.encode(resampled):
                        self._container.mux(encoded)
            return
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
            for out, _ in self._audio_transcode.values():
                for packet in out.encode(None):
                    self._container.mux(packet)
            self._container.close()
        except (OSError, av.error.FFmpegError) as e:
            raise MediaError(f"cannot finish {self.path}: {_ffmpeg_reason(e)}") from e
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


def even_size(width: int, height: int) -> tuple[int, int]:
    """The size an H.264 yuv420p output of ``width`` x ``height`` frames will have."""
    return width + width % 2, height + height % 2
