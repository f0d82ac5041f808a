"""The demo clip: a deterministic synthetic scene the project renders itself.

An HR clip with moving text, fine textures and shapes under a slow camera pan, its LR version
(blur, x4 area downscale, noise, JPEG: a typical degraded source) with a short audio track, and
the true HR frames of two keyframes as References. Everything is seeded, so every machine makes
the same files. ``ensure_demo`` makes them on first use.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sparkvsr.media import VideoWriter, write_image

DEMO_DIR = Path(__file__).resolve().parents[1] / "assets" / "demo"
VERSION = 1


@dataclass(frozen=True)
class DemoSpec:
    """What to render. The defaults make a 2.5 s 160x96 LR clip (640x384 HR) at 24 fps."""

    num_frames: int = 60
    lr_width: int = 160
    lr_height: int = 96
    scale: int = 4
    fps: int = 24
    keyframes: tuple[int, ...] = (0, 36)
    seed: int = 7
    jpeg_quality: int = 40
    noise_sigma: float = 3.0


@dataclass(frozen=True)
class DemoFiles:
    folder: Path
    lr: Path
    hr: Path
    references: dict[int, Path]


def ensure_demo(folder: Path = DEMO_DIR, spec: DemoSpec = DemoSpec()) -> DemoFiles:
    """Return the demo files in ``folder``, rendering them first if absent or outdated."""
    files = _demo_files(folder, spec)
    manifest = folder / "demo.json"
    ready = manifest.exists() and all(p.exists() for p in (files.lr, files.hr))
    if ready and json.loads(manifest.read_text()).get("version") == VERSION:
        return files
    return make_demo(folder, spec)


def make_demo(folder: Path = DEMO_DIR, spec: DemoSpec = DemoSpec()) -> DemoFiles:
    """Render the demo into ``folder`` (overwriting): LR mp4 with audio, HR lossless, refs."""
    files = _demo_files(folder, spec)
    folder.mkdir(parents=True, exist_ok=True)
    scene = _Scene(spec)
    rng = np.random.default_rng(spec.seed + 1)
    audio = _write_audio(folder / "tone.m4a", spec.num_frames / spec.fps)
    with (
        VideoWriter(files.hr, Fraction(spec.fps), lossless=True) as hr_writer,
        VideoWriter(files.lr, Fraction(spec.fps), crf=16, audio_from=audio) as lr_writer,
    ):
        for index in range(spec.num_frames):
            hr = scene.render(index)
            hr_writer.write(hr)
            lr_writer.write(degrade(hr, spec, rng))
            if index in files.references:
                write_image(files.references[index], hr)
    audio.unlink()
    (folder / "demo.json").write_text(
        json.dumps(
            {"version": VERSION, "spec": spec.__dict__, "keyframes": spec.keyframes}, indent=2
        )
    )
    return files


def _demo_files(folder: Path, spec: DemoSpec) -> DemoFiles:
    refs = {k: folder / f"reference_{k:04d}.png" for k in spec.keyframes}
    return DemoFiles(folder, folder / "demo_lr.mp4", folder / "demo_hr.mkv", refs)


def degrade(hr: np.ndarray, spec: DemoSpec, rng: np.random.Generator) -> np.ndarray:
    """HR ``[H, W, 3]`` uint8 -> LR ``[H/s, W/s, 3]`` uint8: blur, area down, noise, JPEG."""
    blurred = cv2.GaussianBlur(hr, (0, 0), sigmaX=1.2)
    small = cv2.resize(blurred, (spec.lr_width, spec.lr_height), interpolation=cv2.INTER_AREA)
    noisy = small.astype(np.float32) + rng.normal(0, spec.noise_sigma, small.shape)
    noisy = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, format="JPEG", quality=spec.jpeg_quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


class _Scene:
    """A pan over a textured canvas with text and shapes moving on their own paths."""

    def __init__(self, spec: DemoSpec):
        self.spec = spec
        self.width, self.height = spec.lr_width * spec.scale, spec.lr_height * spec.scale
        rng = np.random.default_rng(spec.seed)
        self.canvas = _canvas(self.width + 4 * spec.num_frames, self.height, rng)
        self.font_big = ImageFont.load_default(size=max(12, self.height // 6))
        self.font_small = ImageFont.load_default(size=max(8, self.height // 16))

    def render(self, index: int) -> np.ndarray:
        t = index / max(1, self.spec.num_frames - 1)
        pan = 3.0 * index  # px per frame at HR, sub-LR-pixel motion stays honest for flow
        x0 = int(pan)
        view = self.canvas[:, x0 : x0 + self.width + 1].astype(np.float32)
        frac = pan - x0
        base = (1 - frac) * view[:, :-1] + frac * view[:, 1:]
        image = Image.fromarray(np.clip(base + 0.5, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        w, h = self.width, self.height
        # A ball bouncing across, a rotating bar, a sliding striped box.
        bx, by = w * (0.15 + 0.7 * t), h * (0.75 - 0.35 * abs(np.sin(3 * np.pi * t)))
        r = h * 0.08
        draw.ellipse(
            (bx - r, by - r, bx + r, by + r), fill=(230, 70, 40), outline=(20, 20, 20), width=3
        )
        angle = 2 * np.pi * t
        cx, cy, length = w * 0.8, h * 0.3, h * 0.18
        dx, dy = length * np.cos(angle), length * np.sin(angle)
        draw.line((cx - dx, cy - dy, cx + dx, cy + dy), fill=(250, 220, 40), width=max(3, h // 40))
        sx = w * (0.9 - 0.6 * t)
        for k in range(6):
            colour = (30, 90, 200) if k % 2 else (240, 240, 240)
            draw.rectangle((sx + 6 * k, h * 0.08, sx + 6 * k + 5, h * 0.22), fill=colour)
        # Text that moves and small text that needs real resolution.
        tx = w * (0.05 + 0.25 * t)
        draw.text(
            (tx, h * 0.38),
            "SparkVSR",
            font=self.font_big,
            fill=(255, 255, 255),
            stroke_width=2,
            stroke_fill=(0, 0, 0),
        )
        draw.text(
            (w * 0.05, h * 0.86),
            f"frame {index:03d} | keyframe-guided restoration",
            font=self.font_small,
            fill=(250, 250, 250),
            stroke_width=1,
            stroke_fill=(0, 0, 0),
        )
        return np.asarray(image)


def _canvas(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Fine textures: gratings, a checkerboard, brick rows and seeded noise, ``[H, W, 3]``."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    grating = 0.5 + 0.5 * np.sin(2 * np.pi * (x / 7.0 + y / 23.0))
    checker = ((x // 6 + y // 6) % 2).astype(np.float32)
    bricks = (((y // 12) % 2 * 10 + x) // 20 % 2 * 0.4 + 0.3) * ((y % 12) > 1)
    noise = rng.random((height // 2 + 1, width // 2 + 1)).astype(np.float32)
    noise = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    band = (y / height)[..., None]
    sky = np.stack([90 + 80 * grating, 120 + 60 * noise, 170 + 60 * grating], -1)
    wall = np.stack([150 + 70 * bricks, 90 + 50 * bricks, 60 + 40 * noise], -1)
    floor = np.stack([60 + 150 * checker, 60 + 150 * checker, 70 + 140 * checker], -1)
    mix = np.where(band < 0.35, sky, np.where(band < 0.7, wall, floor))
    return np.clip(mix, 0, 255).astype(np.float32)


def _write_audio(path: Path, seconds: float) -> Path:
    """A soft two-note chime (AAC), so the demo shows that sound survives a restore."""
    rate, block = 48000, 1024
    container = av.open(str(path), "w")
    stream = container.add_stream("aac", rate=rate)
    stream.layout = "stereo"
    total = int(seconds * rate)
    for start in range(0, total, block):
        t = (np.arange(start, min(start + block, total)) / rate).astype(np.float32)
        envelope = np.exp(-3.0 * (t % 1.0))
        tone = 0.15 * envelope * (np.sin(2 * np.pi * 523.25 * t) + np.sin(2 * np.pi * 659.25 * t))
        frame = av.AudioFrame.from_ndarray(
            np.stack([tone, tone]).astype(np.float32), format="fltp", layout="stereo"
        )
        frame.sample_rate, frame.pts = rate, start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    return path
