"""A clip's proxy for the studio: a small H.264 copy the browser's video player plays at the clip's
frame rate, and a filmstrip of thumbnails for the timeline.

Both come from one sequential decode (streaming: memory does not depend on the clip's length),
are written into a folder of the project (``PROXY_DIR``) and are reused while the clip is the
same file (its identity is recorded beside them). The proxy's frame ``i`` is shown from
``i / fps``: a player's ``currentTime * fps`` is the clip's frame index. Audio is not copied (the
player is for looking at motion; the restored clip keeps the sound).
"""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from sparkvsr.errors import Cancelled, MediaError
from sparkvsr.media.reader import Clip

PROXY_DIR = "proxy"
VIDEO_NAME = "clip.mp4"
FILMSTRIP_NAME = "filmstrip.jpg"
RECORD_NAME = "proxy.json"
VERSION = 1
MAX_SIZE = (854, 480)
"""The proxy's largest size (W, H): smaller clips keep theirs (rounded to even sides)."""
THUMBNAILS = 24
"""Thumbnails in the filmstrip (fewer for a shorter clip: one per frame at most)."""
THUMB_HEIGHT = 64


@dataclass(frozen=True)
class ProxyFiles:
    """A clip's proxy, paths relative to the project folder.

    video:     H.264 mp4 at the proxy size, one frame per clip frame at the clip's rate.
    filmstrip: JPEG, the thumbnails left to right, each ``thumb_width`` pixels wide.
    frames:    the clip frame each thumbnail shows, left to right.
    """

    video: str
    filmstrip: str
    frames: tuple[int, ...]
    thumb_width: int


def filmstrip_frames(num_frames: int, count: int = THUMBNAILS) -> tuple[int, ...]:
    """The frames a filmstrip of ``count`` thumbnails shows: the middle of each of ``count``
    equal spans of the clip, so each thumbnail sits under its part of the timeline."""
    count = max(1, min(count, num_frames))
    return tuple(min(num_frames - 1, int((n + 0.5) * num_frames / count)) for n in range(count))


def proxy_size(width: int, height: int) -> tuple[int, int]:
    """The proxy's (W, H): within ``MAX_SIZE`` keeping the aspect, even sides (H.264 4:2:0)."""
    scale = min(1.0, MAX_SIZE[0] / width, MAX_SIZE[1] / height)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def cached_proxy(folder: str | os.PathLike, identity: str) -> ProxyFiles | None:
    """The proxy already made in project ``folder`` for the clip ``identity``, or None."""
    base = Path(folder) / PROXY_DIR
    try:
        record = json.loads((base / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None
    if record.get("version") != VERSION or record.get("identity") != identity:
        return None
    files = ProxyFiles(
        f"{PROXY_DIR}/{VIDEO_NAME}",
        f"{PROXY_DIR}/{FILMSTRIP_NAME}",
        tuple(int(f) for f in record.get("frames", ())),
        int(record.get("thumb_width", 0)),
    )
    if not all((Path(folder) / p).is_file() for p in (files.video, files.filmstrip)):
        return None
    return files


def clip_thumbnail(folder: str | os.PathLike) -> bytes:
    """JPEG of the middle thumbnail of the filmstrip made in project ``folder`` (what the projects
    panel shows for it); empty before the proxy exists or when its files cannot be read."""
    base = Path(folder) / PROXY_DIR
    try:
        record = json.loads((base / RECORD_NAME).read_text())
        width = int(record["thumb_width"])
        count = len(record["frames"])
        with Image.open(base / FILMSTRIP_NAME) as strip:
            middle = count // 2
            box = (middle * width, 0, (middle + 1) * width, strip.height)
            thumb = strip.crop(box).convert("RGB")  # one thumbnail decoded to RGB, not the strip
    except (OSError, ValueError, KeyError, TypeError):
        return b""
    out = io.BytesIO()
    thumb.save(out, format="JPEG", quality=85)
    return out.getvalue()


def make_proxy(
    clip: Clip,
    folder: str | os.PathLike,
    *,
    cancel: threading.Event | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> ProxyFiles:
    """Decode ``clip`` once and write its proxy video and filmstrip into ``folder/PROXY_DIR``
    (reused when already made for this clip). ``cancel`` stops between frames (Cancelled);
    ``on_frame(i)`` is called after each frame (progress)."""
    # 1. inputs: reuse what was made for this very file
    identity = clip.identity
    done = cached_proxy(folder, identity)
    if done is not None:
        return done
    base = Path(folder) / PROXY_DIR
    base.mkdir(parents=True, exist_ok=True)
    total = clip.num_frames
    width, height = proxy_size(*clip.size)
    wanted = filmstrip_frames(total)
    thumb_width = max(2, round(clip.size[0] * THUMB_HEIGHT / clip.size[1]))
    strip = np.zeros((THUMB_HEIGHT, thumb_width * len(wanted), 3), np.uint8)
    slot = {frame: n for n, frame in enumerate(wanted)}
    video_tmp = base / f".{VIDEO_NAME}.tmp.mp4"

    # 2. one pass: encode every frame, keep the filmstrip's
    rate = Fraction(clip.info.fps).limit_denominator(1001) if clip.info.fps > 0 else Fraction(25)
    try:
        with av.open(str(video_tmp), "w") as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.time_base = 1 / rate
            # one thread and the fastest preset: the proxy is made beside previews
            stream.thread_count = 1
            stream.options = {"preset": "ultrafast", "crf": "26", "tune": "fastdecode"}
            for first, frames in clip.iter_chunks(16):
                for offset, rgb in enumerate(frames):
                    index = first + offset
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("the proxy was not finished (cancelled)")
                    picture = Image.fromarray(rgb)
                    if index in slot:
                        thumb = picture.resize((thumb_width, THUMB_HEIGHT), Image.Resampling.BOX)
                        at = slot[index] * thumb_width
                        strip[:, at : at + thumb_width] = np.asarray(thumb)
                    if picture.size != (width, height):
                        picture = picture.resize((width, height), Image.Resampling.BILINEAR)
                    frame = av.VideoFrame.from_image(picture)
                    frame.pts = index
                    container.mux(stream.encode(frame))
                    if on_frame is not None:
                        on_frame(index)
            container.mux(stream.encode(None))
    except (av.error.FFmpegError, OSError) as e:
        video_tmp.unlink(missing_ok=True)
        raise MediaError(f"cannot write the clip's proxy in {base}: {e}") from e
    except BaseException:
        video_tmp.unlink(missing_ok=True)
        raise

    # 3. files in place, then the record that says they are complete
    try:
        strip_tmp = base / f".{FILMSTRIP_NAME}.tmp.jpg"
        Image.fromarray(strip).save(strip_tmp, quality=85)
        os.replace(strip_tmp, base / FILMSTRIP_NAME)
        os.replace(video_tmp, base / VIDEO_NAME)
        record = {
            "version": VERSION,
            "identity": identity,
            "frames": list(wanted),
            "thumb_width": thumb_width,
            "size": [width, height],
            "fps": str(rate),
        }
        (base / RECORD_NAME).write_text(json.dumps(record))
    except OSError as e:
        raise MediaError(f"cannot write the clip's proxy in {base}: {e}") from e
    return ProxyFiles(
        f"{PROXY_DIR}/{VIDEO_NAME}", f"{PROXY_DIR}/{FILMSTRIP_NAME}", wanted, thumb_width
    )
