"""The Worker: one engine, the editors, the sessions and their clips, Keyframes and References,
previews and status (see the package docstring for its methods). Its renders, stored files and
projects, lifetime and engine thread are the mixins in ``rendering``, ``storage``, ``lifetime`` and
``engine_thread``; their state lives here, in ``Worker.__init__``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from sparkvsr import media, workspace
from sparkvsr.engines import load_engine
from sparkvsr.engines.base import Engine, EngineStatus
from sparkvsr.errors import EditorError, KeyframeError, ProjectError, SparkVSRError
from sparkvsr.media.proxy import make_proxy
from sparkvsr.project import ClipSummary, EngineSettings, Project, safe_join
from sparkvsr.references import EDITORS, load_editor
from sparkvsr.references.base import Editor, EditRequest
from sparkvsr.render import render_fingerprint
from sparkvsr.worker.engine_thread import EngineThread, neighbour_requests
from sparkvsr.worker.jobs import RenderJob
from sparkvsr.worker.lifetime import Lifetime
from sparkvsr.worker.limits import (
    GUIDANCE_RANGE,
    RequestError,
    check_float,
    check_int,
    check_settings,
)
from sparkvsr.worker.previews import PreviewCache, PreviewSlot, preview_key
from sparkvsr.worker.rendering import Rendering
from sparkvsr.worker.requests import (
    AccessDenied,
    ClipMediaInfo,
    EditorAvailability,
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
    SessionInfo,
    SessionNotFound,
    SessionRequest,
    SettingsRequest,
    StatusRequest,
    WorkerConfig,
    WorkerStatus,
)
from sparkvsr.worker.sessions import (
    PROJECT_NAME,
    OpenProject,
    Session,
    check_index,
    keyframes_response,
    new_project_name,
    output_size,
)
from sparkvsr.worker.storage import Storage

OUTPUT_FIELDS = ("crf", "codec", "preset", "audio", "ten_bit")
"""SettingsRequest fields that go to the project's OutputSettings."""


