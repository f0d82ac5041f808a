"""The edit panel in a real browser (issues 16 and 17): an uploaded image belongs to the keyframe
it was dropped for, and each reference shows how it fits its frame.

Same harness as ``tests/test_ui.py`` (``app.py`` on the demo clip, Debian chromium at 1280x720);
one studio for the module.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_ui import (
    RunningStudio,
    Steps,
    _choose,
    _open,
    _pin_current,
    _scrub_to,
    _text_has,
)

OUTPUT = (640, 384)  # the demo clip (160x96) at x4


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


def test_a_moved_reference_keeps_the_editors_image_for_a_before_after_across_a_reopen(tmp_path):
    """Registration moves a shifted upload onto its keyframe; the editor's own image is kept in
    the project (a before/after for the user) and is still there when the project reopens."""
    import cv2

    from sparkvsr.media import read_image
    from sparkvsr.worker import (
        FileRequest,
        InProcessClient,
        KeyframeRequest,
        OpenClipRequest,
        ReferenceRequest,
        SessionRequest,
        WorkerConfig,
    )
    from tests.conftest import write_test_video
    from tests.test_flow_engine import degrade, texture

    hr = texture(192, 256, seed=3)
    lr = degrade(hr[None])[0]  # 64x48
    clip = write_test_video(tmp_path / "clip.mp4", np.stack([lr] * 8))
    moved = cv2.warpAffine(
        hr, np.float32([[1, 0, 5], [0, 1, -3]]), (256, 192), borderMode=cv2.BORDER_REFLECT
    )
    client = InProcessClient(config=WorkerConfig(projects_root=tmp_path / "projects"))
    try:
        info = client.open_clip(OpenClipRequest(clip_path=str(clip)))
        client.set_keyframe(KeyframeRequest(info.session_id, 0))
        made = client.make_reference(
            ReferenceRequest(info.session_id, 0, editor="upload", upload=moved)
        )
        assert made.provenance.fit.verdict == "shifted"
        assert made.raw_file
        client.close_session(SessionRequest(info.session_id))

        again = client.open_clip(OpenClipRequest(project=info.project))
        reference = client.reference(KeyframeRequest(again.session_id, 0))
        assert reference.raw_file == made.raw_file
        raw = read_image(
            client.get_file(FileRequest(again.session_id, reference.raw_file)).local_path
        )
        np.testing.assert_array_equal(raw, moved)  # the editor's image, as it came
        # ... and the Reference is the registered one, nearer the true frame than the raw image
        inner = (slice(16, -16), slice(16, -16))
        gap = lambda image: np.abs(image[inner].astype(int) - hr[inner].astype(int)).mean()  # noqa: E731
        assert gap(reference.image) < 0.5 * gap(raw)
        client.close_session(SessionRequest(again.session_id))
    finally:
        client.close()


def _image_at(page, selector: str, index: int = 0) -> np.ndarray:
    """The picture an ``<img>`` of the page shows, fetched and decoded as the browser got it."""
    import io

    from PIL import Image

    src = page.locator(selector).nth(index).get_attribute("src")
    reply = page.request.get(src if src.startswith("http") else studio_url(page) + src)
    assert reply.ok, src
    return np.asarray(Image.open(io.BytesIO(reply.body())).convert("RGB"))


def studio_url(page) -> str:
    return page.url.split("?")[0].rstrip("/")


@pytest.mark.browser
def test_a_references_fit_shows_as_a_badge_a_registration_before_after_and_a_warning(
    studio, browser, tmp_path
):
    import cv2

    from sparkvsr.demo import ensure_demo
    from sparkvsr.media import read_image, write_image

    truth = read_image(ensure_demo().references[36])  # the demo's true HR frame 36
    moved = cv2.warpAffine(
        truth, np.float32([[1, 0, 6], [0, 1, -4]]), OUTPUT, borderMode=cv2.BORDER_REFLECT
    )
    write_image(shifted := tmp_path / "shifted.png", moved)
    card = np.full((OUTPUT[1], OUTPUT[0], 3), 70, np.uint8)
    card[120:260, 240:400] = 250
    write_image(other := tmp_path / "another-picture.png", card)
    context, page = _open(browser, studio)
    steps = Steps(page, tmp_path)
    try:
        for frame in (12, 36):
            _scrub_to(page, frame)
            _pin_current(page, frame)

        # 1. An edit moved by 6 x 4 px: registered back, "shifted (fixed)" with its numbers.
        _select_keyframe(page, 1, 36)
        page.set_input_files("#reference-upload input[type=file]", str(shifted))
        page.wait_for_selector("#reference-upload img")
        page.click("#make-reference")
        page.wait_for_selector('#reference-fit .fit[data-frame="36"][data-verdict="shifted"]')
        fit = page.inner_text("#reference-fit")
        assert "shifted (fixed)" in fit and "dB against the frame" in fit and "moved" in fit
        assert page.locator("#reference-fit .fit-warning").count() == 0

        # 2. In the viewer: the editor's image vs the registered one, the same fit beside them.
        page.get_by_role("tab", name="Reference").click()
        page.wait_for_selector('#viewer-fit .fit[data-frame="36"][data-verdict="shifted"]')
        page.wait_for_function("() => document.querySelectorAll('#registration img').length === 2")
        steps.shot("registration")
        before, after = (
            _image_at(page, "#registration img", 0),
            _image_at(page, "#registration img", 1),
        )
        inner = (slice(24, -24), slice(24, -24))

        def gap(a: np.ndarray, b: np.ndarray) -> float:
            return float(np.abs(a[inner].astype(int) - b[inner].astype(int)).mean())

        assert gap(before, moved) < 2.0  # the editor's image, as it was uploaded
        assert gap(after, truth) < 0.5 * gap(before, truth)  # registered onto the frame

        # 3. A picture of something else for frame 12: a warning that looks like one, in the
        #    edit panel and in the viewer.
        _select_keyframe(page, 0, 12)
        page.set_input_files("#reference-upload input[type=file]", str(other))
        page.wait_for_selector("#reference-upload img")
        page.click("#make-reference")
        for where in ("#reference-fit", "#viewer-fit"):
            page.wait_for_selector(f'{where} .fit[data-frame="12"] .fit-warning[role=alert]')
        warning = page.locator("#reference-fit .fit-warning")
        assert "Does not match frame 12" in warning.inner_text()
        assert "different content" in page.inner_text("#reference-fit .fit-badge")
        colour = warning.evaluate("e => getComputedStyle(e).borderLeftColor")
        assert colour == "rgb(220, 38, 38)"  # red, as warnings are
        steps.shot("warning")

        # 4. The registration's before/after survives a reload (the editor's image is kept).
        page.reload()
        page.wait_for_selector('#timeline .tl-key.has-ref[data-frame="36"]')
        _select_keyframe(page, 1, 36)
        page.wait_for_selector('#reference-fit .fit[data-verdict="shifted"]')
        page.get_by_role("tab", name="Reference").click()
        page.wait_for_function("() => document.querySelectorAll('#registration img').length === 2")
        assert gap(_image_at(page, "#registration img", 0), moved) < 2.0
    finally:
        context.close()
