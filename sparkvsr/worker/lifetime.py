"""How sessions, projects and the worker end (a mixin of ``Worker``): sessions closed or reaped
when idle, projects released when nothing needs them, memory handed back, ``close``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import time
from typing import TYPE_CHECKING

from sparkvsr.worker.requests import SessionNotFound
from sparkvsr.worker.sessions import OpenProject, Session

if TYPE_CHECKING:
    from sparkvsr.worker.core import Worker


class Lifetime:
    """The Worker's closing and releasing."""

    def close(self) -> None:
        """Cancel renders, stop the engine thread, close every session, release projects."""
        with self._wake:
            self._closing = True
            for shared in self._projects.values():
                if shared.job is not None:
                    shared.job.cancel.set()
            self._wake.notify_all()
        self._stopped.set()
        if self._proxy_pool is not None:  # a proxy being made stops at its next frame
            self._proxy_pool.shutdown(wait=True, cancel_futures=True)
        self._thread.join(timeout=60)
        for encoder in list(self._encoders):
            encoder.join(timeout=30)
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            with contextlib.suppress(Exception):
                self._end_session(session)
        for clip in self._clips_to_close:
            with contextlib.suppress(Exception):
                clip.close()
        with self._lock:
            projects = list(self._projects.values())
            self._projects.clear()
        for shared in projects:
            shared.project.close()
        self.previews.clear()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _end_session(self, session: Session) -> None:
        """Forget a session and close what it holds now (idempotent)."""
        with self._wake:
            if session.closed:
                return
            session.closed = True
            self._sessions.pop(session.id, None)
            session.shared.sessions.discard(session.id)
            if session in self._preview_queue:
                self._preview_queue.remove(session)
            slot, session.preview = session.preview, None
            # the engine thread may be reading this clip: it closes it between two tasks
            self._clips_to_close.append(session.engine_clip)
            self._wake.notify_all()
        for waiter, _ in slot.waiters if slot else ():
            if not waiter.done():
                waiter.set_exception(SessionNotFound("the session was closed during the preview"))
        with session.lock:
            session.scrub_clip.close()
        self._release_if_unused(session.shared)

    def _release_if_unused(self, shared: OpenProject) -> None:
        """Release a project no session and no running render needs: its writer lock and its
        References; when no project is left at all, the preview caches too."""
        with self._lock:
            if shared.sessions or shared.rendering or self._projects.get(shared.name) is not shared:
                return
            del self._projects[shared.name]
            idle = not self._projects and not self._sessions
        shared.project.close()
        shared.references.clear()
        if idle:
            self._release_memory()

    def _release_memory(self) -> None:
        """Return what the sessions used: preview caches, the engine's caches, freed heap."""
        self.previews.clear()
        release = getattr(self.engine, "release_caches", None)
        if callable(release):

            def release_and_trim() -> None:
                release()
                gc.collect()
                trim_heap()  # after the engine dropped its caches, or their pages stay

            with self._wake:  # the engine's caches belong to the engine thread
                self._engine_chores.append(release_and_trim)
                self._wake.notify_all()
        gc.collect()
        trim_heap()

    def _reap(self) -> None:
        """Close sessions idle for ``idle_timeout`` (never while their project renders)."""
        period = max(0.05, min(60.0, (self.config.idle_timeout or 240.0) / 4))
        while not self._stopped.wait(period):
            now = time.monotonic()
            with self._lock:
                idle = [
                    s
                    for s in self._sessions.values()
                    if self.config.idle_timeout
                    and now - s.last_used > self.config.idle_timeout
                    and not s.shared.rendering
                ]
            for session in idle:
                with contextlib.suppress(Exception):
                    self._end_session(session)


def trim_heap() -> None:
    """Hand freed heap pages back to the system (glibc keeps them otherwise), so the worker's
    memory returns to its idle size after sessions close."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
