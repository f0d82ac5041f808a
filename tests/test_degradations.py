"""Degradations: every op keeps layout, dtype and range; plans are seeded; LR stays aligned to HR."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from training import degradations as D
from training.config import (
    DegradationConfig,
    JpegConfig,
    NoiseConfig,
    TrainingError,
    VideoCompressionConfig,
    image_degradation_config,
)


def clip(frames: int = 5, height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth random content: ``[F, H, W, 3]`` float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    base = rng.random((frames, height // 4, width // 4, 3), dtype=np.float32)
    return D.resize(base, (width, height), "bicubic")


def blob(y: int, x: int, size: int = 16, frames: int = 9, side: int = 64) -> np.ndarray:
    hr = np.full((frames, side, side, 3), 0.1, np.float32)
    hr[:, y : y + size, x : x + size] = 0.9
    return hr


def bright_centroid(image: np.ndarray) -> np.ndarray:
    """(y, x) centroid of the pixels brighter than halfway from the background to the peak."""
    gray = image.mean(-1)
    ys, xs = np.nonzero(gray > (np.median(gray) + gray.max()) / 2)
    return np.array([ys.mean(), xs.mean()])


def weighted_centroid(image: np.ndarray) -> np.ndarray:
    """(y, x) centroid weighted by brightness above the background (sub-pixel, noise-free use)."""
    gray = image.mean(-1)
    weight = np.clip(gray - np.median(gray), 0, None)
    ys, xs = np.mgrid[: gray.shape[0], : gray.shape[1]]
    return np.array([(weight * ys).sum(), (weight * xs).sum()]) / weight.sum()


KERNELS = [
    ("iso", lambda: D.gaussian_kernel(7, 1.5, 1.5)),
    ("aniso", lambda: D.gaussian_kernel(9, 2.0, 0.5, 0.7)),
    ("generalized", lambda: D.generalized_gaussian_kernel(11, 1.5, 1.0, 0.3, 0.6)),
    ("plateau", lambda: D.plateau_kernel(13, 1.2, 2.0, -0.4, 1.5)),
    ("sinc", lambda: D.sinc_kernel(15, 1.2)),
]


@pytest.mark.parametrize(("name", "make"), KERNELS, ids=[k[0] for k in KERNELS])
def test_kernels_are_normalised_centred_and_odd(name, make) -> None:
    kernel = make()
    size = kernel.shape[0]
    assert kernel.shape == (size, size) and size % 2 == 1
    assert kernel.dtype == np.float32
    assert kernel.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.unravel_index(np.argmax(kernel), kernel.shape) == (size // 2, size // 2)
    # Point symmetric, so blurring never moves the picture.
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1], atol=1e-7)


def test_sinc_rings_and_gaussians_do_not() -> None:
    assert D.sinc_kernel(21, 0.8).min() < 0  # negative lobes: ringing
    assert D.gaussian_kernel(21, 3.0, 3.0).min() >= 0


def test_random_kernels_cover_every_family() -> None:
    config = DegradationConfig().first.blur
    rng = np.random.default_rng(0)
    kernels = [D.random_kernel(rng, config) for _ in range(200)]
    assert {k.shape[0] for k in kernels} == set(config.kernel_sizes)
    assert any(k.min() < 0 for k in kernels), "some sinc kernels are drawn"
    assert all(abs(k.sum() - 1) < 1e-4 for k in kernels)


OPS = [
    ("blur", lambda x, rng: D.blur(x, D.gaussian_kernel(7, 2, 2))),
    ("resize_down", lambda x, rng: D.resize(x, (16, 12), "area")),
    ("resize_up", lambda x, rng: D.resize(x, (48, 36), "bicubic")),
    ("gaussian_noise", lambda x, rng: D.add_gaussian_noise(x, 25.0, False, rng)),
    ("gray_gaussian_noise", lambda x, rng: D.add_gaussian_noise(x, 25.0, True, rng)),
    ("poisson_noise", lambda x, rng: D.add_poisson_noise(x, 2.0, False, rng)),
    ("gray_poisson_noise", lambda x, rng: D.add_poisson_noise(x, 2.0, True, rng)),
    ("jpeg", lambda x, rng: D.jpeg(x, 30)),
    ("libx264", lambda x, rng: D.compress_video(x, "libx264", 2e4)),
    ("h264", lambda x, rng: D.compress_video(x, "h264", 5e4)),
    ("mpeg4", lambda x, rng: D.compress_video(x, "mpeg4", 1e5)),
]


@pytest.mark.parametrize(("name", "op"), OPS, ids=[o[0] for o in OPS])
def test_op_shape_dtype_range_and_effect(name, op) -> None:
    frames = clip()
    out = op(frames, np.random.default_rng(1))
    expected = {"resize_down": (5, 12, 16, 3), "resize_up": (5, 36, 48, 3)}.get(name, frames.shape)
    assert out.shape == expected
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    if not name.startswith("resize"):
        assert np.abs(out - frames).mean() > 1e-3, f"{name} changed nothing"


def test_gray_noise_is_the_same_in_every_channel() -> None:
    frames = np.full((2, 8, 8, 3), 0.5, np.float32)
    out = D.add_gaussian_noise(frames, 10.0, True, np.random.default_rng(0))
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    out = D.add_gaussian_noise(frames, 10.0, False, np.random.default_rng(0))
    assert np.abs(out[..., 0] - out[..., 1]).max() > 0


def test_video_compression_keeps_odd_sizes_and_frame_count() -> None:
    frames = clip(frames=7, height=18, width=22)
    out = D.compress_video(frames, "libx264", 1e4)
    assert out.shape == frames.shape


def test_ops_refuse_the_wrong_layout() -> None:
    with pytest.raises(TrainingError, match=r"float32 frames shaped \[F, H, W, 3\]"):
        D.blur(np.zeros((8, 8, 3), np.float32), D.gaussian_kernel(3, 1, 1))
    with pytest.raises(TrainingError, match="float32"):
        D.jpeg(np.zeros((1, 8, 8, 3), np.uint8), 50)
    with pytest.raises(TrainingError, match="interpolation 'nearest' unknown"):
        D.resize(clip(), (8, 8), "nearest")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_video_plan_is_deterministic_and_seed_dependent(seed: int) -> None:
    hr = clip(frames=9, height=32, width=32)
    config = DegradationConfig()
    first = D.degrade_video(hr, 4, config, seed)
    again = D.degrade_video(hr, 4, config, seed)
    other = D.degrade_video(hr, 4, config, seed + 100)
    assert first.shape == (9, 8, 8, 3) and first.dtype == np.float32
    assert first.min() >= 0 and first.max() <= 1
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 0


def test_image_plan_is_deterministic_and_seed_dependent() -> None:
    hr = clip(frames=1, height=32, width=48)
    config = image_degradation_config()
    first = D.degrade_image(hr, 4, config, 7)
    assert first.shape == (1, 8, 12, 3) and first.dtype == np.float32
    assert first.min() >= 0 and first.max() <= 1
    np.testing.assert_array_equal(first, D.degrade_image(hr, 4, config, 7))
    assert np.abs(first - D.degrade_image(hr, 4, config, 8)).max() > 0, "the seed matters"


def test_published_ranges_are_the_defaults() -> None:
    config = DegradationConfig()
    assert config.first.blur.sigma == (0.2, 3.0) and config.second.blur.sigma == (0.2, 1.5)
    assert config.first.resize.scale == (0.15, 1.5) and config.second.resize.scale == (0.3, 1.2)
    assert config.first.noise.gaussian_sigma == (1.0, 30.0)
    assert config.second.noise.gaussian_sigma == (1.0, 25.0)
    assert config.first.jpeg.quality == (30, 95)
    assert config.video_compression.codecs == ("libx264", "h264", "mpeg4")
    assert config.video_compression.bitrate == (1e4, 1e5)
    assert set(config.first.blur.kernels) == {
        "iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso",
        "sinc",
    }  # fmt: skip
    image = image_degradation_config()
    assert image.first.blur.kernel_probs[-1] == pytest.approx(0.1)  # Real-ESRGAN sinc_prob


def _clean(config: DegradationConfig) -> DegradationConfig:
    """Blur and resize only: alignment must then be exact to a fraction of a pixel."""
    quiet = dict(noise=NoiseConfig(gaussian_sigma=(0.0, 0.0), poisson_scale=(0.0, 0.0)))
    quiet["jpeg"] = JpegConfig(prob=0.0)
    return dataclasses.replace(
        config,
        first=dataclasses.replace(config.first, **quiet),
        second=dataclasses.replace(config.second, **quiet),
        video_compression=VideoCompressionConfig(prob=0.0),
    )


def test_blur_and_resize_keep_a_centred_object_exactly_in_place() -> None:
    """LR pixel j covers HR pixels 4j..4j+3, so an object's centre maps as 4 * c_lr + 1.5.

    A centred object makes border reflections symmetric: any shift is the pipeline's own.
    """
    hr = blob(24, 24)
    centre = weighted_centroid(hr[0])
    for seed in range(12):
        lr = D.degrade_video(hr, 4, _clean(DegradationConfig()), seed)
        assert np.abs(4 * weighted_centroid(lr[4]) + 1.5 - centre).max() < 0.05, seed
    shifted = np.roll(hr, 1, axis=2)  # a one-HR-pixel slip is caught
    lr = D.degrade_video(shifted, 4, _clean(DegradationConfig()), 0)
    assert np.abs(4 * weighted_centroid(lr[4]) + 1.5 - centre).max() > 0.5


@pytest.mark.parametrize(("y", "x"), [(20, 36), (8, 40), (40, 4)])
def test_lr_stays_aligned_with_hr(y: int, x: int) -> None:
    hr = blob(y, x)
    centre = weighted_centroid(hr[0])
    clean, full = [], []
    for seed in range(12):
        lr = D.degrade_video(hr, 4, _clean(DegradationConfig()), seed)
        clean.append(np.abs(4 * weighted_centroid(lr[4]) + 1.5 - centre).max())
        lr = D.degrade_video(hr, 4, DegradationConfig(), seed)
        moved = np.median([bright_centroid(frame) for frame in lr], axis=0)
        full.append(np.abs(4 * moved + 1.5 - bright_centroid(hr[0])).max())
    # Off centre, reflected borders pull a blurred object slightly: well under a third of an
    # LR pixel (4 HR pixels), for every seed.
    assert max(clean) < 1.25, clean
    # With noise and low-bitrate codecs the centroid wobbles, but does not drift.
    assert np.median(full) < 1.0, full


def test_hr_size_must_divide_by_the_scale() -> None:
    with pytest.raises(TrainingError, match="divisible by the scale 4"):
        D.degrade_video(clip(height=30, width=32), 4, DegradationConfig(), 0)
