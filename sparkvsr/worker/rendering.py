"""Renders as jobs of their project (a mixin of ``Worker``): start one (whole clip or a
range), follow it, attach to it again, see where it stands, cancel it.
"""

from __future__ import annotations

from collections.abc import Iterator

from sparkvsr.errors import ProjectError
from sparkvsr.project import safe_join
from sparkvsr.render import (
    RenderProgress,
    range_name,
    render_range_steps,
    render_steps,
    take_snapshot,
)
from sparkvsr.worker.jobs import RenderJob
from sparkvsr.worker.limits import GUIDANCE_RANGE, check_float, check_range
from sparkvsr.worker.requests import (
    AccessDenied,
    CancelResponse,
    RenderJobInfo,
    RenderRequest,
    SessionRequest,
)
from sparkvsr.worker.sessions import Session


class Rendering:
    """The Worker's render calls; the jobs run on the engine thread (``engine_thread``)."""

    def render(self, request: RenderRequest) -> Iterator[RenderProgress]:
        """Start rendering the session's project; yields its progress until ``stage="done"``.

        The render is a job of the worker: it keeps running when the caller stops iterating
        (follow it again with ``attach``, see it with ``render_job``). It renders the project's
        settings as they are when it starts; changes made meanwhile (pins, References, settings)
        are kept for the next render. ``cancel`` (from any session of the project) stops it
        between chunks or between frames of the final encode, raising Cancelled here.
        Finished chunks are kept, so the next render resumes.
        """
        session = self._session(request.session_id)
        job = self._start_render(session, request)
        return job.follow()

    def attach(self, request: SessionRequest) -> Iterator[RenderProgress]:
        """Follow the project's running (or last) render from its start: every progress update,
        then its end (Cancelled or the render's error is raised, like ``render``)."""
        session = self._session(request.session_id)
        job = session.shared.job
        if job is None:
            raise ProjectError(
                f"project {session.name!r} has no render since the worker started; start one"
            )
        return job.follow()

    def render_job(self, request: SessionRequest) -> RenderJobInfo:
        """Where the project's running (or last) render stands; ``state="none"`` if it has had
        none since the worker started. Never waits for the engine."""
        session = self._session(request.session_id)
        job = session.shared.job
        if job is None:
            state = session.project.state
            return RenderJobInfo("", session.name, "none", None, "", state.guidance)
        return job.info()

    def cancel(self, request: SessionRequest) -> CancelResponse:
        """Cancel the project's running render (from any of its sessions)."""
        session = self._session(request.session_id)
        job = session.shared.job
        if job is None or not job.running:
            return CancelResponse(False)
        job.cancel.set()
        with self._wake:
            self._wake.notify_all()
        return CancelResponse(True)

    def _start_render(self, session: Session, request: RenderRequest) -> RenderJob:
        shared = session.shared
        with shared.lock:
            if shared.rendering:
                raise ProjectError(
                    f"a render of project {shared.name!r} is already running; follow it (attach) "
                    "or cancel it first"
                )
            if request.guidance is not None:
                check_float("guidance", request.guidance, *GUIDANCE_RANGE)
                shared.project.set_guidance(request.guidance)
            state = shared.project.state
            frames = None
            if request.frames is not None:
                frames = check_range(request.frames, state.clip.num_frames)
            output = request.output or state.output.path
            if frames is not None and not request.output:
                output = range_name(output, *frames)
            try:
                out_path = safe_join(shared.project.folder, output)
            except ProjectError as e:
                raise AccessDenied(str(e)) from e
            job = RenderJob(shared.name, iter(()), str(out_path), state.guidance, frames)
            # what the user asked to render, even if the job waits behind previews and they edit
            snapshot = take_snapshot(shared.project)
            if frames is None:
                job.steps = render_steps(
                    self.engine,
                    shared.project,
                    output=out_path,
                    progress=job.publish,
                    cancel=job.cancel.is_set,
                    snapshot=snapshot,
                )
            else:
                job.steps = render_range_steps(
                    self.engine,
                    shared.project,
                    frames,
                    output=out_path,
                    progress=job.publish,
                    cancel=job.cancel.is_set,
                    snapshot=snapshot,
                )
            shared.job = job
        with self._wake:
            self._renders.append((shared, job))
            self._wake.notify_all()
        return job
