"""Keyframe rules: every mode returns indices inside the clip, at least 4 apart."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparkvsr.errors import KeyframeError
from sparkvsr.keyframes import (
    MIN_GAP,
    iframe_keyframes,
    max_keyframes,
    parse_keyframe_list,
    random_keyframes,
    uniform_keyframes,
    validate_keyframes,
)


def obeys_rule(indices, num_frames) -> bool:
    return all(0 <= i < num_frames for i in indices) and all(
        b - a >= MIN_GAP for a, b in itertools.pairwise(indices)
    )


def test_manual_set_is_sorted_and_checked():
    assert validate_keyframes([40, 0, 80], 100) == (0, 40, 80)


def test_manual_error_names_the_offending_pair():
    with pytest.raises(KeyframeError, match=r"keyframes 10 and 12 are 2 frames apart"):
        validate_keyframes([0, 12, 10], 100)


@pytest.mark.parametrize("bad", [[-1], [100], [5, 5]])
def test_manual_error_for_outside_or_duplicate(bad):
    with pytest.raises(KeyframeError) as caught:
        validate_keyframes(bad, 100)
    assert str(bad[-1]) in str(caught.value)


def test_iframes_are_thinned_to_the_rule():
    assert iframe_keyframes([0, 76, 145, 156, 160, 280], 280) == (0, 76, 145, 156, 160)
    assert iframe_keyframes(range(31), 31) == (0, 4, 8, 12, 16, 20, 24, 28)


def test_uniform_spacing():
    assert uniform_keyframes(100, 32) == (0, 32, 64, 96)
    with pytest.raises(KeyframeError, match="too small"):
        uniform_keyframes(100, 3)


@given(
    num_frames=st.integers(1, 400),
    count=st.integers(1, 60),
    seed=st.integers(0, 2**31),
)
def test_random_obeys_rule_and_is_reproducible(num_frames, count, seed):
    if count > max_keyframes(num_frames):
        with pytest.raises(KeyframeError, match="cannot place"):
            random_keyframes(num_frames, count=count, seed=seed)
        return
    picks = random_keyframes(num_frames, count=count, seed=seed)
    assert len(picks) == count and obeys_rule(picks, num_frames)
    assert picks == random_keyframes(num_frames, count=count, seed=seed)


def test_random_density_and_spread():
    picks = random_keyframes(1000, density=0.02, seed=3)
    assert len(picks) == 20 and obeys_rule(picks, 1000)
    # Uniform over valid sets: the first pick is not always at the start.
    firsts = {random_keyframes(200, count=3, seed=s)[0] for s in range(30)}
    assert len(firsts) > 10


def test_max_keyframes_is_tight():
    for n in (1, 4, 5, 9, 33):
        m = max_keyframes(n)
        assert obeys_rule(tuple(range(0, n, MIN_GAP))[:m], n)
        assert len(range(0, n, MIN_GAP)) == m


def test_parse_list():
    assert parse_keyframe_list("0, 40,80") == (0, 40, 80)
    with pytest.raises(KeyframeError, match="comma-separated"):
        parse_keyframe_list("0;40")


def test_keyframes_cli(shared_data):
    path = shared_data / "imageio_cockatoo.mp4"
    done = subprocess.run(
        [sys.executable, "-m", "sparkvsr", "keyframes", str(path), "--mode", "iframes", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[0, 76, 145, 156, 160]"
    bad = subprocess.run(
        [sys.executable, "-m", "sparkvsr", "keyframes", str(path), "--keyframes", "0,2"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "keyframes 0 and 2" in bad.stderr


def test_selection_dispatches_every_mode_and_refuses_unknown_ones():
    from sparkvsr.keyframes import KeyframeSelection, select_keyframes

    iframes = (0, 76, 145, 156, 160)
    assert select_keyframes(KeyframeSelection("iframes"), 280, iframes) == (0, 76, 145, 156, 160)
    assert select_keyframes(KeyframeSelection("uniform", every=100), 280) == (0, 100, 200)
    assert len(select_keyframes(KeyframeSelection("random", seed=1), 280)) == 1
    assert len(select_keyframes(KeyframeSelection("random", count=5, seed=1), 280)) == 5
    assert select_keyframes(KeyframeSelection("none"), 280, iframes) == ()
    assert select_keyframes(KeyframeSelection("manual", manual=(40, 0)), 280) == (0, 40)
    with pytest.raises(KeyframeError, match="keyframes 0 and 2"):
        select_keyframes(KeyframeSelection("manual", manual=(0, 2)), 280)
    with pytest.raises(KeyframeError, match="'scenes' is unknown"):
        KeyframeSelection("scenes")
