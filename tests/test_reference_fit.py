"""Reference fitting (issue 16): registration, the fit's verdict, and what the engines do with it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sparkvsr.engines.base import KeyframeGuidance, RestoreOptions
from sparkvsr.engines.flow import FlowEngine
from sparkvsr.errors import EngineError
from sparkvsr.references import load_editor
from sparkvsr.references.base import EditRequest, Provenance, ReferenceFit
from sparkvsr.references.fit import assess, fit_reference
from sparkvsr.references.registration import register
from tests.test_flow_engine import degrade, moving_scene, restore_all, texture, upscale


def _warped(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``image`` moved so that its content at ``x`` lands at ``matrix @ x`` (an editor's move)."""
    height, width = image.shape[:2]
    return cv2.warpAffine(
        image, matrix, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )


@pytest.fixture(scope="module")
def frame():
    hr = texture(192, 256, seed=3)
    return hr, degrade(hr[None])[0]


@pytest.mark.parametrize(
    "matrix",
    [
        [[1.0, 0.0, 2.6], [0.0, 1.0, -1.3]],  # a shift
        [[1.02, 0.0, -2.5], [0.0, 1.02, -1.9]],  # x1.02 about the centre
        [[1.01, -0.012, 0.9], [0.01, 0.995, 1.4]],  # a small affine: scale, shear, rotation
    ],
)
def test_registration_recovers_a_known_affine_to_a_quarter_pixel(frame, matrix):
    hr, lr = frame
    known = np.array(matrix)
    registration = register(_warped(hr, known), lr)
    assert registration.corrected and not registration.refused
    height, width = hr.shape[:2]
    corners = np.array(
        [[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]]
    )
    error = np.linalg.norm(corners @ registration.matrix.T - corners @ known.T, axis=1)
    assert error.max() <= 0.25, (error, registration.matrix)
    # the registered Reference is back on the keyframe's grid (inside a border the move exposed)
    inner = (slice(12, -12), slice(12, -12))
    gap = np.abs(registration.image[inner].astype(int) - hr[inner].astype(int)).mean()
    assert gap < 3.0


def test_an_aligned_reference_is_left_untouched_and_fits(frame):
    hr, lr = frame
    image, fit = fit_reference(hr, lr)
    assert image is hr or np.array_equal(image, hr)
    assert fit.verdict == "fits" and fit.weight == 1.0 and fit.shift == 0.0
    assert fit.message == "Fits its frame"


def test_a_shifted_reference_is_corrected_and_says_so(frame):
    hr, lr = frame
    image, fit = fit_reference(_warped(hr, np.array([[1.0, 0, 5.0], [0, 1.0, 0]])), lr)
    assert fit.verdict == "shifted" and fit.message.startswith("Shifted 5 px, corrected")
    assert fit.weight > 0.9
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(image[inner].astype(int) - hr[inner].astype(int)).mean() < 3.0


def test_a_recoloured_reference_is_named_recoloured(frame):
    hr, lr = frame
    graded = np.clip(hr.astype(np.int16) + np.array([25, 0, -10]), 0, 255).astype(np.uint8)
    _, fit = fit_reference(graded, lr)
    assert fit.verdict == "recoloured" and fit.colour_change > 8 and fit.weight == 1.0
    assert "recoloured" in fit.message.lower()


def test_a_reference_of_another_frame_is_different_content_with_a_low_weight(frame):
    _, lr = frame
    other = texture(192, 256, seed=11)  # another picture entirely
    _, fit = fit_reference(other, lr)
    assert fit.verdict == "different content"
    assert fit.weight <= 0.1
    assert "content differs" in fit.message.lower()


def test_a_local_difference_is_located_and_masked(frame):
    hr, lr = frame
    edited = hr.copy()
    edited[:64, :80] = texture(64, 80, seed=5)  # the editor repainted the top left corner
    maps = assess(edited, lr)
    assert maps.fit.region == "top left"
    assert "content differs at the top left" in maps.fit.message
    assert maps.confidence[:12, :16].mean() < 0.2  # LR pixels of that corner
    assert maps.confidence[30:, 40:].min() > 0.99  # the rest is trusted


def test_editors_record_the_fit_and_it_survives_json(frame):
    hr, lr = frame
    moved = _warped(hr, np.array([[1.0, 0, 4.0], [0, 1.0, 2.0]]))
    reference = load_editor("upload").make(lr, (256, 192), EditRequest(upload=moved))
    fit = reference.provenance.fit
    assert fit is not None and fit.verdict == "shifted"
    from dataclasses import asdict

    again = Provenance(**asdict(reference.provenance))  # a project manifest's round trip
    assert again.fit == fit and isinstance(again.fit, ReferenceFit)
    classic = load_editor("classic").make(lr, (256, 192), EditRequest())
    assert classic.provenance.fit.verdict == "fits"


@pytest.fixture(scope="module")
def scene():
    hr = moving_scene(10)
    return hr, degrade(hr)


