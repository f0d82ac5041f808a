"""`restore`: one clip through an engine into a file, straight or inside a resumable project."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from sparkvsr.cli.arguments import (
    add_keyframe_selection,
    add_restore_options,
    chosen_keyframes,
    engine_settings,
    parse_refs,
    restore_options,
    sub,
)


def add_restore(commands, name: str) -> None:
    p = sub(
        commands,
        name,
        "Restore a clip: propagate keyframe References through it and write the result "
        "(source fps and audio kept). The dit model is trained for x4; --output-size resizes "
        "after the model to any size.",
    )
    p.add_argument("input", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help=".mp4/.mov/.mkv, or a folder")
    p.add_argument(
        "--project",
        type=Path,
        help="project folder: every finished chunk is saved there, so running the same command "
        "again after a crash or Ctrl-C resumes from the last finished chunk",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        help="with --project: seconds to wait while another process (the studio, a worker, "
        "another restore) has the project open (default: refuse at once, naming it)",
    )
    p.add_argument(
        "--range",
        metavar="IN-OUT",
        help="with --project: render only frames IN to OUT (both included, e.g. 120-195) into "
        "-o, a preview at the output settings; the project's full render reuses its chunks",
    )
    add_keyframe_selection(p, default_mode=None)
    add_restore_options(p)
    p.add_argument("--lossless", action="store_true", help="FFV1 .mkv (or PNG folder) output")
    p.add_argument(
        "--codec",
        choices=("h264", "h265", "prores"),
        default="h264",
        help="video codec of .mp4/.mov/.mkv output (10-bit and HDR sources stay 10-bit in each; "
        "prores: 422 HQ, 10-bit, for editing, best in .mov)",
    )
    p.add_argument(
        "--square-pixels",
        action="store_true",
        help="resample anamorphic sources (e.g. DVD 16:9) to square pixels; by default their "
        "pixel aspect is kept, so the picture shows at the same shape either way",
    )
    p.add_argument(
        "--tonemap",
        action="store_true",
        help="HDR (PQ, HLG) sources: tone-map to SDR BT.709 (default: keep HDR, 10-bit, tagged)",
    )
    p.add_argument(
        "--field-rate",
        action="store_true",
        help="interlaced sources: deinterlace to one frame per field (e.g. 50 fps from 25i: "
        "smoother motion, twice the frames); not with --project",
    )
    p.add_argument(
        "--keep-fields",
        action="store_true",
        help="interlaced sources: keep the fields as they are (default: deinterlace with bwdif)",
    )


def run_restore(args) -> int:
    from sparkvsr.errors import ProjectError

    if args.range and not args.project:
        raise ProjectError(
            "--range needs --project: a range's chunks are kept in the project, where the full "
            "render reuses them; add --project FOLDER"
        )
    if args.project:
        return _run_restore_in_project(args)
    from sparkvsr.engines import load_engine
    from sparkvsr.keyframes import validate_keyframes
    from sparkvsr.media import open_clip
    from sparkvsr.references.assembly import references_for_keyframes
    from sparkvsr.render import render_clip

    # 1. Check everything cheap before loading a model: the clip, the output, the keyframes.
    clip = open_clip(
        args.input,
        deinterlace=not args.keep_fields,
        field_rate=args.field_rate,
        tonemap=args.tonemap,
    )
    options, scale_note = _working_options(args, clip)
    _check_output(args, clip, options)
    ref_files = parse_refs(args.ref)
    keyframes = validate_keyframes(
        set(chosen_keyframes(args, clip.info)) | set(ref_files), clip.num_frames
    )
    # 2. References: given images fitted to the target size, the editor for the rest.
    made = references_for_keyframes(clip, keyframes, ref_files, args.editor, options.scale)
    references = {index: reference.image for index, reference in made.items()}
    # 3. Restore chunk by chunk straight into the writer.
    engine = load_engine(args.engine, **engine_settings(args))
    with _progress_bar(clip.num_frames, args.engine) as show, clip:
        result = render_clip(
            engine,
            clip,
            references,
            options,
            args.output,
            crf=args.crf,
            lossless=args.lossless,
            codec=args.codec,
            square_pixels=args.square_pixels,
            progress=show,
        )
    for note in (*scale_note, *result.notes):
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {args.output} ({result.frames} frames, {clip.info.fps:g} fps)")
    return 0


def _working_options(args, clip):
    """Restore options with the engine's working scale following --output-size (see
    render.working_scale), and the note that says so."""
    from dataclasses import replace

    from sparkvsr.render import working_scale

    options = restore_options(args)
    scale = working_scale(args.engine, options, clip.size)
    if scale == options.scale:
        return options, ()
    width, height = options.output_size
    note = (
        f"--output-size {width}x{height} is below x{options.scale} of the "
        f"{clip.size[0]}x{clip.size[1]} input: the engine works at x{scale} and resizes, so "
        "memory follows the output size"
    )
    return replace(options, scale=scale), (note,)


def _check_output(args, clip, options) -> None:
    """The output checks (not the source, codec level, writable, space) before any work."""
    from sparkvsr.media import check_output
    from sparkvsr.render import output_size

    check_output(
        args.input,
        args.output,
        output_size(clip.info, options),
        clip.num_frames,
        source_size=clip.size,
        codec=getattr(args, "codec", "h264"),
        lossless=getattr(args, "lossless", False),
    )


@contextlib.contextmanager
def _progress_bar(total: int, engine: str):
    """A tqdm bar on stderr fed by RenderProgress updates (frames done, stage)."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="frame", desc=f"restore ({engine})")

    def show(update) -> None:
        bar.n = update.encoded if update.stage == "assemble" else update.frames_done
        bar.set_postfix_str("encoding" if update.stage == "assemble" else update.stage)
        bar.refresh()

    try:
        yield show
    finally:
        bar.close()


