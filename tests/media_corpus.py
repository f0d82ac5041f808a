"""A corpus of odd media files, made on the spot, and the measurements a user would make on them.

Inputs are made with PyAV or with Debian's ``ffmpeg`` (tests only: the product never needs the
binary). Every measurement reads files back with PyAV the way a player does: frames at their
presentation times, colours converted by the file's own tags, audio by its decoded timestamps.
``tests/test_media_fidelity.py`` asserts on these; ``benchmarks/media_fidelity.py`` prints them
as a before/after table.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

FFMPEG = shutil.which("ffmpeg")

# Flat patches (RGB) that separate the matrices: BT.601 vs BT.709 moves the green by ~25 levels.
PATCHES = ((200, 40, 40), (40, 179, 60), (40, 60, 200), (128, 128, 128))


def ffmpeg(*args: str) -> None:
    """Run Debian's ffmpeg to MAKE a test input (never used by the product)."""
    if FFMPEG is None:
        raise RuntimeError("ffmpeg is not installed (apt-get install ffmpeg); tests make inputs")
    subprocess.run([FFMPEG, "-v", "error", "-y", *args], check=True)


# ---------------------------------------------------------------------------------------------
# Makers


def make_vfr(path: Path) -> Path:
    """H.264 in MP4, ~30 fps with +-3 ms jitter and one 100 ms gap (a dropped frame burst)."""
    rng = np.random.default_rng(1)
    times, t = [], 0.0
    for i in range(24):
        times.append(t)
        t += 0.1 if i == 10 else 1 / 30 + rng.uniform(-0.003, 0.003)
    frames = _moving(len(times), 64, 48)
    tb = Fraction(1, 90000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = tb
        stream.codec_context.time_base = tb
        for seconds, frame in zip(times, frames):
            video = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video.pts, video.time_base = round(seconds * 90000), tb
            container.mux(stream.encode(video))
        container.mux(stream.encode(None))
    return path


def make_avi_bframes(path: Path, codec: str = "mpeg4", rate: str = "25") -> Path:
    """MPEG-4 ASP (Xvid-like) or H.264 with B-frames in AVI: packets carry decode-order times."""
    tag = ["-vtag", "XVID"] if codec == "mpeg4" else []
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc=size=64x48:rate={rate}", "-frames:v", "30",
        "-c:v", codec, "-bf", "2", *tag, str(path),
    )  # fmt: skip
    return path


def make_audio_offsets(path: Path) -> Path:
    """MP4 (edit lists): video starts at 0.5 s, audio #1 at 0 (0.5 s before the video), audio #2
    at 1.0 s (0.5 s after)."""
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1.5",
        "-f", "lavfi", "-i", "sine=f=440:d=2.5:r=48000",
        "-itsoffset", "1.0", "-f", "lavfi", "-i", "sine=f=880:d=1:r=48000",
        "-map", "0:v", "-map", "1:a", "-map", "2:a", "-vf", "setpts=PTS+0.5/TB",
        "-c:v", "libx264", "-c:a", "aac", str(path),
    )  # fmt: skip
    return path


def make_ts_offsets(path: Path) -> Path:
    """MPEG-TS (start time 1.4 s) with the audio starting 0.3 s after the video."""
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1.5",
        "-itsoffset", "0.3", "-f", "lavfi", "-i", "sine=f=440:d=1.2:r=48000",
        "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-c:a", "aac", str(path),
    )  # fmt: skip
    return path


def make_ps_offsets(path: Path) -> Path:
    """MPEG-2 program stream (DVD-like .mpg, start time ~0.5 s) with MP2 audio 0.5 s late."""
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1.5",
        "-itsoffset", "0.5", "-f", "lavfi", "-i", "sine=f=440:d=1:r=48000",
        "-map", "0:v", "-map", "1:a", "-c:v", "mpeg2video", "-c:a", "mp2", "-f", "vob",
        str(path),
    )  # fmt: skip
    return path


