"""In / out points and the range preview render in the studio (issue 18): the marks and their
default, the timeline markers, and in a real browser: keys I / O, "Render range", the result
playing in the viewer, its frames equal to the full render's, the full render reusing its chunks.

Frame equality is checked exactly two ways: the range's frames in the project's chunk store
(before encoding, lossless) and the decoded frames of a range rendered as FFV1 (lossless), each
against an independent full restore of the same project with the same settings.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from sparkvsr import media
from sparkvsr.engines.flow import FlowEngine
from sparkvsr.project import Project
from tests.test_ui import (
    RENDER_TIMEOUT_MS,
    Steps,
    _choose,
    _make_reference_for,
    _open,
    _pin_current,
    _scrub_to,
)
from ui import ranges
from ui.shortcuts import SHORTCUTS, shortcuts_help_html
from ui.timeline import timeline_html


def test_the_default_range_is_the_3_seconds_around_the_playhead():
    assert ranges.range_span(None, None, 100, 25.0, 500) == (63, 138)  # 75 frames, centred
    assert ranges.range_span(None, None, 5, 25.0, 500) == (0, 75)  # moved inside the clip
    assert ranges.range_span(None, None, 495, 25.0, 500) == (425, 500)
    assert ranges.range_span(None, None, 10, 24.0, 60) == (0, 60)  # a clip shorter than 3 s
    # marks: both included; a lone mark starts (in) or ends (out) 3 s
    assert ranges.range_span(120, 195, 0, 25.0, 500) == (120, 196)
    assert ranges.range_span(120, None, 0, 25.0, 500) == (120, 195)
    assert ranges.range_span(None, 80, 0, 25.0, 500) == (6, 81)
    assert ranges.range_span(7, 7, 0, 25.0, 500) == (7, 8)


def test_a_mark_on_the_wrong_side_of_the_other_drops_the_other():
    assert ranges.marks_after("in", 50, None, 80) == (50, 80)
    assert ranges.marks_after("in", 90, 10, 80) == (90, None)
    assert ranges.marks_after("out", 30, 40, None) == (None, 30)
    assert ranges.marks_after("out", 60, 40, None) == (40, 60)
    with pytest.raises(ValueError, match="unknown"):
        ranges.marks_after("middle", 1, None, None)


def test_the_timeline_shows_the_in_and_out_marks_and_the_span():
    html = timeline_html(101, 50, in_point=20, out_point=60)
    assert 'class="tl-in" data-frame="20" style="left:20.000%"' in html
    assert 'class="tl-out" data-frame="60" style="left:60.000%"' in html
    assert 'class="tl-range" style="left:20.000%;width:40.000%"' in html
    assert "tl-in" not in timeline_html(101, 50)
    info = ranges.range_info_html(20, 60, (20, 61), 25.0)
    assert 'data-start="20" data-stop="61"' in info and "41 frames, 1.6 s" in info


def test_i_and_o_are_listed_in_the_shortcut_help():
    assert ("I / O", "in / out point at the current frame (the range to preview-render)") in (
        SHORTCUTS
    )
    assert "<kbd>I / O</kbd>" in shortcuts_help_html()


# ---------------------------------------------------------------------------------------------
# In a real browser


def _press_at(page, key: str, frame: int) -> None:
    """Move the playhead to ``frame`` and press ``key`` with nothing focused (a shortcut)."""
    _scrub_to(page, frame)
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    page.keyboard.press(key)


def _independent_full_restore(folder: Path) -> np.ndarray:
    """Every restored frame of the project as a full render makes them, in this process."""
    project = Project.open(folder, require_clip=False)
    state = project.state
    with media.open_clip(state.clip.path) as clip:
        chunks = FlowEngine().restore(clip, project.reference_images(), state.restore_options())
        return np.concatenate([c.frames for c in chunks])


def _range_chunk_frames(folder: Path, start: int, stop: int) -> np.ndarray:
    """The range's frames in the project's chunk store (lossless, before any encoding)."""
    project = Project.open(folder, require_clip=False)
    ranged = project.state.range_render
    assert (ranged.start, ranged.stop) == (start, stop) and ranged.complete
    pieces = project.frame_pieces(ranged.fingerprint, start, stop)
    return np.concatenate([f for _, f in project.iter_pieces(pieces, 64)])


@pytest.mark.browser
def test_in_out_and_range_render_play_and_equal_the_full_render(studio, browser, tmp_path):
    context, page = _open(browser, studio)
    try:
        # keyframes outside the range: their detail reaches into it
        for frame in (8, 52):
            _scrub_to(page, frame)
            _pin_current(page, frame)
        _make_reference_for(page, 0, 8)
        _make_reference_for(page, 1, 52)
        title = page.inner_text("#clip-title")
        folder = studio.projects / re.search(r"project (\S+)", title).group(1).strip("`")

        # 1. in / out with the keys I and O: frames 20 to 43 (1 s at 24 fps)
        _press_at(page, "i", 20)
        page.wait_for_selector('#timeline .tl-in[data-frame="20"]')
        _press_at(page, "o", 43)
        page.wait_for_selector('#timeline .tl-out[data-frame="43"]')
        page.wait_for_selector('#range-info [data-start="20"][data-stop="44"]')

        # 2. render the range: progress, then the result plays in the viewer's Range tab
        page.click("#range-render")
        page.wait_for_selector('#range-progress [data-stage="done"]', timeout=RENDER_TIMEOUT_MS)
        assert "_x4_flow_g1.0_f20-43.mp4" in page.inner_text("#range-progress")
        Steps(page, tmp_path).shot("range-rendered")
        page.wait_for_selector("#range-video video")
        # a named download beside the player
        page.wait_for_selector('#range-video a[download="demo_lr_x4_flow_g1.0_f20-43.mp4"]')
        duration = page.evaluate(
            """async () => {
              const v = document.querySelector('#range-video video');
              if (v.readyState < 1) await new Promise((r) => v.addEventListener(
                'loadedmetadata', r, { once: true }));
              return v.duration; }"""
        )
        assert abs(duration - 24 / 24) < 0.1, duration
        page.evaluate(
            "() => { const v = document.querySelector('#range-video video');"
            " v.muted = true; return v.play(); }"
        )
        page.wait_for_function(
            "() => document.querySelector('#range-video video').currentTime > 0.3"
        )
        ranged = media.probe(folder / "demo_lr_x4_flow_g1.0_f20-43.mp4")
        assert ranged.num_frames == 24 and ranged.frame_rate == 24 and len(ranged.audio) == 1

        # 3. its frames (chunk store, lossless) equal an independent full restore's
        full = _independent_full_restore(folder)
        assert np.array_equal(_range_chunk_frames(folder, 20, 44), full[20:44])

        # 4. the full render reuses the range's chunks: no frame is rendered twice
        page.click("#render")
        page.wait_for_selector('#progress [data-stage="done"]', timeout=RENDER_TIMEOUT_MS)
        project = Project.open(folder, require_clip=False)
        fingerprint = project.state.render.fingerprint
        assert project.state.range_render.fingerprint == fingerprint
        made = [f for a, b, fp in project.chunk_log() if fp == fingerprint for f in range(a, b)]
        assert sorted(made) == list(range(60))
        assert {c.file for c in project.state.range_render.chunks} <= {
            c.file for c in project.state.render.chunks
        }

        # 5. FFV1 (lossless): the decoded range file equals the full restore's frames exactly
        _choose(page, "#output-codec", "FFV1 (lossless)")
        page.wait_for_selector('#range-progress [data-stage="stale"]')  # marked out of date
        page.click("#range-render")
        page.wait_for_selector('#range-progress [data-stage]:not([data-stage="stale"])')
        # a reload while it renders: the page follows it (or shows it finished) all the same
        page.reload()
        page.wait_for_selector('#range-progress [data-stage="done"]', timeout=RENDER_TIMEOUT_MS)
        assert "_ffv1_f20-43.mkv" in page.inner_text("#range-progress")
        lossless = folder / "demo_lr_x4_flow_g1.0_ffv1_f20-43.mkv"
        with media.open_clip(lossless) as clip:
            assert clip.num_frames == 24
            assert np.array_equal(clip.read(0, 24), full[20:44])
    finally:
        context.close()


def test_a_cancelled_range_says_what_it_kept():
    from sparkvsr.render import RenderProgress
    from ui.callbacks.ranges import range_cancelled_note

    kept = RenderProgress("render", 12, 75, chunks_rendered=2, first=30)
    assert "12 of 75 frames kept" in range_cancelled_note(kept)
    assert "before its first chunk" in range_cancelled_note(None)
