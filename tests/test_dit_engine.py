"""The dit engine on tiny random models saved in the real pipeline-folder format.

Two model families, both loaded through the engine's own loader:
- a tiny real CogVideoX1.5-I2V (``tests.tiny_cogvideox``) for the math and the caching rules;
- per-frame / per-pixel test models (``tests.pointwise_models``) for chunk and tile invariance.
"""

from __future__ import annotations

import itertools
import shutil
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from sparkvsr.engines import load_engine
from sparkvsr.engines.base import KeyframeGuidance, Progress, RestoreOptions
from sparkvsr.engines.dit import DitEngine
from sparkvsr.engines.dit.previews import decode_prefix, latent_index, receptive_radius, window
from sparkvsr.errors import Cancelled, EngineError, KeyframeError
from sparkvsr.frames import ArrayFrames
from sparkvsr.tiling import Span, Tile
from sparkvsr.viewport import Viewport, apply_view
from tests.pointwise_models import FramePackVAE, PointwiseTransformer
from tests.tiny_cogvideox import TINY_TEXT_DIM, build_tiny_pipeline


def _frames(num: int, height: int = 16, width: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = rng.integers(0, 256, (num, height // 4 + 1, width // 4 + 1, 3)).astype(np.float32)
    up = smooth.repeat(4, axis=1).repeat(4, axis=2)[:, :height, :width]
    return np.clip(up + rng.normal(0, 12, up.shape), 0, 255).astype(np.uint8)


def _reference(height: int = 64, width: int = 64, seed: int = 1) -> np.ndarray:
    return _frames(1, height, width, seed)[0]


def _restore(engine, source, refs, **options) -> np.ndarray:
    chunks = list(engine.restore(source, refs, RestoreOptions(**options)))
    start = options.get("start", 0)
    assert chunks[0].start == start
    for previous, current in itertools.pairwise(chunks):
        assert current.start == previous.stop  # contiguous, in order
    assert chunks[-1].stop == source.num_frames
    return np.concatenate([c.frames for c in chunks])


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "sparkvsr")


# The plumbing tests below pair random frames with unrelated random References: their fit would
# give those References a weight of ~0 (tests/test_reference_fit.py checks that), so these
# engines leave every keyframe at weight 1.
@pytest.fixture(scope="module")
def engine(tiny_folder):
    return DitEngine(str(tiny_folder), device="cpu", fit_weights=False)


@pytest.fixture(scope="module")
def pointwise_folder(tmp_path_factory):
    return build_tiny_pipeline(
        tmp_path_factory.mktemp("pointwise") / "model",
        transformer=PointwiseTransformer(),
        vae=FramePackVAE(),
    )


@pytest.fixture(scope="module")
def fast(pointwise_folder):
    """Per-frame, per-8x8-block test models: fast, and with known locality."""
    return DitEngine(str(pointwise_folder), device="cpu", fit_weights=False)


class PassLog:
    """Records the batch size and the input of every transformer forward."""

    def __init__(self, engine):
        self.batches: list[int] = []
        self.inputs: list[torch.Tensor] = []
        self.handle = engine.transformer.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        hidden = kwargs["hidden_states"]
        self.batches.append(hidden.shape[0])
        self.inputs.append(hidden.detach().clone())

    def close(self):
        self.handle.remove()


# ---------------------------------------------------------------------------------------------
# The math, recomputed by hand
# ---------------------------------------------------------------------------------------------


def test_one_chunk_matches_a_hand_recomputation_from_diffusers_primitives(engine, tiny_folder):
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXTransformer3DModel,
    )
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    lr = _frames(9, 8, 8)
    reference = _reference(32, 32)
    source = ArrayFrames(lr)
    refs = {4: reference}

    transformer = CogVideoXTransformer3DModel.from_pretrained(tiny_folder, subfolder="transformer")
    vae = AutoencoderKLCogVideoX.from_pretrained(tiny_folder, subfolder="vae")
    alphas = CogVideoXDDIMScheduler.from_pretrained(
        tiny_folder, subfolder="scheduler"
    ).alphas_cumprod
    with torch.no_grad():
        # bilinear x4, [-1, 1]
        video = torch.from_numpy(lr).float().permute(0, 3, 1, 2) / 255
        video = torch.nn.functional.interpolate(
            video, scale_factor=4, mode="bilinear", align_corners=False
        )
        video = (video * 2 - 1).permute(1, 0, 2, 3)[None]  # [1, 3, 9, 32, 32]
        z = vae.encode(video).latent_dist.sample(generator=torch.Generator().manual_seed(0)) * 0.7
        image = torch.from_numpy(reference).float().permute(2, 0, 1)[None, :, None] / 255 * 2 - 1
        ref_z = (
            vae.encode(image).latent_dist.sample(generator=torch.Generator().manual_seed(0)) * 0.7
        )
        ref = torch.zeros_like(z)
        ref[:, :, 1] = ref_z[:, :, 0]  # frame 4 -> slot 4 // 4 = 1
        x0 = {}
        for name, r in (("u", torch.zeros_like(z)), ("c", ref)):
            hidden = torch.cat([z, r], dim=1).permute(0, 2, 1, 3, 4)  # [1, 3, 32, 4, 4]
            hidden = torch.cat([hidden[:, :1], hidden], dim=1)  # odd -> copy frame 0
            rope = get_3d_rotary_pos_embed(16, None, (2, 2), 2, grid_type="slice", max_size=(8, 8))
            v = transformer(
                hidden_states=hidden,
                encoder_hidden_states=engine.prompt_embeds,
                timestep=torch.tensor([399]),
                ofs=torch.tensor([2.0]),
                image_rotary_emb=rope,
                return_dict=False,
            )[0][:, 1:].permute(0, 2, 1, 3, 4)
            abar = alphas[399]
            x0[name] = abar.sqrt() * z - (1 - abar).sqrt() * v
        mixed = x0["u"] + 0.5 * (x0["c"] - x0["u"])
        pixels = vae.decode(x0["c"] / 0.7).sample
        expected = ((pixels[0].permute(1, 2, 3, 0) + 1) / 2).clamp(0, 1) * 255

    for guidance, want in ((1.0, x0["c"]), (0.0, x0["u"]), (0.5, mixed)):
        got = engine.chunk_latents(source, refs, 0, 9, guidance)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    frames = _restore(engine, source, refs, guidance=1.0, chunk=9, overlap=2)
    assert frames.shape == (9, 32, 32, 3) and frames.dtype == np.uint8
    assert np.abs(frames.astype(np.float32) - expected.round().numpy()).max() <= 1


def test_reference_reaches_slot_f_div_4_only(engine):
    source = ArrayFrames(_frames(9, 8, 8, seed=3))
    log = PassLog(engine)
    try:
        engine.chunk_latents(source, {6: _reference(32, 32, seed=4)}, 0, 9, 1.0)
    finally:
        log.close()
    (hidden,) = log.inputs
    assert hidden.shape == (1, 4, 32, 4, 4)  # 3 latent frames + the frame-0 copy
    reference_channels = hidden[0, 1:, 16:]  # drop the copy
    nonzero = [int(slot) for slot in range(3) if reference_channels[slot].abs().max() > 0]
    assert nonzero == [1]  # frame 6 -> slot 6 // 4 = 1


def test_keyframes_fewer_than_4_apart_are_refused(engine):
    source = ArrayFrames(_frames(9))
    with pytest.raises(KeyframeError, match="at least 4 frames apart"):
        list(engine.restore(source, {0: _reference(), 3: _reference()}, RestoreOptions(chunk=9)))


# ---------------------------------------------------------------------------------------------
# Passes and caching (counted)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("guidance", "batch"), [(1.0, 1), (0.0, 1), (0.5, 2)])
def test_transformer_passes_per_chunk(fast, guidance, batch):
    source = ArrayFrames(_frames(17, seed=5))
    refs = {2: _reference(seed=6), 12: _reference(seed=7)}
    fast.cache.clear()
    log = PassLog(fast)
    try:
        _restore(fast, source, refs, guidance=guidance, chunk=9, overlap=1)
    finally:
        log.close()
    assert log.batches == [batch, batch]  # two chunks, each with a keyframe: one pass each


def test_a_new_guidance_reuses_the_cache_and_an_edit_reruns_only_its_chunks(fast):
    source = ArrayFrames(_frames(33, seed=8))
    refs = {2: _reference(seed=9), 28: _reference(seed=10)}
    options = dict(chunk=17, overlap=4)  # chunks [0,17) [13,30) [24,33)
    fast.cache.clear()
    half = _restore(fast, source, refs, guidance=0.5, **options)
    passes = fast.transformer_passes

    slider = {s: _restore(fast, source, refs, guidance=s, **options) for s in (0.0, 0.8, 1.0, 2.0)}
    assert fast.transformer_passes == passes  # a new s: decode only
    assert not np.array_equal(slider[0.0], slider[1.0]) and not np.array_equal(half, slider[0.8])
    assert np.array_equal(_restore(fast, source, refs, guidance=0.5, **options), half)

    log = PassLog(fast)
    try:
        edited = {**refs, 28: _reference(seed=11)}  # frame 28 lies in chunks 2 and 3
        _restore(fast, source, edited, guidance=0.5, **options)
        assert log.batches == [1, 1]  # conditioned pass only, only the chunks containing it
        log.batches.clear()
        _restore(fast, source, {**edited, 2: _reference(seed=12)}, guidance=0.5, **options)
        assert log.batches == [1]  # frame 2: chunk 1 only
    finally:
        log.close()


def test_each_reference_is_encoded_once_per_tile_not_per_chunk(fast):
    source = ArrayFrames(_frames(17, height=16, width=32, seed=25))
    refs = {8: _reference(64, 128, seed=26)}  # frame 8 lies in all three chunks
    for tile, tiles in ((0, 1), (16, 3)):  # 16x32 LR with tile 16 / overlap 8: 1 x 3 tiles
        fast.cache.clear()
        fast._reference_latents.clear()
        encodes, passes = fast.vae_encodes, fast.transformer_passes
        _restore(fast, source, refs, chunk=9, overlap=2, tile=tile, tile_overlap=8)
        chunks = 3  # [0,9) [7,16) [8,17)
        assert fast.transformer_passes - passes == chunks * tiles
        assert fast.vae_encodes - encodes == chunks * tiles + tiles  # LR per chunk, ref once


def test_cache_spills_to_disk_beyond_its_budget(pointwise_folder, tmp_path):
    engine = DitEngine(
        str(pointwise_folder),
        device="cpu",
        cache_bytes=1,
        cache_dir=tmp_path / "cache",
        fit_weights=False,
    )
    source = ArrayFrames(_frames(17, seed=13))
    refs = {8: _reference(seed=14)}
    first = _restore(engine, source, refs, guidance=0.5, chunk=9, overlap=1)
    passes = engine.transformer_passes
    assert engine.cache.spilled > 0 and list((tmp_path / "cache").glob("x0-*.pt"))
    again = _restore(engine, source, refs, guidance=0.5, chunk=9, overlap=1)
    assert engine.transformer_passes == passes
    assert np.array_equal(first, again)


def test_resume_yields_exactly_the_uninterrupted_frames(fast):
    source = ArrayFrames(_frames(33, seed=15))
    refs = {0: _reference(seed=16), 20: _reference(seed=17)}
    options = dict(guidance=0.7, chunk=9, overlap=3)
    fast.cache.clear()
    full = _restore(fast, source, refs, **options)
    passes = fast.transformer_passes
    for start in (7, 12, 32):  # inside an overlap, inside a chunk, the last frame
        resumed = _restore(fast, source, refs, start=start, **options)
        assert np.array_equal(resumed, full[start:])
    assert fast.transformer_passes == passes  # the chunks before k came from the cache
    fast.cache.clear()
    assert np.array_equal(_restore(fast, source, refs, start=12, **options), full[12:])


def test_preview_equals_the_rendered_frame(fast):
    source = ArrayFrames(_frames(17, seed=18))
    refs = {4: _reference(seed=19)}
    options = RestoreOptions(guidance=0.5, chunk=9, overlap=2)
    full = np.concatenate([c.frames for c in fast.restore(source, refs, options)])
    for frame in (0, 7, 16):
        assert np.array_equal(fast.preview(source, refs, frame, options), full[frame])


# ---------------------------------------------------------------------------------------------
# Previews at the size they are seen (issue 18): the fewest latent frames, the latent window
# under a zoomed region, a guidance move = one decode from the cached x0 branches
# ---------------------------------------------------------------------------------------------


def _decode_log(engine, monkeypatch) -> list[tuple[int, ...]]:
    """Shapes ``[B, C, F_lat, h, w]`` of every latent the engine's VAE decodes from now on."""
    shapes: list[tuple[int, ...]] = []
    decode = engine.vae.decode

    def logged(z, *args, **kwargs):
        shapes.append(tuple(z.shape))
        return decode(z, *args, **kwargs)

    monkeypatch.setattr(engine.vae, "decode", logged)
    return shapes


def test_decode_plans_follow_the_vae_batches_and_receptive_field():
    # the released VAE (4 levels, 3 layers per block) reaches 21 latent pixels; the tiny one 14
    assert receptive_radius(4, 3) == 21 and receptive_radius(4, 1) == 14
    # 9 latent frames decode in steps (0,1,2) (3,4) (5,6) (7,8): a prefix ends on a step
    assert [decode_prefix(9, i, 2) for i in range(9)] == [3, 3, 3, 5, 5, 7, 7, 9, 9]
    assert decode_prefix(3, 0, 2) == 3 and decode_prefix(9, 4, None) == 9  # unknown VAE: all
    assert [latent_index(f) for f in (0, 1, 4, 5, 8, 9)] == [0, 1, 1, 2, 2, 3]
    # output box x 100..120, y 40..60 = latent rows 5..8, cols 12..15 (8 output px each);
    # with 3 of margin, clipped to the tile, relative to it; crop relative to the window
    latent, crop = window(Tile(Span(8, 40), Span(16, 64)), (100, 40, 120, 60), 3)
    assert latent == Tile(Span(0, 7), Span(1, 10))  # the tile starts at latent (4, 8)
    assert crop == Tile(Span(40 - 32, 60 - 32), Span(100 - 72, 120 - 72))
    latent, crop = window(Tile(Span(0, 64), Span(0, 64)), (100, 40, 120, 60), 3)
    assert latent == Tile(Span(2, 11), Span(9, 18))
    assert crop == Tile(Span(40 - 16, 60 - 16), Span(100 - 72, 120 - 72))
    assert window(Tile(Span(0, 64), Span(0, 64)), (100, 40, 120, 60), None)[0] == Tile(
        Span(0, 32), Span(0, 32)
    )


def test_a_preview_decodes_only_the_latent_frames_up_to_its_decode_batch(engine, monkeypatch):
    source = ArrayFrames(_frames(17, seed=30))
    refs = {8: _reference(seed=31)}
    options = RestoreOptions(guidance=0.5, chunk=17, overlap=0)
    full = _restore(engine, source, refs, guidance=0.5, chunk=17, overlap=0)
    passes = engine.transformer_passes
    decoded = _decode_log(engine, monkeypatch)
    # 17 frames = 5 latent frames, decoded in steps (0,1,2) (3,4): frames 0-8 need the first
    for frame, latent_frames in ((0, 3), (8, 3), (9, 5), (16, 5)):
        image = engine.preview(source, refs, frame, options)
        assert np.array_equal(image, full[frame])  # the render's frame, bit for bit
        assert decoded[-1][2] == latent_frames
    assert len(decoded) == 4 and engine.transformer_passes == passes  # x0 came from the cache


# The window's own GroupNorm statistics are the only difference from a full decode (its margin
# covers the decoder's receptive field). Measured on this clip, tiny model, margin 14 latent
# pixels, guidance 0 / 0.5 / 0.8 / 1 / 2: max 2-3 levels of 255, mean 0.36-0.41.
REGION_MAX_LEVELS, REGION_MEAN_LEVELS = 4, 0.5


def test_a_zoomed_preview_decodes_the_window_under_it_and_a_guidance_move_only_redecodes(
    engine, monkeypatch
):
    source = ArrayFrames(_frames(9, height=32, width=96, seed=32))
    refs = {4: _reference(128, 384, seed=33)}
    options = RestoreOptions(guidance=0.5, chunk=9)
    viewport = Viewport(48, 32, zoom=2.0, center=(0.3, 0.5))
    view = viewport.view((384, 128))
    decoded = _decode_log(engine, monkeypatch)
    passes = engine.transformer_passes
    zoomed = engine.preview(source, refs, 6, options, viewport=viewport)
    assert engine.transformer_passes == passes + 1  # both branches in one batch, then cached
    assert zoomed.shape == (view.size[1], view.size[0], 3) == (16, 24, 3)
    assert len(decoded) == 1
    _, _, frames, rows, cols = decoded[0]
    assert frames == 3 and rows * cols < 0.7 * (16 * 48)  # a window, not the 16x48 latent

    for guidance in (0.5, 0.8):
        decoded.clear()
        passes = engine.transformer_passes
        image = engine.preview(
            source, refs, 6, replace(options, guidance=guidance), viewport=viewport
        )
        assert engine.transformer_passes == passes and len(decoded) == 1  # one decode, no pass
        rendered = _restore(engine, source, refs, guidance=guidance, chunk=9)[6]
        difference = np.abs(image.astype(int) - apply_view(rendered, view).astype(int))
        assert difference.max() <= REGION_MAX_LEVELS, difference.max()
        assert difference.mean() <= REGION_MEAN_LEVELS, difference.mean()


def test_previews_of_tiled_renders_decode_only_the_tiles_in_view(fast, monkeypatch):
    source = ArrayFrames(_frames(9, height=32, width=48, seed=34))
    refs = {4: _reference(128, 192, seed=35)}
    options = RestoreOptions(guidance=0.6, chunk=9, tile=16, tile_overlap=8)
    full = _restore(fast, source, refs, guidance=0.6, chunk=9, tile=16, tile_overlap=8)
    decoded = _decode_log(fast, monkeypatch)
    region = Viewport(32, 24, zoom=1.0, center=(0.5, 0.5))  # LR x 20..28, y 13..19
    image = fast.preview(source, refs, 3, options, viewport=region)
    assert np.array_equal(image, apply_view(full[3], region.view((192, 128))))
    assert len(decoded) == 3 * 3  # 3 of 5 tile columns (LR 8-24, 16-32, 24-40) x 3 rows
    decoded.clear()
    corner = Viewport(16, 16, zoom=1.0, center=(0.1, 0.1))  # LR x 2..7, y 1..6: one tile
    image = fast.preview(source, refs, 3, options, viewport=corner)
    assert np.array_equal(image, apply_view(full[3], corner.view((192, 128))))
    assert len(decoded) == 1
    fit = Viewport(96, 80)  # zoomed out: the whole frame, decoded in full and shrunk
    image = fast.preview(source, refs, 3, options, viewport=fit)
    assert image.shape == (64, 96, 3)
    assert np.array_equal(image, apply_view(full[3], fit.view((192, 128))))


def test_release_caches_drops_the_latents_and_the_next_preview_is_the_same(fast):
    source = ArrayFrames(_frames(9, seed=38))
    refs = {4: _reference(seed=39)}
    options = RestoreOptions(guidance=0.5, chunk=9)
    first = fast.preview(source, refs, 3, options)
    assert fast.status().cache_bytes > 0 and fast._reference_latents.entries
    fast.release_caches()  # the worker's call when its last project closes
    assert fast.status().cache_entries == 0 and fast.status().cache_bytes == 0
    assert fast._reference_latents.entries == 0
    passes = fast.transformer_passes
    assert np.array_equal(fast.preview(source, refs, 3, options), first)
    assert fast.transformer_passes == passes + 1  # recomputed once, cached again


def test_the_worker_serves_dit_previews_at_the_viewport_and_releases_the_latents(
    pointwise_folder, tmp_path
):
    import time

    from sparkvsr.worker import (
        KeyframeRequest,
        OpenClipRequest,
        PreviewRequest,
        ReferenceRequest,
        SessionRequest,
        Worker,
        WorkerConfig,
    )
    from tests.project_helpers import make_clip

    clip = make_clip(tmp_path / "clip.mp4", num_frames=16)
    engine = DitEngine(str(pointwise_folder), device="cpu", fit_weights=False)
    config = WorkerConfig(projects_root=tmp_path / "projects", preview_interval=0.0)
    with Worker(config, engine=engine) as worker:
        session = worker.open_clip(OpenClipRequest(str(clip))).session_id
        for k in (0, 8):
            worker.set_keyframe(KeyframeRequest(session, k))
            worker.make_reference(ReferenceRequest(session, k))
        full = worker.preview(PreviewRequest(session, 5, 0.5)).image
        assert full.shape == (128, 192, 3)
        passes = engine.transformer_passes
        viewport = Viewport(48, 32, zoom=2.0, center=(0.25, 0.75))
        view = viewport.view((192, 128))
        zoomed = worker.preview(PreviewRequest(session, 5, 0.5, viewport)).image
        assert np.array_equal(zoomed, apply_view(full, view))  # a per-block VAE: exact
        moved = worker.preview(PreviewRequest(session, 5, 0.7, viewport)).image
        assert moved.shape == (view.size[1], view.size[0], 3) == (16, 24, 3)
        assert engine.transformer_passes == passes  # zoom and guidance: decodes only
        assert engine.status().cache_entries > 0
        worker.close_session(SessionRequest(session))
        deadline = time.monotonic() + 30
        while engine.status().cache_entries and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.status().cache_entries == 0  # the last project closed: latents released


# ---------------------------------------------------------------------------------------------
# Per-keyframe weights (issue 16): a per-latent-frame scale on the two cached branches
# ---------------------------------------------------------------------------------------------


def test_latent_guidance_holds_and_interpolates_keyframe_weights():
    from sparkvsr.conditioning import latent_guidance

    assert latent_guidance(5, {}, 0.8) == (0.8,) * 5
    assert latent_guidance(5, {6: 0.5}, 1.0) == (0.5,) * 5
    # slots 0 (frame 2) and 3 (frame 14): 0 -> 1 in thirds, held after the last
    scales = latent_guidance(5, {2: 0.0, 14: 1.0}, 2.0)
    np.testing.assert_allclose(scales, [0.0, 2 / 3, 4 / 3, 2.0, 2.0])


def test_per_keyframe_weights_mix_the_cached_branches_without_another_pass(fast):
    source = ArrayFrames(_frames(17, seed=30))
    refs = {2: _reference(seed=31), 14: _reference(seed=32)}
    options = dict(chunk=17, overlap=0)
    fast.cache.clear()
    log = PassLog(fast)
    try:
        weighted = _restore(
            fast,
            source,
            refs,
            keyframe_guidance=(KeyframeGuidance(2, weight=0.0), KeyframeGuidance(14, weight=1.0)),
            **options,
        )
        assert log.batches == [2]  # one pass for both branches, as any s other than 0 and 1
        blind = _restore(fast, source, refs, guidance=0.0, **options)
        plain = _restore(fast, source, refs, guidance=1.0, **options)
        assert log.batches == [2]  # and every other guidance is a decode of the same cache
    finally:
        log.close()
    # the pointwise model maps latent slot j to frames 4j-3..4j and a Reference reaches only
    # its slot: slot 0 (keyframe 2, weight 0) is the blind output, slot 3 (keyframe 14,
    # weight 1) the plainly guided one
    assert np.array_equal(weighted[0], blind[0])
    assert np.array_equal(weighted[9:], plain[9:])
    # a uniform weight is the same as moving the global slider
    half = _restore(
        fast,
        source,
        refs,
        keyframe_guidance=(KeyframeGuidance(2, weight=0.5), KeyframeGuidance(14, weight=0.5)),
        **options,
    )
    assert np.array_equal(half, _restore(fast, source, refs, guidance=0.5, **options))


def test_per_keyframe_weights_reach_the_tiny_cogvideox_with_one_pass_per_chunk(engine):
    source = ArrayFrames(_frames(9, 8, 8, seed=35))
    refs = {0: _reference(32, 32, seed=36), 8: _reference(32, 32, seed=37)}
    engine.cache.clear()
    passes = engine.transformer_passes
    weights = (KeyframeGuidance(0, weight=0.3), KeyframeGuidance(8, weight=1.5))
    weighted = _restore(engine, source, refs, chunk=9, keyframe_guidance=weights)
    assert engine.transformer_passes - passes == 1 and engine.transformer_samples >= 2
    for s in (0.0, 1.0):
        assert not np.array_equal(weighted, _restore(engine, source, refs, chunk=9, guidance=s))
    assert engine.transformer_passes - passes == 1  # s = 0 and 1 read the same cache


def test_a_reference_that_does_not_fit_gets_a_low_automatic_weight(pointwise_folder):
    fitting = DitEngine(str(pointwise_folder), device="cpu")  # automatic weights (the default)
    lr = _frames(9, seed=33)
    source = ArrayFrames(lr)
    unrelated = {4: _reference(seed=34)}  # another picture
    log = PassLog(fitting)
    try:
        out = _restore(fitting, source, unrelated, chunk=9)
    finally:
        log.close()
    assert log.batches == [1]  # weight 0: only the reference-free branch is needed
    assert np.array_equal(out, _restore(fitting, source, unrelated, chunk=9, guidance=0.0))
    # the same frame upscaled fits: full weight, the conditioned branch as at s = 1
    own = {4: cv2.resize(lr[4], (64, 64), interpolation=cv2.INTER_CUBIC)}
    guided = _restore(fitting, source, own, chunk=9)
    fitting.fit_weights = False
    assert np.array_equal(guided, _restore(fitting, source, own, chunk=9))


# ---------------------------------------------------------------------------------------------
# Chunking and tiling do not change the answer of a local model
# ---------------------------------------------------------------------------------------------


def test_chunked_57_frames_equal_one_chunk_for_a_per_frame_model(fast):
    source = ArrayFrames(_frames(57, seed=20))
    chunked = _restore(fast, source, {}, chunk=33, overlap=8)
    single = _restore(fast, source, {}, chunk=57, overlap=8)
    assert chunked.shape == (57, 64, 64, 3)
    difference = np.abs(chunked.astype(int) - single.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3  # float blending rounding
    assert chunked.std() > 10  # not a constant picture


def test_tiled_equals_untiled_for_a_per_pixel_model(fast):
    source = ArrayFrames(_frames(9, height=32, width=48, seed=21))
    refs = {4: _reference(128, 192, seed=22)}
    whole = _restore(fast, source, refs, guidance=0.6, chunk=9, tile=0)
    passes = fast.transformer_passes
    tiled = _restore(fast, source, refs, guidance=0.6, chunk=9, tile=16, tile_overlap=8)
    assert fast.transformer_passes - passes == 15  # 3 x 5 tiles, one pass each
    difference = np.abs(tiled.astype(int) - whole.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3


# ---------------------------------------------------------------------------------------------
# Loading, options, errors
# ---------------------------------------------------------------------------------------------


def test_empty_prompt_embedding_is_computed_once_and_then_read_from_disk(engine, tiny_folder):
    assert engine.prompt_embeds.shape == (1, 226, 32)
    again = load_engine(
        "dit", model=str(tiny_folder), device="cpu", offload=False, vae_tiling=False
    )
    assert again.prompt_embeds_source == "disk"
    assert torch.equal(again.prompt_embeds, engine.prompt_embeds)


def _sentencepiece_tokenizer_folder(tiny_folder, tmp_path):
    """A copy of the tiny pipeline whose tokenizer/ is in the CogVideoX release format:
    ``spiece.model`` + tokenizer_config.json, no tokenizer.json (ids: pad 0, eos 1, unk 2)."""
    import json

    import sentencepiece as spm

    folder = tmp_path / "spiece-pipeline"
    shutil.copytree(tiny_folder, folder, ignore=shutil.ignore_patterns(".sparkvsr"))
    shutil.rmtree(folder / "tokenizer")
    (folder / "tokenizer").mkdir()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(["a video frame", "the frame", "a toe at tea"] * 30))
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(tmp_path / "spiece"),
        vocab_size=16,  # "" only uses ids 0 and 1, inside the tiny T5 vocabulary
        hard_vocab_limit=False,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    shutil.move(tmp_path / "spiece.model", folder / "tokenizer" / "spiece.model")
    config = {
        "tokenizer_class": "T5Tokenizer",
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "extra_ids": 0,
        "legacy": True,
        "model_max_length": 226,
    }
    (folder / "tokenizer" / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def test_a_sentencepiece_only_tokenizer_as_released_gives_the_same_empty_prompt(
    engine, tiny_folder, tmp_path
):
    folder = _sentencepiece_tokenizer_folder(tiny_folder, tmp_path)
    assert not (folder / "tokenizer" / "tokenizer.json").exists()
    loaded = DitEngine(str(folder), device="cpu")
    assert loaded.prompt_embeds_source == "computed"
    # "" -> [eos, pad, pad, ...] with either tokenizer format: the same T5 embedding
    assert torch.equal(loaded.prompt_embeds, engine.prompt_embeds)


def test_a_sentencepiece_tokenizer_without_protobuf_names_the_fix(
    tiny_folder, tmp_path, monkeypatch
):
    import sys

    folder = _sentencepiece_tokenizer_folder(tiny_folder, tmp_path)
    monkeypatch.setitem(sys.modules, "google.protobuf", None)  # as if not installed
    with pytest.raises(EngineError, match="needs the protobuf package: pip install protobuf"):
        DitEngine(str(folder), device="cpu")


def test_a_cogvideox_1_0_transformer_is_refused_with_a_clear_error(tmp_path):
    from diffusers import CogVideoXTransformer3DModel

    old = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=32,
        out_channels=16,
        time_embed_dim=16,
        text_embed_dim=TINY_TEXT_DIM,
        num_layers=1,
        sample_width=16,
        sample_height=16,
        use_rotary_positional_embeddings=True,
    )
    folder = build_tiny_pipeline(tmp_path / "cogvideox-1.0", transformer=old)
    with pytest.raises(EngineError, match=r"patch_size_t=None.*CogVideoX1\.5"):
        DitEngine(str(folder), device="cpu")


def test_missing_model_files_are_named(tiny_folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_folder, broken)
    shutil.rmtree(broken / "transformer")
    (broken / "scheduler" / "scheduler_config.json").unlink()
    with pytest.raises(EngineError, match=r"transformer/config\.json.*scheduler/scheduler_config"):
        DitEngine(str(broken), device="cpu")
    with pytest.raises(EngineError, match="does not exist"):
        DitEngine(str(tmp_path / "nowhere"), device="cpu")


def test_an_unreachable_hub_id_says_how_to_fix_it(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        EngineError, match=r"could not fetch model someone/missing-model.*--model DIR"
    ):
        DitEngine("someone/missing-model", device="cpu")


def test_bad_options_are_refused_with_the_fix(engine):
    source = ArrayFrames(_frames(9))
    with pytest.raises(EngineError, match="x4 only"):
        list(engine.restore(source, {}, RestoreOptions(scale=2, chunk=9)))
    with pytest.raises(EngineError, match="8k\\+1"):
        list(engine.restore(source, {}, RestoreOptions(chunk=32)))
    with pytest.raises(EngineError, match="needs uint8"):
        list(engine.restore(source, {0: _reference(32, 32)}, RestoreOptions(chunk=9)))


def test_output_size_colour_fix_progress_and_cancel(fast):
    source = ArrayFrames(_frames(17, height=12, width=20, seed=23))
    refs = {8: _reference(48, 80, seed=24)}
    plain = _restore(fast, source, refs, chunk=9, overlap=1)
    assert plain.shape == (17, 48, 80, 3)  # x4 of 20x12 (padding cropped off)
    resized = _restore(fast, source, refs, chunk=9, overlap=1, output_size=(30, 18))
    assert resized.shape == (17, 18, 30, 3)
    fixed = _restore(fast, source, refs, chunk=9, overlap=1, color_fix="adain")
    lr_mean = source.read(0, 17).reshape(17, -1, 3).mean(axis=1)
    error_plain = np.abs(plain.reshape(17, -1, 3).mean(axis=1) - lr_mean).mean()
    error_fixed = np.abs(fixed.reshape(17, -1, 3).mean(axis=1) - lr_mean).mean()
    assert error_fixed < error_plain and error_fixed < 2

    seen: list[Progress] = []
    list(fast.restore(source, refs, RestoreOptions(chunk=9, overlap=1), progress=seen.append))
    # per chunk: the latents (cached by the restores above: encode and transformer skipped at
    # once), then the decode (this VAE decodes in one call); in output frames
    assert [(p.done, p.total, p.unit) for p in seen] == [
        (5, 17, "frames"),
        (8, 17, "frames"),
        (14, 17, "frames"),
        (17, 17, "frames"),
    ]
    calls = iter([False, False, True])
    with pytest.raises(Cancelled):
        list(
            fast.restore(
                source, refs, RestoreOptions(chunk=9, overlap=1), cancel=lambda: next(calls)
            )
        )


def test_progress_moves_inside_a_chunk_with_each_decoded_slice(engine):
    source = ArrayFrames(_frames(41, 8, 8, seed=36))
    options = RestoreOptions(chunk=33, overlap=8)  # chunks 0-33 (9 latents), 24-41 (5)
    seen: list[Progress] = []
    list(engine.restore(source, {16: _reference(32, 32, seed=37)}, options, progress=seen.append))
    # chunk 1 finishes frames 0-24 in 6 steps: the VAE encode, the transformer pass, then the
    # VAE's 4 temporal slices (latents 0-2, 3-4, 5-6, 7-8); chunk 2 frames 24-41 in 4 (2 slices)
    assert [p.done for p in seen] == [4, 8, 12, 16, 20, 24, 28, 32, 36, 41]
    assert {p.total for p in seen} == {41} and {p.unit for p in seen} == {"frames"}
    assert [p.message for p in seen[:6]] == [
        "chunk 1/2: encoded",
        "chunk 1/2: transformer pass",
        "chunk 1/2: decoding 1/4",
        "chunk 1/2: decoding 2/4",
        "chunk 1/2: decoding 3/4",
        "chunk 1/2: decoding 4/4",
    ]
    seen.clear()  # again: the latents come from the cache, the bar still moves per slice
    list(
        engine.restore(
            source,
            {16: _reference(32, 32, seed=37)},
            replace(options, start=33),
            progress=seen.append,
        )
    )
    assert [p.done for p in seen] == [4, 6, 8]  # frames 33-41 are the ones left to make
    assert seen[0].message == "chunk 1/1: latents from the cache"
    seen.clear()  # a range 0-20: its one chunk's steps end on the range's last frame
    list(
        engine.restore(
            source,
            {16: _reference(32, 32, seed=37)},
            replace(options, stop=20),
            progress=seen.append,
        )
    )
    assert [(p.done, p.total) for p in seen] == [(6, 20), (10, 20), (13, 20), (16, 20), (20, 20)]


def test_a_100_frame_restore_reports_at_least_every_5_frames(engine):
    source = ArrayFrames(_frames(100, 8, 8, seed=40))
    seen: list[Progress] = []
    options = RestoreOptions(chunk=33, overlap=8)  # the studio's default: 4 chunks
    list(engine.restore(source, {50: _reference(32, 32, seed=41)}, options, progress=seen.append))
    done = [0] + [p.done for p in seen]
    assert done[-1] == 100 and max(b - a for a, b in itertools.pairwise(done)) <= 5, done


def test_vae_tiling_keeps_sizes(tiny_folder):
    engine = DitEngine(str(tiny_folder), device="cpu", vae_tiling=True)
    assert (engine.vae.tile_sample_min_height, engine.vae.tile_sample_min_width) == (48, 40)
    frames = _restore(engine, ArrayFrames(_frames(9, 12, 12)), {}, chunk=9)
    assert frames.shape == (9, 48, 48, 3)
    assert "float32" in engine.status().detail


def test_restore_cli_drives_the_dit_engine_end_to_end(pointwise_folder, tmp_path):
    from sparkvsr import cli, media
    from tests.conftest import moving_frames, write_test_video

    clip = write_test_video(
        tmp_path / "in.mp4", moving_frames(20, 32, 24), fps=25, audio_seconds=0.8
    )
    out = tmp_path / "out.mp4"
    argv = [
        "restore",
        str(clip),
        "-o",
        str(out),
        "--engine",
        "dit",
        "--model",
        str(pointwise_folder),
    ]
    argv += ["--device", "cpu", "--keyframes", "0,12", "--chunk", "9", "--overlap", "2"]
    assert cli.main([*argv, "--guidance", "0.5"]) == 0
    info = media.probe(out)
    assert (info.width, info.height, info.num_frames) == (128, 96, 20)
    assert abs(info.fps - 25) < 1e-6 and len(info.audio) == 1
    assert cli.main([*argv, "--chunk", "32"]) == 2  # a bad chunk is one clear line, exit 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_defaults_to_bf16_with_the_trained_coefficients(tiny_folder):
    engine = DitEngine(str(tiny_folder))
    assert engine.device.type == "cuda" and engine.dtype == torch.bfloat16
    assert float(engine.alpha_bar.sqrt()) == 0.625
    assert float((1 - engine.alpha_bar).sqrt()) == 0.78125
    frames = _restore(engine, ArrayFrames(_frames(9, 8, 8)), {4: _reference(32, 32)}, chunk=9)
    assert frames.shape == (9, 32, 32, 3)
    offloaded = DitEngine(str(tiny_folder), offload=True)
    again = _restore(offloaded, ArrayFrames(_frames(9, 8, 8)), {4: _reference(32, 32)}, chunk=9)
    assert np.abs(again.astype(int) - frames.astype(int)).max() <= 1