def make_sar(path: Path) -> Path:
    """Anamorphic SD: 64x48 coded, 32:27 sample aspect (display 16:9 at 720x480 proportions)."""
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-frames:v", "12",
        "-vf", "setsar=32/27", "-c:v", "libx264", str(path),
    )  # fmt: skip
    return path


COLOUR_CASES = {
    # name: (pix_fmt, matrix, range, primaries, transfer)
    "bt709": ("yuv420p", "bt709", "tv", "bt709", "bt709"),
    "bt601": ("yuv420p", "smpte170m", "tv", "smpte170m", "smpte170m"),
    "full-range": ("yuvj420p", "bt709", "pc", "bt709", "bt709"),
    "10-bit": ("yuv420p10le", "bt709", "tv", "bt709", "bt709"),
    "pq": ("yuv420p10le", "bt2020nc", "tv", "bt2020", "smpte2084"),
}


def make_colour(path: Path, case: str) -> Path:
    """320x180 flat colour patches (x4 = 1280x720: HD, where untagged means BT.709)."""
    pix_fmt, matrix, colour_range, primaries, transfer = COLOUR_CASES[case]
    frame = patch_frame(320, 180)
    raw = path.with_suffix(".rgb")
    raw.write_bytes(np.repeat(frame[None], 6, axis=0).tobytes())
    scale = f"scale=out_color_matrix={matrix.replace('nc', '')}:out_range={colour_range}"
    ffmpeg(
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "320x180", "-r", "25", "-i", str(raw),
        "-vf", f"{scale},format={pix_fmt}", "-c:v", "libx264", "-crf", "4",
        "-colorspace", matrix, "-color_range", colour_range, "-color_primaries", primaries,
        "-color_trc", transfer, str(path),
    )  # fmt: skip
    raw.unlink()
    return path


def make_interlaced(path: Path) -> Path:
    """Top-field-first interlaced H.264: 50 fields/s of bars moving 4 px a field, woven into
    25 frames/s (even rows from one instant, odd rows from the next)."""
    width, height, frames = 160, 96, 12
    x = np.arange(width)
    woven = np.empty((frames, height, width, 3), np.uint8)
    for n in range(frames):
        for field in (0, 1):
            shift = 8 * n + 4 * field
            row = np.where(((x + shift) // 8) % 2 == 0, 220, 30).astype(np.uint8)
            woven[n, field::2] = row[None, :, None]
    raw = path.with_suffix(".rgb")
    raw.write_bytes(woven.tobytes())
    ffmpeg(
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", "25",
        "-i", str(raw), "-vf", "setfield=tff", "-c:v", "libx264", "-pix_fmt", "yuv420p",
        "-flags", "+ildct+ilme", "-x264-params", "tff=1", "-crf", "10", str(path),
    )  # fmt: skip
    raw.unlink()
    return path


def make_interlaced_intra(path: Path) -> Path:
    """Interlaced H.264 of FFmpeg's moving test picture, every frame a keyframe (seek point)."""
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=160x96:rate=50", "-frames:v", "24",
        "-vf", "tinterlace=mode=interleave_top,setfield=tff", "-c:v", "libx264",
        "-flags", "+ildct+ilme", "-x264-params", "tff=1", "-g", "1", "-crf", "10", str(path),
    )  # fmt: skip
    return path


def make_surround(path: Path, codec: str) -> Path:
    """5.1 audio (AAC in .mp4, or PCM in .mov) beside a short video."""
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1",
        "-f", "lavfi", "-i", "sine=f=440:d=1:r=48000",
        "-filter_complex", "[1:a]pan=5.1|c0=c0|c1=0.8*c0|c2=0.6*c0|c3=0.4*c0|c4=0.3*c0|c5=0.2*c0[a]",
        "-map", "0:v", "-map", "[a]", "-c:v", "libx264", "-c:a", codec, str(path),
    )  # fmt: skip
    return path


