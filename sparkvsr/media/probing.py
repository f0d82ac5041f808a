"""Probe: describe a video file (or a folder of images) truthfully by decoding it once.

Why probe decodes every frame once: headers lie. Frame counts in AVI headers can be doubled, MP4
edit lists hide frames, AVI attaches decode-order times to frames, and codecs mark only IDR frames
as ``key_frame`` while other I-frames exist. The probe records each displayed frame's timestamp so
that reads can seek straight to the keyframe before a window and decode forward: a read costs
O(window + GOP), never O(clip).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import av

from sparkvsr.errors import MediaError
from sparkvsr.media.colour import ColourInfo, colour_of
from sparkvsr.media.images import IMAGE_SUFFIXES, check_exists, read_image
from sparkvsr.media.timing import FOLDER_FPS, measure_rate
from sparkvsr.media.tracks import AudioInfo, StreamInfo, audio_info, stream_info

# AVFieldOrder -> name; "tt"/"bb": top/bottom field first, "tb"/"bt": coded the other way round.
FIELD_ORDERS = {0: "unknown", 1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}
INTERLACED = ("tt", "bb", "tb", "bt", "interlaced")


@dataclass(frozen=True)
class ClipInfo:
    """What ``probe`` found. ``width``/``height`` are as displayed (after rotation), in coded
    pixels; ``sar`` says how wide a pixel is shown (32/27: anamorphic 16:9 DVD).

    fps / frame_rate: the real rate measured from frame timestamps (``frame_rate`` exact, e.g.
    30000/1001); for variable frame rate (``vfr``) clips, the average.
    iframes: display indices of every I-frame (from decoded picture types, not just key flags).
    seek_frames: display indices the demuxer can seek to (packets flagged key).
    frame_pts: each displayed frame's timestamp as the decoder hands it over (the key reads find
    frames by), in ``time_base`` units; ``frame_times`` are the same sorted (presentation times).
    field_order: "progressive", "tt"/"bb" (top/bottom field first), "tb"/"bt", "unknown".
    colour: matrix, range, primaries, transfer and bit depth. streams: every other stream
    (audio, subtitles, data) with languages and dispositions. alpha: the video has an alpha plane.
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
    sar: Fraction = Fraction(1)
    field_order: str = "progressive"
    colour: ColourInfo = field(default_factory=ColourInfo)
    streams: tuple[StreamInfo, ...] = ()
    alpha: bool = False

    @property
    def frame_times(self) -> tuple[int, ...]:
        """Presentation times in ``time_base`` units, in display order."""
        return tuple(sorted(self.frame_pts))

    @property
    def dar(self) -> Fraction:
        """Display aspect ratio (width x sar / height)."""
        return Fraction(self.width) * self.sar / self.height

    @property
    def interlaced(self) -> bool:
        return self.field_order in INTERLACED

    @property
    def start(self) -> float:
        """Seconds of the first displayed frame on the file's clock."""
        return float(min(self.frame_pts) * self.time_base) if self.frame_pts else 0.0

    def summary(self) -> dict:
        """A JSON-ready description (what ``probe --json`` prints and projects store)."""
        data = asdict(self)
        for key in ("seek_frames", "frame_pts", "time_base"):
            data.pop(key)
        data["frame_rate"] = f"{self.frame_rate.numerator}/{self.frame_rate.denominator}"
        data["fps"] = round(self.fps, 6)
        data["iframes"] = list(self.iframes)
        data["audio"] = [asdict(a) for a in self.audio]
        data["sar"] = f"{self.sar.numerator}:{self.sar.denominator}"
        dar = self.dar
        data["dar"] = f"{dar.numerator}:{dar.denominator}"
        data["colour"] = self.colour.summary()
        data["hdr"] = self.colour.hdr or None
        data["streams"] = [{**asdict(s), "disposition": list(s.disposition)} for s in self.streams]
        return data

    def timestamp(self, index: int) -> float:
        """Seconds from the first frame to frame ``index`` (display order)."""
        times = self.frame_times
        return float((times[index] - times[0]) * self.time_base)


