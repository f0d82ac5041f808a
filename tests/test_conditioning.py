"""The SparkVSR model math: sizes, pre-processing, slots, frame-0 copy, RoPE, x0, RFG."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparkvsr import conditioning as cond
from sparkvsr.errors import EngineError, KeyframeError
from tests.tiny_cogvideox import tiny_scheduler


@pytest.mark.parametrize(
    ("frames", "padded"), [(1, 1), (2, 9), (9, 9), (10, 17), (33, 33), (34, 41)]
)
def test_frame_counts_pad_to_8k_plus_1(frames, padded):
    assert cond.padded_frame_count(frames) == padded
    assert cond.latent_frame_count(padded) == (padded - 1) // 4 + 1


def test_lr_padding_makes_the_x4_size_a_multiple_of_16():
    assert cond.padded_lr_size(16, 20) == (16, 20)
    assert cond.padded_lr_size(15, 18) == (16, 20)
    assert cond.padded_lr_size(270, 480) == (272, 480)


def _numpy_bilinear_x4(image: np.ndarray) -> np.ndarray:
    """Independent bilinear x4, align_corners=False (half-pixel centres, edge clamped)."""
    h, w = image.shape
    ys = np.clip((np.arange(4 * h) + 0.5) / 4 - 0.5, 0, h - 1)
    xs = np.clip((np.arange(4 * w) + 0.5) / 4 - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = image[y0][:, x0] * (1 - fx) + image[y0][:, x1] * fx
    bottom = image[y1][:, x0] * (1 - fx) + image[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def test_prepare_lr_video_pads_upscales_bilinear_and_scales_to_signed():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (10, 15, 18, 3), dtype=np.uint8)
    video = cond.prepare_lr_video(frames)
    assert video.shape == (1, 3, 17, 64, 80)
    assert video.min() >= -1 and video.max() <= 1
    # frames 10..16 repeat the last real frame
    for extra in range(10, 17):
        assert torch.equal(video[:, :, extra], video[:, :, 9])
    # zero padding (black) at the bottom/right before the upscale, bilinear after
    padded = np.zeros((16, 20), dtype=np.float64)
    padded[:15, :18] = frames[3, :, :, 1] / 255.0
    expected = _numpy_bilinear_x4(padded) * 2 - 1
    np.testing.assert_allclose(video[0, 1, 3].numpy(), expected, atol=1e-5)
    assert float(video[0, :, :, -2:].max()) == -1.0  # far bottom rows come from black padding


def test_reference_latent_lands_at_slot_f_div_4_only():
    lr_latent = torch.randn(1, 16, 9, 2, 2)
    keys = {0: torch.full((1, 16, 1, 2, 2), 1.0), 7: torch.full((1, 16, 1, 2, 2), 2.0)}
    keys[30] = torch.full((1, 16, 1, 2, 2), 3.0)
    reference = cond.build_reference_latent(lr_latent, keys)
    assert reference.shape == lr_latent.shape
    filled = {slot: float(reference[0, 0, slot, 0, 0]) for slot in range(9)}
    assert filled == {0: 1.0, 1: 2.0, 2: 0.0, 3: 0.0, 4: 0.0, 5: 0.0, 6: 0.0, 7: 3.0, 8: 0.0}


def test_keyframes_closer_than_4_frames_are_refused():
    lr_latent = torch.zeros(1, 16, 9, 2, 2)
    one = torch.ones(1, 16, 1, 2, 2)
    with pytest.raises(KeyframeError, match="at least 4 apart"):
        cond.build_reference_latent(lr_latent, {4: one, 7: one})
    with pytest.raises(EngineError, match="slot 9"):
        cond.build_reference_latent(lr_latent, {36: one})


def test_transformer_input_concats_lr_then_reference_and_copies_frame_0_when_odd():
    lr = torch.randn(1, 16, 3, 2, 2)
    ref = torch.randn(1, 16, 3, 2, 2)
    hidden, copied = cond.transformer_input(lr, ref, patch_size_t=2)
    assert copied and hidden.shape == (1, 4, 32, 2, 2)
    assert torch.equal(hidden[:, 0], hidden[:, 1])
    assert torch.equal(hidden[0, 1:, :16], lr[0].permute(1, 0, 2, 3))
    assert torch.equal(hidden[0, 1:, 16:], ref[0].permute(1, 0, 2, 3))
    restored = cond.drop_frame_copy(hidden[:, :, :16], copied)
    assert torch.equal(restored, lr)
    even, copied_even = cond.transformer_input(lr[:, :, :2], ref[:, :, :2])
    assert not copied_even and even.shape == (1, 2, 32, 2, 2)


def test_alpha_bar_399_and_bf16_coefficients_match_training():
    alphas = tiny_scheduler().alphas_cumprod
    fp32 = cond.alpha_bar(alphas, torch.float32)
    assert abs(float(fp32) - 0.39354) < 1e-5
    bf16 = cond.alpha_bar(alphas, torch.bfloat16)
    assert float(bf16.sqrt()) == 0.625 and float((1 - bf16).sqrt()) == 0.78125
    z, v = torch.ones(1, 1, 1, 1, 1), torch.ones(1, 1, 1, 1, 1)
    expected = np.sqrt(float(fp32)) - np.sqrt(1 - float(fp32))
    assert abs(float(cond.x0_from_v(z, v, fp32)) - expected) < 1e-6


def test_rfg_combine_is_u_plus_s_times_difference():
    u, c = torch.tensor([1.0]), torch.tensor([3.0])
    assert float(cond.rfg_combine(u, c, 0.0)) == 1.0
    assert float(cond.rfg_combine(u, c, 1.0)) == 3.0
    assert float(cond.rfg_combine(u, c, 0.5)) == 2.0
    assert float(cond.rfg_combine(u, c, 2.0)) == 5.0


def test_slice_rope_positions_do_not_depend_on_max_size():
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    class Config:
        use_rotary_positional_embeddings = True
        patch_size, patch_size_t, attention_head_dim = 2, 2, 64
        sample_height = sample_width = 300

    cos, sin = cond.rotary_embedding(Config, latent_frames=10, latent_height=8, latent_width=12)
    assert cos.shape == (5 * 4 * 6, 64)
    ref_cos, ref_sin = get_3d_rotary_pos_embed(
        64, None, (4, 6), 5, grid_type="slice", max_size=(4, 6)
    )
    assert torch.equal(cos, ref_cos) and torch.equal(sin, ref_sin)


def test_unit_to_uint8_rounds():
    values = torch.tensor([100.4 / 255, 100.6 / 255, -0.1, 1.2])
    assert cond.unit_to_uint8(values).tolist() == [100, 101, 0, 255]


def test_reference_frame_is_encoded_as_a_single_frame_video():
    from tests.tiny_cogvideox import tiny_vae

    vae = tiny_vae()
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        latent = cond.encode_reference_frame(vae, image, torch.Generator().manual_seed(0))
        direct = vae.encode(image[:, :, None]).latent_dist.sample(torch.Generator().manual_seed(0))
    assert latent.shape == (1, 16, 1, 4, 4)
    torch.testing.assert_close(latent, direct * 0.7)


def test_single_frame_reference_encode_equals_latent_0_of_a_static_4_frame_clip():
    """The public inference script encodes a keyframe as 4 repeated frames and keeps latent 0;
    the trainer (and we) encode it as one frame. For the causal CogVideoX VAE the two agree."""
    from tests.tiny_cogvideox import tiny_vae

    vae = tiny_vae()
    image = torch.rand(1, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        single = vae.encode(image[:, :, None]).latent_dist.mean
        static = vae.encode(image[:, :, None].repeat(1, 1, 4, 1, 1)).latent_dist.mean
    assert single.shape == static.shape == (1, 16, 1, 4, 6)
    torch.testing.assert_close(single, static, atol=1e-4, rtol=0)