def make_tracks(path: Path) -> Path:
    """MKV: video, English and German audio with titles, and an SRT subtitle."""
    srt = path.with_suffix(".srt")
    srt.write_text("1\n00:00:00,000 --> 00:00:00,800\nHello\n\n")
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1",
        "-f", "lavfi", "-i", "sine=f=440:d=1:r=48000",
        "-f", "lavfi", "-i", "sine=f=660:d=1:r=48000",
        "-i", str(srt),
        "-map", "0:v", "-map", "1:a", "-map", "2:a", "-map", "3:s",
        "-c:v", "libx264", "-c:a", "aac", "-c:s", "srt",
        "-metadata:s:a:0", "language=eng", "-metadata:s:a:0", "title=English",
        "-metadata:s:a:1", "language=deu", "-metadata:s:a:1", "title=Deutsch",
        "-metadata:s:s:0", "language=eng", str(path),
    )  # fmt: skip
    srt.unlink()
    return path


def make_opus(path: Path) -> Path:
    """MKV with Opus audio (MOV cannot carry Opus)."""
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1",
        "-f", "lavfi", "-i", "sine=f=440:d=1:r=48000",
        "-c:v", "libx264", "-c:a", "libopus", str(path),
    )  # fmt: skip
    return path


def make_alpha(path: Path) -> Path:
    """FFV1 with an alpha plane."""
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-frames:v", "6",
        "-vf", "format=yuva420p", "-c:v", "ffv1", str(path),
    )  # fmt: skip
    return path


def make_big(path: Path) -> Path:
    """4096x2160 (DCI 4K), 3 frames."""
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=4096x2160:rate=25", "-frames:v", "3",
        "-c:v", "libx264", "-preset", "ultrafast", str(path),
    )  # fmt: skip
    return path


def make_plain(path: Path) -> Path:
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=0.5",
        "-f", "lavfi", "-i", "sine=f=440:d=0.5:r=48000", "-c:v", "libx264", "-c:a", "aac",
        str(path),
    )  # fmt: skip
    return path


# ---------------------------------------------------------------------------------------------
# Measurements (read back with PyAV, like a player)

# FFmpeg's colour codes (the ITU-T H.273 values) -> the names ffprobe prints.
MATRIX_NAMES = {0: "gbr", 1: "bt709", 5: "bt470bg", 6: "smpte170m", 9: "bt2020nc"}
PRIMARY_NAMES = {1: "bt709", 5: "bt470bg", 6: "smpte170m", 9: "bt2020"}
TRANSFER_NAMES = {
    1: "bt709",
    6: "smpte170m",
    13: "iec61966-2-1",
    16: "smpte2084",
    18: "arib-std-b67",
}


@dataclass(frozen=True)
class VideoRead:
    times: list[float]  # presentation times in seconds, sorted
    width: int
    height: int
    sar: Fraction
    pix_fmt: str
    tags: dict[str, str]


def read_video(path: Path, keep: int | None = None) -> tuple[VideoRead, list[np.ndarray]]:
    """Presentation times and (optionally the first ``keep``) frames as a player shows them."""
    frames: list[np.ndarray] = []
    times: list[float] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        sar = Fraction(stream.sample_aspect_ratio or ctx.sample_aspect_ratio or 1) or Fraction(1)
        for frame in container.decode(stream):
            stamp = frame.pts if frame.pts is not None else frame.dts
            times.append(float(stamp * stream.time_base))
            if keep is None or len(frames) < keep:
                frames.append(player_rgb(frame))
        tags = {
            "matrix": MATRIX_NAMES.get(int(ctx.colorspace), "unspecified"),
            "range": {1: "tv", 2: "pc"}.get(int(ctx.color_range), "unspecified"),
            "primaries": PRIMARY_NAMES.get(int(ctx.color_primaries), "unspecified"),
            "transfer": TRANSFER_NAMES.get(int(ctx.color_trc), "unspecified"),
        }
        info = VideoRead(sorted(times), ctx.width, ctx.height, sar, ctx.format.name, tags)
    return info, frames