class Worker(Rendering, Storage, Lifetime, EngineThread):
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
        self.previews_warmed = 0  # neighbours made while idle (see _run_warm)
        self._busy_until = 0.0  # when the engine thread last finished real work
        self._editors: dict[str, tuple[Editor, threading.Lock]] = {}
        self._editor_lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._projects: dict[str, OpenProject] = {}
        self._opening: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._preview_queue: deque[Session] = deque()
        self._renders: deque[tuple[OpenProject, RenderJob]] = deque()
        self._previews_in_a_row = 0
        self._round: deque[Session] = deque()  # the rest of the current preview round
        self._last_group: tuple = ()
        self._clips_to_close: list[media.Clip] = []
        self._engine_chores: list[Callable[[], None]] = []
        self._encoders: set[threading.Thread] = set()
        self.previews = PreviewCache(self.config.preview_cache_bytes)
        # Clip proxies (player video, filmstrip): one at a time, in the background
        self._proxies: dict[tuple[str, str], Future] = {}
        self._proxy_pool: ThreadPoolExecutor | None = None
        self._closing = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sparkvsr-engine", daemon=True)
        self._thread.start()
        self._reaper = threading.Thread(target=self._reap, name="sparkvsr-reaper", daemon=True)
        self._reaper.start()

    # Sessions -----------------------------------------------------------------------------
    def open_clip(self, request: OpenClipRequest) -> SessionInfo:
        """Open (or reopen) a project in a new session. The project folder is created under
        ``projects_root``. A project open in another session is refused unless
        ``request.take_over`` (that session is closed); a project whose render still runs with
        no session (its tab was closed) is joined, and the render can be followed (``attach``).
        Another process writing the project (CLI, batch, another worker) is refused by its lock,
        naming it.
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
        session_id = secrets.token_urlsafe(24)
        # 1. reserve the project: join the open one, or mark it as being opened
        with self._lock:
            shared = self._projects.get(name)
            holders = [self._sessions[i] for i in shared.sessions] if shared else []
            if name in self._opening or (holders and not request.take_over):
                raise AccessDenied(
                    f"project {name!r} is open in another session; close that session first, "
                    "open it with take_over, or open the clip as a new project"
                )
            if shared is None:
                self._opening.add(name)  # so two opens cannot race while the probe runs
            else:
                shared.sessions.add(session_id)  # keeps it open while the clips open
        for holder in holders:
            self._end_session(holder)
        # 2. open the project (taking its writer lock) unless it is open already
        if shared is None:
            try:
                project, _ = self._open_or_create(folder, request.clip_path)
                shared = OpenProject(name, project, project.reference_images(), {session_id})
                with self._lock:
                    self._projects[name] = shared
            finally:
                with self._lock:
                    self._opening.discard(name)
        # 3. the session's own clip readers
        try:
            clip_path = shared.project.state.clip.path
            if request.clip_path and Path(request.clip_path).resolve() != Path(clip_path):
                raise ProjectError(
                    f"project {name!r} belongs to {clip_path}, not {request.clip_path}; open the "
                    "clip without a project name to start a new one"
                )
            if reused and not (
                workspace.may_open(folder, request.owner)
                or workspace.is_pristine(shared.project.state)
            ):
                raise AccessDenied(f"project {name!r} belongs to another browser")
            if request.owner and workspace.project_owner(folder) != workspace.owner_hash(
                request.owner
            ):
                # a new project, or an untouched one reused: it is the caller's from now on
                workspace.set_owner(folder, request.owner)
            scrub_clip = media.open_clip(clip_path)
            try:
                engine_clip = media.open_clip(clip_path)
            except BaseException:
                scrub_clip.close()
                raise
        except BaseException:
            with self._lock:
                shared.sessions.discard(session_id)
            self._release_if_unused(shared)
            raise
        session = Session(session_id, shared, scrub_clip, engine_clip)
        with self._lock:
            self._sessions[session.id] = session
        return self._session_info(session)

    def close_session(self, request: SessionRequest) -> SessionInfo:
        """Close a session at once: its clip readers, queued previews and, when no other session
        or render needs it, its project (writer lock, References, caches) are released. A render
        of the project keeps running (re-open the project to follow it, or cancel it first);
        the project stays on disk.
        """
        session = self._session(request.session_id)
        info = self._session_info(session)
        self._end_session(session)
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
        with session.shared.lock:  # a running render keeps the settings it started with
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
        with session.shared.lock:
            state = session.project.set_reference(request.frame, reference)
            session.references[request.frame] = reference.image
        entry = state.reference(request.frame)
        return ReferenceResponse(
            request.frame,
            reference.image,
            reference.content_hash,
            reference.provenance,
            raw_file=entry.raw_file if entry is not None else "",
        )

    def reference(self, request: KeyframeRequest) -> ReferenceResponse:
        """The saved Reference of keyframe ``frame``."""
        session = self._session(request.session_id)
        entry = session.project.state.reference(request.frame)
        if entry is None:
            raise KeyframeError(f"frame {request.frame} has no Reference yet; make one first")
        image = session.project.reference_image(request.frame)
        return ReferenceResponse(
            request.frame, image, entry.content_hash, entry.provenance, raw_file=entry.raw_file
        )

    def clip_media(self, request: SessionRequest) -> ClipMediaInfo:
        """The clip's proxy video and filmstrip for the studio (``media.proxy``). The first call
        for a clip starts making them on a background thread at the lowest CPU priority (one
        clip at a time; previews and renders go first); later calls say "making" until they are
        "ready" (then they are files of the project, reused on every reopen)."""
        session = self._session(request.session_id)
        folder = session.project.folder
        clip_path = session.project.state.clip.path
        key = (str(folder), clip_path)
        with self._lock:
            future = self._proxies.get(key)
            if future is None:
                if self._proxy_pool is None:
                    self._proxy_pool = ThreadPoolExecutor(1, thread_name_prefix="sparkvsr-proxy")
                future = self._proxy_pool.submit(self._make_proxy, clip_path, folder)
                self._proxies[key] = future
        if not future.done():
            return ClipMediaInfo("making")
        error = future.exception()
        if error is not None:
            return ClipMediaInfo("failed", message=str(error))
        files = future.result()
        return ClipMediaInfo("ready", files.video, files.filmstrip, files.frames, files.thumb_width)

    def _make_proxy(self, clip_path: str, folder: Path) -> Any:
        # Linux niceness is per thread: this one yields the CPU to previews and renders.
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        with media.open_clip(clip_path) as clip:
            return make_proxy(clip, folder, cancel=self._stopped)

    # Previews and status ------------------------------------------------------------------
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
        key = self._preview_key(session, request)
        cached = self.previews.get(key)
        if cached is not None:  # the same frame of the same clip and settings, from any session
            waiter.set_result(PreviewResponse(request.frame, request.guidance, cached))
            with self._wake:  # stepping on: the next neighbours are made while idle
                session.warm = neighbour_requests(request, session.project.state.clip.num_frames)
                self._busy_until = time.monotonic()
                self._wake.notify_all()
            return waiter
        with self._wake:
            if session.closed:
                raise SessionNotFound("the session was closed; open the clip again")
            if session.preview is None:
                session.preview = PreviewSlot(request, [(waiter, request)])
                self._preview_queue.append(session)
            else:
                session.preview.request = request
                session.preview.waiters.append((waiter, request))
            self._wake.notify_all()
        return waiter

    def status(self, request: StatusRequest | None = None) -> WorkerStatus:
        request = request or StatusRequest()
        render = None
        if request.session_id:
            session = self._session(request.session_id)
            job = session.shared.job
            render = job.last if job else None
        with self._lock:
            sessions = len(self._sessions)
            running = sum(1 for p in self._projects.values() if p.rendering)
        return WorkerStatus(
            engine=self._engine_status(),
            editors=tuple(EDITORS),
            sessions=sessions,
            previews_computed=self.previews_computed,
            renders_running=running,
            render=render,
            editor_status=self._editor_availability() if request.editors else (),
        )

    # Internals: sessions ------------------------------------------------------------------
    def _session(self, session_id: str) -> Session:
        with self._lock:
            session = self._sessions.get(session_id) if isinstance(session_id, str) else None
            if session is not None:
                session.last_used = time.monotonic()
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
            busy = {*self._opening, *self._projects}
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
            project = Project.open(folder, require_clip=not clip_path, lock=LOCK_PURPOSE)
            try:
                if clip_path and not Path(project.state.clip.path).exists():
                    # the project's clip moved: relink when the given clip has the same frames
                    project.relink_clip(ClipSummary.from_info(media.probe(clip_path)))
                if clip_path and Path(clip_path).resolve() != Path(project.state.clip.path):
                    raise ProjectError(
                        f"project {folder.name!r} belongs to {project.state.clip.path}, not "
                        f"{clip_path}; open the clip without a project name to start a new one"
                    )
            except BaseException:
                project.close()
                raise
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
            lock=LOCK_PURPOSE,
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
        """The project's last complete render and range render, and whether the current
        settings would redo them."""
        fingerprint = None
        found: dict[str, Any] = {}
        for record, prefix in ((project.state.render, ""), (project.state.range_render, "range_")):
            if record is None or not record.complete or not record.output:
                continue
            output = Path(record.output)
            if not output.is_file() or not output.is_relative_to(project.folder):
                continue
            if fingerprint is None:
                fingerprint = render_fingerprint(project.state, self.engine)
            found[f"{prefix}result"] = str(output.relative_to(project.folder))
            found[f"{prefix}current" if prefix else "result_current"] = (
                record.fingerprint == fingerprint
            )
            if prefix:
                found["range_frames"] = (record.start, record.stop)
        return found

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

    def _engine_status(self) -> EngineStatus:
        # The engine thread may change the engine's caches while this reads them.
        for _ in range(5):
            try:
                return self.engine.status()
            except RuntimeError:
                time.sleep(0.001)
        return self.engine.status()

    def _preview_key(self, session: Session, request: PreviewRequest) -> tuple:
        # the same frame seen at another size or zoom is another image
        key = preview_key(
            session.engine_clip.identity, session.project.state, request.frame, request.guidance
        )
        return (*key, request.viewport)


LOCK_PURPOSE = "the SparkVSR worker"