def _run_restore_in_project(args) -> int:
    from sparkvsr.engines import load_engine
    from sparkvsr.errors import ProjectError
    from sparkvsr.keyframes import validate_keyframes
    from sparkvsr.media import open_clip
    from sparkvsr.project import OutputSettings
    from sparkvsr.render import ensure_project

    # 1. Check everything cheap before loading a model.
    if args.field_rate:
        raise ProjectError(
            "--field-rate cannot be combined with --project (a project's frames are the file's); "
            "run without --project"
        )
    if args.lossless:
        raise ProjectError(
            "--lossless cannot be combined with --project (projects write H.264 or H.265)"
        )
    ref_files = parse_refs(args.ref)
    # The clip stays open for the References (one open, one filter graph, one probe).
    with open_clip(args.input, deinterlace=not args.keep_fields, tonemap=args.tonemap) as clip:
        options, scale_note = _working_options(args, clip)
        _check_output(args, clip, options)
        chosen = None
        if args.keyframes or args.mode or ref_files:
            selected = set(chosen_keyframes(args, clip.info)) | set(ref_files)
            chosen = validate_keyframes(selected, clip.num_frames)
        # 2. Open or create the project (same settings as last time: the render resumes).
        engine = load_engine(args.engine, **engine_settings(args))
        output = OutputSettings(
            path=str(args.output.resolve()),
            crf=args.crf,
            codec=args.codec,
            square_pixels=args.square_pixels,
            deinterlace=not args.keep_fields,
            tonemap=args.tonemap,
        )
        project = ensure_project(
            args.project, args.input, engine, options, output, lock="restore (CLI)", wait=args.wait
        )
        with project:  # the writer lock, held until the render is done
            return _restore_locked_project(
                args, project, engine, clip, chosen, ref_files, options, scale_note
            )


def _restore_locked_project(
    args, project, engine, clip, chosen, ref_files, options, scale_note
) -> int:
    from sparkvsr.references.assembly import references_for_keyframes
    from sparkvsr.render import render_project, render_range_steps

    if chosen is not None and chosen != project.state.keyframes:
        project.set_keyframes(chosen)
    # 3. References: given images always; the editor only where the project has none yet.
    keyframes = project.state.keyframes
    todo = [k for k in keyframes if k in ref_files or project.state.reference(k) is None]
    given = {k: ref_files[k] for k in todo if k in ref_files}
    made = references_for_keyframes(clip, todo, given, args.editor, options.scale)
    for index, reference in made.items():
        project.set_reference(index, reference)
    # 4. Render, saving every chunk into the project; resume after the last finished one.
    if args.range:
        span = parse_range(args.range, project.state.clip.num_frames)
        with _progress_bar(span[1] - span[0], args.engine) as show:
            steps = render_range_steps(
                engine, project, span, output=args.output.resolve(), progress=show
            )
            result = _finish(steps)
    else:
        with _progress_bar(project.state.clip.num_frames, args.engine) as show:
            result = render_project(engine, project, progress=show)
    for note in (*scale_note, *result.notes):
        print(f"note: {note}", file=sys.stderr)
    if result.skipped:
        print(f"{result.output} is already rendered with these settings (project {project.folder})")
        return 0
    resumed = f", {result.chunks_resumed} chunks resumed" if result.chunks_resumed else ""
    print(f"wrote {result.output} ({result.frames} frames{resumed}; project {project.folder})")
    return 0


def parse_range(text: str, num_frames: int) -> tuple[int, int]:
    """``"120-195"`` (in and out frames, both included) as ``(120, 196)``; ProjectError
    naming the fix for anything else or a range outside the clip."""
    from sparkvsr.errors import ProjectError

    parts = text.split("-")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ProjectError(f"--range {text!r}: give the in and out frames as IN-OUT, e.g. 120-195")
    first, last = int(parts[0]), int(parts[1])
    if not 0 <= first <= last < num_frames:
        raise ProjectError(
            f"--range {text}: the in frame must not be after the out frame, both inside the "
            f"clip (frames 0 to {num_frames - 1})"
        )
    return first, last + 1


def _finish(steps):
    while True:
        try:
            next(steps)
        except StopIteration as finished:
            return finished.value
