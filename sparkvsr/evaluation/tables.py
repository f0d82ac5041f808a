"""The report's tables: Markdown (paper style, best value bold), CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence

from sparkvsr import metrics
from sparkvsr.evaluation.request import EvalReport, EvalRequest, MethodResult, Score

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