def player_rgb(frame: av.VideoFrame) -> np.ndarray:
    """RGB as a player shows it: matrix and range from the frame's tags; untagged SD = BT.601,
    untagged HD = BT.709, untagged range = limited (full for the yuvj formats)."""
    from av.video.reformatter import ColorRange, Colorspace

    matrix = {
        1: Colorspace.ITU709,
        5: Colorspace.ITU601,
        6: Colorspace.ITU601,
        9: Colorspace.BT2020,
    }
    space = matrix.get(int(frame.colorspace))
    if space is None:
        space = Colorspace.ITU709 if frame.height >= 720 else Colorspace.ITU601
    full = int(frame.color_range) == 2 or frame.format.name.startswith("yuvj")
    return frame.reformat(
        format="rgb24",
        src_colorspace=space,
        dst_colorspace=space,
        src_color_range=ColorRange.JPEG if full else ColorRange.MPEG,
        dst_color_range=ColorRange.JPEG,
    ).to_ndarray()


def patch_frame(width: int, height: int) -> np.ndarray:
    frame = np.zeros((height, width, 3), np.uint8)
    for i, colour in enumerate(PATCHES):
        row, col = divmod(i, 2)
        frame[
            row * height // 2 : (row + 1) * height // 2, col * width // 2 : (col + 1) * width // 2
        ] = colour
    return frame


def patch_means(frame: np.ndarray) -> np.ndarray:
    """Mean RGB at the centre of each of the four patches: ``[4, 3]`` float."""
    height, width = frame.shape[:2]
    means = []
    for i in range(len(PATCHES)):
        row, col = divmod(i, 2)
        cy, cx = (2 * row + 1) * height // 4, (2 * col + 1) * width // 4
        dy, dx = height // 10, width // 10
        means.append(frame[cy - dy : cy + dy, cx - dx : cx + dx].reshape(-1, 3).mean(0))
    return np.array(means)


def audio_starts(path: Path) -> list[float]:
    """Each audio stream's sound onset (first sample louder than 0.02) minus the first video
    frame's time, in seconds: what a viewer hears against what they see. (An encoder's priming
    samples come before the sound and are not counted.)"""
    video = read_video(path, keep=0)[0].times[0]
    starts = []
    with av.open(str(path)) as container:
        for stream in container.streams.audio:
            onset = None
            for frame in container.decode(stream):
                loud = np.flatnonzero(np.abs(frame.to_ndarray()).max(axis=0) > 0.02 * _full(frame))
                if len(loud):
                    first = (
                        loud[0] if frame.format.is_planar else loud[0] // frame.layout.nb_channels
                    )
                    onset = float(frame.pts * frame.time_base) + first / frame.sample_rate
                    break
            starts.append(onset - video if onset is not None else float("nan"))
            container.seek(0)
    return starts


def _full(frame: av.AudioFrame) -> float:
    """Full scale of a frame's samples (1 for float formats, 2^(bits-1) for integers)."""
    name = frame.format.name.rstrip("p")
    return {"s16": 32768.0, "s32": 2.0**31, "u8": 128.0}.get(name, 1.0)


def audio_streams(path: Path) -> list[dict]:
    with av.open(str(path)) as container:
        return [
            {
                "codec": s.codec_context.name,
                "channels": s.codec_context.channels,
                "language": s.language or "",
                "title": s.metadata.get("title", ""),
            }
            for s in container.streams.audio
        ]


def subtitle_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return len(container.streams.subtitles)


def combing(frame: np.ndarray) -> float:
    """Mean |row - average of its neighbours| on luma: high for woven fields of moving content."""
    luma = frame.astype(np.float32).mean(2)
    return float(np.abs(luma[1:-1] - (luma[:-2] + luma[2:]) / 2).mean())


def down_to(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def _moving(count: int, width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    out = []
    for n in range(count):
        base = ((x + 3 * n) // 8 + y // 8) % 2 * 160 + 40
        out.append(np.stack([base, (x * 4) % 256, (y * 5) % 256], -1).astype(np.uint8))
    return np.stack(out)
