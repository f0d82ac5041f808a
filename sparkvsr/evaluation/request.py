"""What an evaluation is asked (``EvalRequest``, external ``VQAInstall``) and what it reports
(``Score``, ``MethodResult``, ``EvalReport``)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sparkvsr import metrics
from sparkvsr.engines.base import Progress
from sparkvsr.errors import EvaluationError

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
        from sparkvsr.evaluation.tables import render_markdown

        return render_markdown(self)
