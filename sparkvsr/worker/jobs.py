"""Render jobs: server-side renders that outlive the client that started them.

A job belongs to a project (not to a session): any session of the project can follow it
(``follow``), ask where it stands (``info``) or cancel it. Its progress is kept, so a client that
stopped iterating (a closed or reloaded tab) can re-attach and replay it from the start. The job
renders the settings it started with (``render_steps`` reads the project state once, at its
start); the project's later changes (pins, settings) are left as they are.

States: "rendering" (the engine thread makes chunks) -> "encoding" (the final clip is assembled
on the job's own thread) -> "done" | "cancelled" | "failed".
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field

from sparkvsr.errors import Cancelled, SparkVSRError
from sparkvsr.render import RenderProgress
from sparkvsr.worker.requests import RenderJobInfo

FINISHED = ("done", "cancelled", "failed")
MAX_HISTORY = 20_000  # progress updates kept for followers; older fine-grained ones are dropped


@dataclass(eq=False)
class RenderJob:
    """One render of one project (mutable; every field is guarded by ``changed``)."""

    project: str
    steps: Generator[RenderProgress, None, object]
    output: str
    guidance: float
    frames: tuple[int, int] | None = None  # a range render's (start, stop)
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    cancel: threading.Event = field(default_factory=threading.Event)
    state: str = "rendering"
    error: SparkVSRError | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    history: list[RenderProgress] = field(default_factory=list)
    dropped: int = 0  # updates dropped from the front of ``history``
    changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def last(self) -> RenderProgress | None:
        with self.changed:
            return self.history[-1] if self.history else None

    @property
    def running(self) -> bool:
        return self.state not in FINISHED

    def publish(self, update: RenderProgress) -> None:
        with self.changed:
            self.history.append(update)
            if len(self.history) > MAX_HISTORY:
                # keep the chunk-level updates' tail; followers far behind skip ahead
                cut = len(self.history) // 2
                del self.history[:cut]
                self.dropped += cut
            self.changed.notify_all()

    def set_state(self, state: str) -> None:
        with self.changed:
            self.state = state
            self.changed.notify_all()

    def finish(self, error: BaseException | None) -> None:
        """End the job: done (no error), cancelled (Cancelled) or failed (any other error)."""
        with self.changed:
            if error is None:
                self.state = "done"
            elif isinstance(error, Cancelled):
                self.state, self.error = "cancelled", error
            else:
                if not isinstance(error, SparkVSRError):
                    error = SparkVSRError(
                        f"the render failed unexpectedly: {type(error).__name__}: {error}"
                    )
                self.state, self.error = "failed", error
            self.finished = time.time()
            self.changed.notify_all()

    def follow(self) -> Iterator[RenderProgress]:
        """Every progress update from the job's start until it ends (blocking between them);
        then raises the job's error (Cancelled, or why it failed), if any."""
        position = 0
        while True:
            with self.changed:
                while position - self.dropped >= len(self.history) and self.running:
                    self.changed.wait()
                position = max(position, self.dropped)
                fresh = self.history[position - self.dropped :]
                position += len(fresh)
                ended = not self.running and position - self.dropped >= len(self.history)
                error = self.error
            yield from fresh
            if ended:
                if error is not None:
                    raise error
                return

    def info(self) -> RenderJobInfo:
        with self.changed:
            return RenderJobInfo(
                job_id=self.id,
                project=self.project,
                state=self.state,
                progress=self.history[-1] if self.history else None,
                output=self.output,
                guidance=self.guidance,
                error=type(self.error).__name__ if self.error else "",
                message=str(self.error) if self.error else "",
                started=self.started,
                finished=self.finished or 0.0,
                frames=self.frames,
            )
