"""Keyframe sampling for training clips: the rules the dit engine depends on, for any clip/seed."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparkvsr.errors import KeyframeError
from sparkvsr.keyframes import MIN_GAP, max_keyframes, validate_keyframes
from training.keyframe_sampler import sample_keyframes

frames = st.integers(min_value=1, max_value=200)
seeds = st.integers(min_value=0, max_value=2**63 - 1)


@settings(max_examples=300, deadline=None)
@given(num_frames=frames, seed=seeds, no_keyframe_prob=st.floats(0.0, 1.0))
def test_keyframes_obey_the_rules(num_frames: int, seed: int, no_keyframe_prob: float) -> None:
    keyframes = sample_keyframes(num_frames, seed, no_keyframe_prob)
    # The dit engine refuses any set validate_keyframes refuses; it must accept every sample as is.
    assert validate_keyframes(keyframes, num_frames) == keyframes
    assert all(0 <= k < num_frames for k in keyframes), "in range"
    assert all(b - a >= MIN_GAP for a, b in itertools.pairwise(keyframes)), "at least 4 apart"
    assert len(keyframes) <= max_keyframes(num_frames), "count within bounds"
    if keyframes:
        assert keyframes[0] == 0, "the first keyframe is frame 0"


@settings(max_examples=100, deadline=None)
@given(num_frames=frames, seed=seeds)
def test_never_empty_without_the_blind_share(num_frames: int, seed: int) -> None:
    keyframes = sample_keyframes(num_frames, seed, no_keyframe_prob=0.0)
    assert 1 <= len(keyframes) <= max_keyframes(num_frames)


@given(num_frames=frames, seed=seeds)
def test_same_seed_same_keyframes(num_frames: int, seed: int) -> None:
    assert sample_keyframes(num_frames, seed) == sample_keyframes(num_frames, seed)


def test_published_distribution_on_33_frames() -> None:
    """10% of clips blind; counts cover 1..9 roughly uniformly; later keyframes are not frame 0."""
    draws = [sample_keyframes(33, seed) for seed in range(4000)]
    blind = sum(not k for k in draws) / len(draws)
    assert 0.08 < blind < 0.12
    counts = Counter(len(k) for k in draws if k)
    assert set(counts) == set(range(1, 10))
    assert min(counts.values()) > 0.6 * len(draws) * 0.9 / 9
    seconds = Counter(k[1] for k in draws if len(k) > 1)
    assert len(seconds) > 10, "the second keyframe lands on many different frames"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(KeyframeError, match="at least one frame"):
        sample_keyframes(0, 1)
    with pytest.raises(KeyframeError, match="no_keyframe_prob"):
        sample_keyframes(9, 1, no_keyframe_prob=1.5)
