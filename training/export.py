"""Turn a training checkpoint into the pipeline folder the ``dit`` engine loads.

    python -m training.export runs/stage1/checkpoints/step-010000 runs/stage1/export

The folder is the checkpoint's starting pipeline (``pretrained``: VAE, scheduler, T5, tokenizer,
model_index.json) with ``transformer/`` replaced by the trained weights (float32, as released),
plus ``sparkvsr_training.json``: stage, step, the full config, and the data list and its hash.
``--link`` hard-links the unchanged components instead of copying them (same disk only).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from sparkvsr.engines.dit import resolve_model_folder
from sparkvsr.errors import EngineError
from training.config import TrainingError
from training.loop import TrainingState

METADATA = "sparkvsr_training.json"
COMPONENTS = ("vae", "scheduler", "text_encoder", "tokenizer")


def resolve_pipeline(pretrained: str) -> Path:
    """A local pipeline folder for ``pretrained`` (a folder, or a hub id in the local cache)."""
    try:
        return resolve_model_folder(pretrained)
    except EngineError as e:
        raise TrainingError(f"the checkpoint's base pipeline cannot be found: {e}") from e


def export_checkpoint(
    checkpoint: str | os.PathLike, out: str | os.PathLike, link: bool = False
) -> Path:
    """Write the pipeline folder for ``checkpoint`` at ``out`` (which must not exist or be empty)."""
    checkpoint, out = Path(checkpoint), Path(out)
    state = TrainingState.read(checkpoint)
    weights = checkpoint / "transformer"
    if not (weights / "config.json").is_file():
        raise TrainingError(f"{checkpoint} has no transformer/ folder to export")
    if out.exists() and any(out.iterdir()):
        raise TrainingError(f"export folder {out} exists and is not empty; choose a new folder")
    base = resolve_pipeline(state.pretrained)
    if not (base / "model_index.json").is_file():
        raise TrainingError(f"{base} is not a diffusers pipeline folder (no model_index.json)")

    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    copy = os.link if link else shutil.copy2
    shutil.copy2(base / "model_index.json", staging / "model_index.json")
    for name in COMPONENTS:
        if (base / name).is_dir():
            shutil.copytree(base / name, staging / name, copy_function=copy)
    shutil.copytree(weights, staging / "transformer")
    metadata = {
        "stage": state.stage,
        "step": state.step,
        "config": state.config,
        "data_list": state.data_list,
        "data_list_hash": state.data_list_hash,
        "pretrained": state.pretrained,
        "checkpoint": str(checkpoint.resolve()),
        "world_size": state.world_size,
    }
    (staging / METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True))
    if out.exists():
        out.rmdir()
    staging.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.export",
        description="Write the dit engine's pipeline folder from a training checkpoint.",
    )
    parser.add_argument("checkpoint", help="a checkpoints/step-XXXXXX folder")
    parser.add_argument("out", help="the pipeline folder to create")
    parser.add_argument("--link", action="store_true", help="hard-link unchanged components")
    args = parser.parse_args(argv)
    try:
        out = export_checkpoint(args.checkpoint, args.out, link=args.link)
    except (TrainingError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"exported {args.checkpoint} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
