"""Chunk plans, tile grids and feather weights: properties that must hold for every input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparkvsr.errors import EngineError
from sparkvsr.tiling import (
    Span,
    Tile,
    axis_spans,
    axis_weights,
    chunk_plan,
    tile_plan,
    tile_weights,
)


def test_57_frames_chunk_33_overlap_8():
    assert chunk_plan(57, 33, 8) == (Span(0, 33), Span(24, 57))
    assert chunk_plan(20, 33, 8) == (Span(0, 20),)
    # a short remainder becomes a short 8k+1 chunk ending at the clip's end
    assert chunk_plan(34, 33, 8) == (Span(0, 33), Span(25, 34))


@settings(max_examples=200, deadline=None)
@given(
    num_frames=st.integers(1, 400),
    k=st.integers(1, 8),
    overlap_fraction=st.floats(0, 0.9),
)
def test_chunk_plan_covers_the_clip_with_8k_plus_1_chunks(num_frames, k, overlap_fraction):
    chunk = 8 * k + 1
    overlap = min(chunk - 1, int(chunk * overlap_fraction))
    plan = chunk_plan(num_frames, chunk, overlap)
    assert plan[0].start == 0 and plan[-1].stop == num_frames
    for previous, current in itertools.pairwise(plan):
        assert previous.start < current.start
        assert current.start <= previous.stop - overlap  # at least the asked overlap
    if len(plan) > 1:
        assert all(s.length <= chunk and s.length % 8 == 1 for s in plan)
    weights = axis_weights(plan)
    total = np.zeros(num_frames)
    for span, weight in zip(plan, weights):
        assert weight.shape == (span.length,) and (weight > 0).all()
        total[span.start : span.stop] += weight
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 300), tile=st.integers(0, 200), overlap=st.integers(0, 64))
def test_axis_spans_cover_on_the_grid_and_weights_sum_to_1(size, tile, overlap):
    size = 4 * ((size + 3) // 4)
    spans = axis_spans(size, tile, overlap, multiple=4)
    assert spans[0].start == 0 and spans[-1].stop == size
    covered = np.zeros(size, dtype=int)
    for span in spans:
        assert span.start % 4 == 0 and span.length % 4 == 0
        covered[span.start : span.stop] += 1
    assert covered.min() >= 1
    weights = axis_weights(spans)
    total = np.zeros(size)
    for span, weight in zip(spans, weights):
        total[span.start : span.stop] += weight
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_feather_weights_ramp_smoothly_instead_of_cutting():
    spans = (Span(0, 33), Span(25, 58))
    first, second = axis_weights(spans)
    assert (first[:25] == 1).all() and (second[8:] == 1).all()
    ramp = second[:8]
    assert (np.diff(ramp) > 0).all() and ramp[0] < 0.1 and ramp[-1] > 0.9
    assert np.abs(np.diff(first)).max() < 0.25  # no hard cut


def test_tile_weights_sum_to_1_at_every_pixel():
    tiles = tile_plan(40, 64, 24, 8, multiple=4)
    assert all(isinstance(t, Tile) for t in tiles) and len(tiles) > 4
    total = np.zeros((40, 64))
    for tile, weight in zip(tiles, tile_weights(tiles)):
        assert weight.shape == (tile.rows.length, tile.cols.length)
        total[tile.rows.start : tile.rows.stop, tile.cols.start : tile.cols.stop] += weight
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert tile_plan(40, 64, 0, 8, multiple=4) == (Tile(Span(0, 40), Span(0, 64)),)


def test_bad_plans_are_refused():
    with pytest.raises(EngineError):
        chunk_plan(0, 33, 8)
    with pytest.raises(EngineError):
        chunk_plan(50, 33, 33)
