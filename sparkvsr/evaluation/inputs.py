"""Evaluation inputs: pairing GT clips with predictions and LQ inputs, probed and checked frame
for frame before any work."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sparkvsr.errors import EvaluationError, MediaError
from sparkvsr.evaluation.request import GT_FOLDERS, LQ_FOLDERS, VIDEO_SUFFIXES, EvalRequest
from sparkvsr.media import IMAGE_SUFFIXES, ClipInfo, probe


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
class ProbedJob:
    job: ClipJob
    gt: ClipInfo
    preds: tuple[ClipInfo, ...]
    lq: ClipInfo | None


def probe_job(job: ClipJob) -> ProbedJob:
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
    return ProbedJob(job, gt, tuple(preds), lq)
