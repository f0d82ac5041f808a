"""Which frames of a training clip get a Reference. Pure: a seed in, indices out.

The published recipe: with probability ``no_keyframe_prob`` (10%) a clip gets no keyframe at
all, so the model also learns blind restoration (the unconditioned branch of reference-free
guidance). Otherwise the count is uniform in ``1 .. (F - 1) // 4 + 1``, the first keyframe is
frame 0 and the others are uniformly random among all sets whose members are at least
``MIN_GAP`` (4) frames apart, the rule the dit engine needs so latent slots ``f // 4`` never
collide.
"""

from __future__ import annotations

import random

from sparkvsr.errors import KeyframeError
from sparkvsr.keyframes import MIN_GAP, max_keyframes, random_keyframes


def sample_keyframes(num_frames: int, seed: int, no_keyframe_prob: float = 0.1) -> tuple[int, ...]:
    """Sorted keyframe indices for one clip of ``num_frames`` frames, reproducible from ``seed``.

    Returns ``()`` (no Reference) with probability ``no_keyframe_prob``; otherwise a tuple that
    starts at 0, lies in ``[0, num_frames)``, is at least 4 apart and holds 1 to
    ``(num_frames - 1) // 4 + 1`` indices.
    """
    if num_frames < 1:
        raise KeyframeError(
            f"a clip needs at least one frame to sample keyframes; got {num_frames}"
        )
    if not 0.0 <= no_keyframe_prob <= 1.0:
        raise KeyframeError(f"no_keyframe_prob {no_keyframe_prob} must be in [0, 1]")
    rng = random.Random(seed)
    if rng.random() < no_keyframe_prob:
        return ()
    count = rng.randint(1, max_keyframes(num_frames))
    if count == 1:
        return (0,)
    # Frame 0 is taken, so the rest are a uniformly random valid set in [MIN_GAP, num_frames).
    rest = random_keyframes(num_frames - MIN_GAP, count=count - 1, seed=rng.randrange(2**63))
    return (0, *(MIN_GAP + index for index in rest))
