"""Reading and writing a project's files: paths kept inside the folder, atomic writes (temp
file, fsync, rename, fsync the folder), lossless PNGs, and chunks of output frames (.npz of PNG
frames, encoded and decoded on a thread pool).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from sparkvsr.errors import ProjectError

_CODEC_THREADS = max(1, min(8, os.cpu_count() or 1))


def safe_join(folder: str | os.PathLike, relative: str) -> Path:
    """``folder / relative`` when it stays inside ``folder`` after resolving symlinks.

    Refuses (ProjectError) absolute paths, ``..`` components, backslashes and NUL bytes, and any
    path whose real location (symlinks followed) is outside ``folder``.
    """
    root = Path(folder).resolve()
    text = str(relative)
    pure = PurePosixPath(text)
    if (
        not text
        or "\x00" in text
        or "\\" in text
        or pure.is_absolute()
        or Path(text).is_absolute()
        or ".." in pure.parts
    ):
        raise ProjectError(
            f"path {relative!r} is refused: give a path inside the project folder, without "
            "'..' or a leading '/'"
        )
    target = (root / pure).resolve()
    if not target.is_relative_to(root):
        raise ProjectError(f"path {relative!r} is refused: it leads outside the project folder")
    return target


def atomic_write(path: Path, data: bytes, *, what: str | None = None) -> None:
    """Replace ``path`` with ``data`` all at once: temp file in the same folder, fsync, rename,
    fsync the folder. On any error the old file is untouched and the temp file removed.
    """
    what = what or str(path)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except OSError as e:
        unlink_quietly(Path(temp))
        raise ProjectError(
            f"cannot save {what} to {path}: {e.strerror or e}. Free disk space or check "
            "permissions; the previous state was kept."
        ) from e
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def checked_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise ProjectError(
            f"chunk frames must be uint8 [N, H, W, 3]; got {frames.dtype} {frames.shape}"
        )
    return frames


def encode_png(image: np.ndarray) -> bytes:
    # Compression level 1: several times faster than the default, still lossless.
    ok, data = cv2.imencode(
        ".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1]
    )
    if not ok:
        raise ProjectError(f"could not encode a {image.shape} image as PNG")
    return data.tobytes()


def decode_png(data: bytes, where: Path) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ProjectError(f"{where} is not a readable PNG; remake it")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_chunk(path: Path, start: int, frames: np.ndarray, what: str) -> str:
    """Write a chunk file atomically (like ``atomic_write``) and return its sha256: an
    uncompressed .npz of per-frame PNG bytes (each PNG compresses itself).

    Frames are encoded in parallel threads (OpenCV releases the GIL), a few at a time, and
    written as they come: memory stays a few PNGs above the frames themselves, whatever the
    chunk length (a chunk of 4x 720p frames is over a gigabyte of PNG data).
    """
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                _write_member(archive, "start", np.int64(start))
                with ThreadPoolExecutor(max_workers=_CODEC_THREADS) as pool:
                    for first in range(0, len(frames), _CODEC_THREADS):
                        window = frames[first : first + _CODEC_THREADS]
                        for i, data in enumerate(pool.map(encode_png, window), first):
                            _write_member(archive, f"f{i:05d}", np.frombuffer(data, np.uint8))
            handle.flush()
            os.fsync(handle.fileno())
        digest = file_sha256(Path(temp))
        os.replace(temp, path)
    except OSError as e:
        unlink_quietly(Path(temp))
        raise ProjectError(
            f"cannot save {what} to {path}: {e.strerror or e}. Free disk space or check "
            "permissions; the previous state was kept."
        ) from e
    except BaseException:
        unlink_quietly(Path(temp))
        raise
    _fsync_folder(path.parent)
    return digest


def _write_member(archive: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    except OSError as e:
        raise ProjectError(f"cannot read {path}: {e}") from e
    return digest.hexdigest()


def decode_frames(blobs: list[bytes], where: Path) -> np.ndarray:
    """PNG blobs decoded in parallel into one ``[N, H, W, 3]`` array (no per-frame copies)."""
    first = decode_png(blobs[0], where)
    out = np.empty((len(blobs), *first.shape), np.uint8)
    out[0] = first

    def into(i: int) -> None:
        image = decode_png(blobs[i], where)
        if image.shape != first.shape:
            raise ProjectError(f"{where}: frame {i} is {image.shape}, frame 0 {first.shape}")
        out[i] = image

    with ThreadPoolExecutor(max_workers=_CODEC_THREADS) as pool:
        list(pool.map(into, range(1, len(blobs))))
    return out


def decode_chunk(data: bytes, where: Path) -> np.ndarray:
    try:
        with np.load(io.BytesIO(data)) as archive:
            names = sorted(n for n in archive.files if n.startswith("f"))
            blobs = [archive[n].tobytes() for n in names]
        return decode_frames(blobs, where)
    except (OSError, ValueError, KeyError) as e:
        raise ProjectError(f"{where} is not a readable chunk ({e}); render again") from e
