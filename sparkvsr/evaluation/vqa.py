"""External video-quality models (DOVER / FasterVQA): the user's own installations, run as
their scripts."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sparkvsr.evaluation.inputs import ProbedJob
from sparkvsr.evaluation.request import VQA_PATTERNS, EvalRequest, Score, VQAInstall
from sparkvsr.evaluation.scoring import Backends
from sparkvsr.media import Clip, ClipInfo, VideoWriter


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


def video_scores(
    probed: ProbedJob, request: EvalRequest, backends: Backends, scratch: Path
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
