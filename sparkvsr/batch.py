"""Batch restoration: ``python -m sparkvsr batch LIST_OR_DIR -o OUTDIR [restore options]``.

One project per input under ``OUTDIR/projects/<name>/``, the restored clip at ``OUTDIR/<name>.mp4``::

    1. list the inputs (a folder of clips, or a text file with one path per line)
    2. give each a unique name and keep this process's share (RANK / WORLD_SIZE)
    3. for each: open or create its project, pick keyframes, make missing References,
       render (finished projects are skipped, interrupted ones resume)
    4. print a summary table

Under ``accelerate launch`` or ``torchrun`` every process sees RANK and WORLD_SIZE and takes
inputs ``rank, rank + world, rank + 2*world, ...``: the shares never overlap and cover every input.
No process group is needed, so processes on several machines only share the output folder.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparkvsr import media
from sparkvsr.engines import load_engine
from sparkvsr.engines.base import Engine, RestoreOptions
from sparkvsr.errors import SparkVSRError
from sparkvsr.keyframes import KeyframeSelection, select_keyframes
from sparkvsr.project import OutputSettings, Project
from sparkvsr.references.assembly import references_for_keyframes
from sparkvsr.references.base import EditRequest
from sparkvsr.render import ensure_project, render_project

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")


@dataclass(frozen=True)
class BatchJob:
    """One input: its clip, its project folder and its output clip."""

    name: str
    clip: Path
    project: Path
    output: Path


@dataclass(frozen=True)
class BatchOptions:
    """How every input is restored.

    keyframes: how each clip's keyframes are chosen (I-frames by default; "manual" uses the same
               frames in every clip; "none" restores blind). A resumed project keeps its own.
    editor:    the editor that makes each keyframe's Reference (``classic`` needs nothing).
    """

    engine: str = "flow"
    engine_config: dict[str, Any] = field(default_factory=dict)
    options: RestoreOptions = field(default_factory=RestoreOptions)
    keyframes: KeyframeSelection = field(default_factory=lambda: KeyframeSelection("iframes"))
    editor: str = "classic"
    crf: int = 18


@dataclass(frozen=True)
class BatchRow:
    """What happened to one input. status: done, resumed, skipped (already finished) or failed."""

    name: str
    status: str
    frames: int = 0
    chunks_rendered: int = 0
    chunks_resumed: int = 0
    seconds: float = 0.0
    output: str = ""
    message: str = ""
    rank: int = 0


def list_inputs(list_or_dir: str | os.PathLike) -> list[Path]:
    """Clips from a folder (video files and image-sequence sub-folders, sorted by name) or from
    a text file with one path per line (``#`` comments; relative paths are from the file).
    """
    source = Path(list_or_dir)
    if source.is_dir():
        entries = sorted(source.iterdir(), key=lambda p: p.name)
        clips = [p for p in entries if p.suffix.lower() in VIDEO_SUFFIXES or _is_frame_folder(p)]
        if not clips:
            raise SparkVSRError(
                f"{source} holds no clips ({', '.join(VIDEO_SUFFIXES)} or folders of images)"
            )
        return clips
    if source.is_file():
        clips = []
        for line in source.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                path = Path(line)
                clips.append(path if path.is_absolute() else source.parent / path)
        if not clips:
            raise SparkVSRError(f"{source} lists no clips (one path per line)")
        return clips
    raise SparkVSRError(
        f"{source} does not exist: give a folder of clips or a text file listing them"
    )


def plan_jobs(clips: list[Path], outdir: str | os.PathLike) -> list[BatchJob]:
    """One job per clip with a unique, stable name (a repeated stem gets ``-2``, ``-3``...)."""
    outdir = Path(outdir).absolute()
    seen: dict[str, int] = {}
    jobs = []
    for clip in clips:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", clip.stem).strip("-.") or "clip"
        seen[stem] = seen.get(stem, 0) + 1
        name = stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"
        jobs.append(BatchJob(name, clip, outdir / "projects" / name, outdir / f"{name}.mp4"))
    return jobs


RANK_VARIABLES = (
    ("RANK", "WORLD_SIZE"),  # torchrun, accelerate launch (GPU launchers)
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),  # mpirun (Open MPI): accelerate multi-CPU
    ("PMI_RANK", "PMI_SIZE"),  # Intel MPI / MPICH
    ("MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE"),  # MVAPICH
)


def process_rank(environ: dict[str, str] | None = None) -> tuple[int, int]:
    """(rank, world size) of this process: from RANK / WORLD_SIZE (torchrun, accelerate launch)
    or the MPI variables accelerate's multi-CPU launch (mpirun) sets; (0, 1) when alone.
    """
    environ = dict(os.environ if environ is None else environ)
    for rank_name, size_name in RANK_VARIABLES:
        if rank_name in environ and size_name in environ:
            try:
                rank, world = int(environ[rank_name]), int(environ[size_name])
            except ValueError as e:
                raise SparkVSRError(f"{rank_name}/{size_name} must be integers: {e}") from e
            if world < 1 or not 0 <= rank < world:
                raise SparkVSRError(
                    f"{rank_name}={rank} must be in 0..{size_name}-1 ({size_name}={world})"
                )
            return rank, world
    return 0, 1


def shard(jobs: list[BatchJob], rank: int, world: int) -> list[BatchJob]:
    """This process's share: every ``world``-th job from ``rank`` (disjoint, covering)."""
    return jobs[rank::world]


def run_batch(
    jobs: list[BatchJob],
    options: BatchOptions,
    *,
    engine: Engine | None = None,
    rank: int = 0,
    log: Callable[[str], None] | None = None,
) -> list[BatchRow]:
    """Restore every job in turn; a failing input is reported and the batch goes on."""
    engine = engine or load_engine(options.engine, **options.engine_config)
    rows = []
    for job in jobs:
        started = time.monotonic()
        try:
            row = _run_job(job, options, engine, rank)
        except SparkVSRError as e:
            row = BatchRow(job.name, "failed", message=str(e), rank=rank)
        row = BatchRow(**{**row.__dict__, "seconds": round(time.monotonic() - started, 2)})
        if log is not None:
            log(f"[rank {rank}] {row.name}: {row.status} {row.message}".rstrip())
        rows.append(row)
    return rows


def format_table(rows: list[BatchRow]) -> str:
    """A plain-text summary table."""
    header = (
        "input",
        "status",
        "frames",
        "rendered",
        "resumed",
        "seconds",
        "rank",
        "output / error",
    )
    lines = [
        (
            r.name,
            r.status,
            str(r.frames),
            str(r.chunks_rendered),
            str(r.chunks_resumed),
            f"{r.seconds:.1f}",
            str(r.rank),
            r.output or r.message,
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    widths[-1] = 0  # the last column runs to the end of the line

    def fmt(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    rule = "  ".join("-" * (w or len(header[-1])) for w in widths)
    done = sum(r.status in ("done", "resumed", "skipped") for r in rows)
    footer = f"{done} of {len(rows)} finished, {sum(r.status == 'failed' for r in rows)} failed"
    return "\n".join([fmt(header), rule, *(fmt(line) for line in lines), footer])


# ---------------------------------------------------------------------------------------------
# One job


def _run_job(job: BatchJob, options: BatchOptions, engine: Engine, rank: int) -> BatchRow:
    # 1. open or create the project
    output = OutputSettings(path=str(job.output), crf=options.crf)
    project = ensure_project(
        job.project, job.clip, engine, options.options, output, lock=f"batch (rank {rank})"
    )
    with project:  # the writer lock, held until this clip is done
        return _run_locked_job(job, options, engine, rank, project)


def _run_locked_job(
    job: BatchJob, options: BatchOptions, engine: Engine, rank: int, project: Project
) -> BatchRow:
    # 2. keyframes (only if not chosen yet: a resumed project keeps its own)
    if not project.state.keyframes and options.keyframes.mode != "none":
        clip = project.state.clip
        project.set_keyframes(select_keyframes(options.keyframes, clip.num_frames, clip.iframes))
    # 3. References for keyframes that have none yet
    _make_missing_references(project, options)
    # 4. render (resumes finished chunks; skips a finished project)
    result = render_project(engine, project, output=job.output)
    if result.skipped:
        status = "skipped"
    elif result.chunks_resumed:
        status = "resumed"
    else:
        status = "done"
    return BatchRow(
        job.name,
        status,
        frames=result.frames,
        chunks_rendered=result.chunks_rendered,
        chunks_resumed=result.chunks_resumed,
        output=str(result.output),
        rank=rank,
    )


def _make_missing_references(project: Project, options: BatchOptions) -> None:
    state = project.state
    missing = [k for k in state.keyframes if state.reference(k) is None]
    if not missing:
        return
    request = EditRequest(seed=options.keyframes.seed)
    with media.open_clip(state.clip.path) as clip:
        made = references_for_keyframes(
            clip, missing, {}, options.editor, state.options.scale, request
        )
    for frame, reference in made.items():
        project.set_reference(frame, reference)


def _is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(p.suffix.lower() in media.IMAGE_SUFFIXES for p in path.iterdir())
