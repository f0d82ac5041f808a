"""Colour correction against the LR input: colour comes back, restored detail stays."""

from __future__ import annotations

import numpy as np
import pytest

from sparkvsr.color import adain, color_fix, wavelet
from sparkvsr.errors import EngineError


def _scene(seed: int = 0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64] / 64.0
    base = np.stack([0.3 + 0.3 * yy, 0.5 + 0.2 * xx, 0.4 + 0.1 * yy * xx], axis=-1)
    detail = rng.normal(0, 0.05, (64, 64, 1)).repeat(3, axis=-1)
    return base[None].astype(np.float32), detail[None].astype(np.float32)


def test_adain_matches_the_reference_statistics():
    reference, detail = _scene()
    content = np.clip(reference * 0.7 + 0.2 + detail, 0, 1)  # colour drift plus detail
    fixed = adain(content, reference)
    assert fixed.shape == content.shape and fixed.dtype == np.float32
    np.testing.assert_allclose(fixed.mean(axis=(1, 2)), reference.mean(axis=(1, 2)), atol=0.01)
    np.testing.assert_allclose(fixed.std(axis=(1, 2)), reference.std(axis=(1, 2)), atol=0.01)


def test_wavelet_takes_colour_from_the_reference_and_keeps_detail():
    reference, detail = _scene()
    content = np.clip(reference + np.array([0.15, -0.1, 0.05], dtype=np.float32) + detail, 0, 1)
    fixed = wavelet(content, reference)
    assert fixed.shape == content.shape
    # colour shift gone
    np.testing.assert_allclose(
        fixed.mean(axis=(0, 1, 2)), reference.mean(axis=(0, 1, 2)), atol=0.02
    )
    # high-frequency detail survives: the residual against the reference still correlates with it
    residual = (fixed - reference)[0, 8:-8, 8:-8, 0].ravel()
    correlation = np.corrcoef(residual, detail[0, 8:-8, 8:-8, 0].ravel())[0, 1]
    assert correlation > 0.8
    assert np.abs(content - reference).mean() > 2 * np.abs(fixed - reference).mean()


def test_color_fix_dispatch_and_errors():
    reference, _ = _scene()
    assert np.array_equal(color_fix(reference, reference, "none"), reference)
    single = color_fix(reference[0], reference[0], "adain")
    assert single.shape == reference[0].shape
    with pytest.raises(EngineError, match="unknown"):
        color_fix(reference, reference, "sepia")
    with pytest.raises(EngineError, match="must match"):
        adain(reference, reference[:, :32])
