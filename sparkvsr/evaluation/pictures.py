"""Pictures of an evaluation: per-frame PSNR plots and X-T slices (matplotlib's Agg canvas through
the object API: no display, no pyplot global state)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from sparkvsr.errors import EvaluationError
from sparkvsr.evaluation.scoring import ClipTraces


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


def safe_name(name: str) -> str:
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
