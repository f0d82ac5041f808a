"""How long a range preview render takes, and what it saves the full render after it.

For each output size: a fresh project on the clip (keyframes every ``--every`` frames with
classic References, the flow engine), then

1. the range: ``--seconds`` around the middle of the clip (the studio's default range), timed
   from the call to the encoded file (engine, chunk saves, encode);
2. the full render of the same settings, which adopts the range's chunks;
3. for comparison, the full render of a second fresh project without a range before it.

    python benchmarks/range_render.py                           # Vid4 walk (720x480), x4 and fit 1080p
    python benchmarks/range_render.py --clip clip.mp4 --sizes x2 --seconds 2

Prints a table; no assertions (figures go in benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / ".." / "shared" / "data"

from sparkvsr.runtime import configure_process  # noqa: E402

configure_process()  # as the CLI and the studio do, before cv2 loads


def make_project(folder: Path, clip: Path, size: tuple[int, int], every: int):
    from sparkvsr import media
    from sparkvsr.engines.base import RestoreOptions
    from sparkvsr.project import ClipSummary, OutputSettings, Project
    from sparkvsr.references import load_editor
    from sparkvsr.references.base import EditRequest

    info = media.probe(clip)
    options = RestoreOptions(
        output_size=size if size != (info.width * 4, info.height * 4) else None
    )
    project = Project.create(
        folder, ClipSummary.from_info(info), options=options, output=OutputSettings()
    )
    editor = load_editor("classic")
    with media.open_clip(clip) as source:
        hr = (source.size[0] * 4, source.size[1] * 4)
        for frame in range(0, source.num_frames, every):
            project.add_keyframe(frame)
            project.set_reference(frame, editor.make(source.frame(frame), hr, EditRequest()))
    return project, info


def timed(steps) -> tuple[float, float, float, object]:
    """(wall seconds to the end of rendering, wall seconds in total, CPU seconds of this
    process in total (all threads: less sensitive to a busy machine), the RenderResult)."""
    started, cpu = time.perf_counter(), time.process_time()
    rendered = None
    while True:
        try:
            update = next(steps)
        except StopIteration as finished:
            total = time.perf_counter() - started
            return rendered or total, total, time.process_time() - cpu, finished.value
        if update.stage == "assemble" and rendered is None:
            rendered = time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=DATA / "yhjo09_Vid4_G_walk_ffv1.mkv")
    parser.add_argument("--sizes", default="fit1080,x4", help="comma list: x2, x4, fit1080")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--every", type=int, default=16, help="a keyframe every N frames")
    parser.add_argument("--range-only", action="store_true", help="skip both full renders")
    args = parser.parse_args()
    if not args.clip.exists():
        sys.exit(f"{args.clip} is absent: give --clip")

    from sparkvsr import media
    from sparkvsr.engines import load_engine
    from sparkvsr.render import render_range_steps, render_steps
    from ui.output import size_for
    from ui.ranges import range_span

    engine = load_engine("flow")
    info = media.probe(args.clip)
    rows = []
    with tempfile.TemporaryDirectory(prefix="range-bench-") as tmp:
        for name in args.sizes.split(","):
            choice = {"x2": "×2", "x4": "×4", "fit1080": "fit 1080p"}[name]
            folder = Path(tmp) / name
            size = size_for(choice, None, (info.width, info.height))
            project, info = make_project(folder / "a", args.clip, size, args.every)
            middle = info.num_frames // 2
            span = range_span(None, None, middle, info.fps, info.num_frames, args.seconds)
            render_s, range_s, cpu_s, _ = timed(render_range_steps(engine, project, span))
            print(f"{name}: range {span[0]}-{span[1] - 1} in {range_s:.1f} s", flush=True)
            full_s = base_s = float("nan")
            reused = 0
            if not args.range_only:
                _, full_s, _, full = timed(render_steps(engine, project))
                reused = full.chunks_reused
                fresh, _ = make_project(folder / "b", args.clip, size, args.every)
                _, base_s, _, _ = timed(render_steps(engine, fresh))
                print(f"{name}: full after it {full_s:.1f} s, alone {base_s:.1f} s", flush=True)
            rows.append((name, size, span, render_s, range_s, cpu_s, full_s, reused, base_s))
    print()
    print(
        f"clip {args.clip.name}: {info.width}x{info.height}, {info.num_frames} frames at "
        f"{info.fps:g} fps; flow engine, keyframes every {args.every}; {os.cpu_count()} CPUs"
    )
    print(
        "| size | output | range (frames) | range: restore | range: total | range: CPU s "
        "| full after range | chunks reused | full alone |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, size, span, render_s, range_s, cpu_s, full_s, reused, base_s in rows:
        print(
            f"| {name} | {size[0]}x{size[1]} | {span[0]}-{span[1] - 1} ({span[1] - span[0]}) | "
            f"{render_s:.1f} s | {range_s:.1f} s | {cpu_s:.1f} | {full_s:.1f} s | {reused} | "
            f"{base_s:.1f} s |"
        )


if __name__ == "__main__":
    main()
