"""Shared fixtures: real clips from ../shared/data (skipped when absent) and synthetic media."""

from __future__ import annotations

import importlib.util
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_clip(name: str) -> Path:
    """Path of a real clip in ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent (real clips live in ../shared/data beside the project)")
    return path


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (real clips live in ../shared/data)")
    return SHARED_DATA


@pytest.fixture
def fake_pyiqa(monkeypatch):
    """tests/fake_pyiqa.py (pyiqa's call shape), freshly loaded and installed as ``pyiqa``."""
    spec = importlib.util.spec_from_file_location(
        "pyiqa", Path(__file__).with_name("fake_pyiqa.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "pyiqa", module)
    return module


def moving_frames(num_frames: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """A textured pattern drifting right 1 px per frame: ``[N, H, W, 3]`` uint8."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (height, width + num_frames, 3), dtype=np.uint8)
    texture = ((texture.astype(np.float32) + np.roll(texture, 1, axis=1)) / 2).astype(np.uint8)
    return np.stack([texture[:, n : n + width][:, ::-1] for n in range(num_frames)])


def write_test_video(
    path: Path,
    frames: np.ndarray,
    fps: int = 25,
    audio_seconds: float | None = None,
    codec: str = "libx264",
) -> Path:
    """Encode frames (and optionally a sine tone in AAC) with PyAV, independent of our writer."""
    container = av.open(str(path), "w")
    video = container.add_stream(codec, rate=fps)
    video.width, video.height = frames.shape[2], frames.shape[1]
    video.pix_fmt = "yuv420p" if codec == "libx264" else "bgr0"
    audio = None
    if audio_seconds:
        audio = container.add_stream("aac", rate=48000)
        audio.layout = "stereo"
    for i, frame in enumerate(frames):
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        video_frame.pts = i
        video_frame.time_base = Fraction(1, fps)
        container.mux(video.encode(video_frame))
    container.mux(video.encode(None))
    if audio is not None:
        _write_tone(container, audio, audio_seconds)
    container.close()
    return path


def _write_tone(container, audio, seconds: float) -> None:
    rate, samples = 48000, 1024
    t0 = 0
    while t0 < seconds * rate:
        t = (np.arange(samples) + t0) / rate
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = rate, t0
        container.mux(audio.encode(frame))
        t0 += samples
    container.mux(audio.encode(None))


@pytest.fixture(scope="module")
def studio(request, tmp_path_factory):
    """``python app.py`` (demo clip, flow engine, classic references) on a free port, one per
    browser-test module, its projects in a folder of its own (skipped without chromium)."""
    from tests.test_ui import RunningStudio, _free_port, _launch, _need_browser, _stop

    _need_browser()
    folder = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    projects, log = folder / "projects", folder / "studio.log"
    port = _free_port()
    process = _launch(projects, log, port)
    try:
        yield RunningStudio(f"http://127.0.0.1:{port}/", projects, log)
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def browser(studio):
    """Debian's chromium through Playwright, for the module's ``studio``."""
    from playwright.sync_api import sync_playwright

    from tests.test_ui import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
