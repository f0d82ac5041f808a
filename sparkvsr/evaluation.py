"""Evaluation runs: compare restored clips with the ground truth and write a paper-style report.

Inputs are videos, folders of frames, or benchmark-style dataset roots (UDM10, SPMCS, YouHQ40,
RealVSR, MovieLQ...): a root holding ``GT/`` and ``LQ/`` folders with one sub-folder (or video) per
clip. A prediction for a dataset is a folder with one sub-folder or video per clip, named like the
GT clip.

Frames stream through in chunks (``EvalRequest.chunk``): memory depends on the chunk and the
frame size, not on the clip's length (what grows with it is one scanline and a few numbers per
frame, for the X-T slices and the per-frame plots). Per clip and method the run records PSNR/SSIM (native,
see ``sparkvsr.metrics`` for the conventions), the pyiqa metrics when installed, the flow-warping
error (flow computed once per frame pair on the GT, shared by every method) and, when the user
points to their installations, DOVER / FasterVQA. A metric that cannot run is reported as
unavailable with its reason, never left out and never guessed.

Files written to ``out_dir``: ``table.md``, ``table.csv``, ``results.json``, and per clip
``psnr_<clip>.png`` (per-frame PSNR of every method) and ``xt_<clip>.png`` (X-T slices of LR, each
method and GT side by side).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sparkvsr import metrics
from sparkvsr.engines.base import CancelFn, Progress, raise_if_cancelled
from sparkvsr.errors import EvaluationError, MediaError
from sparkvsr.media import IMAGE_SUFFIXES, Clip, ClipInfo, VideoWriter, probe

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".y4m")
GT_FOLDERS = ("GT", "gt", "HR", "hr")
LQ_FOLDERS = ("LQ", "lq", "LR", "lr", "BIx4", "BDx4", "input")
VQA_SCRIPTS = {"dover": "evaluate_one_video.py", "fastervqa": "vqa.py"}
VQA_REPOS = {
    "dover": "github.com/VQAssessment/DOVER (with pretrained_weights/DOVER.pth)",
    "fastervqa": "github.com/VQAssessment/FAST-VQA-and-FasterVQA (with its pretrained_weights/)",
}
# What the official scripts print; the number after it is the score in [0, 1].
VQA_PATTERNS = {
    "dover": re.compile(
        r"Normalized fused overall score[^:]*:\s*\[?\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)"
    ),
    "fastervqa": re.compile(r"quality score of the video.*?\bis\s+(-?\d+(?:\.\d+)?(?:e-?\d+)?)"),
}
ProgressFn = Callable[[Progress], None]
ALL_METRICS = tuple(metrics.METRICS)


# ---------------------------------------------------------------------------------------------
# Request and report


@dataclass(frozen=True)
class VQAInstall:
    """The user's checkout of an official video-quality model, run as its own script.

    metric: "dover" (runs ``evaluate_one_video.py -v VIDEO -f``) or "fastervqa" (runs
            ``vqa.py -m MODEL -v VIDEO``), each in ``root`` with ``python`` (the interpreter of
            the environment where that model is installed) on ``device``.
    """

    metric: str
    root: Path
    python: str = sys.executable
    device: str = "cpu"
    model: str = "FasterVQA"
    timeout_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.metric not in VQA_SCRIPTS:
            raise EvaluationError(
                f"external metric {self.metric!r} is unknown; choose {' or '.join(VQA_SCRIPTS)}"
            )

    @property
    def script(self) -> Path:
        return Path(self.root) / VQA_SCRIPTS[self.metric]

    def command(self, video: Path) -> list[str]:
        script = ["-v", str(video), "-d", self.device]
        if self.metric == "dover":
            return [self.python, VQA_SCRIPTS["dover"], *script, "-f"]
        return [self.python, VQA_SCRIPTS["fastervqa"], "-m", self.model, *script]


@dataclass(frozen=True)
class EvalRequest:
    """What to evaluate and how.

    gt / lq:    a video, a folder of frames, a folder of clips, or a dataset root with GT/ and LQ/.
    preds:      (method name, path) pairs laid out like ``gt``.
    metrics:    names from ``sparkvsr.metrics.METRICS``; default all (missing ones are reported).
    y_channel:  PSNR/SSIM on the BT.601 Y channel instead of RGB.
    crop:       border pixels dropped before PSNR/SSIM.
    chunk:      frames read at once per input (memory bound).
    scanline:   X-T slice row as a fraction of the height (0 top, 1 bottom).
    device:     torch device for pyiqa models.
    vqa:        user installations of DOVER / FasterVQA.
    """

    gt: Path
    preds: tuple[tuple[str, Path], ...]
    out_dir: Path
    lq: Path | None = None
    metrics: tuple[str, ...] = ALL_METRICS
    y_channel: bool = False
    crop: int = 0
    chunk: int = 8
    scanline: float = 0.5
    device: str = "cpu"
    vqa: tuple[VQAInstall, ...] = ()

    def __post_init__(self) -> None:
        if not self.preds:
            raise EvaluationError("nothing to evaluate: give at least one prediction (--pred)")
        names = [name for name, _ in self.preds]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise EvaluationError(
                f"method name {duplicates[0]!r} is used twice; name each --pred NAME=PATH uniquely"
            )
        if not all(names):
            raise EvaluationError(f"method names {names} must not be empty (use --pred NAME=PATH)")
        if self.crop < 0:
            raise EvaluationError(f"crop {self.crop} must be 0 or more pixels")
        if self.chunk < 1:
            raise EvaluationError(f"chunk {self.chunk} must be at least 1 frame")
        if not 0.0 <= self.scanline <= 1.0:
            raise EvaluationError(
                f"scanline {self.scanline} must be between 0 (top) and 1 (bottom)"
            )
        if not self.metrics:
            raise EvaluationError(f"no metrics asked for; choose from {', '.join(metrics.METRICS)}")
        object.__setattr__(self, "metrics", metrics.check_metric_names(self.metrics))

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.preds)


@dataclass(frozen=True)
class Score:
    """One metric's value, or None with the reason it could not be computed."""

    metric: str
    value: float | None
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class MethodResult:
    """One method on one clip (or, with clip ``ALL``, the mean over clips)."""

    method: str
    clip: str
    frames: int
    scores: tuple[Score, ...]
    psnr_per_frame: tuple[float, ...] = field(default=(), repr=False)

    def score(self, metric: str) -> Score:
        for score in self.scores:
            if score.metric == metric:
                return score
        raise KeyError(
            f"{metric!r} was not evaluated; evaluated: {[s.metric for s in self.scores]}"
        )


