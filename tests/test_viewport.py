"""Previews at the size they are seen (issue 18): the Viewport's view, the flow engine's
display-scale and region previews, and the worker carrying the viewport."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sparkvsr import metrics
from sparkvsr.engines.base import RestoreOptions
from sparkvsr.engines.flow import FlowEngine
from sparkvsr.errors import EngineError
from sparkvsr.frames import ArrayFrames
from sparkvsr.viewport import View, Viewport, apply_view, engine_preview, preview_scale
from sparkvsr.worker import OpenClipRequest, PreviewRequest, Worker, WorkerConfig
from sparkvsr.worker.requests import KeyframeRequest, ReferenceRequest
from sparkvsr.worker.wire import from_wire, to_wire
from tests.project_helpers import UpscaleEngine, make_clip
from tests.test_flow_engine import degrade, moving_scene


def test_fit_shows_the_whole_frame_at_display_size_never_enlarged():
    assert Viewport(900, 600).view((5120, 2880)) == View((0, 0, 5120, 2880), (900, 506))
    assert Viewport(900, 600).view((640, 360)) == View((0, 0, 640, 360), (640, 360))


def test_zoom_shows_the_region_around_the_pan_at_full_resolution_kept_inside():
    view = Viewport(900, 500, zoom=2.0, center=(0.5, 0.5)).view((5120, 2880))
    assert view == View((2335, 1315, 2785, 1565), (450, 250)) and view.full_resolution
    corner = Viewport(900, 500, zoom=2.0, center=(1.0, 0.0)).view((5120, 2880))
    assert corner.box == (4670, 0, 5120, 250)  # panned past the edge: stops at it
    half = Viewport(900, 500, zoom=0.5).view((5120, 2880))
    assert half.box_size == (1800, 1000) and half.size == (900, 500)


def test_a_viewport_out_of_range_says_what_is_valid():
    with pytest.raises(EngineError, match=r"0 \(fit\) or 0.01"):
        Viewport(900, 500, zoom=-1)
    with pytest.raises(EngineError, match="1 to 16384"):
        Viewport(0, 500)
    with pytest.raises(EngineError, match="fractions 0 to 1"):
        Viewport(900, 500, center=(1.5, 0.5))


def test_preview_scale_is_the_smallest_that_fills_the_view():
    assert preview_scale(Viewport(900, 506).view((5120, 2880)), 4) == 1  # 720p in 900 px
    assert preview_scale(Viewport(900, 600).view((2880, 1920)), 4) == 2  # 480p in 900 px
    assert preview_scale(Viewport(900, 500, zoom=2).view((5120, 2880)), 4) == 4


@pytest.fixture(scope="module")
def scene():
    hr = moving_scene(14)
    lr = degrade(hr)
    return ArrayFrames(lr), {0: hr[0], 8: hr[8]}


@pytest.mark.parametrize("guidance", [1.0, 0.6])
def test_a_zoomed_region_equals_that_region_of_the_full_frame(scene, guidance):
    source, references = scene
    options = RestoreOptions(guidance=guidance)
    engine = FlowEngine()
    full = engine.preview(source, references, 5, options)
    viewport = Viewport(64, 48, zoom=2.0, center=(0.3, 0.7))
    view = viewport.view((full.shape[1], full.shape[0]))
    region = engine.preview(source, references, 5, options, viewport=viewport)
    x0, y0, x1, y1 = view.box
    assert region.shape == (48 // 2, 64 // 2, 3)
    np.testing.assert_array_equal(region, full[y0:y1, x0:x1])


def test_a_zoomed_out_preview_is_made_small_and_looks_like_the_full_frame_shrunk(scene):
    source, references = scene
    options = RestoreOptions(guidance=1.0)
    full = FlowEngine().preview(source, references, 5, options)
    engine = FlowEngine()
    viewport = Viewport(full.shape[1] // 3, full.shape[0] // 3)
    small = engine.preview(source, references, 5, options, viewport=viewport)
    view = viewport.view((full.shape[1], full.shape[0]))
    assert small.shape == (view.size[1], view.size[0], 3)
    assert preview_scale(view, 4) == 2  # made at 2x, not 4x: a quarter of the pixels
    assert engine.status().cache_bytes < _parts_bytes_at(FlowEngine(), source, references) / 2
    shrunk = cv2.resize(full, view.size, interpolation=cv2.INTER_AREA)
    plain = cv2.resize(
        cv2.resize(source.read(5, 6)[0], full.shape[1::-1], interpolation=cv2.INTER_CUBIC),
        view.size,
        interpolation=cv2.INTER_AREA,
    )
    # the propagated detail is there: much closer to the full frame than the plain upscale
    near = metrics.psnr(small, shrunk)
    assert near > 30 and near > metrics.psnr(plain, shrunk) + 3


def _parts_bytes_at(engine, source, references) -> int:
    engine.preview(source, references, 5, RestoreOptions())
    return engine.status().cache_bytes


def test_engines_without_viewport_support_get_the_frame_cut_for_them(scene):
    source, references = scene
    engine = UpscaleEngine()
    full = engine.preview(source, references, 3, RestoreOptions())
    viewport = Viewport(40, 30, zoom=1.0, center=(0.0, 1.0))
    cut = engine_preview(engine, source, references, 3, RestoreOptions(), viewport)
    view = viewport.view((full.shape[1], full.shape[0]))
    np.testing.assert_array_equal(cut, apply_view(full, view))
    assert cut.shape == (30, 40, 3) and view.box[0] == 0 and view.box[3] == full.shape[0]


def test_the_worker_answers_a_preview_at_the_viewport_and_it_crosses_the_wire(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", num_frames=16)
    config = WorkerConfig(projects_root=tmp_path / "projects", preview_interval=0.0)
    with Worker(config, engine=FlowEngine()) as worker:
        info = worker.open_clip(OpenClipRequest(str(clip)))
        for k in (0, 8):
            worker.set_keyframe(KeyframeRequest(info.session_id, k))
            worker.make_reference(ReferenceRequest(info.session_id, k))
        request = PreviewRequest(info.session_id, 4, 1.0, Viewport(96, 64))
        assert from_wire(PreviewRequest, to_wire(request)) == request
        small = worker.preview(request)
        assert small.image.shape == (64, 96, 3)  # the 192x128 frame, fitted to the viewer
        full = worker.preview(PreviewRequest(info.session_id, 4, 1.0)).image
        assert full.shape == (128, 192, 3)


def test_the_http_server_accepts_a_viewport_and_refuses_a_bad_one():
    import json

    from sparkvsr.server import parse_body
    from sparkvsr.worker.limits import RequestError

    request = PreviewRequest("s" * 20, 4, 1.0, Viewport(900, 506, 2.0, (0.25, 0.75)))
    assert parse_body("preview", json.dumps(to_wire(request)).encode()) == request
    plain = PreviewRequest("s" * 20, 4, 1.0)
    assert parse_body("preview", json.dumps(to_wire(plain)).encode()) == plain
    bad = to_wire(request)
    bad["viewport"]["zoom"] = 1000.0
    with pytest.raises(RequestError, match="zoom"):
        parse_body("preview", json.dumps(bad).encode())


def test_release_caches_drops_everything_a_viewport_preview_kept(scene):
    """The worker calls release_caches when its last session closes: the scaled propagations,
    reference hashes and shrunk References made for viewer-size previews go too (they held ~100 MB
    after a 16-client load before), and the next preview is the same picture."""
    source, references = scene
    options = RestoreOptions(guidance=1.0)
    engine = FlowEngine()
    height, width = source.read(0, 1)[0].shape[:2]
    viewport = Viewport(width * 4 // 3, height * 4 // 3)  # made at 2x, as in the test above
    engine.preview(source, references, 5, options)  # the full frame first, then the viewer
    first = engine.preview(source, references, 5, options, viewport=viewport)
    assert engine._scaled_propagations and engine._small_references
    engine.release_caches()
    kept = (
        engine._preview_frames,
        engine._scaled_propagations,
        engine._hashes,
        engine._small_references,
    )
    assert not any(kept) and engine._preview_propagation is None
    assert engine.status().cache_bytes == 0
    np.testing.assert_array_equal(
        engine.preview(source, references, 5, options, viewport=viewport), first
    )


def test_the_lr_frame_is_shrunk_only_when_the_view_shows_half_of_it_or_less():
    from sparkvsr.engines.flow.shrunk import lr_shrink

    fit = Viewport(600, 340).view((5120, 2880))  # 720p at 4x in a 600-pixel viewer
    assert lr_shrink(fit, 4, (1280, 720)) == 2
    assert lr_shrink(Viewport(900, 506).view((5120, 2880)), 4, (1280, 720)) == 1
    assert lr_shrink(Viewport(900, 506).view((15360, 8640)), 4, (3840, 2160)) == 4
    assert lr_shrink(Viewport(60, 40).view((512, 384)), 4, (128, 96)) == 1  # flows need pixels
    assert lr_shrink(Viewport(600, 340, zoom=2.0).view((5120, 2880)), 4, (1280, 720)) == 1


def test_a_preview_shown_at_half_the_lr_size_is_propagated_on_shrunk_frames():
    from tests.test_flow_engine import texture

    canvas = texture(480 + 3 * 8, 640 + 4 * 8, seed=3)
    hr = np.stack([canvas[3 * n : 3 * n + 480, 4 * n : 4 * n + 640] for n in range(8)])
    lr = np.stack([cv2.resize(f, (320, 240), interpolation=cv2.INTER_AREA) for f in hr])
    source, references = ArrayFrames(lr), {0: hr[0], 6: hr[6]}
    options = RestoreOptions(scale=2, guidance=1.0)
    full = FlowEngine().preview(source, references, 3, options)
    engine = FlowEngine()
    viewport = Viewport(160, 120)  # a quarter of the output's width: half the LR frame's
    view = viewport.view((640, 480))
    small = engine.preview(source, references, 3, options, viewport=viewport)
    assert small.shape == (view.size[1], view.size[0], 3)
    (identity, *_), *_ = engine._preview_frames
    assert identity == f"{source.identity}/shrunk2"  # flows on 160x120 frames, not 320x240
    # what the viewer shows is what the render gives, shrunk (at this size the references add
    # little the eye can see: the test is that nothing is lost or misplaced)
    shrunk = cv2.resize(full, view.size, interpolation=cv2.INTER_AREA)
    assert metrics.psnr(small, shrunk) > 45


def test_an_idle_worker_makes_the_neighbours_of_the_last_preview_ahead(tmp_path):
    import time

    clip = make_clip(tmp_path / "clip.mp4", num_frames=16)
    config = WorkerConfig(projects_root=tmp_path / "projects", preview_interval=0.0)
    with Worker(config, engine=FlowEngine()) as worker:
        info = worker.open_clip(OpenClipRequest(str(clip)))
        for k in (0, 8):
            worker.set_keyframe(KeyframeRequest(info.session_id, k))
            worker.make_reference(ReferenceRequest(info.session_id, k))
        viewport = Viewport(96, 64)
        worker.preview(PreviewRequest(info.session_id, 4, 1.0, viewport))
        deadline = time.monotonic() + 60
        while worker.previews_warmed < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.previews_warmed == 2  # frames 5 and 3
        computed = worker.previews_computed
        step = worker.preview(PreviewRequest(info.session_id, 5, 1.0, viewport))
        assert worker.previews_computed == computed  # the next frame was ready
        assert step.frame == 5 and step.image.shape == (64, 96, 3)
        # a step answered from the cache makes its own neighbours ahead too (6; 4 is there)
        deadline = time.monotonic() + 60
        while worker.previews_warmed < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.previews_warmed == 3
        worker.preview(PreviewRequest(info.session_id, 6, 1.0, viewport))
        assert worker.previews_computed == computed
        while worker.previews_warmed < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.previews_warmed == 4  # 7, the neighbour of 6 (5 is there)
        # full-resolution previews (seconds each on real footage) are never made ahead
        worker.preview(PreviewRequest(info.session_id, 12, 1.0))
        time.sleep(0.5)
        assert worker.previews_warmed == 4
