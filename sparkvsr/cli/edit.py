"""`edit`: one keyframe's Reference from an editor, written as an image, with its fit."""

from __future__ import annotations

import sys
from pathlib import Path

from sparkvsr.cli.arguments import sub


def fit_line(fit) -> str:
    """One line saying how well a Reference fits its frame (``ReferenceFit``)."""
    return (
        f"fit: {fit.verdict} ({fit.psnr:.1f} dB against the frame, moved {fit.shift:.1f} px, "
        f"colour change {fit.colour_change:.1f}, {fit.disagreement:.0%} differs, "
        f"weight {fit.weight:.2f}): {fit.message}"
    )


def add_edit(commands, name: str) -> None:
    from sparkvsr.references import EDITORS
    from sparkvsr.references.base import DEFAULT_TASK_PROMPT

    p = sub(
        commands,
        name,
        "Make the HR Reference for one keyframe with an editor (Nano-Banana-Pro, PiSA-SR, your "
        "own upload, or a classic Lanczos upscale) and write it as an image.",
    )
    p.add_argument("input", type=Path, help="video file or folder of frames")
    p.add_argument("--frame", type=int, required=True, help="keyframe index (0-based)")
    p.add_argument("--editor", choices=list(EDITORS), default="classic")
    p.add_argument("--task", default=DEFAULT_TASK_PROMPT, help="task prompt (default: restore)")
    p.add_argument("--content", default="", help="what the frame shows (optional)")
    p.add_argument("--image", type=Path, help="upload: your edited image for this frame")
    p.add_argument(
        "--model",
        help="nano-banana-pro: Gemini model name; pisa-sr: SD-2.1-base folder or hub id",
    )
    p.add_argument("--lora", type=Path, help="pisa-sr: pisa_sr.pkl (default: next to --model)")
    p.add_argument("--device", help="pisa-sr: cuda, cuda:1, cpu (default: cuda when present)")
    p.add_argument("--pixel-scale", type=float, default=1.0, help="pisa-sr: lambda_pix")
    p.add_argument("--semantic-scale", type=float, default=1.0, help="pisa-sr: lambda_sem")
    p.add_argument("--seed", type=int, help="nano-banana-pro: sampling seed")
    p.add_argument("--scale", type=int, default=4, help="target = frame size x scale")
    p.add_argument("--size", help="target WIDTHxHEIGHT instead of --scale")
    p.add_argument("-o", "--output", type=Path, required=True, help="image to write (.png)")


def _editor_config(args) -> dict:
    config: dict = {}
    if args.editor in ("nano-banana-pro", "pisa-sr") and args.model:
        config["model"] = args.model
    if args.editor == "pisa-sr":
        if args.lora:
            config["lora"] = str(args.lora)
        if args.device:
            config["device"] = args.device
    return config


def _edit_target(size: str | None, clip_size: tuple[int, int], scale: int) -> tuple[int, int]:
    from sparkvsr.errors import EditorError

    if not size:
        return clip_size[0] * scale, clip_size[1] * scale
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError as e:
        raise EditorError(f"--size {size!r} must look like 1920x1080") from e
    return width, height


def run_edit(args) -> int:
    from sparkvsr.errors import EditorError, KeyframeError
    from sparkvsr.media import open_clip, read_image, write_image
    from sparkvsr.references import load_editor
    from sparkvsr.references.base import EditRequest

    # 1. Check everything cheap before an editor loads a model or spends a request.
    if args.editor == "upload" and args.image is None:
        raise EditorError("--editor upload needs --image FILE (your edited image of the frame)")
    if args.scale < 1:
        raise EditorError(f"--scale {args.scale} must be 1 or more")
    upload = read_image(args.image) if args.image is not None else None
    with open_clip(args.input) as clip:
        if not 0 <= args.frame < clip.num_frames:
            raise KeyframeError(
                f"--frame {args.frame} is outside {args.input} (frames 0..{clip.num_frames - 1})"
            )
        target = _edit_target(args.size, clip.size, args.scale)
        lr_frame = clip.frame(args.frame)
    editor = load_editor(args.editor, **_editor_config(args))
    problem = editor.availability()
    if problem:
        raise EditorError(problem)
    request = EditRequest(
        task_prompt=args.task,
        content_prompt=args.content,
        seed=args.seed,
        upload=upload,
        pixel_scale=args.pixel_scale,
        semantic_scale=args.semantic_scale,
    )
    # 2. The edit, then the image.
    reference = editor.make(lr_frame, target, request)
    write_image(args.output, reference.image)
    for note in reference.provenance.notes:
        print(f"note: {note}", file=sys.stderr)
    print(
        f"wrote {args.output} ({target[0]}x{target[1]}, frame {args.frame}, {args.editor}, "
        f"hash {reference.content_hash[:12]})"
    )
    if reference.provenance.fit is not None:
        print(fit_line(reference.provenance.fit))
    return 0
