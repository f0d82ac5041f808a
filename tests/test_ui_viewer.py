"""The studio's viewer and timeline in a real browser (issue 18): previews at the size they are
seen, zoom, one source of truth for the frame and guidance, markers, shortcuts.

Same harness as ``tests/test_ui.py`` (``app.py`` on the demo clip, Debian chromium at 1280x720);
kept to one studio for the module. No timed assertions: latency lives in
``benchmarks/ui_latency.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.test_ui import (
    RunningStudio,
    _make_reference_for,
    _open,
    _pin_current,
    _scrub_to,
    _text_has,
)

OUTPUT = (640, 384)  # the demo clip (160x96) at x4


def _natural_size(page) -> tuple[int, int]:
    return tuple(
        page.evaluate(
            "() => { const i = document.querySelector('#preview img');"
            " return [i.naturalWidth, i.naturalHeight]; }"
        )
    )


def _viewer_size(page) -> tuple[int, int]:
    page.wait_for_function(
        "() => { const b = document.querySelector('#viewport textarea, #viewport input');"
        " return !!b && b.value.includes('width'); }"
    )
    text = page.evaluate(
        "() => document.querySelector('#viewport textarea, #viewport input').value"
    )
    data = json.loads(text)
    return data["width"], data["height"]


def _wait_natural(page, predicate: str) -> tuple[int, int]:
    page.wait_for_function(
        "() => { const i = document.querySelector('#preview img');"
        f" if (!i || !i.complete) return false; const w = i.naturalWidth, h = i.naturalHeight;"
        f" return {predicate}; }}"
    )
    return _natural_size(page)


@pytest.mark.browser
def test_previews_come_at_the_viewer_size_and_zoom_shows_a_region_at_full_resolution(
    studio: RunningStudio, browser
):
    context, page = _open(browser, studio)
    try:
        width, height = _viewer_size(page)
        assert width < OUTPUT[0] or height < OUTPUT[1]  # the frame does not fit the viewer
        _scrub_to(page, 12)
        _pin_current(page, 12)
        _make_reference_for(page, 0, 12)
        page.wait_for_function(_text_has("#preview", "full quality"))
        # fitted: the whole frame, as large as the viewer shows it, not the 640x384 frame
        fitted = _wait_natural(page, f"w < {OUTPUT[0]} && Math.abs(w / h - 640 / 384) < 0.02")
        assert fitted[0] <= width and fitted[1] <= height

        page.locator("#zoom label", has_text="200%").click()
        # 200 %: the region the viewer shows, at full resolution (half the viewer's pixels)
        zoomed = _wait_natural(page, f"w === {min(OUTPUT[0], -(-width // 2))}")
        assert zoomed == (min(OUTPUT[0], -(-width // 2)), min(OUTPUT[1], -(-height // 2)))
        assert "full quality" in page.inner_text("#preview")

        page.locator("#zoom label", has_text="Fit").click()
        assert _wait_natural(page, f"w === {fitted[0]}") == fitted
    finally:
        context.close()


def _preview_says(page, frame: int, guidance: float) -> None:
    label = f"Restored frame {frame} · guidance {guidance:.2f} · full quality"
    page.wait_for_function(_text_has("#preview", label))


@pytest.mark.browser
def test_typed_frames_keyboard_guidance_and_timeline_clicks_move_one_state(studio, browser):
    context, page = _open(browser, studio)
    try:
        _scrub_to(page, 8)
        _pin_current(page, 8)
        _make_reference_for(page, 0, 8)

        # a frame number typed + Enter: the input frame and the preview follow
        box = page.locator("#scrubber input[type=number]")
        box.fill("20")
        box.press("Enter")
        page.wait_for_function(_text_has("#frame-index", "Frame 20 /"))
        _preview_says(page, 20, 1.0)

        # guidance moved by the keyboard ends in a full-quality preview, and is saved
        slider = page.locator("#guidance input[type=range]")
        slider.focus()
        for _ in range(3):
            slider.press("ArrowRight")
        _preview_says(page, 20, 1.15)
        # typed + Enter the same
        number = page.locator("#guidance input[type=number]")
        number.fill("0.7")
        number.press("Enter")
        _preview_says(page, 20, 0.7)

        # a click on a timeline marker jumps there
        page.click('#timeline .tl-key[data-frame="8"]')
        page.wait_for_function(_text_has("#frame-index", "Frame 8 /"))
        _preview_says(page, 8, 0.7)

        # the saved guidance is what a reload shows
        page.reload()
        page.wait_for_selector('#timeline .tl-key[data-frame="8"]')
        page.wait_for_function(
            "() => document.querySelector('#guidance input[type=number]').value === '0.7'"
        )
    finally:
        context.close()


@pytest.mark.browser
def test_shortcuts_move_the_playhead_pin_zoom_and_compare(studio, browser):
    context, page = _open(browser, studio)
    try:
        last = int(page.locator("#scrubber input[type=range]").get_attribute("max"))
        page.click("#frame-index")  # the page, not a text field, has the keys
        keys = page.keyboard
        keys.press("End")
        page.wait_for_function(_text_has("#frame-index", f"Frame {last} /"))
        keys.press("Home")
        page.wait_for_function(_text_has("#frame-index", "Frame 0 /"))
        keys.press("l")
        page.wait_for_function(_text_has("#frame-index", "Frame 10 /"))
        keys.press("Shift+ArrowRight")
        page.wait_for_function(_text_has("#frame-index", "Frame 20 /"))
        keys.press("j")
        page.wait_for_function(_text_has("#frame-index", "Frame 10 /"))
        page.wait_for_function(_text_has("#preview", "Restored frame 10 "))

        keys.press("m")  # pin
        page.wait_for_selector('#timeline .tl-key[data-frame="10"]')
        keys.press("m")  # unpin
        page.wait_for_selector('#timeline .tl-key[data-frame="10"]', state="detached")

        keys.press("1")  # 100 %
        page.wait_for_selector("#zoom input[value='100%']:checked")
        keys.press("c")  # compare
        page.wait_for_selector("#before-after", state="visible")
        keys.press("?")
        assert page.locator("#shortcut-help-box").get_attribute("open") is not None
        assert "pin or unpin" in page.inner_text("#shortcut-help-box")
    finally:
        context.close()


def _picture(page, selector: str) -> np.ndarray:
    """What an ``<img>`` shows, fetched as the browser got it: ``[H, W, 3]`` uint8."""
    import io

    from PIL import Image

    src = page.get_attribute(selector, "src")
    reply = page.request.get(src if src.startswith("http") else page.url.rstrip("/") + src)
    assert reply.ok, src
    return np.asarray(Image.open(io.BytesIO(reply.body())).convert("RGB"))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(np.corrcoef(a - a.mean(), b - b.mean())[0, 1])


@pytest.mark.browser
def test_the_main_loop_fits_a_laptop_screen(studio, browser):
    context, page = _open(browser, studio)
    try:
        for element in ("#preview", "#scrubber", "#timeline", "#guidance", "#pin", "#render"):
            box = page.locator(element).bounding_box()
            assert box is not None and box["height"] > 0, element
            assert box["y"] >= 0 and box["y"] + box["height"] <= 720, (element, box)
            assert box["x"] + box["width"] <= 1280, (element, box)
        assert page.evaluate("() => window.scrollY") == 0
    finally:
        context.close()


@pytest.mark.browser
def test_side_by_side_shows_one_region_of_input_and_restored_zoomed_and_panned_together(
    studio, browser
):
    context, page = _open(browser, studio)
    try:
        width, height = _viewer_size(page)
        page.locator("#zoom label", has_text="200%").click()
        zoomed = (min(OUTPUT[0], -(-width // 2)), min(OUTPUT[1], -(-height // 2)))
        _wait_natural(page, f"w === {zoomed[0]}")
        page.click("#frame-index")  # the page, not a text field, has the keys
        page.keyboard.press("c")  # preview -> before / after
        page.wait_for_selector("#before-after", state="visible")
        page.keyboard.press("c")  # -> side by side
        page.wait_for_selector("#side-by-side", state="visible")
        sides = ("#side-before img", "#side-after img")
        for side in sides:
            page.wait_for_selector(side)
        # two pictures of the same region: the zoomed one, input on the left, restored on the right
        before, after = (_picture(page, side) for side in sides)
        assert before.shape[:2] == after.shape[:2] == (zoomed[1], zoomed[0])
        assert _correlation(before, after) > 0.9
        box = page.locator("#side-before").bounding_box()
        other = page.locator("#side-after").bounding_box()
        assert box["x"] + box["width"] <= other["x"] + 1  # side by side, not stacked
        assert abs(box["y"] - other["y"]) < 2

        # a click on one side pans both: a new region on both, still the same on each side
        shown = [page.get_attribute(side, "src") for side in sides]
        shown_box = page.locator(sides[1]).bounding_box()
        page.locator(sides[1]).click(  # right of the centre, on the picture (contained)
            position={"x": 0.85 * shown_box["width"], "y": 0.5 * shown_box["height"]}
        )
        for side, src in zip(sides, shown):
            page.wait_for_function(
                f"() => document.querySelector({side!r}).getAttribute('src') !== {src!r}"
            )
        moved_before, moved_after = (_picture(page, side) for side in sides)
        assert _correlation(moved_before, moved_after) > 0.9
        assert _correlation(moved_after, after) < 0.9  # another part of the frame
        page.keyboard.press("c")  # -> back to the preview
        page.wait_for_selector("#preview", state="visible")
    finally:
        context.close()


@pytest.mark.browser
def test_the_filmstrip_under_the_timeline_shows_the_clips_frames_in_order(studio, browser):
    from sparkvsr import media
    from sparkvsr.demo import ensure_demo
    from sparkvsr.media.proxy import filmstrip_frames

    context, page = _open(browser, studio)
    try:
        page.wait_for_selector("#filmstrip img")  # made in the background, then shown
        strip = _picture(page, "#filmstrip img")
        with media.open_clip(ensure_demo().lr) as clip:
            frames = clip.read(0, clip.num_frames)
        wanted = filmstrip_frames(len(frames))
        width = strip.shape[1] // len(wanted)
        assert strip.shape[1] == width * len(wanted)
        small = np.stack(
            [
                np.asarray(Image.fromarray(f).resize((width, strip.shape[0]), Image.Resampling.BOX))
                for f in frames
            ]
        ).astype(np.float32)
        for n, frame in enumerate(wanted):
            thumb = strip[:, n * width : (n + 1) * width].astype(np.float32)
            errors = np.abs(small - thumb).mean(axis=(1, 2, 3))
            # the thumbnail is its frame: no other frame of the clip matches it better
            assert abs(int(errors.argmin()) - frame) <= 1, (n, frame, errors.argmin())
            assert errors[frame] < 8.0  # (a JPEG of small thumbnails)
        # it lies over the timeline's track, edge to edge
        track = page.locator("#timeline .tl-track").bounding_box()
        shown = page.locator("#filmstrip img").bounding_box()
        assert abs(shown["x"] - track["x"]) <= 2 and abs(shown["width"] - track["width"]) <= 3
        assert abs(shown["y"] - track["y"]) <= 2
    finally:
        context.close()


@pytest.mark.browser
def test_space_plays_the_clip_over_the_viewer_and_pausing_goes_to_that_frame(studio, browser):
    video = "document.querySelector('#lr-player video')"
    context, page = _open(browser, studio)
    try:
        page.wait_for_selector("#lr-player video[src]", state="attached")
        page.wait_for_function(f"() => {video}.readyState >= 1")
        fps, frames = 24, 60  # the demo clip
        assert page.evaluate(f"() => {video}.duration") == pytest.approx(frames / fps, abs=0.1)
        assert page.locator("#lr-player").evaluate("e => getComputedStyle(e).visibility") == (
            "hidden"
        )
        page.click("#frame-index")  # the page, not a text field, has the keys
        page.keyboard.press(" ")
        page.wait_for_function(f"() => !{video}.paused && {video}.currentTime > 0.2")
        assert page.locator("#lr-player").evaluate("e => getComputedStyle(e).visibility") == (
            "visible"
        )
        first = page.evaluate(f"() => {video}.currentTime")
        page.wait_for_function(f"() => {video}.currentTime > {first} + 0.1 || {video}.ended")
        if not page.evaluate(f"() => {video}.paused"):
            page.keyboard.press(" ")
        page.wait_for_function(f"() => {video}.paused")
        stopped = min(
            frames - 1, page.evaluate(f"() => Math.floor({video}.currentTime * {fps} + 1e-3)")
        )
        assert stopped > 0
        # the studio is now at the frame the clip stopped at, as if scrubbed there
        page.wait_for_function(_text_has("#frame-index", f"Frame {stopped} /"))
        page.wait_for_function(_text_has("#preview", f"Restored frame {stopped} "))
        assert page.locator("#lr-player").evaluate("e => getComputedStyle(e).visibility") == (
            "hidden"
        )
    finally:
        context.close()


def test_the_worker_makes_a_clips_proxy_once_in_the_background(tmp_path):
    """``clip_media``: "making" at first, then a proxy video with every frame of the clip at its
    rate, and a filmstrip; a later worker finds them in the project and does not make them
    again."""
    import time

    from sparkvsr import media
    from sparkvsr.worker import (
        FileRequest,
        InProcessClient,
        OpenClipRequest,
        SessionRequest,
        WorkerConfig,
    )
    from tests.conftest import moving_frames, write_test_video

    source = moving_frames(30, 96, 64)
    clip = write_test_video(tmp_path / "clip.mp4", source, fps=25)
    config = WorkerConfig(projects_root=tmp_path / "projects")

    def ready(client, session_id: str):
        deadline = time.monotonic() + 60
        while (made := client.clip_media(SessionRequest(session_id))).state == "making":
            assert time.monotonic() < deadline, "the proxy took over a minute"
            time.sleep(0.05)
        assert made.state == "ready", made.message
        return made

    client = InProcessClient(config=config)
    try:
        info = client.open_clip(OpenClipRequest(clip_path=str(clip)))
        made = ready(client, info.session_id)
        video = client.get_file(FileRequest(info.session_id, made.video)).local_path
        with media.open_clip(video) as proxy, media.open_clip(clip) as original:
            assert proxy.num_frames == 30 and proxy.info.fps == pytest.approx(25.0)
            shown, truth = proxy.frame(17).astype(float), original.read(0, 30).astype(float)
            errors = np.abs(truth - shown).mean(axis=(1, 2, 3))
            assert int(errors.argmin()) == 17  # frame i of the proxy is frame i of the clip
        assert made.frames == tuple(sorted(made.frames)) and len(made.frames) > 1
        strip = media.read_image(
            client.get_file(FileRequest(info.session_id, made.filmstrip)).local_path
        )
        assert strip.shape[1] == made.thumb_width * len(made.frames)
        stamp = (tmp_path / "projects" / info.project / made.video).stat().st_mtime_ns
        client.close_session(SessionRequest(info.session_id))
    finally:
        client.close()

    again = InProcessClient(config=config)  # a restarted worker: the proxy is in the project
    try:
        info = again.open_clip(OpenClipRequest(project=info.project))
        assert ready(again, info.session_id).video == made.video
        assert (tmp_path / "projects" / info.project / made.video).stat().st_mtime_ns == stamp
        again.close_session(SessionRequest(info.session_id))
    finally:
        again.close()


def test_the_proxy_and_a_references_raw_image_cross_the_wire(tmp_path):
    """The studio over an HTTP worker gets the clip's proxy and a moved Reference's raw image
    as it does in process (``clip_media``, ``ReferenceResponse.raw_file``, ``get_file``)."""
    import time

    import cv2

    from sparkvsr.engines import load_engine
    from sparkvsr.media import read_image
    from sparkvsr.worker import (
        FileRequest,
        HttpClient,
        KeyframeRequest,
        OpenClipRequest,
        ReferenceRequest,
        SessionRequest,
        Worker,
        WorkerConfig,
    )
    from tests.conftest import write_test_video
    from tests.test_flow_engine import degrade, texture
    from tests.test_server import serving

    hr = texture(192, 256, seed=3)
    clip = write_test_video(tmp_path / "clip.mp4", np.stack([degrade(hr[None])[0]] * 8))
    moved = cv2.warpAffine(
        hr, np.float32([[1, 0, 5], [0, 1, -3]]), (256, 192), borderMode=cv2.BORDER_REFLECT
    )
    config = WorkerConfig(projects_root=tmp_path / "projects")
    with (
        Worker(config, engine=load_engine("flow")) as worker,
        serving(worker, "a-token-of-16-chars") as url,
        HttpClient(url, token="a-token-of-16-chars", timeout=60) as client,
    ):
        info = client.open_clip(OpenClipRequest(clip_path=str(clip)))
        deadline = time.monotonic() + 60
        while (media := client.clip_media(SessionRequest(info.session_id))).state == "making":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert media.state == "ready" and len(media.frames) == 8
        strip = client.get_file(FileRequest(info.session_id, media.filmstrip)).local_path
        assert read_image(strip).shape[1] == media.thumb_width * 8
        client.set_keyframe(KeyframeRequest(info.session_id, 0))
        made = client.make_reference(
            ReferenceRequest(info.session_id, 0, editor="upload", upload=moved)
        )
        assert made.raw_file and made.provenance.fit.verdict == "shifted"
        raw = client.get_file(FileRequest(info.session_id, made.raw_file)).local_path
        np.testing.assert_array_equal(read_image(raw), moved)
