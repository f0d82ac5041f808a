"""How a render reports: ``RenderProgress`` (frames done, stage, frames encoded, elapsed, time left
at the recent ``Pace``), the engine's finer updates forwarded as RenderProgress, and the
``RenderResult`` of a finished run.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from sparkvsr.engines.base import Progress


@dataclass(frozen=True)
class RenderProgress:
    """Where a render stands.

    stage: "render" (engine running), "assemble" (encoding the final clip) or "done".
    frames_done / total_frames: output frames finished (saved chunks count as done).
    chunks_rendered: chunks the engine made in this run; chunks_resumed: chunks kept from an
    earlier, interrupted run of the same settings; chunks_reused: chunks a range render of the
    same settings made (adopted by the full render), or for a range, finished chunks it read.
    first: the first frame of a range render (its frames are ``first <= i < first +
    total_frames``; 0 for the whole clip).
    output: the final clip's path once stage is "done".
    encoded: stage "assemble": frames of the final clip encoded so far (of total_frames).
    elapsed: seconds since this run started (all stages).
    eta: seconds left in the current stage at the recent pace (``Pace``); None = not known yet.
    rate: frames a second of the current stage over its recent frames (0 = not known yet).
    """

    stage: str
    frames_done: int
    total_frames: int
    chunks_rendered: int = 0
    chunks_resumed: int = 0
    message: str = ""
    output: str = ""
    encoded: int = 0
    elapsed: float = 0.0
    eta: float | None = None
    rate: float = 0.0
    chunks_reused: int = 0
    first: int = 0

    @property
    def fraction(self) -> float:
        """The current stage's share done: frames rendered, or while encoding frames encoded."""
        if not self.total_frames:
            return 0.0
        done = self.encoded if self.stage == "assemble" else self.frames_done
        return min(1.0, done / self.total_frames)


class Pace:
    """Frames a second over the last ``window`` frames of a stage, and the time left at it.

    A running average of recent frames, not of the whole run: a resumed render, a slow first
    chunk or a busy machine moves the estimate within a few frames. ``clock`` is injectable
    for tests (seconds, monotonic).
    """

    def __init__(self, window: int = 24, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._samples: deque[tuple[float, int]] = deque(maxlen=window + 1)

    def update(self, count: int) -> None:
        """``count`` frames are finished now (counts only grow; a repeated count is ignored)."""
        if self._samples and count <= self._samples[-1][1]:
            return
        self._samples.append((self.clock(), count))

    def start(self, count: int) -> None:
        """The stage starts now at ``count`` frames (the first sample of the average)."""
        self._samples.clear()
        self._samples.append((self.clock(), count))

    @property
    def rate(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, c0), (t1, c1) = self._samples[0], self._samples[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0

    def eta(self, remaining: int) -> float | None:
        """Seconds for ``remaining`` frames at the recent rate, counted from the last frame."""
        if remaining <= 0:
            return 0.0
        rate = self.rate
        if rate <= 0:
            return None
        since_last = self.clock() - self._samples[-1][0]
        return max(0.0, remaining / rate - since_last)


class RenderClock:
    """Stamps a run's RenderProgress updates with elapsed time, pace and time left."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.started = clock()
        self.stage = ""
        self.pace = Pace(clock=clock)

    def stamp(self, update: RenderProgress) -> RenderProgress:
        count = update.encoded if update.stage == "assemble" else update.frames_done
        if update.stage != self.stage:
            self.stage = update.stage
            self.pace.start(count)
        else:
            self.pace.update(count)
        eta = 0.0 if update.stage == "done" else self.pace.eta(update.total_frames - count)
        elapsed = self.clock() - self.started
        return replace(update, elapsed=elapsed, eta=eta, rate=self.pace.rate)


@dataclass(frozen=True)
class RenderResult:
    """A finished render: the output clip and how much work this run did."""

    output: Path
    frames: int
    chunks_rendered: int
    chunks_resumed: int
    resumed_from: int
    skipped: bool = False
    notes: tuple[str, ...] = ()
    chunks_reused: int = 0


ProgressCallback = Callable[[RenderProgress], None]


def resume_message(start: int, resumed: int) -> str:
    if resumed:
        return f"resuming at frame {start} ({resumed} finished chunks kept)"
    return "starting"


def forward_engine_progress(
    progress: ProgressCallback | None, start: int, total: int, resumed: int, counts: list[int]
) -> Callable[[Progress], None] | None:
    if progress is None:
        return None

    def forward(update: Progress) -> None:
        if update.unit == "frames":
            done = min(total, start + update.done)
        else:
            share = update.done / update.total if update.total else 0.0
            done = min(total, start + round(share * (total - start)))
        progress(RenderProgress("render", done, total, counts[0], resumed, update.message))

    return forward


def emit_progress(progress: ProgressCallback | None, update: RenderProgress) -> None:
    if progress is not None:
        progress(update)
