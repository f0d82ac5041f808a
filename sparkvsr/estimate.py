"""What a render will cost before it runs: output size, time and memory, from a real sample.

Sizes are measured, not guessed from a table: a few consecutive restored frames (``sample``,
the frames the engine will write) are encoded with the chosen codec and settings, and the
per-frame sizes are extrapolated to the clip. Inter-frame codecs (H.264/H.265) spend most bytes
on the first, intra frame of a group; the rest cost what the later frames of the sample cost,
with one intra frame per ``KEYINT`` frames. Intra-only outputs (FFV1, PNG) cost the sample's
mean per frame. Audio copied from the source adds its own bytes.

    estimate = estimate_output(sample, fps, total_frames, settings, seconds_per_frame=0.4)
    estimate.bytes, estimate.seconds, estimate.memory
"""

from __future__ import annotations

import functools
import math
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np

from sparkvsr import media
from sparkvsr.project import OUTPUT_SUFFIX, OutputSettings

KEYINT = 250
"""Frames per intra frame in x264/x265's default group of pictures (their ``keyint``)."""
SAMPLE_FRAMES = 11
"""Consecutive frames worth encoding for an estimate: one intra frame and two of x265's
five-frame mini-groups (their anchor frames cost several times the frames between)."""
INDEX_BYTES_PER_FRAME = 16
"""Container index bytes per frame (MP4/Matroska sample tables), beyond the sample's own."""


@dataclass(frozen=True)
class OutputEstimate:
    """bytes: the output file; seconds: engine and encode time; memory: the render's own peak
    (one chunk of output frames, the encoder's frames, the engine's work buffers)."""

    bytes: int
    seconds: float
    memory: int


def sample_bytes(sample: np.ndarray, fps: float, settings: OutputSettings) -> tuple[list[int], int]:
    """Encoded bytes of each frame of ``sample`` ``[N, H, W, 3]`` uint8 with ``settings``, and
    the container's own bytes (headers, index) around them."""
    suffix = OUTPUT_SUFFIX[settings.codec] or ".mkv"
    codec = settings.codec if settings.codec in media.CODECS else "h264"
    with tempfile.TemporaryDirectory(prefix="sparkvsr-estimate-") as folder:
        if settings.codec == "png":  # the studio's PNG sequence: one zip, as the render writes it
            path = Path(folder) / "sample.zip"
            with media.PngSequenceZip(path) as sequence:
                sequence.write(0, sample)
            with zipfile.ZipFile(path) as archive:
                sizes = [entry.compress_size for entry in archive.infolist()]
            return sizes, max(0, path.stat().st_size - sum(sizes))
        path = Path(folder) / f"sample{suffix}"
        writer = media.VideoWriter(
            path,
            fps,
            crf=settings.crf,
            preset=settings.preset,
            lossless=settings.codec == "ffv1",
            codec=codec,
        )
        with writer:
            if settings.ten_bit:
                writer.colour = _ten_bit(writer.colour)
            writer.write(sample)
        with av.open(str(path)) as container:
            sizes = [p.size for p in container.demux(video=0) if p.size]
        overhead = max(0, path.stat().st_size - sum(sizes))
    return sizes, overhead


def estimate_output(
    sample: np.ndarray,
    fps: float,
    total_frames: int,
    settings: OutputSettings,
    *,
    seconds_per_frame: float = 0.0,
    audio_bytes: int = 0,
    chunk_frames: int = 1,
) -> OutputEstimate:
    """The estimate for a clip of ``total_frames`` whose restored frames look like ``sample``
    (consecutive frames ``[N, H, W, 3]`` uint8). ``seconds_per_frame``: measured engine time
    per frame; ``audio_bytes``: the source audio that is copied (0 when ``settings.audio`` is
    off); ``chunk_frames``: frames one render chunk holds."""
    sample = np.asarray(sample)
    if sample.ndim != 4 or not len(sample):
        raise ValueError(f"sample must be [N, H, W, 3] frames; got {sample.shape}")
    sizes, overhead = sample_bytes(sample, fps, settings)
    if not sizes:
        raise ValueError("the sample encoded to nothing")
    if settings.codec in ("h264", "h265") and len(sizes) > 1:
        intra = sizes[0]
        predicted = float(np.mean(sizes[1:]))
        intras = math.ceil(total_frames / KEYINT)
        video = intras * intra + (total_frames - intras) * predicted
    else:
        video = float(np.mean(sizes)) * total_frames
    video += overhead + INDEX_BYTES_PER_FRAME * max(0, total_frames - len(sizes))
    frame_bytes = int(sample[0].nbytes)
    audio = audio_bytes if settings.audio else 0
    encode_seconds = 0.02 * frame_bytes / 2**20  # measured x264 'fast' ~50 MB of RGB a second
    return OutputEstimate(
        bytes=int(video + audio),
        seconds=float(total_frames * (seconds_per_frame + encode_seconds)),
        memory=int(frame_bytes * (chunk_frames + 2 * len(sample) + 8)),
    )


def _ten_bit(colour):
    return replace(colour, pix_fmt="yuv420p10le")


def source_audio_bytes(path: str | Path) -> int:
    """Bytes of the audio packets of a clip file (what a copied audio track adds); 0 when the
    file cannot be read here (a remote worker's clip).

    The estimate runs on every click of Estimate: the answer is kept per file version (path,
    size, modification time), so a long clip's audio is read at most once."""
    try:
        stat = Path(path).stat()
    except OSError:
        return 0
    return _audio_bytes(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _audio_bytes(path: str, size: int, mtime_ns: int) -> int:
    # size and mtime_ns key the cache: a file rewritten in place is read again.
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                return 0
            return sum(p.size for p in container.demux(*container.streams.audio) if p.size)
    except (OSError, av.FFmpegError):
        return 0
