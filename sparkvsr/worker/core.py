"""The Worker: one engine, the editors, the sessions and the engine thread (see the package
docstring for its methods)."""

from __future__ import annotations

import contextlib
import queue
import secrets
import shutil
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

from sparkvsr import media, workspace
from sparkvsr.engines import load_engine
from sparkvsr.engines.base import Engine
from sparkvsr.errors import EditorError, KeyframeError, ProjectError, SparkVSRError
from sparkvsr.project import ClipSummary, EngineSettings, Project, safe_join
from sparkvsr.references import EDITORS, load_editor
from sparkvsr.references.base import Editor, EditRequest
from sparkvsr.render import RenderProgress, render_fingerprint, render_steps
from sparkvsr.viewport import engine_preview
from sparkvsr.worker.jobs import DONE, RenderJob, drain
from sparkvsr.worker.limits import (
    GUIDANCE_RANGE,
    RequestError,
    TooLarge,
    check_float,
    check_int,
    check_settings,
    upload_pixel_limit,
)
from sparkvsr.worker.requests import (
    AccessDenied,
    CancelResponse,
    EditorAvailability,
    FileRequest,
    FileResponse,
    FrameRequest,
    FrameResponse,
    KeyframeRequest,
    KeyframesResponse,
    OpenClipRequest,
    PreviewRequest,
    PreviewResponse,
    ReferenceInfo,
    ReferenceRequest,
    ReferenceResponse,
    RenderRequest,
    SessionInfo,
    SessionNotFound,
    SessionRequest,
    SettingsRequest,
    StatusRequest,
    UploadResponse,
    WorkerConfig,
    WorkerStatus,
)
from sparkvsr.worker.sessions import (
    PROJECT_NAME,
    PreviewSlot,
    Session,
    check_index,
    keyframes_response,
    new_project_name,
    output_size,
)

OUTPUT_FIELDS = ("crf", "codec", "preset", "audio", "ten_bit")
"""SettingsRequest fields that go to the project's OutputSettings."""


