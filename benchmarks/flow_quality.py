"""Quality of the ``flow`` engine on Vid4 walk: does propagating GT keyframes beat the upscale?

Setup (issue 9): the 47 ground-truth frames of Vid4 'walk' (720x480) are degraded two ways to
180x120 LR clips: (1) bicubic x4 downscale (antialiased, as MATLAB/PIL ``imresize``); (2) Gaussian
blur sigma 1.0, then area x4 downscale. References = the GT frames at keyframes every 16 frames
(0, 16, 32). Three methods are measured on every non-keyframe:

- ``bicubic``: the plain upscale (what the engine gives at s = 0),
- ``nowarp``:  the nearest keyframe's residual ``R_k - U(LR_k)`` added without any warping,
- ``flow``:    the flow engine at s = 1.

Prints a per-frame table (PSNR RGB / SSIM Y) and the means, and checks the targets: blurred LR
flow >= bicubic + 1.0 dB, bicubic LR flow >= bicubic + 0.5 dB, and on both no frame below
bicubic - 0.1 dB (PSNR on RGB, no border crop; the Y-channel PSNR is printed beside it).

Run: ``.venv/bin/python benchmarks/flow_quality.py [--every 16] [--clip PATH]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from sparkvsr import metrics
from sparkvsr.engines.base import RestoreOptions
from sparkvsr.engines.flow import FlowEngine, plain_upscale
from sparkvsr.frames import ArrayFrames

ROOT = Path(__file__).resolve().parents[1]
WALK = ROOT / ".." / "shared" / "data" / "yhjo09_Vid4_G_walk_ffv1.mkv"
SCALE = 4
TARGETS = {"bicubic": 0.5, "blur": 1.0}  # required mean gain over the upscale, dB
WORST = -0.1  # no frame may lose more than this against the upscale, dB


def decode_all(path: Path) -> np.ndarray:
    """Every frame of a (short) clip as ``[N, H, W, 3]`` uint8; the benchmark's own edge."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def down_bicubic(frame: np.ndarray) -> np.ndarray:
    """Antialiased bicubic x4 downscale (PIL, like MATLAB imresize): ``[H, W, 3]`` -> LR uint8."""
    height, width = frame.shape[:2]
    size = (width // SCALE, height // SCALE)
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BICUBIC))


def down_blur(frame: np.ndarray) -> np.ndarray:
    """Gaussian blur sigma 1.0, then area x4 downscale: ``[H, W, 3]`` -> LR uint8."""
    height, width = frame.shape[:2]
    blurred = cv2.GaussianBlur(frame.astype(np.float32), (0, 0), 1.0)
    small = cv2.resize(blurred, (width // SCALE, height // SCALE), interpolation=cv2.INTER_AREA)
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)


def nowarp(lr: np.ndarray, gt: np.ndarray, keys: list[int], t: int) -> np.ndarray:
    """U(LR_t) + the nearest keyframe's residual, unwarped."""
    k = min(keys, key=lambda key: (abs(key - t), key))
    up = plain_upscale(lr[t], SCALE).astype(np.float32)
    residual = gt[k].astype(np.float32) - plain_upscale(lr[k], SCALE).astype(np.float32)
    return np.clip(np.rint(up + residual), 0, 255).astype(np.uint8)


def measure(
    name: str, lr: np.ndarray, gt: np.ndarray, keys: list[int], config: dict
) -> dict[str, np.ndarray]:
    engine = FlowEngine(**config)
    references = {k: gt[k] for k in keys}
    started = time.perf_counter()
    restored = np.concatenate(
        [c.frames for c in engine.restore(ArrayFrames(lr), references, RestoreOptions(chunk=16))]
    )
    seconds = time.perf_counter() - started
    rows = {m: [] for m in ("bicubic", "nowarp", "flow")}
    frames = [t for t in range(len(gt)) if t not in keys]
    print(f"\n## LR = {name} ({lr.shape[2]}x{lr.shape[1]}), keyframes {keys}, engine {config}")
    print(f"flow restore: {len(gt)} frames in {seconds:.1f} s ({len(gt) / seconds:.1f} fps)\n")
    print(
        "| frame | bicubic PSNR | nowarp PSNR | flow PSNR | flow - bicubic | bicubic SSIM | "
        "nowarp SSIM | flow SSIM | flow Y-PSNR |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for t in frames:
        outputs = {
            "bicubic": plain_upscale(lr[t], SCALE),
            "nowarp": nowarp(lr, gt, keys, t),
            "flow": restored[t],
        }
        values = {
            m: (
                metrics.psnr(o, gt[t]),
                metrics.ssim(o, gt[t], y_channel=True),
                metrics.psnr(o, gt[t], y_channel=True),
            )
            for m, o in outputs.items()
        }
        for m in rows:
            rows[m].append(values[m])
        gain = values["flow"][0] - values["bicubic"][0]
        print(
            f"| {t} | {values['bicubic'][0]:.2f} | {values['nowarp'][0]:.2f} | "
            f"{values['flow'][0]:.2f} | {gain:+.2f} | {values['bicubic'][1]:.4f} | "
            f"{values['nowarp'][1]:.4f} | {values['flow'][1]:.4f} | {values['flow'][2]:.2f} |"
        )
    return {m: np.array(v) for m, v in rows.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=WALK, help="GT clip (default: Vid4 walk)")
    parser.add_argument("--every", type=int, default=16, help="keyframe spacing (default 16)")
    parser.add_argument(
        "--config",
        type=json.loads,
        default={},
        help='FlowEngine keywords as JSON, e.g. {"reach": 8}',
    )
    args = parser.parse_args()
    if not args.clip.exists():
        print(f"skipped: {args.clip} is missing (the shared data folder is not here)")
        return 0
    gt = decode_all(args.clip)
    height, width = (gt.shape[1] // SCALE) * SCALE, (gt.shape[2] // SCALE) * SCALE
    gt = np.ascontiguousarray(gt[:, :height, :width])
    keys = list(range(0, len(gt), args.every))
    degradations = {"bicubic": down_bicubic, "blur": down_blur}
    summary = []
    for name, degrade in degradations.items():
        lr = np.stack([degrade(f) for f in gt])
        rows = measure(name, lr, gt, keys, args.config)
        gain = rows["flow"][:, 0] - rows["bicubic"][:, 0]
        summary.append((name, rows, gain))
    print("\n## Means over non-keyframes (PSNR dB RGB / SSIM Y / PSNR dB Y)\n")
    print("| LR | bicubic | nowarp | flow | mean gain | worst frame gain | target | pass |")
    print("|---|---|---|---|---|---|---|---|")
    ok = True
    for name, rows, gain in summary:
        passed = gain.mean() >= TARGETS[name] and gain.min() >= WORST
        ok &= passed
        cells = [
            f"{rows[m][:, 0].mean():.2f} / {rows[m][:, 1].mean():.4f} / {rows[m][:, 2].mean():.2f}"
            for m in ("bicubic", "nowarp", "flow")
        ]
        print(
            f"| {name} | {' | '.join(cells)} | {gain.mean():+.2f} | {gain.min():+.2f} | "
            f">= +{TARGETS[name]:.1f}, worst >= {WORST} | {'yes' if passed else 'NO'} |"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
