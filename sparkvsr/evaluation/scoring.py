"""Scoring one clip: metric backends built once per run, GT/predictions/LQ streamed chunk by
chunk into per-frame metrics and X-T rows, then per-clip scores."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sparkvsr import metrics
from sparkvsr.engines.base import CancelFn, raise_if_cancelled
from sparkvsr.evaluation.inputs import ProbedJob
from sparkvsr.evaluation.request import VQA_REPOS, VQA_SCRIPTS, EvalRequest, Score, VQAInstall
from sparkvsr.media import Clip


@dataclass(frozen=True)
class Backends:
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


def load_backends(request: EvalRequest) -> Backends:
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
    return Backends(tuple(loaded), tuple(unavailable), request.vqa)


# ---------------------------------------------------------------------------------------------
# One clip, streamed


@dataclass
class MethodTrace:
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


def stream_clip(
    probed: ProbedJob,
    request: EvalRequest,
    backends: Backends,
    tick: Callable[[int], None],
    cancel: CancelFn | None,
) -> tuple[dict[str, MethodTrace], list[np.ndarray], list[np.ndarray]]:
    """Read GT, predictions and LQ chunk by chunk, accumulating per-frame metrics and X-T rows."""
    wanted = set(request.metrics)
    methods = [method for method, _ in probed.job.preds]
    traces = {method: MethodTrace() for method in methods}
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
    trace: MethodTrace,
    pred: np.ndarray,
    gt: np.ndarray,
    motions: list[metrics.FramePairFlow],
    request: EvalRequest,
    backends: Backends,
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


def clip_scores(
    trace: MethodTrace,
    request: EvalRequest,
    backends: Backends,
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
