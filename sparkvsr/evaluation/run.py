"""The evaluation run: check inputs, load metric models once, stream each clip, draw, tabulate."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sparkvsr import metrics
from sparkvsr.engines.base import CancelFn, Progress
from sparkvsr.errors import EvaluationError
from sparkvsr.evaluation.inputs import plan_clips, probe_job
from sparkvsr.evaluation.pictures import plot_psnr, plot_xt, safe_name
from sparkvsr.evaluation.request import (
    ALL_CLIPS,
    EvalReport,
    EvalRequest,
    MethodResult,
    ProgressFn,
    Score,
)
from sparkvsr.evaluation.scoring import ClipTraces, clip_scores, load_backends, stream_clip
from sparkvsr.evaluation.tables import render_csv, render_json, render_markdown
from sparkvsr.evaluation.vqa import video_scores


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
    jobs = [probe_job(job) for job in plan_clips(request)]
    out_dir = Path(request.out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EvaluationError(f"cannot create the output folder {out_dir}: {e}") from e

    # 2. Load the metric models once for the whole run.
    backends = load_backends(request)
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
            traces, gt_xt, lq_xt = stream_clip(probed, request, backends, tick, cancel)
            # 4. Clip-level metrics from the user's installations.
            video = video_scores(probed, request, backends, Path(scratch))
            for method in request.methods:
                trace = traces[method]
                results.append(
                    MethodResult(
                        method,
                        clip,
                        probed.gt.num_frames,
                        clip_scores(trace, request, backends, video[method]),
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
                plot_psnr(pictures, out_dir / f"psnr_{safe_name(clip)}.png", request.y_channel)
            )
            files.append(plot_xt(pictures, out_dir / f"xt_{safe_name(clip)}.png"))

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
