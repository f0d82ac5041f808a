"""The studio's viewer and timeline in a real browser (issue 18): previews at the size they are
seen, zoom, one source of truth for the frame and guidance, markers, shortcuts.

Same harness as ``tests/test_ui.py`` (``app.py`` on the demo clip, Debian chromium at 1280x720);
kept to one studio for the module. No timed assertions: latency lives in
``benchmarks/ui_latency.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.test_ui import (
    CHROMIUM,
    CHROMIUM_ARGS,
    RunningStudio,
    _free_port,
    _launch,
    _make_reference_for,
    _need_browser,
    _open,
    _pin_current,
    _scrub_to,
    _stop,
    _text_has,
)

OUTPUT = (640, 384)  # the demo clip (160x96) at x4


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Iterator[RunningStudio]:
    """``python app.py`` (demo clip, flow engine, classic references) on a free port."""
    _need_browser()
    folder = tmp_path_factory.mktemp("viewer")
    projects, log = folder / "projects", folder / "studio.log"
    process = _launch(projects, log, port := _free_port())
    try:
        yield RunningStudio(f"http://127.0.0.1:{port}/", projects, log)
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def browser(studio):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


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
        assert width < OUTPUT[0] and height < OUTPUT[1]  # the viewer is smaller than the frame
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
