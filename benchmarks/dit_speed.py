"""Speed and memory of the ``dit`` engine at the real CogVideoX1.5-5B-I2V shapes.

Random bf16 weights at the real transformer and VAE shapes (speed does not depend on the values):

    python benchmarks/dit_speed.py                 # GPU: 720p and 1080p output, s = 1 and 0.5
    python benchmarks/dit_speed.py --tiny          # CPU smoke run with tiny models (seconds)
    python benchmarks/dit_speed.py --memory        # peak memory, 200- vs 66-frame clip, chunk 33
    python benchmarks/dit_speed.py --memory --tiny # the same with tiny models on the CPU
    python benchmarks/dit_speed.py --previews      # a guidance move's preview, per viewer zoom
    python benchmarks/dit_speed.py --previews --tiny

Speed table columns: seconds per 33-frame chunk (cache cleared, so every pass runs), output
frames per second (chunk frames / seconds; chunk overlap not subtracted), transformer seconds,
the transformer's achieved TFLOP/s and its share of the measured bf16 matmul rate, peak VRAM.
"Re-decode" is a new guidance s served from the x0 cache (no transformer pass).

The previews table: a new guidance s on a frame whose x0 is cached, as the studio asks for it
(a 900x600 viewer: the whole frame fitted, 100 % and 200 % zoom at the centre), against the
render's re-decode of the whole chunk; each row names the latent it decoded (frames x h x w).
Its x0 come from a tiny transformer (preview speed does not depend on them) and the real VAE,
so 4x of 720p fits: the transformer is not what is measured there.

Targets on one H200: 720p at >= 8 frames/s with s = 1, s = 0.5 <= 1.7x s = 1, re-decode >= 5x
faster than a full pass, transformer >= 45% of measured bf16 matmul peak; a 200-frame clip peaks
within 1.3x of a 66-frame clip.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from sparkvsr.engines.base import RestoreOptions  # noqa: E402
from sparkvsr.engines.dit import DitEngine  # noqa: E402
from sparkvsr.frames import ArrayFrames  # noqa: E402

# CogVideoX1.5-5B-I2V (diffusers field names); SparkVSR keeps this architecture.
TRANSFORMER_CONFIG = dict(
    num_attention_heads=48,
    attention_head_dim=64,
    in_channels=32,
    out_channels=16,
    time_embed_dim=512,
    ofs_embed_dim=512,
    text_embed_dim=4096,
    num_layers=42,
    patch_size=2,
    patch_size_t=2,
    sample_width=300,
    sample_height=300,
    sample_frames=81,
    temporal_compression_ratio=4,
    max_text_seq_length=226,
    use_rotary_positional_embeddings=True,
    use_learned_positional_embeddings=False,
    patch_bias=False,
)
VAE_CONFIG = dict(
    block_out_channels=(128, 256, 256, 512),
    latent_channels=16,
    layers_per_block=3,
    norm_num_groups=32,
    temporal_compression_ratio=4,
    sample_height=480,
    sample_width=720,
    scaling_factor=0.7,
    invert_scale_latents=True,
)
# Output sizes -> LR input sizes (x4): 1280x720 and 1920x1080 outputs.
REAL_SIZES = (("720p", 320, 180), ("1080p", 480, 270))
TINY_SIZES = (("tiny", 8, 8),)  # a smoke run of the same code path, not a measurement


@dataclass(frozen=True)
class Row:
    size: str
    guidance: str
    seconds: float
    frames_per_second: float
    transformer_seconds: float
    tflops: float
    share_of_peak: float
    peak_vram_gb: float


class TransformerTimer:
    """Wall time and FLOPs of every transformer forward (CUDA-synchronised)."""

    def __init__(self, transformer: torch.nn.Module, device: torch.device):
        self.device = device
        self.seconds = 0.0
        self.flops = 0.0
        self._start = 0.0
        config = transformer.config
        self.width = config.num_attention_heads * config.attention_head_dim
        self.layers = config.num_layers
        self.patch = config.patch_size
        self.patch_t = config.patch_size_t or 1
        self.text = config.max_text_seq_length
        transformer.register_forward_pre_hook(self._before, with_kwargs=True)
        transformer.register_forward_hook(self._after, with_kwargs=True)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _before(self, module, args, kwargs):
        self._sync()
        self._start = time.perf_counter()
        b, f, _, h, w = kwargs["hidden_states"].shape
        tokens = self.text + (f // self.patch_t) * (h // self.patch) * (w // self.patch)
        d = self.width
        # per layer: qkv + out projections 8Nd^2, FFN (4d inner) 16Nd^2, attention 4N^2d
        self.flops += b * self.layers * (24 * tokens * d * d + 4 * tokens * tokens * d)

    def _after(self, module, args, kwargs, output):
        self._sync()
        self.seconds += time.perf_counter() - self._start

    def reset(self) -> None:
        self.seconds, self.flops = 0.0, 0.0


def matmul_tflops(device: torch.device, dtype: torch.dtype) -> float:
    """Measured dense matmul rate (TFLOP/s) on this device and dtype."""
    n = 8192 if device.type == "cuda" else 512
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    repeats = 20 if device.type == "cuda" else 5
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def build_engine(
    tiny: bool, device: torch.device, vae_tiling: bool, small_transformer: bool = False
) -> DitEngine:
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXTransformer3DModel,
    )

    from tests.tiny_cogvideox import SCHEDULER_CONFIG, tiny_transformer, tiny_vae

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    if tiny:
        transformer, vae, text_dim = tiny_transformer(), tiny_vae(), 32
    elif small_transformer:
        transformer, text_dim = tiny_transformer().to(device, dtype), 32
        with torch.device(device):
            vae = AutoencoderKLCogVideoX(**VAE_CONFIG).to(dtype)
    else:
        with torch.device(device):
            transformer = CogVideoXTransformer3DModel(**TRANSFORMER_CONFIG).to(dtype)
            vae = AutoencoderKLCogVideoX(**VAE_CONFIG).to(dtype)
        text_dim = TRANSFORMER_CONFIG["text_embed_dim"]
    return DitEngine.from_components(
        transformer,
        vae,
        CogVideoXDDIMScheduler(**SCHEDULER_CONFIG),
        torch.randn(1, 226, text_dim),
        identity="benchmark-random",
        device=device,
        dtype=dtype,
        vae_tiling=vae_tiling,
    )


def clip(width: int, height: int, frames: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    lr = rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    refs = {
        i: rng.integers(0, 256, (height * 4, width * 4, 3), dtype=np.uint8)
        for i in (0, 16, 32)
        if i < frames
    }
    return ArrayFrames(lr), refs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gb(device: torch.device) -> float:
    return (
        torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    )


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def speed(tiny: bool, device: torch.device, vae_tiling: bool) -> list[Row]:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = matmul_tflops(device, dtype)
    print(
        f"measured {str(dtype).replace('torch.', '')} matmul rate: {peak:.1f} TFLOP/s on {device}"
    )
    engine = build_engine(tiny, device, vae_tiling)
    timer = TransformerTimer(engine.transformer, device)
    chunk = 9 if tiny else 33
    rows: list[Row] = []
    for label, width, height in TINY_SIZES if tiny else REAL_SIZES:
        source, refs = clip(width, height, chunk)
        warm = RestoreOptions(guidance=0.5, chunk=chunk)
        if not tiny:
            engine.cache.clear()
            list(engine.restore(source, refs, warm))  # warm-up: kernels, allocator
        for guidance in (1.0, 0.5):
            engine.cache.clear()
            timer.reset()
            _reset_peak(device)
            _sync(device)
            start = time.perf_counter()
            list(engine.restore(source, refs, RestoreOptions(guidance=guidance, chunk=chunk)))
            _sync(device)
            seconds = time.perf_counter() - start
            tflops = timer.flops / max(timer.seconds, 1e-9) / 1e12
            rows.append(
                Row(
                    label,
                    f"{guidance:g}",
                    seconds,
                    chunk / seconds,
                    timer.seconds,
                    tflops,
                    tflops / peak,
                    _peak_gb(device),
                )
            )
        passes = engine.transformer_passes
        _reset_peak(device)
        _sync(device)
        start = time.perf_counter()
        list(engine.restore(source, refs, RestoreOptions(guidance=0.7, chunk=chunk)))
        _sync(device)
        seconds = time.perf_counter() - start
        assert engine.transformer_passes == passes, "a new s must not run the transformer"
        rows.append(
            Row(label, "0.7 re-decode", seconds, chunk / seconds, 0.0, 0.0, 0.0, _peak_gb(device))
        )
    return rows


def print_speed(rows: list[Row]) -> None:
    header = f"{'output':<11} {'s':<14} {'s/chunk':>8} {'frames/s':>9} {'DiT s':>7} {'TFLOP/s':>8} {'% peak':>7} {'VRAM GB':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.size:<11} {r.guidance:<14} {r.seconds:>8.3f} {r.frames_per_second:>9.2f} "
            f"{r.transformer_seconds:>7.3f} {r.tflops:>8.3f} {100 * r.share_of_peak:>6.1f}% {r.peak_vram_gb:>8.2f}"
        )
    by = {(r.size, r.guidance): r for r in rows}
    for size in dict.fromkeys(r.size for r in rows):
        one, half, redo = by[(size, "1")], by[(size, "0.5")], by[(size, "0.7 re-decode")]
        print(
            f"{size}: s=0.5 costs {half.seconds / one.seconds:.2f}x s=1; re-decode is "
            f"{half.seconds / redo.seconds:.1f}x faster than a full s=0.5 chunk"
        )


# LR sizes whose 4x output a viewer shows: 480p -> 2560x1920, 720p -> 5120x2880.
PREVIEW_SIZES = (("480p x4", 640, 480), ("720p x4", 1280, 720))
TINY_PREVIEW_SIZES = (("tiny", 16, 16),)  # a smoke run of the code path, not a measurement
VIEWER, TINY_VIEWER = (900, 600), (32, 32)


def previews(tiny: bool, device: torch.device, vae_tiling: bool) -> list[tuple]:
    """Rows (size, view, median seconds of 3, decoded latent shapes) of a guidance move."""
    from sparkvsr.viewport import Viewport

    engine = build_engine(tiny, device, vae_tiling, small_transformer=not tiny)
    chunk = 9 if tiny else 33
    width_px, height_px = TINY_VIEWER if tiny else VIEWER
    views = (
        ("fit", Viewport(width_px, height_px)),
        ("100 %", Viewport(width_px, height_px, zoom=1.0)),
        ("200 %", Viewport(width_px, height_px, zoom=2.0)),
    )
    decoded: list[tuple[int, ...]] = []
    decode = engine.vae.decode

    def logged(z, *args, **kwargs):
        decoded.append(tuple(z.shape[2:]))
        return decode(z, *args, **kwargs)

    engine.vae.decode = logged
    rows = []
    for label, width, height in TINY_PREVIEW_SIZES if tiny else PREVIEW_SIZES:
        source, refs = clip(width, height, chunk)
        options = RestoreOptions(guidance=0.5, chunk=chunk)
        list(engine.restore(source, refs, options))  # x0 of both branches, now cached
        frame = chunk // 2
        for view, viewport in (("whole chunk (render)", None), *views):
            times = []
            for guidance in (0.6,) if tiny else (0.6, 0.7, 0.8):  # each a new s: x0 cached
                decoded.clear()
                passes = engine.transformer_passes
                moved = RestoreOptions(guidance=guidance, chunk=chunk)
                _sync(device)
                start = time.perf_counter()
                if viewport is None:
                    list(engine.restore(source, refs, moved))
                else:
                    engine.preview(source, refs, frame, moved, viewport=viewport)
                _sync(device)
                times.append(time.perf_counter() - start)
                assert engine.transformer_passes == passes, "a new s must not run the transformer"
            shapes = " + ".join("x".join(str(n) for n in shape) for shape in decoded)
            rows.append((label, view, float(np.median(times)), shapes))
    return rows


def print_previews(rows: list[tuple]) -> None:
    header = f"{'output':<9} {'view':<21} {'seconds':>8}  decoded latent (frames x h x w)"
    print(header)
    print("-" * len(header))
    for size, view, seconds, shapes in rows:
        print(f"{size:<9} {view:<21} {seconds:>8.3f}  {shapes}")


def memory_run(frames: int, tiny: bool, device: torch.device) -> tuple[float, float]:
    """Restore a ``frames``-frame clip with chunk 33; return (peak MiB, numpy peak MiB)."""
    engine = build_engine(tiny, device, vae_tiling=not tiny)
    width, height = (8, 8) if tiny else REAL_SIZES[0][1:]
    source, refs = clip(width, height, frames)
    tracemalloc.start()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _reset_peak(device)
    for _ in engine.restore(source, refs, RestoreOptions(guidance=0.5, chunk=33, overlap=8)):
        pass  # a writer would encode and free the chunk here
    numpy_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, numpy_peak
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (after - before) / 1024, numpy_peak


def memory(tiny: bool, device: torch.device) -> None:
    results = {}
    for frames in (66, 200):  # each in a fresh process so high-water marks do not mix
        command = [sys.executable, __file__, "--memory-run", str(frames), "--device", str(device)]
        command += ["--tiny"] if tiny else []
        output = subprocess.run(
            command, capture_output=True, text=True, check=True, env=os.environ
        ).stdout
        results[frames] = tuple(float(x) for x in output.strip().splitlines()[-1].split())
    kind = "peak VRAM" if device.type == "cuda" else "peak RSS growth"
    print(f"{'frames':>6} {kind + ' MiB':>22} {'numpy peak MiB':>15}")
    for frames, (peak, numpy_peak) in results.items():
        print(f"{frames:>6} {peak:>22.1f} {numpy_peak:>15.1f}")
    ratio = results[200][0] / max(results[66][0], 1e-9)
    ratio_np = results[200][1] / max(results[66][1], 1e-9)
    print(
        f"200 / 66 frames: {ratio:.2f}x ({kind}), {ratio_np:.2f}x (numpy buffers); target <= 1.3x"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random models (CPU smoke run)")
    parser.add_argument("--memory", action="store_true", help="peak memory, 200 vs 66 frames")
    parser.add_argument("--memory-run", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--previews", action="store_true", help="a guidance move's preview")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if present)")
    parser.add_argument("--vae-tiling", action="store_true", help="VAE tiled encode/decode")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if not args.tiny and device.type != "cuda":
        print("the real-shape benchmark needs a CUDA GPU; use --tiny for a CPU smoke run")
        return 2
    if args.memory_run:
        print(*memory_run(args.memory_run, args.tiny, device))
        return 0
    if args.memory:
        memory(args.tiny, device)
        return 0
    if args.previews:
        print_previews(previews(args.tiny, device, args.vae_tiling or not args.tiny))
        return 0
    print_speed(speed(args.tiny, device, args.vae_tiling))
    return 0


if __name__ == "__main__":
    sys.exit(main())
