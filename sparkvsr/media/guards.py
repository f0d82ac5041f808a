"""Checks on an output before any work: not the source, writable, room on the disk, and a frame
size the codec can encode at its largest level. Each failure names the problem and the fix.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
from pathlib import Path

from sparkvsr.errors import MediaError

# Largest level of each codec: (name, max macroblocks or luma samples per frame, unit side).
# H.264 level 6.2: 139,264 macroblocks of 16x16 per frame (8192x4320 fits), each side at most
# sqrt(8 * MaxFS) macroblocks; H.265 level 6.2: 35,651,584 luma samples, sides <= sqrt(8 * that).
LEVEL_LIMITS = {
    "h264": ("H.264 level 6.2", 139_264 * 256, 16),
    "h265": ("H.265 level 6.2", 35_651_584, 8),
}
# Bytes a frame pixel takes on disk, generously, for the free-space check.
BYTES_PER_PIXEL = {"h264": 0.08, "h265": 0.06, "ffv1": 2.0, "png": 2.5}
SPARE_BYTES = 16 * 2**20


def check_not_source(source: str | os.PathLike, output: str | os.PathLike) -> None:
    """Refuse an output that is the source file itself (same path, or a hard or soft link)."""
    source, output = Path(source), Path(output)
    same = output.resolve() == source.resolve()
    if not same and output.exists():
        with contextlib.suppress(OSError):
            same = os.path.samefile(source, output)
    if same:
        raise MediaError(
            f"output {output} is the input clip {source}: writing it would destroy the source. "
            "Choose another output name (e.g. add _restored)."
        )


def check_writable(output: str | os.PathLike, needed_bytes: int = 0) -> None:
    """The output's folder can be created and written, and has ``needed_bytes`` free."""
    output = Path(output)
    folder = output if (output.is_dir() or not output.suffix) else output.parent
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise MediaError(f"cannot write {output}: {existing} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".sparkvsr-write-check"):
            pass
    except OSError as e:
        raise MediaError(
            f"cannot write {output}: {folder} is not writable ({e.strerror or e}). Choose an "
            "output in a folder you can write to."
        ) from e
    if output.is_file() and not os.access(output, os.W_OK):
        raise MediaError(
            f"cannot write {output}: the file exists and is read-only. Choose another name or "
            "make it writable."
        )
    free = shutil.disk_usage(folder).free
    if needed_bytes and free < needed_bytes + SPARE_BYTES:
        raise MediaError(
            f"not enough disk space for {output}: about {_mb(needed_bytes)} needed, {_mb(free)} "
            f"free in {folder}. Free some space, write elsewhere, or use a smaller --output-size."
        )


def estimate_bytes(size: tuple[int, int], frames: int, codec: str) -> int:
    return int(size[0] * size[1] * max(frames, 1) * BYTES_PER_PIXEL.get(codec, 0.1))


def check_encodable(size: tuple[int, int], codec: str, source_size: tuple[int, int]) -> None:
    """Refuse a frame size beyond ``codec``'s largest level (players and decoders reject it)."""
    if codec not in LEVEL_LIMITS:
        return
    name, max_samples, unit = LEVEL_LIMITS[codec]
    width, height = size
    samples = math.ceil(width / unit) * unit * math.ceil(height / unit) * unit
    longest = math.isqrt(8 * max_samples // (unit * unit)) * unit
    if samples <= max_samples and max(width, height) <= longest:
        return
    fit = math.sqrt(max_samples / (width * height))
    fit = min(fit, longest / max(width, height))
    suggestion = (int(width * fit) // 16 * 16, int(height * fit) // 16 * 16)
    other = " or --codec h265" if codec == "h264" and width * height <= 35_651_584 else ""
    raise MediaError(
        f"output {width}x{height} (from the {source_size[0]}x{source_size[1]} input) is beyond "
        f"{name} (at most 8192x4320 for H.264): no player could decode it. Use --output-size "
        f"{suggestion[0]}x{suggestion[1]} (or smaller){other}, or a smaller --scale."
    )


def _mb(value: int) -> str:
    return f"{value / 2**20:,.0f} MB"


def check_output(
    source: str | os.PathLike,
    output: str | os.PathLike,
    size: tuple[int, int],
    frames: int,
    *,
    source_size: tuple[int, int] | None = None,
    codec: str = "h264",
    lossless: bool = False,
) -> None:
    """Every check an output needs before any work: not the source, a size ``codec`` can
    encode (``size`` = the frames the engine will hand over), a writable folder with room for
    ``frames`` frames. Raises MediaError naming the problem and the fix."""
    output = Path(output)
    check_not_source(source, output)
    kind = "png" if (output.is_dir() or not output.suffix) else "ffv1" if lossless else codec
    check_encodable(size, kind, source_size or size)
    check_writable(output, estimate_bytes(size, frames, kind))
