"""Keyframe rules and selection modes. Pure functions: indices in, indices out.

The rule every mode obeys: keyframes lie inside the clip and consecutive keyframes are at least
``MIN_GAP`` (4) frames apart. The dit engine writes a keyframe's latent at slot ``f // 4``; two
keyframes closer than 4 frames could share a slot, so the rule holds for every engine alike.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sparkvsr.errors import KeyframeError

MIN_GAP = 4
MODES = ("manual", "iframes", "uniform", "random", "none")


def validate_keyframes(indices: Iterable[int], num_frames: int) -> tuple[int, ...]:
    """Return the keyframes sorted, or raise KeyframeError naming the first offending value/pair."""
    if num_frames < 1:
        raise KeyframeError(f"the clip has {num_frames} frames; keyframes need at least one frame")
    ordered = sorted(int(i) for i in indices)
    for index in ordered:
        if not 0 <= index < num_frames:
            raise KeyframeError(
                f"keyframe {index} is outside the clip: valid frames are 0 to {num_frames - 1}"
            )
    for previous, current in itertools.pairwise(ordered):
        if current == previous:
            raise KeyframeError(f"keyframe {current} is listed twice")
        if current - previous < MIN_GAP:
            raise KeyframeError(
                f"keyframes {previous} and {current} are {current - previous} frames apart; "
                f"keyframes must be at least {MIN_GAP} frames apart (unpin one, or move it)"
            )
    return tuple(ordered)


def thin_keyframes(candidates: Iterable[int], num_frames: int) -> tuple[int, ...]:
    """Keep candidates in order, dropping any closer than MIN_GAP to the last kept one."""
    kept: list[int] = []
    for index in sorted(set(int(i) for i in candidates)):
        if 0 <= index < num_frames and (not kept or index - kept[-1] >= MIN_GAP):
            kept.append(index)
    return tuple(kept)


def iframe_keyframes(iframes: Iterable[int], num_frames: int) -> tuple[int, ...]:
    """Keyframes at the codec's I-frames (scene cuts, GOP starts), thinned to obey the rule."""
    return thin_keyframes(iframes, num_frames)


def uniform_keyframes(num_frames: int, every: int, start: int = 0) -> tuple[int, ...]:
    """Every ``every`` frames from ``start``: ``start, start + every, ...`` inside the clip."""
    if every < MIN_GAP:
        raise KeyframeError(f"uniform spacing {every} is too small: use {MIN_GAP} or more")
    if not 0 <= start < num_frames:
        raise KeyframeError(f"uniform start {start} is outside the clip (0 to {num_frames - 1})")
    return tuple(range(start, num_frames, every))


def max_keyframes(num_frames: int) -> int:
    """The most keyframes a clip of ``num_frames`` can hold under the rule."""
    return (num_frames - 1) // MIN_GAP + 1


def random_keyframes(
    num_frames: int, count: int | None = None, density: float | None = None, seed: int = 0
) -> tuple[int, ...]:
    """``count`` keyframes (or ``density`` x frames, at least one), uniformly random over every
    set that obeys the rule, reproducible from ``seed``.
    """
    if (count is None) == (density is None):
        raise KeyframeError("random keyframes need exactly one of count or density")
    if density is not None:
        if not 0 < density <= 1:
            raise KeyframeError(f"density {density} must be in (0, 1]")
        count = max(1, round(num_frames * density))
    assert count is not None
    most = max_keyframes(num_frames)
    if not 1 <= count <= most:
        raise KeyframeError(
            f"cannot place {count} keyframes at least {MIN_GAP} apart in {num_frames} frames: "
            f"use 1 to {most}"
        )
    # Stars and bars: pick positions in a shortened line, then re-insert the mandatory gaps.
    # Every valid set maps to exactly one draw, so all valid sets are equally likely.
    slack = num_frames - (count - 1) * (MIN_GAP - 1)
    picks = sorted(random.Random(seed).sample(range(slack), count))
    return tuple(p + i * (MIN_GAP - 1) for i, p in enumerate(picks))


@dataclass(frozen=True)
class KeyframeSelection:
    """How to choose keyframes, built from CLI flags or UI values.

    mode:    "manual" (``manual``), "iframes", "uniform" (every ``every`` frames), "random"
             (``count`` keyframes, or ``density`` x frames; one when neither is given, seeded by
             ``seed``) or "none" (blind restoration).
    """

    mode: str = "manual"
    manual: tuple[int, ...] = ()
    every: int = 32
    count: int | None = None
    density: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise KeyframeError(f"keyframe mode {self.mode!r} is unknown; choose one of {MODES}")


def select_keyframes(
    selection: KeyframeSelection, num_frames: int, iframes: Sequence[int] = ()
) -> tuple[int, ...]:
    """The keyframes ``selection`` asks for in a clip of ``num_frames`` with these I-frames."""
    if selection.mode == "iframes":
        return iframe_keyframes(iframes, num_frames)
    if selection.mode == "uniform":
        return uniform_keyframes(num_frames, selection.every)
    if selection.mode == "random":
        count, density = selection.count, selection.density
        if count is None and density is None:
            count = 1
        return random_keyframes(num_frames, count=count, density=density, seed=selection.seed)
    if selection.mode == "none":
        return ()
    return validate_keyframes(selection.manual, num_frames)


def parse_keyframe_list(text: str) -> tuple[int, ...]:
    """``"0,40, 80"`` -> (0, 40, 80); a clear error for anything else."""
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError as e:
        raise KeyframeError(
            f"keyframes {text!r} must be comma-separated frame numbers, e.g. 0,40,80"
        ) from e
