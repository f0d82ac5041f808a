"""The Worker: one engine, the editors, the sessions and the engine thread (see the package
docstring for its methods)."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import secrets
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
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
from sparkvsr.render import (
    RenderProgress,
    range_name,
    render_fingerprint,
    render_range_steps,
    render_steps,
)
from sparkvsr.viewport import engine_preview
from sparkvsr.worker.jobs import RenderJob
from sparkvsr.worker.limits import (
    GUIDANCE_RANGE,
    RequestError,
    TooLarge,
    check_float,
    check_int,
    check_range,
    check_settings,
    upload_pixel_limit,
)
from sparkvsr.worker.previews import PreviewCache, PreviewSlot, preview_key
from sparkvsr.worker.requests import (
    PROJECT_ACTIONS,
    AccessDenied,
    CancelResponse,
    ClipMediaInfo,
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
    ProjectActionRequest,
    ProjectActionResponse,
    ProjectsRequest,
    ProjectsResponse,
    ReferenceInfo,
    ReferenceRequest,
    ReferenceResponse,
    RenderJobInfo,
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
    OpenProject,
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
        key = self._preview_key(session, request)
        cached = self.previews.get(key)
        if cached is not None:  # the same frame of the same clip and settings, from any session
            waiter.set_result(PreviewResponse(request.frame, request.guidance, cached))
            with self._wake:  # stepping on: the next neighbours are made while idle
                session.warm = _neighbour_requests(request, session.project.state.clip.num_frames)
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

    # Projects -----------------------------------------------------------------------------
    def projects(self, request: ProjectsRequest) -> ProjectsResponse:
        """The projects the caller may open, most recently changed first."""
        listed = workspace.list_projects(self.projects_root, request.owner)
        return ProjectsResponse(tuple(listed))

    def project_action(self, request: ProjectActionRequest) -> ProjectActionResponse:
        """Rename, duplicate, delete a project, or clear its caches (finished renders stay).
        The project must be the caller's and not open in any session."""
        if request.action not in PROJECT_ACTIONS:
            raise RequestError(
                f"action {request.action!r} is unknown; choose one of {', '.join(PROJECT_ACTIONS)}"
            )
        folder = self._project_folder(request.project)
        if not Project.is_project(folder):
            raise ProjectError(f"there is no project named {request.project!r}")
        if not workspace.may_open(folder, request.owner):
            raise AccessDenied(f"project {request.project!r} belongs to another browser")
        new_name = request.new_name.strip()
        if request.action in ("rename", "duplicate"):
            self._project_folder(new_name)  # the name rule
        with self._lock:
            busy = {*self._opening, *(s.name for s in self._sessions.values())}
            # a copy may be taken of an open project (its manifest is replaced atomically)
            open_here = request.project in busy and request.action != "duplicate"
            if open_here or new_name in busy:
                raise ProjectError(
                    f"project {request.project!r} is open; close it (or open another project "
                    "in its tab) first"
                )
            held = request.project not in busy
            if held:
                self._opening.add(request.project)
        try:
            if request.action == "rename":
                workspace.rename_project(self.projects_root, request.project, new_name)
                return ProjectActionResponse(new_name)
            if request.action == "duplicate":
                workspace.duplicate_project(self.projects_root, request.project, new_name)
                return ProjectActionResponse(new_name)
            if request.action == "delete":
                freed = workspace.delete_project(self.projects_root, request.project)
                return ProjectActionResponse("", freed)
            freed = workspace.clear_caches(folder)
            return ProjectActionResponse(request.project, freed)
        finally:
            if held:
                with self._lock:
                    self._opening.discard(request.project)

    # Lifetime -----------------------------------------------------------------------------
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
            if frames is None:
                job.steps = render_steps(
                    self.engine,
                    shared.project,
                    output=out_path,
                    progress=job.publish,
                    cancel=job.cancel.is_set,
                )
            else:
                job.steps = render_range_steps(
                    self.engine,
                    shared.project,
                    frames,
                    output=out_path,
                    progress=job.publish,
                    cancel=job.cancel.is_set,
                )
            shared.job = job
        with self._wake:
            self._renders.append((shared, job))
            self._wake.notify_all()
        return job

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
                _trim_heap()  # after the engine dropped its caches, or their pages stay

            with self._wake:  # the engine's caches belong to the engine thread
                self._engine_chores.append(release_and_trim)
                self._wake.notify_all()
        gc.collect()
        _trim_heap()

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
            with session.shared.lock:
                state = session.project.state
                references = {k: v for k, v in session.references.items() if k in state.keyframes}
            key = self._preview_key(session, request)
            image = self.previews.get(key)
            if image is None:
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
                self.previews.put(key, image)
                session.warm = _neighbour_requests(request, state.clip.num_frames)
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
            with session.shared.lock:
                state = session.project.state
                references = {k: v for k, v in session.references.items() if k in state.keyframes}
            key = self._preview_key(session, request)
            if self.previews.get(key) is None:
                options = replace(state.restore_options(), guidance=request.guidance)
                image = engine_preview(
                    self.engine,
                    session.engine_clip,
                    references,
                    request.frame,
                    options,
                    request.viewport,
                )
                self.previews_warmed += 1
                self.previews.put(key, image)

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


LOCK_PURPOSE = "the SparkVSR worker"
# Seconds the engine stays idle after real work before it makes neighbours of the last preview:
# the caller's own handling of that preview (encoding, sending, showing it) gets the two cores
# first, and a request that follows at once does not wait for a neighbour
WARM_GRACE = 0.25


def _neighbour_requests(request: PreviewRequest, num_frames: int) -> list[PreviewRequest]:
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


def _trim_heap() -> None:
    """Hand freed heap pages back to the system (glibc keeps them otherwise), so the worker's
    memory returns to its idle size after sessions close."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
