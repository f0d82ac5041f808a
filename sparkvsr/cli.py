"""`python -m sparkvsr COMMAND ...`: batch-friendly entry points over the library.

Each command is an ``_add_<name>`` (its arguments) and ``_run_<name>`` (its work) pair listed in
``COMMANDS``. Errors a user can fix print as one line on stderr and exit with code 2; nothing
here holds logic the library does not already have.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

from sparkvsr.errors import SparkVSRError

EXIT_USAGE = 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return COMMANDS[args.command][1](args) or 0
    except SparkVSRError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sparkvsr",
        description="SparkVSR Studio: keyframe-guided video super-resolution from the command line.",
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_ArgumentParser
    )
    for name, (add, _run) in COMMANDS.items():
        add(commands, name)
    return parser


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that exits 2 with one line (not the usage block) on a bad value."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message}\n")


def _sub(commands, name: str, help_text: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=help_text, description=help_text)


# --- probe -------------------------------------------------------------------------------------


def _add_probe(commands, name: str) -> None:
    p = _sub(commands, name, "Describe a video: frames, real fps, size, audio, I-frames.")
    p.add_argument("file", type=Path)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def _run_probe(args) -> int:
    from sparkvsr.media import probe

    info = probe(args.file)
    summary = info.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    rate = f"{info.fps:.3f} fps" + (" (variable frame rate)" if info.vfr else "")
    print(f"{info.path}")
    print(f"  video   {info.codec} {info.pix_fmt}, {info.width}x{info.height}, {rate}")
    print(f"  frames  {info.num_frames} ({info.duration:.3f} s), rotation {info.rotation}")
    print(f"  I-frames {len(info.iframes)}: {_short_list(info.iframes)}")
    summary_colour = summary["colour"]
    print(
        f"  shape   SAR {summary['sar']}, DAR {summary['dar']}, {info.field_order}"
        + (" (interlaced)" if info.interlaced else "")
        + (", alpha" if info.alpha else "")
    )
    print(
        f"  colour  {summary_colour['matrix']} {summary_colour['range']}, primaries "
        f"{summary_colour['primaries']}, transfer {summary_colour['transfer']}, "
        f"{summary_colour['bit_depth']}-bit"
        + (f", HDR {info.colour.hdr.upper()}" if info.colour.hdr else "")
    )
    for stream in info.streams:
        extra = ""
        audio = next((a for a in info.audio if a.index == stream.index), None)
        if audio is not None:
            extra = f" {audio.sample_rate} Hz {audio.layout or f'x{audio.channels}'}"
        tags = ", ".join(t for t in (stream.language, stream.title, *stream.disposition) if t)
        start = f", starts {stream.start:+.3f} s" if stream.start is not None else ""
        print(
            f"  {stream.kind:<7} #{stream.index} {stream.codec}{extra}{f' ({tags})' if tags else ''}{start}"
        )
    print(f"  video starts {info.start:+.3f} s")
    return 0


def _short_list(values, limit: int = 20) -> str:
    shown = ", ".join(str(v) for v in list(values)[:limit])
    return shown + (f", ... ({len(values) - limit} more)" if len(values) > limit else "")


# --- keyframes ---------------------------------------------------------------------------------


def _add_keyframes(commands, name: str) -> None:
    p = _sub(commands, name, "Pick keyframes for a clip (at least 4 frames apart).")
    p.add_argument("file", type=Path)
    _add_keyframe_selection(p, default_mode="iframes")
    p.add_argument("--json", action="store_true", help="print a JSON list")


def _add_keyframe_selection(p: argparse.ArgumentParser, default_mode: str | None) -> None:
    from sparkvsr.keyframes import MODES

    p.add_argument("--keyframes", help="manual keyframes, e.g. 0,40,80")
    p.add_argument("--keyframe-mode", "--mode", dest="mode", choices=MODES, default=default_mode)
    p.add_argument("--every", type=int, default=32, help="uniform: spacing in frames")
    p.add_argument("--count", type=int, help="random: how many keyframes")
    p.add_argument("--density", type=float, help="random: keyframes per frame, e.g. 0.05")
    p.add_argument("--seed", type=int, default=0, help="random: seed")


def _keyframe_selection(args):
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


def _select_keyframes(args, info) -> tuple[int, ...]:
    from sparkvsr.keyframes import select_keyframes

    return select_keyframes(_keyframe_selection(args), info.num_frames, info.iframes)


def _run_keyframes(args) -> int:
    from sparkvsr.media import probe

    info = probe(args.file)
    indices = _select_keyframes(args, info)
    print(json.dumps(list(indices)) if args.json else " ".join(str(i) for i in indices))
    return 0


# --- restore -----------------------------------------------------------------------------------


def _add_restore(commands, name: str) -> None:
    p = _sub(
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
    _add_keyframe_selection(p, default_mode=None)
    _add_restore_options(p)
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


def _add_restore_options(p: argparse.ArgumentParser) -> None:
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


def _parse_size(text: str | None) -> tuple[int, int] | None:
    from sparkvsr.errors import EngineError

    if not text:
        return None
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise EngineError(f"--output-size {text!r} must look like 1920x1080") from e
    return width, height


def _parse_refs(items: list[str]) -> dict[int, Path]:
    from sparkvsr.errors import KeyframeError

    refs: dict[int, Path] = {}
    for item in items:
        frame, sep, image = item.partition("=")
        if not sep or not frame.strip().isdigit():
            raise KeyframeError(f"--ref {item!r} must look like FRAME=IMAGE, e.g. 40=ref40.png")
        refs[int(frame)] = Path(image)
    return refs


def _restore_options(args):
    from sparkvsr.engines.base import RestoreOptions

    return RestoreOptions(
        guidance=args.guidance,
        scale=args.scale,
        output_size=_parse_size(args.output_size),
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


def _engine_config(args) -> dict:
    if args.engine != "dit":
        return {}
    config: dict = {"offload": args.offload, "vae_tiling": args.vae_tiling}
    if args.model:
        config["model"] = args.model
    if args.device:
        config["device"] = args.device
    return config


def _run_restore(args) -> int:
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
    ref_files = _parse_refs(args.ref)
    keyframes = validate_keyframes(
        set(_select_keyframes(args, clip.info)) | set(ref_files), clip.num_frames
    )
    # 2. References: given images fitted to the target size, the editor for the rest.
    made = references_for_keyframes(clip, keyframes, ref_files, args.editor, options.scale)
    references = {index: reference.image for index, reference in made.items()}
    # 3. Restore chunk by chunk straight into the writer.
    engine = load_engine(args.engine, **_engine_config(args))
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

    options = _restore_options(args)
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
    ref_files = _parse_refs(args.ref)
    with open_clip(args.input, deinterlace=not args.keep_fields, tonemap=args.tonemap) as clip:
        options, scale_note = _working_options(args, clip)
        _check_output(args, clip, options)
        chosen = None
        if args.keyframes or args.mode or ref_files:
            selected = set(_select_keyframes(args, clip.info)) | set(ref_files)
            chosen = validate_keyframes(selected, clip.num_frames)
    # 2. Open or create the project (same settings as last time: the render resumes).
    engine = load_engine(args.engine, **_engine_config(args))
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
            args, project, engine, chosen, ref_files, options, scale_note
        )


def _restore_locked_project(args, project, engine, chosen, ref_files, options, scale_note) -> int:
    from sparkvsr.media import open_clip
    from sparkvsr.references.assembly import references_for_keyframes
    from sparkvsr.render import render_project

    if chosen is not None and chosen != project.state.keyframes:
        project.set_keyframes(chosen)
    # 3. References: given images always; the editor only where the project has none yet.
    keyframes = project.state.keyframes
    todo = [k for k in keyframes if k in ref_files or project.state.reference(k) is None]
    with open_clip(args.input, deinterlace=not args.keep_fields, tonemap=args.tonemap) as clip:
        given = {k: ref_files[k] for k in todo if k in ref_files}
        made = references_for_keyframes(clip, todo, given, args.editor, options.scale)
    for index, reference in made.items():
        project.set_reference(index, reference)
    # 4. Render, saving every chunk into the project; resume after the last finished one.
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


# --- worker ------------------------------------------------------------------------------------


def _add_worker(commands, name: str) -> None:
    import os

    p = _sub(
        commands,
        name,
        "Serve a resident worker over HTTP (FastAPI + uvicorn): the models stay loaded and the "
        "studio UI, on this or another machine, connects to it.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    p.add_argument("--port", type=int, default=7861)
    p.add_argument(
        "--token",
        default=os.environ.get("SPARKVSR_TOKEN"),
        help="clients must send 'Authorization: Bearer TOKEN' (default $SPARKVSR_TOKEN; at "
        "least 16 characters; 'auto' makes a random one and prints it); required to listen on "
        "a non-loopback address",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        help="a host name clients reach the worker by (the Host header; repeatable). Default: "
        "loopback names and the --host address only, so web pages cannot drive the worker",
    )
    p.add_argument(
        "--max-upload",
        type=float,
        default=4.0,
        help="largest clip a client may upload, in GiB (default 4; free disk space also counts)",
    )
    p.add_argument(
        "--preview-frames",
        type=int,
        default=32,
        help="flow: frames whose guidance-independent preview work is kept, for all sessions "
        "together (default 32; bounded by 512 MiB): moving the slider on a kept frame is cheap",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=30.0,
        help="minutes without requests after which a session closes (never while rendering)",
    )
    p.add_argument("--projects", type=Path, default=Path("projects"), help="project folders")
    p.add_argument(
        "--clips",
        type=Path,
        action="append",
        default=[],
        help="only open clips inside this folder (repeatable; default: anywhere; uploads always)",
    )
    p.add_argument("--engine", default="flow", help="flow (CPU, default) or dit (GPU, SparkVSR)")
    p.add_argument("--model", help="dit: pipeline folder or hub id (default JiongzeYu/SparkVSR)")
    p.add_argument("--device", help="dit: cuda, cuda:1, cpu (default: cuda when present)")
    p.add_argument("--offload", action="store_true", help="dit: model-level CPU offload")
    p.add_argument("--vae-tiling", action="store_true", help="dit: tiled VAE for large frames")
    p.add_argument(
        "--preview-interval",
        type=float,
        default=0.5,
        help="seconds between two previews of one session (newer requests supersede older)",
    )


def _run_worker(args) -> int:
    from sparkvsr.server import ServeOptions, check_bind, new_token, serve
    from sparkvsr.worker import Worker, WorkerConfig

    # 1. Refuse an unsafe bind before loading any model.
    token = new_token() if args.token == "auto" else args.token
    options = ServeOptions(
        host=args.host,
        port=args.port,
        token=token,
        allowed_hosts=tuple(args.allowed_host),
        max_upload_bytes=int(args.max_upload * 2**30),
    )
    check_bind(options)
    # 2. Build the worker (the engine stays resident), then serve until interrupted.
    engine_config = _engine_config(args)
    if args.engine == "flow":
        engine_config["preview_cache"] = args.preview_frames
    config = WorkerConfig(
        engine=args.engine,
        engine_config=engine_config,
        projects_root=args.projects,
        preview_interval=args.preview_interval,
        clip_roots=tuple(args.clips),
        max_upload_bytes=options.max_upload_bytes,
        idle_timeout=args.idle_timeout * 60,
    )
    with Worker(config) as worker:
        auth = "token required" if token else "no token (loopback only)"
        if args.token == "auto":
            print(f"worker token (give it to clients): {token}", flush=True)
        print(f"worker: http://{args.host}:{args.port} engine {args.engine}, {auth}", flush=True)
        serve(worker, options)
    return 0


# --- batch -------------------------------------------------------------------------------------


def _add_batch(commands, name: str) -> None:
    p = _sub(
        commands,
        name,
        "Restore many clips, one project each under OUTDIR/projects: finished ones are skipped, "
        "interrupted ones resume. Under accelerate launch or torchrun the inputs are split "
        "across processes (RANK/WORLD_SIZE) without overlap.",
    )
    p.add_argument("inputs", type=Path, help="a folder of clips, or a text file of clip paths")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    _add_keyframe_selection(p, default_mode="iframes")
    _add_restore_options(p)


def _run_batch(args) -> int:
    from sparkvsr import batch
    from sparkvsr.errors import KeyframeError

    # 1. Options and this process's share of the inputs.
    if args.ref:
        raise KeyframeError("--ref names frames of one clip; batch makes References with --editor")
    options = batch.BatchOptions(
        engine=args.engine,
        engine_config=_engine_config(args),
        options=_restore_options(args),
        keyframes=_keyframe_selection(args),
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


# --- eval --------------------------------------------------------------------------------------


def _add_eval(commands, name: str) -> None:
    p = _sub(
        commands,
        name,
        "Compare restored clips with the ground truth: PSNR/SSIM, LPIPS/DISTS/MUSIQ/CLIP-IQA/NIQE "
        "(with pyiqa), flow-warping error, DOVER/FasterVQA (your installations); writes "
        "table.md, table.csv, results.json, per-frame PSNR plots and X-T slices. Inputs: videos, "
        "folders of frames, or a dataset root with GT/ and LQ/ (one sub-folder per clip).",
    )
    p.add_argument("--gt", type=Path, required=True, help="ground truth (video, frames, dataset)")
    p.add_argument(
        "--pred",
        action="append",
        required=True,
        metavar="[NAME=]PATH",
        help="a method's output laid out like --gt (repeatable; NAME defaults to the file name)",
    )
    p.add_argument("--lq", type=Path, help="the LR input, shown in the X-T slices")
    p.add_argument(
        "--metrics",
        nargs="+",
        help="metrics to report (default: all; missing ones are marked unavailable), e.g. "
        "psnr,ssim,lpips,dists,musiq,clipiqa,niqe,ewarp,dover,fastervqa",
    )
    p.add_argument("--y-channel", action="store_true", help="PSNR/SSIM on BT.601 Y, not RGB")
    p.add_argument("--crop", type=int, default=0, help="border pixels dropped before PSNR/SSIM")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument("--chunk", type=int, default=8, help="frames read at once (memory bound)")
    p.add_argument("--scanline", type=float, default=0.5, help="X-T slice row, 0 top .. 1 bottom")
    p.add_argument("--device", default="cpu", help="torch device for the pyiqa metrics")
    for metric, what in (("dover", "DOVER"), ("fastervqa", "FAST-VQA-and-FasterVQA")):
        p.add_argument(f"--{metric}", type=Path, metavar="DIR", help=f"your {what} checkout")
        p.add_argument(
            f"--{metric}-python",
            default=sys.executable,
            metavar="PYTHON",
            help=f"interpreter of the environment {what} is installed in",
        )
    p.add_argument("--fastervqa-model", default="FasterVQA", help="vqa.py -m (e.g. FAST-VQA)")
    p.add_argument("--vqa-device", default="cpu", help="device for DOVER/FasterVQA (e.g. cuda)")


def _parse_pred(item: str) -> tuple[str, Path]:
    name, sep, path = item.partition("=")
    if sep and name and not Path(item).exists():
        return name, Path(path)
    path = Path(item)
    return path.stem or path.name, path


def _run_eval(args) -> int:
    from tqdm import tqdm

    from sparkvsr.evaluation import EvalRequest, VQAInstall, evaluate

    # 1. The request (checked when built).
    names = [n.strip() for item in args.metrics or () for n in item.split(",") if n.strip()]
    installs = []
    if args.dover:
        installs.append(VQAInstall("dover", args.dover, args.dover_python, args.vqa_device))
    if args.fastervqa:
        installs.append(
            VQAInstall(
                "fastervqa", args.fastervqa, args.fastervqa_python, args.vqa_device,
                model=args.fastervqa_model,
            )
        )  # fmt: skip
    extra = {"metrics": tuple(names)} if names else {}
    request = EvalRequest(
        gt=args.gt,
        preds=tuple(_parse_pred(item) for item in args.pred),
        out_dir=args.output,
        lq=args.lq,
        y_channel=args.y_channel,
        crop=args.crop,
        chunk=args.chunk,
        scanline=args.scanline,
        device=args.device,
        vqa=tuple(installs),
        **extra,
    )
    # 2. Evaluate with a progress bar on stderr (from the first finished chunk, so an input
    #    error stays one line), then print the table.
    bars: list = []

    def show(update) -> None:
        if not bars:
            bars.append(tqdm(total=update.total, unit="frame", file=sys.stderr))
        bars[0].set_description_str(f"eval {update.message}")
        bars[0].update(update.done - bars[0].n)

    try:
        report = evaluate(request, progress=show)
    finally:
        for bar in bars:
            bar.close()
    print(report.table())
    print(f"wrote {', '.join(str(p) for p in report.files)}")
    return 0


# --- edit --------------------------------------------------------------------------------------


def fit_line(fit) -> str:
    """One line saying how well a Reference fits its frame (``ReferenceFit``)."""
    return (
        f"fit: {fit.verdict} ({fit.psnr:.1f} dB against the frame, moved {fit.shift:.1f} px, "
        f"colour change {fit.colour_change:.1f}, {fit.disagreement:.0%} differs, "
        f"weight {fit.weight:.2f}): {fit.message}"
    )


def _add_edit(commands, name: str) -> None:
    from sparkvsr.references import EDITORS
    from sparkvsr.references.base import DEFAULT_TASK_PROMPT

    p = _sub(
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


def _run_edit(args) -> int:
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


# --- demo --------------------------------------------------------------------------------------


def _add_demo(commands, name: str) -> None:
    p = _sub(commands, name, "Render the synthetic demo clip (LR, HR and two references).")
    p.add_argument("-o", "--output", type=Path, help="folder (default: assets/demo)")


def _run_demo(args) -> int:
    from sparkvsr.demo import DEMO_DIR, make_demo

    files = make_demo(args.output or DEMO_DIR)
    print(f"LR clip    {files.lr}")
    print(f"HR clip    {files.hr}")
    for index, path in files.references.items():
        print(f"reference  frame {index}: {path}")
    return 0


COMMANDS: dict[str, tuple[Callable, Callable[..., int]]] = {
    "probe": (_add_probe, _run_probe),
    "keyframes": (_add_keyframes, _run_keyframes),
    "restore": (_add_restore, _run_restore),
    "demo": (_add_demo, _run_demo),
    "worker": (_add_worker, _run_worker),
    "batch": (_add_batch, _run_batch),
    "eval": (_add_eval, _run_eval),
    "edit": (_add_edit, _run_edit),
}
