"""Helpers shared by the project / worker / server / batch tests: tiny clips and engine wrappers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from sparkvsr import media
from tests.conftest import moving_frames, write_test_video

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def make_clip(
    path: Path, num_frames: int = 24, width: int = 48, height: int = 32, seed: int = 0
) -> Path:
    """An H.264 mp4 (or a PNG folder when ``path`` has no suffix) of a panning scene."""
    with media.VideoWriter(path, Fraction(25), crf=12) as writer:
        writer.write(moving_frames(num_frames, width, height, seed))
    return path


def make_clip_with_audio(
    path: Path, num_frames: int = 24, width: int = 48, height: int = 32
) -> Path:
    """An mp4 with H.264 video and a 440 Hz AAC tone as long as the video."""
    return write_test_video(
        path, moving_frames(num_frames, width, height), audio_seconds=num_frames / 25
    )


def decode_all(path: Path) -> np.ndarray:
    """Every frame of a video as ``[N, H, W, 3]`` uint8."""
    with media.open_clip(path) as clip:
        return clip.read(0, clip.num_frames)


class CountingEngine:
    """Wraps a real engine and counts the work done through it (chunks, previews)."""

    def __init__(self, engine, preview_delay: float = 0.0):
        self.inner = engine
        self.name = engine.name
        self.previews = 0
        self.preview_guidances: list[float] = []
        self.chunks: list[tuple[int, int]] = []
        self.preview_delay = preview_delay
        self._lock = threading.Lock()

    def restore(self, source, references, options, *, progress=None, cancel=None):
        for chunk in self.inner.restore(
            source, references, options, progress=progress, cancel=cancel
        ):
            with self._lock:
                self.chunks.append((chunk.start, chunk.stop))
            yield chunk

    def preview(self, source, references, frame, options):
        with self._lock:
            self.previews += 1
            self.preview_guidances.append(options.guidance)
        if self.preview_delay:
            time.sleep(self.preview_delay)
        return self.inner.preview(source, references, frame, options)

    def status(self):
        return self.inner.status()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_module(
    *args: str, timeout: float = 120, env: dict | None = None
) -> subprocess.CompletedProcess:
    """``python -m sparkvsr ARGS`` from the project root; output captured."""
    return subprocess.run(
        [PYTHON, "-m", "sparkvsr", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def start_module(*args: str, env: dict | None = None, log: Path | None = None) -> subprocess.Popen:
    """Start ``python -m sparkvsr ARGS`` in the background (caller must stop it)."""
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [PYTHON, "-m", "sparkvsr", *args],
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )


class UpscaleEngine:
    """A tiny deterministic engine for tests: nearest-neighbour upscale plus ``s`` times the
    nearest Reference's residual. Yields non-overlapping chunks of ``options.chunk`` frames.
    """

    name = "test-upscale"

    def __init__(self, delay: float = 0.0):
        self.delay = delay

    def _frames(self, source, references, start, stop, options):
        lr = source.read(start, stop)
        up = lr.repeat(options.scale, axis=1).repeat(options.scale, axis=2).astype(np.float32)
        if references and options.guidance:
            for i in range(len(up)):
                key = min(references, key=lambda k: abs(k - (start + i)))
                base = (
                    source.read(key, key + 1)[0].repeat(options.scale, 0).repeat(options.scale, 1)
                )
                up[i] += options.guidance * (references[key].astype(np.float32) - base)
        return np.clip(np.rint(up), 0, 255).astype(np.uint8)

    def restore(self, source, references, options, *, progress=None, cancel=None):
        from sparkvsr.engines.base import Progress, RestoredChunk, raise_if_cancelled

        total = source.num_frames
        for start in range(options.start, total, options.chunk):
            raise_if_cancelled(cancel)
            stop = min(start + options.chunk, total)
            if self.delay:
                time.sleep(self.delay)
            frames = self._frames(source, references, start, stop, options)
            if progress:
                progress(Progress(stop - options.start, total - options.start, "frames"))
            yield RestoredChunk(start, frames)

    def preview(self, source, references, frame, options):
        return self._frames(source, references, frame, frame + 1, options)[0]

    def status(self):
        from sparkvsr.engines.base import EngineStatus

        return EngineStatus(self.name, "cpu", "nearest")


def run_session(client, clip_path: Path) -> tuple[object, np.ndarray]:
    """Drive a whole studio session through ``client`` (in-process or HTTP) like a user would:
    open, scrub, pin two keyframes, classic References, previews at three guidance values,
    render, fetch the output. Returns (SessionInfo, decoded output frames).
    """
    from sparkvsr.worker import (
        FileRequest,
        FrameRequest,
        KeyframeRequest,
        OpenClipRequest,
        PreviewRequest,
        ReferenceRequest,
        RenderRequest,
        StatusRequest,
    )

    lr = decode_all(clip_path)
    info = client.open_clip(OpenClipRequest(str(clip_path)))
    sid = info.session_id
    assert info.clip.num_frames == len(lr) and info.output_size == (192, 128)
    assert np.array_equal(client.frame(FrameRequest(sid, 5)).image, lr[5])

    client.set_keyframe(KeyframeRequest(sid, 0))
    pinned = client.set_keyframe(KeyframeRequest(sid, 12))
    assert pinned.keyframes == (0, 12) and pinned.with_reference == ()
    references = {
        k: client.make_reference(ReferenceRequest(sid, k, editor="classic")) for k in (0, 12)
    }
    assert references[12].image.shape == (128, 192, 3)
    assert references[12].provenance.editor == "classic"

    previews = {s: client.preview(PreviewRequest(sid, 12, s)).image for s in (0.0, 1.0, 2.0)}
    assert np.array_equal(previews[1.0], references[12].image)  # s=1 at a keyframe: the Reference
    assert not np.array_equal(previews[0.0], previews[2.0])
    between = {s: client.preview(PreviewRequest(sid, 6, s)) for s in (0.0, 1.0)}
    assert between[1.0].guidance == 1.0 and between[1.0].image.shape == (128, 192, 3)

    updates = list(client.render(RenderRequest(sid)))
    assert updates[-1].stage == "done" and updates[-1].frames_done == len(lr)
    assert [u.frames_done for u in updates] == sorted(u.frames_done for u in updates)
    output = client.get_file(FileRequest(sid, "output.mp4"))
    frames = decode_all(Path(output.local_path))
    assert frames.shape == (len(lr), 128, 192, 3)
    assert client.status(StatusRequest(sid)).render.stage == "done"
    return info, frames