def test_a_recoloured_reference_keeps_the_clips_colours_unless_asked(scene):
    hr, lr = scene
    graded = {
        k: np.clip(hr[k].astype(np.int16) + np.array([30, 0, 0]), 0, 255).astype(np.uint8)
        for k in (0, 8)
    }
    plain = np.stack([upscale(f) for f in lr]).astype(np.float32)
    default = restore_all(FlowEngine(), lr, graded, chunk=5).astype(np.float32)
    red = (default - plain)[..., 0].mean(axis=(1, 2))
    assert np.abs(red).max() < 1.5, red  # every frame, the keyframes too
    kept = RestoreOptions(
        chunk=5,
        overlap=0,
        keyframe_guidance=(KeyframeGuidance(0, keep_colors=True), KeyframeGuidance(8, None, True)),
    )
    from sparkvsr.frames import ArrayFrames

    out = np.concatenate([c.frames for c in FlowEngine().restore(ArrayFrames(lr), graded, kept)])
    red = (out.astype(np.float32) - plain)[..., 0].mean(axis=(1, 2))
    assert red.min() > 15, red  # +30 less what clips at 255
    # the detail still propagates: the frames between beat the plain upscale
    for t in (3, 5):
        assert np.abs(default[t] - hr[t]).mean() < 0.9 * np.abs(plain[t] - hr[t]).mean(), t


def test_per_keyframe_weights_reach_the_flow_engine(scene):
    hr, lr = scene
    references = {0: hr[0], 8: hr[8]}
    plain = np.stack([upscale(f) for f in lr])
    off = (KeyframeGuidance(0, weight=0.0), KeyframeGuidance(8, weight=0.0))
    out = restore_all(FlowEngine(), lr, references, chunk=5, keyframe_guidance=off)
    np.testing.assert_array_equal(out, plain)
    full = restore_all(FlowEngine(), lr, references, chunk=5)
    half = (KeyframeGuidance(0, weight=0.5), KeyframeGuidance(8, weight=0.5))
    out = restore_all(FlowEngine(), lr, references, chunk=5, keyframe_guidance=half)
    for t in (0, 8):  # a keyframe at weight 0.5: half its residual
        middle = (plain[t].astype(np.float32) + full[t]) / 2
        assert np.abs(out[t] - middle).mean() < 0.6, t
    for t in (3, 5):  # between: about half as far from the upscale as at full weight
        moved = np.abs(out[t].astype(np.float32) - plain[t]).mean()
        assert 0.3 < moved / np.abs(full[t].astype(np.float32) - plain[t]).mean() < 0.8, t
    # only keyframe 8 switched off: frame 8 is the plain upscale, frame 0 its Reference
    one = restore_all(
        FlowEngine(), lr, references, chunk=5, keyframe_guidance=(KeyframeGuidance(8, 0.0),)
    )
    np.testing.assert_array_equal(one[8], plain[8])
    np.testing.assert_array_equal(one[0], hr[0])


def test_keyframe_guidance_is_checked_and_read_back_from_json():
    options = RestoreOptions(keyframe_guidance=[{"frame": 4, "weight": 0.5, "keep_colors": True}])
    assert options.for_keyframe(4) == KeyframeGuidance(4, 0.5, True)
    assert options.for_keyframe(9) == KeyframeGuidance(9)
    with pytest.raises(EngineError, match="weight 3"):
        KeyframeGuidance(4, weight=3.0)
    with pytest.raises(EngineError, match="twice"):
        RestoreOptions(keyframe_guidance=(KeyframeGuidance(4), KeyframeGuidance(4, 1.0)))


def test_the_fit_reaches_a_remote_studio_through_the_worker_wire(frame):
    from sparkvsr.worker import ReferenceInfo
    from sparkvsr.worker.wire import from_wire, to_wire

    _, lr = frame
    reference = load_editor("classic").make(lr, (256, 192), EditRequest())
    info = ReferenceInfo(12, reference.content_hash, reference.provenance)
    again = from_wire(ReferenceInfo, to_wire(info))
    assert again.provenance.fit == reference.provenance.fit
    assert again.provenance.fit.verdict == "fits"


def test_the_studio_shows_the_fit_beside_the_reference(frame):
    from ui.callbacks import provenance_markdown

    hr, lr = frame
    moved = _warped(hr, np.array([[1.0, 0, 5.0], [0, 1.0, 0]]))
    reference = load_editor("upload").make(lr, (256, 192), EditRequest(upload=moved))
    text = provenance_markdown(reference.provenance, reference.content_hash)
    assert "**fit: shifted**" in text and "Shifted 5 px, corrected" in text


def test_a_global_grade_is_undone_in_the_detail_too(frame):
    from sparkvsr.references.fit import ungraded

    hr, lr = frame
    assert ungraded(hr, lr) is hr  # nothing to undo: the Reference is kept bit for bit
    graded = 255.0 * (hr / 255.0) ** (1 / 1.2)  # a gamma lifts mid-tones and flattens detail
    graded[..., 0] += 12
    graded = np.clip(np.rint(graded), 0, 255).astype(np.uint8)
    back = ungraded(graded, lr).astype(np.float32)
    inside = (hr > 20) & (hr < 230)  # away from what the grade clipped
    before = np.abs(graded.astype(np.float32) - hr)[inside].mean()
    assert before > 8
    assert np.abs(back - hr)[inside].mean() < 0.3 * before  # a small frame's curve: ~2 levels


def test_a_jpeg_blocked_reference_is_named_and_weighted_down(frame):
    import io

    from PIL import Image

    hr, lr = frame
    buffer = io.BytesIO()
    Image.fromarray(hr).save(buffer, "JPEG", quality=20)
    blocked = np.asarray(Image.open(buffer).convert("RGB"))
    _, fit = fit_reference(blocked, lr)
    assert "blocking" in fit.message and fit.weight == pytest.approx(0.5)
    _, clean = fit_reference(hr, lr)
    assert "blocking" not in clean.message and clean.weight == 1.0
