"""Render progress: frame by frame inside chunks, the final encode as its own stage, elapsed time
and a time-left estimate from the recent pace (issue 18)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from sparkvsr import media
from sparkvsr.engines.base import RestoreOptions
from sparkvsr.engines.flow import FlowEngine
from sparkvsr.project import ClipSummary, Project
from sparkvsr.references import load_editor
from sparkvsr.references.base import EditRequest
from sparkvsr.render import Pace, RenderProgress, render_project
from tests.project_helpers import make_clip
from ui.callbacks import progress_html


def _project(tmp_path: Path, frames: int) -> Project:
    clip = make_clip(tmp_path / "clip.mp4", num_frames=frames)
    options = RestoreOptions(chunk=33, overlap=0)
    project = Project.create(
        tmp_path / "proj", ClipSummary.from_info(media.probe(clip)), options=options
    )
    with media.open_clip(clip) as source:
        lr = source.frame(40)
        size = (source.size[0] * 4, source.size[1] * 4)
    project.add_keyframe(40)
    project.set_reference(40, load_editor("classic").make(lr, size, EditRequest()))
    return project


def test_a_100_frame_render_reports_every_few_frames_and_the_encode_on_its_own(tmp_path):
    project = _project(tmp_path, 100)
    updates: list[RenderProgress] = []
    render_project(FlowEngine(), project, progress=updates.append)

    rendering = [u.frames_done for u in updates if u.stage == "render"]
    assert rendering[0] == 0 and rendering[-1] == 100
    steps = [b - a for a, b in itertools.pairwise(rendering)]
    assert min(steps) >= 0 and max(steps) <= 5, steps  # never a 33-frame jump
    assert len(set(rendering)) >= 21

    encoding = [u for u in updates if u.stage == "assemble"]
    counts = [u.encoded for u in encoding]
    assert counts[0] == 0 and counts[-1] == 100 and counts == sorted(counts)
    assert len(set(counts)) >= 10  # the encode has a percentage of its own
    assert encoding[0].fraction == 0.0 and encoding[-1].fraction == 1.0
    assert all(u.frames_done == 100 for u in encoding)  # rendering is finished meanwhile

    assert updates[-1].stage == "done" and updates[-1].eta == 0.0
    elapsed = [u.elapsed for u in updates]
    assert elapsed == sorted(elapsed) and elapsed[-1] > 0
    late = [u for u in updates if u.stage == "render" and u.frames_done >= 10]
    assert all(u.eta is not None and u.rate > 0 for u in late)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_pace_follows_the_recent_frames_not_the_whole_run():
    clock = FakeClock()
    pace = Pace(window=10, clock=clock)
    pace.start(0)
    assert pace.eta(100) is None  # nothing measured yet: no made-up number
    for frame in range(1, 51):  # 50 slow frames at 1 s each
        clock.now += 1.0
        pace.update(frame)
    assert pace.rate == pytest.approx(1.0)
    assert pace.eta(50) == pytest.approx(50.0)
    for frame in range(51, 71):  # the machine frees up: 10 frames a second
        clock.now += 0.1
        pace.update(frame)
    assert pace.rate == pytest.approx(10.0)  # the whole-run average would say 2.9
    assert pace.eta(30) == pytest.approx(3.0)
    clock.now += 1.0  # a second passes without a frame: the estimate counts down
    assert pace.eta(30) == pytest.approx(2.0)
    pace.update(70)  # a repeated count is not a new frame
    assert pace.rate == pytest.approx(10.0)


def test_progress_bar_shows_the_encode_percentage_elapsed_and_time_left():
    html = progress_html(
        RenderProgress("assemble", 100, 100, 4, 0, "encoding", encoded=25, elapsed=75, eta=12.4)
    )
    assert 'data-stage="assemble"' in html and "width:25.0%" in html
    assert "25/100 frames encoded (25 %)" in html
    assert "1:15 elapsed" in html and "0:12 left" in html

    html = progress_html(RenderProgress("render", 40, 100, 1, elapsed=20, eta=None))
    assert "width:40.0%" in html and "estimating time left" in html
