"""The edit panel in a real browser (issues 16 and 17): an uploaded image belongs to the keyframe
it was dropped for, and each reference shows how it fits its frame.

Same harness as ``tests/test_ui.py`` (``app.py`` on the demo clip, Debian chromium at 1280x720);
one studio for the module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest

from tests.test_ui import (
    CHROMIUM,
    CHROMIUM_ARGS,
    RunningStudio,
    Steps,
    _choose,
    _free_port,
    _launch,
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
    folder = tmp_path_factory.mktemp("edit-panel")
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


def _project(page) -> str:
    return page.inner_text("#clip-title").rsplit("project", 1)[-1].strip()


def _manifest_references(studio: RunningStudio, project: str) -> dict[int, dict]:
    manifest = json.loads((studio.projects / project / "project.json").read_text())
    return {r["frame"]: r for r in manifest["references"]}


def _select_keyframe(page, index: int, frame: int) -> None:
    page.locator("#keyframe-gallery button.thumbnail-item").nth(index).click()
    page.wait_for_function(_text_has("#edit-title", f"Keyframe {frame}"))


def _editor_is(page, name: str) -> None:
    page.wait_for_function(
        f"() => document.querySelector('#editor-choice input').value === {name!r}"
    )


@pytest.mark.browser
def test_an_upload_belongs_to_its_keyframe_and_never_reaches_another(studio, browser, tmp_path):
    from sparkvsr.media import write_image

    # A picture no editor would make of a demo frame: a flat grey card with a white square.
    picture = np.full((OUTPUT[1], OUTPUT[0], 3), 70, np.uint8)
    picture[120:260, 240:400] = 250
    path = tmp_path / "my-edit.png"
    write_image(path, picture)
    context, page = _open(browser, studio)
    steps = Steps(page, tmp_path)
    try:
        project = _project(page)
        for frame in (8, 20):
            _scrub_to(page, frame)
            _pin_current(page, frame)

        # keyframe A (8): the user's picture, dropped on the upload box
        _select_keyframe(page, 0, 8)
        page.set_input_files("#reference-upload input[type=file]", str(path))
        page.wait_for_selector("#reference-upload img")
        _editor_is(page, "upload")
        page.click("#make-reference")
        page.wait_for_selector('#timeline .tl-key.has-ref[data-frame="8"]')
        page.wait_for_function(_text_has("#reference-provenance", "upload"))
        steps.shot("uploaded-for-8")

        # keyframe B (20): the box is empty, the picture stayed with A
        _select_keyframe(page, 1, 20)
        page.wait_for_selector("#reference-upload img", state="detached")
        assert page.locator("#reference-upload img").count() == 0
        steps.shot("selected-20")
        # 'upload' is still chosen: B asks for its own picture instead of taking A's
        page.click("#make-reference")
        page.wait_for_function(_text_has("#error", "needs an image"))
        # all keyframes with one uploaded picture: refused in words
        page.click("#make-all-references")
        page.wait_for_function(_text_has("#error", "belongs to the one keyframe"))
        assert 20 not in _manifest_references(studio, project)

        # another editor for the rest: B gets its own reference, never A's picture
        _choose(page, "#editor-choice", "classic")
        page.click("#make-all-references")
        page.wait_for_selector('#timeline .tl-key.has-ref[data-frame="20"]')
        steps.shot("all-made")
        references = _manifest_references(studio, project)
        assert references[8]["provenance"]["editor"] == "upload"
        assert references[20]["provenance"]["editor"] == "classic"
        assert references[20]["content_hash"] != references[8]["content_hash"]
        # and back on A, the box is empty too: an upload is never shown for another keyframe
        _select_keyframe(page, 0, 8)
        assert page.locator("#reference-upload img").count() == 0
    finally:
        context.close()