class Worker:
    """Owns one engine, the editors, the sessions and the engine thread. Use as a context
    manager or call ``close()``; see the module docstring for the methods.
    """

    def __init__(self, config: WorkerConfig | None = None, *, engine: Engine | None = None):
        self.config = config or WorkerConfig()
        self.engine = engine or load_engine(self.config.engine, **self.config.engine_config)
        self.projects_root = Path(self.config.projects_root).absolute()
        # "_" cannot start a project name, so stored media never collides with a project
        self.uploads_root = workspace.media_root(self.projects_root)
        self.previews_computed = 0
        self._editors: dict[str, tuple[Editor, threading.Lock]] = {}
        self._editor_lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._opening: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._preview_queue: deque[Session] = deque()
        self._renders: deque[Session] = deque()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="sparkvsr-engine", daemon=True)
        self._thread.start()

    # Sessions -----------------------------------------------------------------------------
    def open_clip(self, request: OpenClipRequest) -> SessionInfo:
        """Open (or reopen) a project in a new session. The project folder is created under
        ``projects_root``; a project already open in another session is refused.
        """
        if request.clip_path:
            self._check_clip_allowed(request.clip_path)
        reused = "" if request.project else self._reusable(request)
        name = request.project or reused or new_project_name(request.clip_path)
        folder = self._project_folder(name)
        # (a reused project is the caller's own, or untouched: checked again once open)
        if not reused and not workspace.may_open(folder, request.owner):
            raise AccessDenied(
                f"project {name!r} belongs to another browser; open your own projects, or "
                "upload the clip to start one"
            )
        with self._lock:
            if name in self._opening or any(s.name == name for s in self._sessions.values()):
                raise AccessDenied(
                    f"project {name!r} is open in another session; close that session first or "
                    "open the clip as a new project"
                )
            # Reserve the name while the (slow) probe runs, so two opens cannot race.
            self._opening.add(name)
        try:
            project, clip_path = self._open_or_create(folder, request.clip_path)
            if reused and not (
                workspace.may_open(folder, request.owner) or workspace.is_pristine(project.state)
            ):
                raise AccessDenied(f"project {name!r} belongs to another browser")
            if request.owner and workspace.project_owner(folder) != workspace.owner_hash(
                request.owner
            ):
                # a new project, or an untouched one reused: it is the caller's from now on
                workspace.set_owner(folder, request.owner)
            scrub_clip = media.open_clip(clip_path)
            engine_clip = media.open_clip(clip_path)
            session = Session(
                id=secrets.token_urlsafe(24),
                name=name,
                project=project,
                scrub_clip=scrub_clip,
                engine_clip=engine_clip,
                references=project.reference_images(),
            )
            with self._lock:
                self._sessions[session.id] = session
        finally:
            with self._lock:
                self._opening.discard(name)
        return self._session_info(session)

    def close_session(self, request: SessionRequest) -> SessionInfo:
        """Close a session: its render is cancelled, its project stays on disk."""
        session = self._session(request.session_id)
        info = self._session_info(session)
        if session.render is not None:
            session.render.cancel.set()
        with self._lock:
            self._sessions.pop(session.id, None)
        with session.lock:
            session.scrub_clip.close()
        return info

    def update_settings(self, request: SettingsRequest) -> SessionInfo:
        """Change the session's guidance, engine options or output quality (autosaved)."""
        session = self._session(request.session_id)
        names = ("chunk", "overlap", "tile", "tile_overlap", "color_fix")
        changes = {n: getattr(request, n) for n in names if getattr(request, n) is not None}
        # Check types and ranges before anything is saved: a saved setting that breaks
        # rendering (chunk 8.5, chunk 10**12, crf 20.7) would make every later render fail.
        check_settings(
            {**changes, "guidance": request.guidance, "crf": request.crf},
            output_size(session.project.state),
        )
        with session.lock:
            if session.render is not None:
                raise ProjectError("a render is running in this session; cancel it first")
            project = session.project
            if changes:
                project.set_options(replace(project.state.options, **changes))
            if request.guidance is not None:
                project.set_guidance(request.guidance)
            output = {n: getattr(request, n) for n in OUTPUT_FIELDS}
            output = {n: v for n, v in output.items() if v is not None}
            if output:
                project.set_output(replace(project.state.output, **output))
            if request.output_size is not None:
                size = tuple(request.output_size)
                if size != (0, 0):
                    if len(size) != 2:
                        raise RequestError(f"output_size must be (width, height); got {size!r}")
                    for what, value in zip(("output width", "output height"), size, strict=True):
                        check_int(what, value, 16, 16384)
                options = replace(
                    project.state.options, output_size=None if size == (0, 0) else size
                )
                project.set_options(options)
        return self._session_info(session)

    def frame(self, request: FrameRequest) -> FrameResponse:
        """The LR frame ``index`` as displayed (for the scrubber)."""
        session = self._session(request.session_id)
        with session.lock:
            image = session.scrub_clip.frame(check_index(request.index, session))
        return FrameResponse(request.index, image)

    # Keyframes and References -------------------------------------------------------------
    def set_keyframe(self, request: KeyframeRequest) -> KeyframesResponse:
        """Pin ``frame`` (keyframe rules: inside the clip, at least 4 frames apart)."""
        session = self._session(request.session_id)
        with session.lock:
            state = session.project.add_keyframe(request.frame)
        return keyframes_response(state)

    def remove_keyframe(self, request: KeyframeRequest) -> KeyframesResponse:
        """Unpin ``frame``; its Reference is kept and returns if the frame is pinned again."""
        session = self._session(request.session_id)
        with session.lock:
            state = session.project.remove_keyframe(request.frame)
        return keyframes_response(state)

    def make_reference(self, request: ReferenceRequest) -> ReferenceResponse:
        """Run an editor on keyframe ``frame``'s LR frame and save the result as its Reference.

        On an editor failure the keyframe keeps its previous Reference (EditorError says why).
        """
        session = self._session(request.session_id)
        if request.frame not in session.project.state.keyframes:
            raise KeyframeError(
                f"frame {request.frame} is not pinned; pin it before making its Reference "
                f"(pinned: {list(session.project.state.keyframes)})"
            )
        with session.lock:
            lr_frame = session.scrub_clip.frame(request.frame)
        edit = EditRequest(
            task_prompt=request.task_prompt,
            content_prompt=request.content_prompt,
            seed=request.seed,
            upload=request.upload,
            pixel_scale=request.pixel_scale,
            semantic_scale=request.semantic_scale,
        )
        editor, lock = self._editor(request.editor)
        with lock:  # one call per editor at a time (a local model holds one GPU context)
            reference = editor.make(lr_frame, output_size(session.project.state), edit)
        with session.lock:
            session.project.set_reference(request.frame, reference)
            session.references[request.frame] = reference.image
        return ReferenceResponse(
            request.frame, reference.image, reference.content_hash, reference.provenance
        )

    def reference(self, request: KeyframeRequest) -> ReferenceResponse:
        """The saved Reference of keyframe ``frame``."""
        session = self._session(request.session_id)
        entry = session.project.state.reference(request.frame)
        if entry is None:
            raise KeyframeError(f"frame {request.frame} has no Reference yet; make one first")
        image = session.project.reference_image(request.frame)
        return ReferenceResponse(request.frame, image, entry.content_hash, entry.provenance)

    # Preview and render -------------------------------------------------------------------
    def preview(self, request: PreviewRequest) -> PreviewResponse:
        """One restored frame at ``guidance``. Blocks until computed; a newer preview for the
        same session supersedes this one if it has not started yet (see module docstring).
        """
        return self.submit_preview(request).result()

    def submit_preview(self, request: PreviewRequest) -> Future:
        """``preview`` without blocking: a Future of the PreviewResponse (for async servers)."""
        session = self._session(request.session_id)
        check_int("frame", request.frame, 0, 10**9)
        check_index(request.frame, session)
        check_float("guidance", request.guidance, *GUIDANCE_RANGE)
        waiter: Future = Future()
        with self._wake:
            if session.preview is None:
                session.preview = PreviewSlot(request, [(waiter, request)])
                self._preview_queue.append(session)
            else:
                session.preview.request = request
                session.preview.waiters.append((waiter, request))
            self._wake.notify_all()
        return waiter

    def render(self, request: RenderRequest) -> Iterator[RenderProgress]:
        """Render the session's project; yields progress until the final ``stage="done"``.

        The render runs on the worker whether or not the caller keeps iterating; ``cancel``
        stops it after the current chunk (raising Cancelled here). Resumes finished chunks.
        """
        session = self._session(request.session_id)
        job = self._start_render(session, request)
        return drain(job)

    def cancel(self, request: SessionRequest) -> CancelResponse:
        session = self._session(request.session_id)
        job = session.render
        if job is None:
            return CancelResponse(False)
        job.cancel.set()
        return CancelResponse(True)

    def status(self, request: StatusRequest | None = None) -> WorkerStatus:
        request = request or StatusRequest()
        render = None
        if request.session_id:
            session = self._session(request.session_id)
            job = session.render
            render = job.last if job else session.last_render
        with self._lock:
            sessions = len(self._sessions)
            running = len(self._renders)
        return WorkerStatus(
            engine=self.engine.status(),
            editors=tuple(EDITORS),
            sessions=sessions,
            previews_computed=self.previews_computed,
            renders_running=running,
            render=render,
            editor_status=self._editor_availability() if request.editors else (),
        )

    def get_file(self, request: FileRequest) -> FileResponse:
        """A file of the session's own project folder (refuses paths that leave it)."""
        session = self._session(request.session_id)
        try:
            path = safe_join(session.project.folder, request.path)
        except ProjectError as e:
            raise AccessDenied(str(e)) from e
        if not path.is_file():
            raise ProjectError(f"{request.path} does not exist in this session's project")
        return FileResponse(request.path, str(path), path.stat().st_size)

    def upload_clip(
        self, filename: str, data: Iterator[bytes], *, max_bytes: int | None = None
    ) -> UploadResponse:
        """Store a clip sent by a client in the media store beside the projects (content-
        addressed: the same clip twice is stored once); open it with
        ``OpenClipRequest(clip_path)``. Projects made from it own it: it outlives the upload.

        ``max_bytes``: refuse (TooLarge, nothing kept) a clip larger than this; default
        ``config.max_upload_bytes``. The disk must keep ``config.min_free_bytes`` free.
        """
        limit = self.config.max_upload_bytes if max_bytes is None else max_bytes
        self.uploads_root.mkdir(parents=True, exist_ok=True)
        self.check_upload_space(0)

        def limited() -> Iterator[bytes]:
            size = 0
            for block in data:
                size += len(block)
                if size > limit:
                    raise TooLarge(
                        f"the clip is larger than this worker accepts ({limit / 2**30:.2f} "
                        "GiB); trim it or start the worker with a larger --max-upload"
                    )
                yield block

        target = workspace.store_media(self.projects_root, filename, limited())
        return UploadResponse(str(target), target.stat().st_size)

    def check_upload_space(self, size: int) -> None:
        """Refuse (TooLarge) an upload of ``size`` bytes that would leave less than
        ``config.min_free_bytes`` free on the projects' disk, or exceed ``max_upload_bytes``."""
        if size > self.config.max_upload_bytes:
            raise TooLarge(
                f"the clip ({size / 2**30:.2f} GiB) is larger than this worker accepts "
                f"({self.config.max_upload_bytes / 2**30:.2f} GiB); trim it or start the worker "
                "with a larger --max-upload"
            )
        self.projects_root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.projects_root).free
        if free - size < self.config.min_free_bytes:
            raise TooLarge(
                f"not enough free space for the clip: {free / 2**30:.2f} GiB free, the clip needs "
                f"{size / 2**30:.2f} GiB and {self.config.min_free_bytes / 2**30:.2f} GiB must "
                "stay free"
            )

    def upload_pixel_limit(self, session_id: str) -> int:
        """The most pixels a Reference image uploaded to this session may decode to (checked
        from the image header before decoding)."""
        return upload_pixel_limit(output_size(self._session(session_id).project.state))

    def session_folder(self, session_id: str) -> Path:
        """The project folder of a session (for in-process callers that serve files)."""
        return self._session(session_id).project.folder

    # Lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        """Cancel renders, stop the engine thread, close every session."""
        with self._wake:
            self._closing = True
            sessions = list(self._sessions.values())
            for session in sessions:
                if session.render is not None:
                    session.render.cancel.set()
            self._wake.notify_all()
        self._thread.join(timeout=60)
        for session in sessions:
            with contextlib.suppress(Exception):
                self.close_session(SessionRequest(session.id))

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Internals: sessions ------------------------------------------------------------------
    def _session(self, session_id: str) -> Session:
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            raise SessionNotFound(
                "no open session with that id; it was closed or the worker restarted. Open the "
                "clip again (its project keeps your work)."
            )
        return session

    def _check_clip_allowed(self, clip_path: str) -> None:
        roots = [*self.config.clip_roots, self.uploads_root] if self.config.clip_roots else []
        real = Path(clip_path).resolve()
        if roots and not any(real.is_relative_to(Path(r).resolve()) for r in roots):
            raise AccessDenied(
                f"{clip_path} is outside the folders this worker opens clips from "
                f"({', '.join(str(r) for r in roots)}); upload the clip instead"
            )

    def _reusable(self, request: OpenClipRequest) -> str:
        """With ``reuse``: a project of the clip to reopen instead of a new one ("" = none)."""
        if not (request.reuse and request.clip_path):
            return ""
        with self._lock:
            busy = {*self._opening, *(s.name for s in self._sessions.values())}
        return workspace.find_reusable(
            self.projects_root, request.clip_path, request.owner, busy=busy
        )

    def _project_folder(self, name: str) -> Path:
        if not PROJECT_NAME.match(name):
            raise AccessDenied(
                f"project name {name!r} is refused: use letters, digits, '.', '_' and '-' "
                "(no path separators)"
            )
        self.projects_root.mkdir(parents=True, exist_ok=True)
        try:
            return safe_join(self.projects_root, name)
        except ProjectError as e:
            raise AccessDenied(str(e)) from e

    def _open_or_create(self, folder: Path, clip_path: str) -> tuple[Project, str]:
        if Project.is_project(folder):
            project = Project.open(folder, require_clip=not clip_path)
            if clip_path and not Path(project.state.clip.path).exists():
                # the project's clip moved: relink when the given clip has the same frames
                project.relink_clip(ClipSummary.from_info(media.probe(clip_path)))
            if clip_path and Path(clip_path).resolve() != Path(project.state.clip.path):
                raise ProjectError(
                    f"project {folder.name!r} belongs to {project.state.clip.path}, not "
                    f"{clip_path}; open the clip without a project name to start a new one"
                )
            return project, project.state.clip.path
        if not clip_path:
            raise ProjectError(f"project {folder.name!r} does not exist; give a clip path")
        info = media.probe(clip_path)
        engine_status = self.engine.status()
        project = Project.create(
            folder,
            ClipSummary.from_info(info),
            engine=EngineSettings(engine_status.name, engine_status.model),
            options=self.config.options,
        )
        return project, info.path

    def _session_info(self, session: Session) -> SessionInfo:
        state = session.project.state
        return SessionInfo(
            session_id=session.id,
            project=session.name,
            clip=state.clip,
            keyframes=state.keyframes,
            references=tuple(
                ReferenceInfo(r.frame, r.content_hash, r.provenance) for r in state.references
            ),
            guidance=state.guidance,
            scale=state.options.scale,
            output_size=output_size(state),
            options=state.restore_options(),
            crf=state.output.crf,
            output=state.output,
            **self._result(session.project),
        )

    def _result(self, project: Project) -> dict[str, Any]:
        """The project's last complete render and whether the current settings would redo it."""
        render = project.state.render
        if render is None or not render.complete or not render.output:
            return {}
        output = Path(render.output)
        if not output.is_file() or not output.is_relative_to(project.folder):
            return {}
        current = render.fingerprint == render_fingerprint(project.state, self.engine)
        return {"result": str(output.relative_to(project.folder)), "result_current": current}

    def _editor_availability(self) -> tuple[EditorAvailability, ...]:
        """Each editor's availability (editors are built once and kept, like in ``_editor``)."""
        result = []
        for name in EDITORS:
            try:
                with self._editor_lock:
                    if name not in self._editors:
                        self._editors[name] = (load_editor(name), threading.Lock())
                    editor, _ = self._editors[name]
                reason = editor.availability() or ""
            except SparkVSRError as e:
                reason = str(e)
            result.append(EditorAvailability(name, reason))
        return tuple(result)

    def _editor(self, name: str) -> tuple[Editor, threading.Lock]:
        with self._editor_lock:
            if name not in self._editors:
                self._editors[name] = (load_editor(name), threading.Lock())
            editor, lock = self._editors[name]
        reason = editor.availability()
        if reason is not None:
            raise EditorError(f"editor {name!r} cannot run here: {reason}")
        return editor, lock

    def _start_render(self, session: Session, request: RenderRequest) -> RenderJob:
        with session.lock:
            if session.render is not None:
                raise ProjectError("a render is already running in this session; cancel it first")
            if request.guidance is not None:
                session.project.set_guidance(request.guidance)
            output = request.output or session.project.state.output.path
            try:
                out_path = safe_join(session.project.folder, output)
            except ProjectError as e:
                raise AccessDenied(str(e)) from e
            updates: queue.Queue = queue.Queue()
            cancel = threading.Event()
            job = RenderJob(steps=iter(()), updates=updates, cancel=cancel)

            def report(update: RenderProgress) -> None:
                job.last = update
                updates.put(update)

            job.steps = render_steps(
                self.engine, session.project, output=out_path, progress=report, cancel=cancel.is_set
            )
            session.render = job
        with self._wake:
            self._renders.append(session)
            self._wake.notify_all()
        return job

    # Internals: the engine thread ---------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._wake:
                task = self._next_task()
                while task is None and not self._closing:
                    self._wake.wait(timeout=self._wait_time())
                    task = self._next_task()
                if task is None:  # closing, nothing left to hand out
                    self._fail_pending_previews()
                    return
            kind, session = task
            if kind == "preview":
                self._run_preview(session)
            else:
                self._run_render_step(session)

    def _next_task(self) -> tuple[str, Session] | None:
        """Pick the next engine task (lock held): a due preview first, then a render step."""
        now = time.monotonic()
        for session in list(self._preview_queue):
            if now >= session.last_preview + self.config.preview_interval:
                self._preview_queue.remove(session)
                return "preview", session
        if self._renders:
            session = self._renders.popleft()
            return "render", session
        return None

    def _wait_time(self) -> float | None:
        if not self._preview_queue:
            return None
        due = min(s.last_preview + self.config.preview_interval for s in self._preview_queue)
        return max(0.001, due - time.monotonic())

    def _run_preview(self, session: Session) -> None:
        with self._wake:
            slot, session.preview = session.preview, None
            session.last_preview = time.monotonic()
        if slot is None:
            return
        request = slot.request
        try:
            with session.lock:
                state = session.project.state
                references = {k: v for k, v in session.references.items() if k in state.keyframes}
            options = replace(state.restore_options(), guidance=request.guidance)
            image = engine_preview(
                self.engine,
                session.engine_clip,
                references,
                request.frame,
                options,
                request.viewport,
            )
            self.previews_computed += 1
        except BaseException as e:
            for waiter, _ in slot.waiters:
                waiter.set_exception(e)
            return
        for waiter, asked in slot.waiters:
            waiter.set_result(
                PreviewResponse(request.frame, request.guidance, image, superseded=asked != request)
            )

    def _run_render_step(self, session: Session) -> None:
        job = session.render
        if job is None:
            return
        finished = False
        try:
            if self._closing:
                job.cancel.set()
            next(job.steps)
        except StopIteration:
            finished = True
        except BaseException as e:
            job.updates.put(e)
            finished = True
        if finished:
            with session.lock:
                session.render = None
                session.last_render = job.last
            job.updates.put(DONE)
            return
        with self._wake:
            self._renders.append(session)

    def _fail_pending_previews(self) -> None:
        for session in self._preview_queue:
            slot, session.preview = session.preview, None
            for waiter, _ in slot.waiters if slot else ():
                waiter.set_exception(SparkVSRError("the worker is shutting down"))
        self._preview_queue.clear()
