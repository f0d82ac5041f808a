"""Speed of the ``pisa-sr`` editor: a first edit vs moving the λ sliders afterwards.

Random weights at Stable Diffusion 2.1-base's real shapes (speed does not depend on the values),
with a pisa_sr.pkl built in the released format (rank 4):

    python benchmarks/pisa_sr_speed.py            # GPU: 1280x720 and 1920x1080 targets, fp16
    python benchmarks/pisa_sr_speed.py --tiny     # CPU smoke run with tiny models (seconds)

Columns: target size, latent tiles, UNet passes of the first edit, seconds for the first edit
(two UNet passes per tile + VAE encode/decode), seconds for a λ change (served from the cached
predictions: one VAE decode, no UNet pass) and their ratio, peak GPU memory.

Target: a λ change is >= 3x cheaper than a first edit at 720p on one H200.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from sparkvsr.references.base import EditRequest  # noqa: E402
from sparkvsr.references.pisa_sr import PisaSREditor  # noqa: E402
from sparkvsr.tiling import tile_plan  # noqa: E402


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure(editor: PisaSREditor, target: tuple[int, int], seed: int) -> dict:
    lr = np.random.default_rng(seed).integers(0, 256, (target[1] // 4, target[0] // 4, 3), np.uint8)
    passes = []
    handle = editor.unet.register_forward_hook(lambda *args: passes.append(1))
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    _sync()
    start = time.perf_counter()
    editor.make(lr, target, EditRequest())
    _sync()
    first = time.perf_counter() - start
    first_passes = len(passes)
    start = time.perf_counter()
    editor.make(lr, target, EditRequest(pixel_scale=0.8, semantic_scale=1.4))
    _sync()
    slider = time.perf_counter() - start
    handle.remove()
    assert len(passes) == first_passes, "a λ change ran the UNet"
    latent = editor.predict(lr, target).latent
    tiles = len(
        tile_plan(*latent.shape[-2:], editor.options.tile_latent, editor.options.tile_overlap)
    )
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    return dict(
        target=f"{target[0]}x{target[1]}",
        tiles=tiles,
        passes=first_passes,
        first=first,
        slider=slider,
        ratio=first / slider,
        peak=peak,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random models on the CPU")
    args = parser.parse_args()

    from tests.tiny_sd import build_tiny_sd

    with tempfile.TemporaryDirectory() as folder:
        shapes = "tiny" if args.tiny else "sd21"
        model, lora = build_tiny_sd(Path(folder), shapes=shapes)
        if args.tiny:
            editor = PisaSREditor(
                model=str(model),
                lora=str(lora),
                device="cpu",
                min_side=0,
                tile_latent=16,
                tile_overlap=4,
            )
            targets = [(128, 96), (256, 192)]
        else:
            editor = PisaSREditor(model=str(model), lora=str(lora))
            targets = [(1280, 720), (1920, 1080)]
        start = time.perf_counter()
        editor.load()
        print(f"load: {time.perf_counter() - start:.1f} s ({shapes}, {editor.unet.device})")
        rows = [measure(editor, target, seed) for seed, target in enumerate(targets)]

    header = "| target | tiles | UNet passes | first edit s | λ change s | ratio | peak GiB |"
    print(header)
    print("|" + "---|" * 7)
    for r in rows:
        print(
            f"| {r['target']} | {r['tiles']} | {r['passes']} | {r['first']:.3f} | "
            f"{r['slider']:.3f} | {r['ratio']:.1f}x | {r['peak']:.2f} |"
        )


if __name__ == "__main__":
    main()