def probe(path: str | os.PathLike) -> ClipInfo:
    """Describe a video file (or a folder of images) by decoding it once.

    Raises MediaError for a missing path, an empty or non-video file, a file without a video
    stream, zero decodable frames, a truncated or corrupt file, or an unsupported codec.
    """
    path = Path(path)
    check_exists(path)
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
    container = open_container(path)
    try:
        stream = video_stream(container, path)
        _check_not_truncated(stream, path)
        scan = _scan_frames(container, stream, path)
        frames = scan.frames
        audio = tuple(audio_info(s) for s in container.streams.audio)
        others = tuple(stream_info(s) for s in container.streams if s.index != stream.index)
        header_frames = int(stream.frames or 0)
        context = stream.codec_context
        codec = context.name
        pix_fmt = context.format.name if context.format else "unknown"
        time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1)
        guess = Fraction(stream.average_rate or stream.guessed_rate or 25)
        sar = Fraction(stream.sample_aspect_ratio or context.sample_aspect_ratio or 1) or Fraction(
            1
        )
        field_order = FIELD_ORDERS.get(int(context.field_order or 0), "unknown")
    finally:
        container.close()
    pts = [f.pts for f in frames]
    frame_rate, vfr, duration = measure_rate(sorted(pts), time_base, guess)
    if field_order in ("unknown", "progressive") and scan.interlaced * 2 > len(frames):
        field_order = "tt" if scan.top_first * 2 >= scan.interlaced else "bb"
    rotation = frames[0].rotation
    width, height = frames[0].width, frames[0].height
    if rotation % 180:
        width, height = height, width
        sar = 1 / sar
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
        sar=sar,
        field_order=field_order,
        colour=scan.colour,
        streams=others,
        alpha=scan.alpha,
    )


@dataclass(frozen=True)
class _FrameMeta:
    pts: int
    key: bool
    intra: bool
    width: int
    height: int
    rotation: int


@dataclass(frozen=True)
class _Scan:
    frames: list[_FrameMeta]
    colour: ColourInfo
    interlaced: int  # frames flagged interlaced
    top_first: int
    alpha: bool


def open_container(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as e:
        raise MediaError(
            f"{path} is not a readable video: {ffmpeg_reason(e)}. It may be truncated, corrupt, "
            "or not a video at all; re-export or re-download it (mp4, mkv, mov, avi, webm work)."
        ) from e


def ffmpeg_reason(error: Exception) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return text.rstrip(".").lower()


def video_stream(container: av.container.InputContainer, path: Path) -> av.VideoStream:
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
) -> _Scan:
    frames: list[_FrameMeta] = []
    colour = ColourInfo()
    interlaced = top_first = 0
    alpha = False
    try:
        for frame in container.decode(stream):
            if not frames:
                colour = colour_of(frame)
                alpha = any(c.is_alpha for c in frame.format.components)
            # Best effort: the frame's pts, else its packet's dts (raw streams have neither).
            stamp = frame.pts if frame.pts is not None else frame.dts
            interlaced += bool(frame.interlaced_frame)
            top_first += bool(getattr(frame, "top_field_first", True)) and frame.interlaced_frame
            frames.append(
                _FrameMeta(
                    pts=stamp if stamp is not None else len(frames),
                    key=bool(frame.key_frame),
                    intra=frame.pict_type == av.video.frame.PictureType.I,
                    width=frame.width,
                    height=frame.height,
                    rotation=_rotation(frame),
                )
            )
    except av.error.FFmpegError as e:
        raise MediaError(
            f"{path} is corrupt after frame {len(frames)}: {ffmpeg_reason(e)}. Re-export it or "
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
    return _Scan(frames, colour, interlaced, top_first, alpha)


def _rotation(frame: av.VideoFrame) -> int:
    """Display rotation in degrees counter-clockwise, snapped to a multiple of 90."""
    try:
        angle = frame.rotation
    except (AttributeError, ValueError):
        return 0
    return round((angle or 0) / 90.0) * 90 % 360


def _probe_folder(path: Path) -> ClipInfo:
    files = image_files(path)
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
        colour=ColourInfo(rgb=True, range=2),
    )


def image_files(path: Path) -> list[Path]:
    def natural(p: Path) -> list:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]

    files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural)
    if not files:
        raise MediaError(
            f"{path} is a folder with no images ({', '.join(IMAGE_SUFFIXES)}); point to a video "
            "file or a folder of frames"
        )
    return files
