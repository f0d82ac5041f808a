"""The Worker's engine thread (a mixin of ``Worker``): every engine call runs on it, one task
at a time: chores (clips to close, caches to drop), previews round-robin between sessions (those
of the same clip and keyframes together), a render step after each round, and while idle the
neighbours of each session's last preview.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import replace
from typing import Any

from sparkvsr.errors import SparkVSRError
from sparkvsr.viewport import engine_preview
from sparkvsr.worker.jobs import RenderJob
from sparkvsr.worker.requests import PreviewRequest, PreviewResponse
from sparkvsr.worker.sessions import OpenProject, Session


class EngineThread:
    """The Worker's engine thread: picks and runs the next task."""

    def _run(self) -> None:
        while True:
            with self._wake:
                task = self._next_task()
                while task is None and not self._closing:
                    self._wake.wait(timeout=self._wait_time())
                    task = self._next_task()
                if task is None:  # closing, nothing left to hand out
                    self._fail_pending_previews()
                    break
            kind, target = task
            if kind == "chores":
                self._close_clips()
                for chore in target:
                    with contextlib.suppress(Exception):
                        chore()
            elif kind == "preview":
                self._run_preview(target)
            elif kind == "warm":
                self._run_warm(target)
            else:
                self._run_render_step(*target)
            if kind != "warm":
                self._busy_until = time.monotonic()
        self._close_clips()

    def _next_task(self) -> tuple[str, Any] | None:
        """Pick the next engine task (lock held): chores (clips to close, caches to drop), then
        due previews round-robin between sessions, with a render step after each round."""
        if self._clips_to_close or self._engine_chores:
            chores, self._engine_chores = self._engine_chores, []
            return "chores", chores
        if self._renders and (self._previews_in_a_row >= max(1, len(self._sessions))):
            self._previews_in_a_row = 0
            return "render", self._renders.popleft()
        session = self._next_preview()
        if session is not None:
            self._preview_queue.remove(session)
            self._previews_in_a_row += 1
            return "preview", session
        if self._renders:
            self._previews_in_a_row = 0
            return "render", self._renders.popleft()
        # idle (nothing queued, not even a preview waiting for its interval): the neighbours of
        # the last previews, newest session first
        if self._preview_queue or self._closing:
            return None
        if time.monotonic() < self._busy_until + WARM_GRACE:
            return None  # the caller of the last preview gets the machine first
        for session in reversed(list(self._sessions.values())):
            if session.warm and not session.closed and session.preview is None:
                return "warm", session
        return None

    def _next_preview(self) -> Session | None:
        """The next due preview (lock held). Previews are served in rounds: every session due
        when a round starts is served once in it, those of the same clip and keyframes one
        after another (the engine's per-clip work stays warm instead of being rebuilt for
        every other session), and a session asking meanwhile waits for the next round."""
        while self._round:
            session = self._round.popleft()
            if session in self._preview_queue:
                self._last_group = _preview_group(session)
                return session
        now = time.monotonic()
        due = [
            s for s in self._preview_queue if now >= s.last_preview + self.config.preview_interval
        ]
        if not due:
            return None
        last = self._last_group
        due.sort(key=lambda s: (_preview_group(s) != last, _preview_group(s)))  # stable
        self._round.extend(due[1:])
        self._last_group = _preview_group(due[0])
        return due[0]

    def _close_clips(self) -> None:
        with self._lock:
            clips, self._clips_to_close = self._clips_to_close, []
        for clip in clips:
            with contextlib.suppress(Exception):
                clip.close()

    def _wait_time(self) -> float | None:
        if not self._preview_queue:
            if any(s.warm for s in self._sessions.values()):  # neighbours after the grace
                return max(0.001, self._busy_until + WARM_GRACE - time.monotonic())
            return None
        due = min(s.last_preview + self.config.preview_interval for s in self._preview_queue)
        return max(0.001, due - time.monotonic())

    def _run_preview(self, session: Session) -> None:
        with self._wake:
            slot, session.preview = session.preview, None
            session.last_preview = time.monotonic()
            if session.closed:
                return
        if slot is None:
            return
        request = slot.request
        try:
            image, made = self._preview_image(session, request)
            if made:
                self.previews_computed += 1
                session.warm = neighbour_requests(request, session.project.state.clip.num_frames)
        except BaseException as e:
            for waiter, _ in slot.waiters:
                if not waiter.done():
                    waiter.set_exception(e)
            return
        for waiter, asked in slot.waiters:
            if not waiter.done():
                waiter.set_result(
                    PreviewResponse(
                        request.frame, request.guidance, image, superseded=asked != request
                    )
                )

    def _run_warm(self, session: Session) -> None:
        """Make one neighbour of the session's last preview into the preview cache (idle time
        only; a failure is left for the real request to report)."""
        with self._wake:
            if not session.warm or session.closed:
                return
            request = session.warm.pop(0)
        with contextlib.suppress(Exception):
            if self._preview_image(session, request)[1]:
                self.previews_warmed += 1

    def _preview_image(self, session: Session, request: PreviewRequest) -> tuple[Any, bool]:
        """The preview of ``request`` from the cache, or made by the engine and cached:
        (image, whether it was made now)."""
        key = self._preview_key(session, request)
        image = self.previews.get(key)
        if image is not None:
            return image, False
        with session.shared.lock:
            state = session.project.state
            references = {k: v for k, v in session.references.items() if k in state.keyframes}
        options = replace(state.restore_options(), guidance=request.guidance)
        image = engine_preview(
            self.engine, session.engine_clip, references, request.frame, options, request.viewport
        )
        self.previews.put(key, image)
        return image, True

    def _run_render_step(self, shared: OpenProject, job: RenderJob) -> None:
        """One chunk of a render on the engine thread; the final encode goes to its own thread
        (cancellable between frames) so previews and other renders go on meanwhile."""
        try:
            if self._closing:
                job.cancel.set()
            step = next(job.steps)
        except StopIteration:
            self._end_job(shared, job, None)
            return
        except BaseException as e:
            self._end_job(shared, job, e)
            return
        if step.stage == "assemble":
            job.set_state("encoding")
            encoder = threading.Thread(
                target=self._encode, args=(shared, job), name="sparkvsr-encode", daemon=True
            )
            with self._lock:
                self._encoders.add(encoder)
            encoder.start()
            return
        with self._wake:
            self._renders.append((shared, job))

    def _encode(self, shared: OpenProject, job: RenderJob) -> None:
        try:
            for _ in job.steps:
                pass
        except BaseException as e:
            self._end_job(shared, job, e)
        else:
            self._end_job(shared, job, None)
        finally:
            with self._lock:
                self._encoders.discard(threading.current_thread())

    def _end_job(self, shared: OpenProject, job: RenderJob, error: BaseException | None) -> None:
        with contextlib.suppress(Exception):
            job.steps.close()
        job.finish(error)
        self._release_if_unused(shared)

    def _fail_pending_previews(self) -> None:
        for session in self._preview_queue:
            slot, session.preview = session.preview, None
            for waiter, _ in slot.waiters if slot else ():
                if not waiter.done():
                    waiter.set_exception(SparkVSRError("the worker is shutting down"))
        self._preview_queue.clear()


# Seconds the engine stays idle after real work before it makes neighbours of the last preview:
# the caller's own handling of that preview (encoding, sending, showing it) gets the two cores
# first, and a request that follows at once does not wait for a neighbour
WARM_GRACE = 0.25


def neighbour_requests(request: PreviewRequest, num_frames: int) -> list[PreviewRequest]:
    """The frames after and before ``request``'s, at its guidance and viewport; none for
    previews at full resolution (a zoomed-in or whole 4x frame costs seconds, and a request
    arriving meanwhile would wait for it)."""
    if request.viewport is None or not 0 <= request.viewport.zoom < 1:
        return []
    frames = (request.frame + 1, request.frame - 1)
    return [replace(request, frame=f) for f in frames if 0 <= f < num_frames]


def _preview_group(session: Session) -> tuple:
    """Sessions whose previews share the engine's per-clip work: same clip, same keyframes."""
    state = session.project.state
    return (state.clip.path, state.keyframes)