ALL_CLIPS = "ALL"


@dataclass(frozen=True)
class EvalReport:
    """Everything an evaluation produced. ``summary`` holds the means over clips per method."""

    request: EvalRequest
    clips: tuple[str, ...]
    results: tuple[MethodResult, ...]
    summary: tuple[MethodResult, ...]
    files: tuple[Path, ...]

    def table(self) -> str:
        """The paper-style Markdown table (what ``table.md`` holds and the CLI prints)."""
        return render_markdown(self)


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class ClipJob:
    """One clip to evaluate: the GT, each method's prediction and the optional LQ input."""

    name: str
    gt: Path
    preds: tuple[tuple[str, Path], ...]
    lq: Path | None


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir() if p.is_file())


def _named_child(folder: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        if (folder / name).is_dir():
            return folder / name
    return None


def _clip_entries(folder: Path) -> dict[str, Path]:
    """Clips inside a collection folder: sub-folders of frames and video files, by name."""
    entries: dict[str, Path] = {}
    for child in sorted(folder.iterdir()):
        if child.is_dir() and _has_images(child):
            entries[child.name] = child
        elif child.is_file() and child.suffix.lower() in VIDEO_SUFFIXES:
            entries.setdefault(child.stem, child)
    return entries


def _find_clip(root: Path, clip: str, role: str) -> Path:
    if not root.is_dir():
        raise EvaluationError(
            f"{role} {root} must be a folder with one sub-folder or video per clip, like the GT"
        )
    entries = _clip_entries(root)
    if clip not in entries:
        have = ", ".join(sorted(entries)[:8]) or "nothing usable"
        raise EvaluationError(
            f"{role} {root} has no clip {clip!r} (a sub-folder of frames or a video named "
            f"{clip}.mp4/.mkv/...); it holds: {have}"
        )
    return entries[clip]


def plan_clips(request: EvalRequest) -> tuple[ClipJob, ...]:
    """Pair every GT clip with its predictions and LQ input; raise naming what is missing."""
    gt = Path(request.gt)
    if not gt.exists():
        raise EvaluationError(f"ground truth {gt} does not exist")
    for name, path in request.preds:
        if not Path(path).exists():
            raise EvaluationError(f"prediction {name}={path} does not exist")
    lq = Path(request.lq) if request.lq else None
    if lq is not None and not lq.exists():
        raise EvaluationError(f"LQ input {lq} does not exist")

    if gt.is_file() or _has_images(gt):  # one clip
        return (ClipJob(gt.stem if gt.is_file() else gt.name, gt, request.preds, lq),)

    gt_root = gt
    named_gt = _named_child(gt, GT_FOLDERS)
    if named_gt is not None:  # a benchmark root: GT/ (and LQ/) inside
        gt_root = named_gt
        lq = lq or _named_child(gt, LQ_FOLDERS)
    clips = _clip_entries(gt_root)
    if not clips:
        raise EvaluationError(
            f"{gt} holds no frames, videos or clip folders; point --gt to a video, a folder of "
            "frames, or a dataset root with GT/ and LQ/ folders (one sub-folder per clip)"
        )
    return tuple(
        ClipJob(
            name,
            path,
            tuple(
                (method, _find_clip(Path(p), name, f"prediction {method}"))
                for method, p in request.preds
            ),
            _find_clip(lq, name, "LQ") if lq is not None else None,
        )
        for name, path in clips.items()
    )


def _probe(path: Path, role: str) -> ClipInfo:
    try:
        return probe(path)
    except MediaError as e:
        raise EvaluationError(f"{role}: {e}") from e


@dataclass(frozen=True)
class _ProbedJob:
    job: ClipJob
    gt: ClipInfo
    preds: tuple[ClipInfo, ...]
    lq: ClipInfo | None


def _probe_job(job: ClipJob) -> _ProbedJob:
    """Probe every input of a clip and check they line up with the GT frame for frame."""
    gt = _probe(job.gt, f"GT of clip {job.name}")
    preds = []
    for method, path in job.preds:
        info = _probe(path, f"prediction {method} of clip {job.name}")
        if info.num_frames != gt.num_frames:
            raise EvaluationError(
                f"clip {job.name}: prediction {method} ({path}) has {info.num_frames} frames but "
                f"the GT ({job.gt}) has {gt.num_frames}; evaluate frame-aligned clips"
            )
        if (info.width, info.height) != (gt.width, gt.height):
            raise EvaluationError(
                f"clip {job.name}: prediction {method} is {info.width}x{info.height} but the GT is "
                f"{gt.width}x{gt.height}; full-reference metrics need the GT size"
            )
        preds.append(info)
    lq = None
    if job.lq is not None:
        lq = _probe(job.lq, f"LQ of clip {job.name}")
        if lq.num_frames != gt.num_frames:
            raise EvaluationError(
                f"clip {job.name}: LQ {job.lq} has {lq.num_frames} frames but the GT has "
                f"{gt.num_frames}"
            )
    return _ProbedJob(job, gt, tuple(preds), lq)


# ---------------------------------------------------------------------------------------------
# Metric backends (built once per run, resident)


@dataclass(frozen=True)
class _Backends:
    pyiqa: tuple[tuple[str, metrics.PyiqaScorer], ...]
    unavailable: tuple[Score, ...]  # metrics that cannot run at all, with the reason
    vqa: tuple[VQAInstall, ...]


def _vqa_reason(name: str, installs: Sequence[VQAInstall]) -> str | None:
    install = next((i for i in installs if i.metric == name), None)
    flag = f"--{name}"
    if install is None:
        return (
            f"not configured: pass {flag} DIR pointing to a checkout of {VQA_REPOS[name]} "
            f"(and {flag}-python for its environment)"
        )
    if not install.script.is_file():
        return f"{install.root} has no {VQA_SCRIPTS[name]}; point {flag} to a checkout of {VQA_REPOS[name]}"
    return None


def _load_backends(request: EvalRequest) -> _Backends:
    loaded, unavailable = [], []
    for name in request.metrics:
        spec = metrics.METRICS[name]
        if spec.backend == "pyiqa":
            try:
                loaded.append((name, metrics.PyiqaScorer(name, request.device)))
            except metrics.MetricUnavailable as e:
                unavailable.append(Score(name, None, str(e)))
        elif spec.backend == "external":
            reason = _vqa_reason(name, request.vqa)
            if reason:
                unavailable.append(Score(name, None, reason))
    return _Backends(tuple(loaded), tuple(unavailable), request.vqa)


# ---------------------------------------------------------------------------------------------
# One clip, streamed


@dataclass
class _MethodTrace:
    """Running per-frame values of one method on one clip (mutable while streaming)."""

    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    pyiqa: dict[str, list[float]] = field(default_factory=dict)
    pyiqa_failed: dict[str, str] = field(default_factory=dict)
    ewarp: list[float] = field(default_factory=list)
    xt_rows: list[np.ndarray] = field(default_factory=list)
    previous: np.ndarray | None = None


@dataclass(frozen=True)
class ClipTraces:
    """What the pictures of one clip are drawn from."""

    clip: str
    psnr: tuple[tuple[str, tuple[float, ...]], ...]
    xt: tuple[tuple[str, np.ndarray], ...]  # (label, [T, W, 3] uint8) in display order
    scanline: int


def _stream_clip(
    probed: _ProbedJob,
    request: EvalRequest,
    backends: _Backends,
    tick: Callable[[int], None],
    cancel: CancelFn | None,
) -> tuple[dict[str, _MethodTrace], list[np.ndarray], list[np.ndarray]]:
    """Read GT, predictions and LQ chunk by chunk, accumulating per-frame metrics and X-T rows."""
    wanted = set(request.metrics)
    methods = [method for method, _ in probed.job.preds]
    traces = {method: _MethodTrace() for method in methods}
    gt_row = metrics.scanline_row(probed.gt.height, request.scanline)
    lq_row = metrics.scanline_row(probed.lq.height, request.scanline) if probed.lq else 0
    gt_xt: list[np.ndarray] = []
    lq_xt: list[np.ndarray] = []
    estimator = metrics.new_flow_estimator() if "ewarp" in wanted else None
    previous_gt: np.ndarray | None = None

    gt_clip = Clip(probed.gt)
    pred_clips = [Clip(info) for info in probed.preds]
    lq_clip = Clip(probed.lq) if probed.lq else None
    try:
        for start in range(0, probed.gt.num_frames, request.chunk):
            raise_if_cancelled(cancel)
            stop = min(start + request.chunk, probed.gt.num_frames)
            gt = gt_clip.read(start, stop)
            gt_xt.append(metrics.xt_slice(gt, gt_row))
            if lq_clip is not None:
                lq_xt.append(metrics.xt_slice(lq_clip.read(start, stop), lq_row))
            motions = _chunk_motion(previous_gt, gt, estimator) if estimator else []
            previous_gt = gt[-1]
            for method, clip in zip(methods, pred_clips):
                _score_chunk(traces[method], clip.read(start, stop), gt, motions, request, backends)
            tick(stop - start)
    finally:
        for clip in (gt_clip, *pred_clips, lq_clip):
            if clip is not None:
                clip.close()
    return traces, gt_xt, lq_xt


def _chunk_motion(
    previous: np.ndarray | None, gt: np.ndarray, estimator: object
) -> list[metrics.FramePairFlow]:
    """GT motion into each frame of the chunk from the frame before it (the first clip frame has
    no predecessor)."""
    frames = gt if previous is None else np.concatenate([previous[None], gt])
    return [metrics.pair_flow(a, b, estimator) for a, b in itertools.pairwise(frames)]


def _score_chunk(
    trace: _MethodTrace,
    pred: np.ndarray,
    gt: np.ndarray,
    motions: list[metrics.FramePairFlow],
    request: EvalRequest,
    backends: _Backends,
) -> None:
    wanted = set(request.metrics)
    for p, g in zip(pred, gt):
        trace.psnr.append(metrics.psnr(p, g, y_channel=request.y_channel, crop=request.crop))
        if "ssim" in wanted:
            trace.ssim.append(metrics.ssim(p, g, y_channel=request.y_channel, crop=request.crop))
    for name, scorer in backends.pyiqa:
        if name in trace.pyiqa_failed:
            continue
        try:
            values = scorer(pred, gt if scorer.full_reference else None)
        except Exception as e:  # a model that fails mid-run is reported, not hidden
            trace.pyiqa_failed[name] = f"pyiqa {name} failed: {type(e).__name__}: {e}"
            continue
        trace.pyiqa.setdefault(name, []).extend(float(v) for v in values)
    if motions:
        frames = pred if trace.previous is None else np.concatenate([trace.previous[None], pred])
        for a, b, motion in zip(frames[:-1], frames[1:], motions):
            trace.ewarp.append(metrics.warping_error(a, b, motion))
    trace.previous = pred[-1]
    trace.xt_rows.append(
        metrics.xt_slice(pred, metrics.scanline_row(pred.shape[1], request.scanline))
    )


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _psnr_score(values: Sequence[float]) -> Score:
    """Mean PSNR over the frames that differ from the GT.

    A frame equal to the GT (a keyframe whose reference is the GT) has PSNR = inf, which would make
    the whole mean inf and hide every other frame; such frames are left out and counted.
    """
    finite = [v for v in values if math.isfinite(v)]
    identical = len(values) - len(finite)
    if not finite:
        return Score("psnr", math.inf, "every frame equals the GT")
    note = ""
    if identical:
        note = (
            f"{identical} of {len(values)} frames equal the GT (PSNR = inf) and are left out "
            "of the mean"
        )
    return Score("psnr", float(np.mean(finite)), note)


def _clip_scores(
    trace: _MethodTrace,
    request: EvalRequest,
    backends: _Backends,
    video_scores: dict[str, Score],
) -> tuple[Score, ...]:
    unavailable = {s.metric: s for s in backends.unavailable}
    scores = []
    for metric in request.metrics:
        if metric in unavailable:
            scores.append(unavailable[metric])
        elif metric == "psnr":
            scores.append(_psnr_score(trace.psnr))
        elif metric == "ssim":
            scores.append(Score(metric, _mean(trace.ssim)))
        elif metric == "ewarp":
            if trace.ewarp:
                scores.append(Score(metric, _mean(trace.ewarp)))
            else:
                scores.append(Score(metric, None, "needs at least two frames"))
        elif metric in trace.pyiqa_failed:
            scores.append(Score(metric, None, trace.pyiqa_failed[metric]))
        elif metric in trace.pyiqa:
            scores.append(Score(metric, _mean(trace.pyiqa[metric])))
        else:
            scores.append(video_scores[metric])
    return tuple(scores)


# ---------------------------------------------------------------------------------------------
# External video-quality models (the user's installations)


def _as_video(path: Path, info: ClipInfo, scratch: Path) -> Path:
    """A video file of ``path``: itself, or a lossless FFV1 copy of a folder of frames."""
    if path.is_file():
        return path
    target = scratch / f"{path.name}.mkv"
    clip = Clip(info)
    try:
        with VideoWriter(target, info.frame_rate, lossless=True) as writer:
            for _, frames in clip.iter_chunks(16):
                writer.write(frames)
    finally:
        clip.close()
    return target


def run_vqa(install: VQAInstall, video: Path) -> Score:
    """Score one video with the user's installation; unavailable (with why) when it fails."""
    try:
        done = subprocess.run(
            install.command(Path(video).resolve()),
            cwd=install.root,
            capture_output=True,
            text=True,
            timeout=install.timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return Score(install.metric, None, f"{install.script} could not run: {e}")
    found = VQA_PATTERNS[install.metric].findall(done.stdout)
    if done.returncode != 0 or not found:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return Score(
            install.metric,
            None,
            f"{install.script} exited {done.returncode} without a score: {' | '.join(tail)}",
        )
    return Score(install.metric, float(found[-1]))


def _video_scores(
    probed: _ProbedJob, request: EvalRequest, backends: _Backends, scratch: Path
) -> dict[str, dict[str, Score]]:
    """{method: {metric: Score}} for the clip-level external metrics that are configured."""
    out: dict[str, dict[str, Score]] = {method: {} for method in request.methods}
    skipped = {s.metric for s in backends.unavailable}
    installs = [i for i in backends.vqa if i.metric in request.metrics and i.metric not in skipped]
    for (method, path), info in zip(probed.job.preds, probed.preds):
        if not installs:
            break
        video = _as_video(Path(path), info, scratch)
        for install in installs:
            out[method][install.metric] = run_vqa(install, video)
    return out


# ---------------------------------------------------------------------------------------------
# Pictures (matplotlib's Agg canvas through the object API: no display, no pyplot global state)


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    try:
        figure.savefig(path)
    except OSError as e:
        raise EvaluationError(f"cannot write {path}: {e}") from e
    return path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "clip"


def plot_psnr(traces: ClipTraces, path: Path, y_channel: bool) -> Path:
    """Per-frame PSNR of every method on one clip as a line plot PNG."""
    figure = _figure(8, 3.5)
    axes = figure.subplots()
    for method, values in traces.psnr:
        shown = [v if math.isfinite(v) else np.nan for v in values]
        axes.plot(range(len(shown)), shown, label=method, linewidth=1.2)
    axes.set_xlabel("frame")
    axes.set_ylabel(f"PSNR (dB, {'Y' if y_channel else 'RGB'})")
    axes.set_title(f"{traces.clip}: per-frame PSNR against GT")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    return _save(figure, path)


def plot_xt(traces: ClipTraces, path: Path) -> Path:
    """X-T slices (one scanline over time, time going down) side by side: LR, methods, GT."""
    panels = len(traces.xt)
    frames = traces.xt[0][1].shape[0]
    height = min(12.0, max(2.5, 0.9 + frames / 40))
    # Wide frames get wider panels so the slice keeps its detail (up to ~900 px per panel).
    panel_width = min(8.0, max(3.2, traces.xt[-1][1].shape[1] / 150))
    figure = _figure(panel_width * panels, height)
    axes = figure.subplots(1, panels, squeeze=False)
    for ax, (label, image) in zip(axes[0], traces.xt):
        ax.imshow(image, aspect="auto", interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("x")
        ax.set_ylabel("frame")
    figure.suptitle(f"{traces.clip}: X-T slice at row {traces.scanline} of the GT", fontsize=10)
    return _save(figure, path)


# ---------------------------------------------------------------------------------------------
# Tables


_DIGITS = {"psnr": 2, "ssim": 4, "lpips": 4, "dists": 4, "musiq": 2, "clipiqa": 4, "niqe": 3,
           "ewarp": 3, "dover": 4, "fastervqa": 4}  # fmt: skip


def format_score(score: Score) -> str:
    """A table cell: the value with the metric's usual precision, or ``unavailable``."""
    if score.value is None:
        return "unavailable"
    value = score.value * 1e3 if score.metric == "ewarp" else score.value
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf"
    return f"{value:.{_DIGITS.get(score.metric, 4)}f}"


def _best(rows: Sequence[MethodResult], metric: str) -> float | None:
    values = [r.score(metric).value for r in rows]
    finite = [v for v in values if v is not None and not math.isnan(v)]
    if len(finite) < 2:
        return None
    return max(finite) if metrics.METRICS[metric].higher_better else min(finite)


def _markdown_rows(rows: Sequence[MethodResult], names: Sequence[str]) -> list[str]:
    header = ["Method", *(metrics.METRICS[n].header for n in names)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    best = {n: _best(rows, n) for n in names}
    for row in rows:
        cells = [row.method]
        for name in names:
            score = row.score(name)
            cell = format_score(score)
            if best[name] is not None and score.value == best[name]:
                cell = f"**{cell}**"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def convention(request: EvalRequest) -> str:
    channel = "BT.601 Y channel (studio range)" if request.y_channel else "RGB"
    return (
        f"PSNR/SSIM on {channel}, data range 255, border crop {request.crop} px; SSIM: Gaussian "
        "window 11, σ 1.5 (Wang et al. 2004). Per-clip values are means over frames; 'all' is the "
        "mean over clips. E_warp: occlusion-masked flow-warping error between consecutive output "
        "frames (DIS flow on the GT), ×10³ on 0..1 values."
    )


def render_markdown(report: EvalReport) -> str:
    names = report.request.metrics
    frames = sum(r.frames for r in report.results if r.method == report.request.methods[0])
    lines = [
        f"# Evaluation: {len(report.clips)} clip(s), {frames} frames",
        "",
        convention(report.request),
        "",
        *_markdown_rows(report.summary, names),
    ]
    if len(report.clips) > 1:
        for clip in report.clips:
            rows = [r for r in report.results if r.clip == clip]
            lines += ["", f"## {clip} ({rows[0].frames} frames)", "", *_markdown_rows(rows, names)]
    notes = [
        f"- {row.method}, {metrics.METRICS[score.metric].label}: {score.reason}"
        for row in report.summary
        for score in row.scores
        if score.value is not None and score.reason
    ]
    if notes:
        lines += ["", "Notes:", "", *notes]
    reasons = _unavailable_reasons(report)
    if reasons:
        lines += ["", "Unavailable metrics:", ""]
        lines += [f"- {metrics.METRICS[m].label}: {why}" for m, why in reasons]
    return "\n".join(lines) + "\n"


def _unavailable_reasons(report: EvalReport) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for row in report.summary:
        for score in row.scores:
            if score.value is None and score.metric not in seen:
                seen[score.metric] = score.reason
    return list(seen.items())


def render_csv(report: EvalReport) -> str:
    names = report.request.metrics
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["clip", "method", "frames", *names])
    for row in (*report.results, *report.summary):
        cells = [row.score(n) for n in names]
        writer.writerow([row.clip, row.method, row.frames, *(_csv_cell(c) for c in cells)])
    return buffer.getvalue()


def _csv_cell(score: Score) -> str:
    return "unavailable" if score.value is None else repr(score.value)


def _json_value(value: float | None) -> float | str | None:
    if value is None:
        return None
    if math.isnan(value) or math.isinf(value):
        return str(value)  # JSON has no inf / nan
    return value


def render_json(report: EvalReport) -> str:
    request = report.request

    def row(r: MethodResult) -> dict:
        return {
            "clip": r.clip,
            "method": r.method,
            "frames": r.frames,
            "scores": {
                s.metric: {
                    "value": _json_value(s.value),
                    "available": s.available,
                    "reason": s.reason,
                }
                for s in r.scores
            },
            "psnr_per_frame": [_json_value(v) for v in r.psnr_per_frame],
        }

    data = {
        "convention": convention(request),
        "request": {
            "gt": str(request.gt),
            "lq": str(request.lq) if request.lq else None,
            "preds": {name: str(path) for name, path in request.preds},
            "metrics": list(request.metrics),
            "y_channel": request.y_channel,
            "crop": request.crop,
            "scanline": request.scanline,
        },
        "metrics": {
            n: {
                "label": metrics.METRICS[n].label,
                "higher_better": metrics.METRICS[n].higher_better,
                "kind": metrics.METRICS[n].kind,
                "backend": metrics.METRICS[n].backend,
            }
            for n in request.metrics
        },
        "clips": list(report.clips),
        "summary": [row(r) for r in report.summary],
        "results": [row(r) for r in report.results],
        "files": [str(p) for p in report.files],
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------------
# The run


def _summarise(
    request: EvalRequest, clips: Sequence[str], results: Sequence[MethodResult]
) -> tuple[MethodResult, ...]:
    """Mean over clips per method; a metric missing on any clip is unavailable overall."""
    summary = []
    for method in request.methods:
        rows = [r for r in results if r.method == method]
        scores = []
        for metric in request.metrics:
            per_clip = [r.score(metric) for r in rows]
            missing = next((s for s in per_clip if s.value is None), None)
            if missing is not None:
                prefix = f"on clip {rows[per_clip.index(missing)].clip}: " if len(clips) > 1 else ""
                scores.append(Score(metric, None, prefix + missing.reason))
            else:
                notes = "; ".join(
                    f"{r.clip}: {s.reason}" if len(clips) > 1 else s.reason
                    for r, s in zip(rows, per_clip)
                    if s.reason
                )
                scores.append(Score(metric, float(np.mean([s.value for s in per_clip])), notes))
        summary.append(MethodResult(method, ALL_CLIPS, sum(r.frames for r in rows), tuple(scores)))
    return tuple(summary)


def evaluate(
    request: EvalRequest,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> EvalReport:
    """Run ``request``: score every clip, draw its pictures, write the tables; return the report.

    ``progress`` gets ``Progress(done, total, "frames", clip)`` after every chunk; ``cancel`` is
    checked between chunks (raises ``Cancelled``).
    """
    # 1. Check inputs: pair the clips and probe them all before any work starts.
    jobs = [_probe_job(job) for job in plan_clips(request)]
    out_dir = Path(request.out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EvaluationError(f"cannot create the output folder {out_dir}: {e}") from e

    # 2. Load the metric models once for the whole run.
    backends = _load_backends(request)
    total = sum(p.gt.num_frames for p in jobs)
    done = 0

    results: list[MethodResult] = []
    files: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="sparkvsr-eval-") as scratch:
        for probed in jobs:
            clip = probed.job.name

            def tick(frames: int, clip: str = clip) -> None:
                nonlocal done
                done += frames
                if progress is not None:
                    progress(Progress(done, total, "frames", clip))

            # 3. Stream the clip: per-frame metrics, GT motion, X-T rows.
            traces, gt_xt, lq_xt = _stream_clip(probed, request, backends, tick, cancel)
            # 4. Clip-level metrics from the user's installations.
            video = _video_scores(probed, request, backends, Path(scratch))
            for method in request.methods:
                trace = traces[method]
                results.append(
                    MethodResult(
                        method,
                        clip,
                        probed.gt.num_frames,
                        _clip_scores(trace, request, backends, video[method]),
                        tuple(trace.psnr),
                    )
                )
            # 5. Pictures of the clip.
            pictures = ClipTraces(
                clip,
                tuple((m, tuple(traces[m].psnr)) for m in request.methods),
                (
                    *((("LR (input)", np.concatenate(lq_xt)),) if lq_xt else ()),
                    *((m, np.concatenate(traces[m].xt_rows)) for m in request.methods),
                    ("GT", np.concatenate(gt_xt)),
                ),
                metrics.scanline_row(probed.gt.height, request.scanline),
            )
            files.append(
                plot_psnr(pictures, out_dir / f"psnr_{_safe(clip)}.png", request.y_channel)
            )
            files.append(plot_xt(pictures, out_dir / f"xt_{_safe(clip)}.png"))

    # 6. Summaries and tables.
    clips = tuple(p.job.name for p in jobs)
    summary = _summarise(request, clips, results)
    files = [out_dir / "table.md", out_dir / "table.csv", out_dir / "results.json", *files]
    report = EvalReport(request, clips, tuple(results), summary, tuple(files))
    _write_text(out_dir / "table.md", render_markdown(report))
    _write_text(out_dir / "table.csv", render_csv(report))
    _write_text(out_dir / "results.json", render_json(report))
    return report


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise EvaluationError(f"cannot write {path}: {e}") from e
