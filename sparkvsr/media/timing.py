"""Frame timing: the true rate of a clip, and the timestamps an output keeps (pure functions).

Timestamps come from the decoder in output order, but some containers (AVI with B-frames) attach
decode-order times to them: the sorted timestamps are the presentation times. A clip is variable
frame rate when its sorted frame intervals really vary (one dropped-frame gap is enough); then the
output keeps every source time exactly. A constant-rate clip keeps its exact rational rate.

Sync: every stream of the output is shifted by the same amount (``OutputTiming.shift``), so the
offset between the first video frame and each audio or subtitle stream is the source's.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

FOLDER_FPS = Fraction(25)
# Output time base for variable-rate video when the source's is coarser than a millisecond.
FINE_TIME_BASE = Fraction(1, 90000)


def measure_rate(
    times: Sequence[int], time_base: Fraction, guess: Fraction
) -> tuple[Fraction, bool, float]:
    """Rate, whether it varies, and the duration (s) from sorted presentation ``times`` (ticks).

    ``guess`` (the container's rate) is kept when the measured mean agrees within 1%, so a
    29.97 fps clip stays exactly 30000/1001 instead of a rounded mean.
    """
    if len(times) < 2:
        rate = guess if guess > 0 else FOLDER_FPS
        return rate, False, float(1 / rate)
    deltas = [b - a for a, b in itertools.pairwise(times)]
    typical = statistics.median(deltas)
    # Containers round timestamps to their time base (1 ms in MKV): allow two ticks of that,
    # and a quarter frame; a gap of a dropped frame (a whole frame) still counts.
    tolerance = max(2, 0.25 * typical)
    vfr = any(abs(d - typical) > tolerance for d in deltas)
    span = (times[-1] - times[0]) * time_base
    mean_rate = Fraction(len(times) - 1) / span if span > 0 else guess
    if not vfr and typical > 0:
        median_rate = 1 / (Fraction(typical) * time_base)
        if guess > 0 and abs(float(guess) - float(median_rate)) <= 0.01 * float(median_rate):
            rate = guess
        else:
            rate = Fraction(median_rate).limit_denominator(1001)
    else:
        rate = mean_rate.limit_denominator(1001)
    duration = float(span) + float(1 / rate)
    return rate, vfr, duration


@dataclass(frozen=True)
class OutputTiming:
    """Timestamps of an output video and the shift applied to every other stream.

    time_base: of the video stream and its encoder (they must agree, or a 1/90000 stream fed
    1/fps pts makes a 1.7 s clip 7,119 s long). frame_pts: each frame's pts (variable rate), or
    empty for constant rate: ``first_pts + i``. shift: seconds added to every source audio and
    subtitle timestamp (the same shift the video got, so offsets are kept).
    """

    time_base: Fraction
    first_pts: int = 0
    frame_pts: tuple[int, ...] = ()
    shift: Fraction = Fraction(0)

    def pts(self, index: int) -> int:
        if not self.frame_pts:
            return self.first_pts + index
        if index < len(self.frame_pts):
            return self.frame_pts[index]
        step = self.frame_pts[-1] - self.frame_pts[-2] if len(self.frame_pts) > 1 else 1
        return self.frame_pts[-1] + step * (index - len(self.frame_pts) + 1)

    def seconds(self, index: int) -> float:
        return float(self.pts(index) * self.time_base)


def constant_timing(frame_rate: Fraction) -> OutputTiming:
    return OutputTiming(time_base=1 / Fraction(frame_rate))


def plan_timing(
    times: Sequence[int],
    time_base: Fraction,
    frame_rate: Fraction,
    vfr: bool,
    other_starts: Sequence[float],
) -> OutputTiming:
    """Output timing for a clip whose displayed frames sit at sorted ``times`` (ticks of
    ``time_base``); ``other_starts``: start times (s) of the streams copied beside the video.

    The earliest stream starts the output at 0 (so nothing is negative); the video's first pts
    is rounded to its time base and the rounding goes into the shift, so audio moves with it.
    """
    video_start = Fraction(times[0]) * time_base if times else Fraction(0)
    starts = [Fraction(s).limit_denominator(10**6) for s in other_starts if s is not None]
    zero = min([video_start, *(max(s, Fraction(0)) for s in starts)])
    if vfr:
        out_base = time_base if time_base.denominator >= 1000 else FINE_TIME_BASE
        offset = video_start - zero
        pts = tuple(
            round((Fraction(t) * time_base - video_start + offset) / out_base) for t in times
        )
        shift = pts[0] * out_base - video_start if pts else -zero
        return OutputTiming(out_base, pts[0] if pts else 0, pts, shift)
    out_base = 1 / Fraction(frame_rate)
    first = round((video_start - zero) / out_base)
    return OutputTiming(out_base, first, (), first * out_base - video_start)
