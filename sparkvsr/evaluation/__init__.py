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

Modules: ``request`` (what is asked and reported), ``inputs`` (pairing and probing clips),
``scoring`` (metric backends, streaming one clip), ``vqa`` (external DOVER / FasterVQA),
``pictures`` (plots), ``tables`` (Markdown / CSV / JSON), ``run`` (``evaluate``).
"""

from sparkvsr.evaluation.inputs import ClipJob, plan_clips
from sparkvsr.evaluation.pictures import plot_psnr, plot_xt
from sparkvsr.evaluation.request import (
    ALL_CLIPS,
    ALL_METRICS,
    EvalReport,
    EvalRequest,
    MethodResult,
    Score,
    VQAInstall,
)
from sparkvsr.evaluation.run import evaluate
from sparkvsr.evaluation.scoring import ClipTraces
from sparkvsr.evaluation.tables import (
    convention,
    format_score,
    render_csv,
    render_json,
    render_markdown,
)
from sparkvsr.evaluation.vqa import run_vqa
from sparkvsr.media import Clip  # the reader every input goes through

__all__ = [
    "ALL_CLIPS",
    "ALL_METRICS",
    "Clip",
    "ClipJob",
    "ClipTraces",
    "EvalReport",
    "EvalRequest",
    "MethodResult",
    "Score",
    "VQAInstall",
    "convention",
    "evaluate",
    "format_score",
    "plan_clips",
    "plot_psnr",
    "plot_xt",
    "render_csv",
    "render_json",
    "render_markdown",
    "run_vqa",
]
