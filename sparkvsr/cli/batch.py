"""`batch`: many clips, one resumable project each, split across processes."""

from __future__ import annotations

from pathlib import Path

from sparkvsr.cli.arguments import (
    add_keyframe_selection,
    add_restore_options,
    engine_settings,
    keyframe_selection,
    restore_options,
    sub,
)


def add_batch(commands, name: str) -> None:
    p = sub(
        commands,
        name,
        "Restore many clips, one project each under OUTDIR/projects: finished ones are skipped, "
        "interrupted ones resume. Under accelerate launch or torchrun the inputs are split "
        "across processes (RANK/WORLD_SIZE) without overlap.",
    )
    p.add_argument("inputs", type=Path, help="a folder of clips, or a text file of clip paths")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    add_keyframe_selection(p, default_mode="iframes")
    add_restore_options(p)


def run_batch(args) -> int:
    from sparkvsr import batch
    from sparkvsr.errors import KeyframeError

    # 1. Options and this process's share of the inputs.
    if args.ref:
        raise KeyframeError("--ref names frames of one clip; batch makes References with --editor")
    options = batch.BatchOptions(
        engine=args.engine,
        engine_config=engine_settings(args),
        options=restore_options(args),
        keyframes=keyframe_selection(args),
        editor=args.editor,
        crf=args.crf,
    )
    rank, world = batch.process_rank()
    jobs = batch.plan_jobs(batch.list_inputs(args.inputs), args.output)
    mine = batch.shard(jobs, rank, world)
    print(f"[rank {rank}] {len(mine)} of {len(jobs)} inputs (world size {world})", flush=True)
    # 2. Restore each one, then the summary.
    rows = batch.run_batch(mine, options, rank=rank, log=lambda line: print(line, flush=True))
    print(batch.format_table(rows), flush=True)
    return 1 if any(row.status == "failed" for row in rows) else 0
