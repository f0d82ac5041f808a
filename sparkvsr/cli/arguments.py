"""Arguments several commands share, and their conversion at the edge into the library's frozen
options (``KeyframeSelection``, ``RestoreOptions``, ``KeyframeGuidance``)."""

from __future__ import annotations

import argparse
from pathlib import Path

EXIT_USAGE = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse that exits 2 with one line (not the usage block) on a bad value."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message}\n")


def sub(commands, name: str, help_text: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=help_text, description=help_text)


def add_keyframe_selection(p: argparse.ArgumentParser, default_mode: str | None) -> None:
    from sparkvsr.keyframes import MODES

    p.add_argument("--keyframes", help="manual keyframes, e.g. 0,40,80")
    p.add_argument("--keyframe-mode", "--mode", dest="mode", choices=MODES, default=default_mode)
    p.add_argument("--every", type=int, default=32, help="uniform: spacing in frames")
    p.add_argument("--count", type=int, help="random: how many keyframes")
    p.add_argument("--density", type=float, help="random: keyframes per frame, e.g. 0.05")
    p.add_argument("--seed", type=int, default=0, help="random: seed")


def keyframe_selection(args):
    from sparkvsr.keyframes import KeyframeSelection, parse_keyframe_list

    if args.keyframes:
        return KeyframeSelection("manual", manual=parse_keyframe_list(args.keyframes))
    return KeyframeSelection(
        args.mode or "manual",
        every=args.every,
        count=args.count,
        density=args.density,
        seed=args.seed,
    )


def chosen_keyframes(args, info) -> tuple[int, ...]:
    from sparkvsr.keyframes import select_keyframes

    return select_keyframes(keyframe_selection(args), info.num_frames, info.iframes)


def add_restore_options(p: argparse.ArgumentParser) -> None:
    """Engine, References and restore options (shared by restore and batch)."""
    p.add_argument("--engine", default="flow", help="flow (CPU, default) or dit (GPU, SparkVSR)")
    p.add_argument("--model", help="dit: pipeline folder or hub id (default JiongzeYu/SparkVSR)")
    p.add_argument("--device", help="dit: cuda, cuda:1, cpu (default: cuda when present)")
    p.add_argument("--offload", action="store_true", help="dit: model-level CPU offload")
    p.add_argument("--vae-tiling", action="store_true", help="dit: tiled VAE for large frames")
    p.add_argument(
        "--ref",
        action="append",
        default=[],
        metavar="FRAME=IMAGE",
        help="HR reference image for a keyframe (repeatable); other keyframes use --editor",
    )
    p.add_argument("--editor", default="classic", help="editor for keyframes without --ref")
    p.add_argument("--guidance", type=float, default=1.0, help="s: 0 blind, 1 plain, >1 stronger")
    p.add_argument(
        "--keyframe-weight",
        action="append",
        default=[],
        metavar="FRAME=W",
        help="weight of one keyframe's Reference, 0 to 2 (repeatable; default: from its fit)",
    )
    p.add_argument(
        "--keep-colors",
        action="append",
        default=[],
        type=int,
        metavar="FRAME",
        help="propagate this keyframe's colour grade too (repeatable; default: the clip's colours)",
    )
    p.add_argument("--chunk", type=int, default=33, help="frames per temporal chunk (8k+1 for dit)")
    p.add_argument("--overlap", type=int, default=8, help="frames shared by neighbouring chunks")
    p.add_argument("--tile", type=int, default=0, help="spatial tile in LR pixels (0: off)")
    p.add_argument("--tile-overlap", type=int, default=32, help="LR pixels shared by tiles")
    p.add_argument("--scale", type=int, default=4, help="upscale factor (the dit model: 4)")
    p.add_argument(
        "--output-size",
        help="WIDTHxHEIGHT to resize the result to; below --scale x the input, the flow engine "
        "works at the smallest whole scale that reaches it, so memory and time follow the "
        "output size (dit stays at its trained x4)",
    )
    p.add_argument("--color-fix", default="none", help="none, wavelet or adain")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality (lower is better)")


def parse_size(text: str | None) -> tuple[int, int] | None:
    from sparkvsr.errors import EngineError

    if not text:
        return None
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise EngineError(f"--output-size {text!r} must look like 1920x1080") from e
    return width, height


def parse_refs(items: list[str]) -> dict[int, Path]:
    from sparkvsr.errors import KeyframeError

    refs: dict[int, Path] = {}
    for item in items:
        frame, sep, image = item.partition("=")
        if not sep or not frame.strip().isdigit():
            raise KeyframeError(f"--ref {item!r} must look like FRAME=IMAGE, e.g. 40=ref40.png")
        refs[int(frame)] = Path(image)
    return refs


def restore_options(args):
    from sparkvsr.engines.base import RestoreOptions

    return RestoreOptions(
        guidance=args.guidance,
        scale=args.scale,
        output_size=parse_size(args.output_size),
        chunk=args.chunk,
        overlap=args.overlap,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        color_fix=args.color_fix,
        keyframe_guidance=_keyframe_guidance(args.keyframe_weight, args.keep_colors),
    )


def _keyframe_guidance(weights: list[str], keep_colors: list[int]):
    """``--keyframe-weight FRAME=W`` and ``--keep-colors FRAME`` as ``KeyframeGuidance`` entries."""
    from sparkvsr.engines.base import KeyframeGuidance
    from sparkvsr.errors import EngineError

    chosen: dict[int, float] = {}
    for item in weights:
        try:
            frame, weight = item.split("=", 1)
            chosen[int(frame)] = float(weight)
        except ValueError as e:
            raise EngineError(
                f"--keyframe-weight {item!r} must look like FRAME=WEIGHT, e.g. 16=0.5"
            ) from e
    frames = sorted(set(chosen) | set(keep_colors))
    return tuple(
        KeyframeGuidance(f, weight=chosen.get(f), keep_colors=f in keep_colors) for f in frames
    )


def engine_settings(args) -> dict:
    if args.engine != "dit":
        return {}
    config: dict = {"offload": args.offload, "vae_tiling": args.vae_tiling}
    if args.model:
        config["model"] = args.model
    if args.device:
        config["device"] = args.device
    return config
