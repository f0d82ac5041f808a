"""The resident worker: one engine and its editors for the whole life of the process.

API summary (every method takes one request dataclass and returns one response dataclass; the
same methods exist on ``Worker``, ``InProcessClient`` and ``HttpClient``)::

    open_clip(OpenClipRequest(clip_path, project=""))      -> SessionInfo
    close_session(SessionRequest(session_id))              -> SessionInfo
    update_settings(SettingsRequest(session_id, guidance=..., chunk=..., crf=...)) -> SessionInfo
    frame(FrameRequest(session_id, index))                 -> FrameResponse (LR frame, scrub)
    set_keyframe(KeyframeRequest(session_id, frame))       -> KeyframesResponse
    remove_keyframe(KeyframeRequest(session_id, frame))    -> KeyframesResponse
    make_reference(ReferenceRequest(session_id, frame, editor="classic", ...)) -> ReferenceResponse
    reference(KeyframeRequest(session_id, frame))          -> ReferenceResponse (the saved one)
    preview(PreviewRequest(session_id, frame, guidance))   -> PreviewResponse (HR frame)
    render(RenderRequest(session_id, guidance=None))       -> Iterator[RenderProgress]
    cancel(SessionRequest(session_id))                     -> CancelResponse
    status(StatusRequest(session_id=""))                   -> WorkerStatus
    get_file(FileRequest(session_id, path))                -> FileResponse (a local path to read)
    upload_clip(local_path)                                -> UploadResponse (clients: send a
        clip from the client's machine; open it with OpenClipRequest(response.clip_path).
        ``Worker.upload_clip(filename, byte_blocks)`` is the server-side form.)

Images are ``[H, W, 3]`` uint8 RGB numpy arrays (PNG bytes on the wire). Errors are the classes in
``sparkvsr.errors`` with messages meant for the user (over HTTP they are re-raised client-side);
``SessionNotFound`` and ``AccessDenied`` (both ProjectError) say a session id is unknown or a
request names something outside the session. The render's output lands in the project folder
(``RenderRequest.output``, default ``output.mp4``); fetch it with ``get_file``.

How it works:

- One engine thread runs every engine call (previews and render chunks), so the engine and its
  caches are never used from two threads. Renders advance one chunk per turn, and pending
  previews are served between chunks, so the slider stays live while a render runs.
- Previews coalesce: each session has one preview slot. A newer request replaces a queued older
  one (the older caller receives the newer result, ``superseded=True``), and a session computes
  at most one preview per ``preview_interval`` seconds (the first one at once). The last
  guidance always wins.
- Sessions are isolated: ids are unguessable (``secrets``); each session owns its own project
  folder under ``projects_root`` and a project is open in at most one session; files are served
  only from the session's own folder (no ``..``, absolute paths or symlinks out).
- Renders save every finished chunk into the project, so a killed worker resumes the same render
  from the last finished chunk (``render_steps`` in ``sparkvsr.render``).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import queue
import re
import secrets
import shutil
import tempfile
import threading
import time
import types
import typing
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sparkvsr import errors, media
from sparkvsr.engines import load_engine
from sparkvsr.engines.base import Engine, EngineStatus, RestoreOptions
from sparkvsr.errors import EditorError, KeyframeError, ProjectError, SparkVSRError
from sparkvsr.project import (
    ClipSummary,
    EngineSettings,
    Project,
    ProjectState,
    safe_join,
)
from sparkvsr.references import EDITORS, load_editor
from sparkvsr.references.base import DEFAULT_TASK_PROMPT, Editor, EditRequest, Provenance
from sparkvsr.render import RenderProgress, render_steps

PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class SessionNotFound(ProjectError):
    """No open session has this id (closed, expired, or never existed)."""


class AccessDenied(ProjectError):
    """The request names something this session may not touch."""


# ---------------------------------------------------------------------------------------------
# Requests and responses


@dataclass(frozen=True)
class WorkerConfig:
    """How a worker is built.

    engine / engine_config: name from ``ENGINES`` and its keyword configuration.
    projects_root:   folder holding one sub-folder per project.
    options:         restore options for new projects (guidance, chunking, tiling...).
    preview_interval: seconds between two preview computations of one session (coalescing).
    clip_roots:      folders clips may be opened from (empty: anywhere on this machine);
                     uploaded clips (``upload_clip``) are always allowed.
    """

    engine: str = "flow"
    engine_config: dict[str, Any] = field(default_factory=dict)
    projects_root: Path = Path("projects")
    options: RestoreOptions = field(default_factory=RestoreOptions)
    preview_interval: float = 0.5
    clip_roots: tuple[Path, ...] = ()


@dataclass(frozen=True)
class OpenClipRequest:
    """Open a clip in a new session.

    clip_path: the clip on the worker's machine (a video file or a folder of images); may be
               empty when ``project`` names an existing project (its clip is used). Naming an
               existing project whose clip has moved relinks it to ``clip_path`` (same frame
               count and size required).
    project:   a project name (a folder under the worker's projects root): reopened when it
               exists, created otherwise. Empty: a new project named after the clip.
    """

    clip_path: str = ""
    project: str = ""


@dataclass(frozen=True)
class SessionRequest:
    session_id: str


@dataclass(frozen=True)
class ReferenceInfo:
    """A saved Reference, without its pixels."""

    frame: int
    content_hash: str
    provenance: Provenance


@dataclass(frozen=True)
class SessionInfo:
    """An open session: its project, clip, keyframes, References and render settings.

    output_size: (width, height) of References and restored frames; options: the engine
    options renders use (``options.guidance`` equals ``guidance``).
    """

    session_id: str
    project: str
    clip: ClipSummary
    keyframes: tuple[int, ...]
    references: tuple[ReferenceInfo, ...]
    guidance: float
    scale: int
    output_size: tuple[int, int]
    options: RestoreOptions
    crf: int


@dataclass(frozen=True)
class SettingsRequest:
    """Change a session's render settings; None leaves a setting as it is.

    guidance: s for the render; chunk / overlap / tile / tile_overlap / color_fix: engine
    options (see RestoreOptions); crf: H.264 quality of the output (lower is better).
    """

    session_id: str
    guidance: float | None = None
    chunk: int | None = None
    overlap: int | None = None
    tile: int | None = None
    tile_overlap: int | None = None
    color_fix: str | None = None
    crf: int | None = None


@dataclass(frozen=True)
class FrameRequest:
    session_id: str
    index: int


@dataclass(frozen=True)
class FrameResponse:
    """An LR frame as displayed: ``image`` is ``[H, W, 3]`` uint8 RGB."""

    index: int
    image: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class KeyframeRequest:
    session_id: str
    frame: int


@dataclass(frozen=True)
class KeyframesResponse:
    """Pinned keyframes (sorted) and which of them have a Reference."""

    keyframes: tuple[int, ...]
    with_reference: tuple[int, ...]


@dataclass(frozen=True)
class ReferenceRequest:
    """Make a Reference for pinned keyframe ``frame`` with ``editor``.

    upload: the user's own image for the ``upload`` editor, ``[H, W, 3]`` uint8 RGB.
    """

    session_id: str
    frame: int
    editor: str = "classic"
    task_prompt: str = DEFAULT_TASK_PROMPT
    content_prompt: str = ""
    seed: int | None = None
    upload: np.ndarray | None = field(default=None, repr=False)
    pixel_scale: float = 1.0
    semantic_scale: float = 1.0


@dataclass(frozen=True)
class ReferenceResponse:
    """A keyframe's Reference: ``image`` ``[H, W, 3]`` uint8 RGB at the output size."""

    frame: int
    image: np.ndarray = field(repr=False)
    content_hash: str
    provenance: Provenance


@dataclass(frozen=True)
class PreviewRequest:
    """One restored frame at guidance ``guidance`` (not saved to the project)."""

    session_id: str
    frame: int
    guidance: float


@dataclass(frozen=True)
class PreviewResponse:
    """``image``: the restored frame ``[H, W, 3]`` uint8 at ``guidance``. ``superseded``: this
    request was replaced by a newer one before it ran, and this is the newer one's result.
    """

    frame: int
    guidance: float
    image: np.ndarray = field(repr=False)
    superseded: bool = False


@dataclass(frozen=True)
class RenderRequest:
    """Render the whole clip. ``guidance``: set the project's guidance first (None: keep).
    ``output``: file name inside the project folder (empty: the project's output setting).
    """

    session_id: str
    guidance: float | None = None
    output: str = ""


@dataclass(frozen=True)
class CancelResponse:
    """``cancelled``: a render was running and will stop after its current chunk."""

    cancelled: bool


@dataclass(frozen=True)
class StatusRequest:
    """``editors``: also report each editor's availability (the first such call imports the
    editors' libraries, which can take seconds)."""

    session_id: str = ""
    editors: bool = False


@dataclass(frozen=True)
class EditorAvailability:
    """An editor of this worker and, when it cannot run here, why not (empty: it can)."""

    name: str
    reason: str = ""


@dataclass(frozen=True)
class WorkerStatus:
    """The engine, how busy the worker is, and (for a session) its render's last progress.
    ``editor_status``: when asked for (``StatusRequest.editors``), every editor with the reason
    it cannot run here, if any.
    """

    engine: EngineStatus
    editors: tuple[str, ...]
    sessions: int
    previews_computed: int
    renders_running: int
    render: RenderProgress | None = None
    editor_status: tuple[EditorAvailability, ...] = ()


@dataclass(frozen=True)
class UploadResponse:
    """Where an uploaded clip was stored on the worker (give it to ``OpenClipRequest``)."""

    clip_path: str
    size: int


@dataclass(frozen=True)
class FileRequest:
    """A file inside the session's project folder, by relative path (e.g. ``output.mp4``)."""

    session_id: str
    path: str


@dataclass(frozen=True)
class FileResponse:
    """``local_path``: where the caller can read the file on its own machine."""

    path: str
    local_path: str
    size: int


# ---------------------------------------------------------------------------------------------
# Per-session state


@dataclass(eq=False)
class _PreviewSlot:
    """The one queued preview of a session and everyone waiting for it."""

    request: PreviewRequest
    waiters: list[tuple[Future, PreviewRequest]]


@dataclass(eq=False)
class _RenderJob:
    steps: Iterator[RenderProgress]
    updates: queue.Queue
    cancel: threading.Event
    last: RenderProgress | None = None


@dataclass(eq=False)
class Session:
    """What the worker holds for one open session (mutable; guarded by ``lock``)."""

    id: str
    name: str
    project: Project
    scrub_clip: media.Clip  # read by request threads, under ``lock``
    engine_clip: media.Clip  # read only on the engine thread
    references: dict[int, np.ndarray]
    lock: threading.Lock = field(default_factory=threading.Lock)
    preview: _PreviewSlot | None = None
    last_preview: float = float("-inf")
    render: _RenderJob | None = None
    last_render: RenderProgress | None = None  # the last progress of the last render


_DONE = object()


# ---------------------------------------------------------------------------------------------
# The worker


class Worker:
    """Owns one engine, the editors, the sessions and the engine thread. Use as a context
    manager or call ``close()``; see the module docstring for the methods.
    """

    def __init__(self, config: WorkerConfig | None = None, *, engine: Engine | None = None):
        self.config = config or WorkerConfig()
        self.engine = engine or load_engine(self.config.engine, **self.config.engine_config)
        self.projects_root = Path(self.config.projects_root).absolute()
        # "_" cannot start a project name, so uploads never collide with a project
        self.uploads_root = self.projects_root / "_uploads"
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
        name = request.project or _new_project_name(request.clip_path)
        folder = self._project_folder(name)
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
        with session.lock:
            if session.render is not None:
                raise ProjectError("a render is running in this session; cancel it first")
            project = session.project
            if changes:
                project.set_options(replace(project.state.options, **changes))
            if request.guidance is not None:
                project.set_guidance(request.guidance)
            if request.crf is not None:
                project.set_output(replace(project.state.output, crf=request.crf))
        return self._session_info(session)

    def frame(self, request: FrameRequest) -> FrameResponse:
        """The LR frame ``index`` as displayed (for the scrubber)."""
        session = self._session(request.session_id)
        with session.lock:
            image = session.scrub_clip.frame(_check_index(request.index, session))
        return FrameResponse(request.index, image)

    # Keyframes and References -------------------------------------------------------------
    def set_keyframe(self, request: KeyframeRequest) -> KeyframesResponse:
        """Pin ``frame`` (keyframe rules: inside the clip, at least 4 frames apart)."""
        session = self._session(request.session_id)
        with session.lock:
            state = session.project.add_keyframe(request.frame)
        return _keyframes(state)

    def remove_keyframe(self, request: KeyframeRequest) -> KeyframesResponse:
        """Unpin ``frame``; its Reference is kept and returns if the frame is pinned again."""
        session = self._session(request.session_id)
        with session.lock:
            state = session.project.remove_keyframe(request.frame)
        return _keyframes(state)

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
            reference = editor.make(lr_frame, _output_size(session.project.state), edit)
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
        session = self._session(request.session_id)
        _check_index(request.frame, session)
        replace(self.config.options, guidance=request.guidance)  # validates the range
        waiter: Future = Future()
        with self._wake:
            if session.preview is None:
                session.preview = _PreviewSlot(request, [(waiter, request)])
                self._preview_queue.append(session)
            else:
                session.preview.request = request
                session.preview.waiters.append((waiter, request))
            self._wake.notify_all()
        return waiter.result()

    def render(self, request: RenderRequest) -> Iterator[RenderProgress]:
        """Render the session's project; yields progress until the final ``stage="done"``.

        The render runs on the worker whether or not the caller keeps iterating; ``cancel``
        stops it after the current chunk (raising Cancelled here). Resumes finished chunks.
        """
        session = self._session(request.session_id)
        job = self._start_render(session, request)
        return _drain(job)

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

    def upload_clip(self, filename: str, data: Iterator[bytes]) -> UploadResponse:
        """Store a clip sent by a remote client; open it with ``OpenClipRequest(clip_path)``."""
        safe = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(filename).name).strip("-.") or "clip"
        folder = self.uploads_root / secrets.token_hex(8)
        folder.mkdir(parents=True)
        target = folder / safe
        size = 0
        try:
            with open(target, "wb") as out:
                for block in data:
                    out.write(block)
                    size += len(block)
        except OSError as e:
            shutil.rmtree(folder, ignore_errors=True)
            raise ProjectError(f"cannot store the uploaded clip {safe}: {e}") from e
        return UploadResponse(str(target), size)

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
            output_size=_output_size(state),
            options=state.restore_options(),
            crf=state.output.crf,
        )

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

    def _start_render(self, session: Session, request: RenderRequest) -> _RenderJob:
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
            job = _RenderJob(steps=iter(()), updates=updates, cancel=cancel)

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
            image = self.engine.preview(session.engine_clip, references, request.frame, options)
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
            job.updates.put(_DONE)
            return
        with self._wake:
            self._renders.append(session)

    def _fail_pending_previews(self) -> None:
        for session in self._preview_queue:
            slot, session.preview = session.preview, None
            for waiter, _ in slot.waiters if slot else ():
                waiter.set_exception(SparkVSRError("the worker is shutting down"))
        self._preview_queue.clear()


def _drain(job: _RenderJob) -> Iterator[RenderProgress]:
    while True:
        item = job.updates.get()
        if item is _DONE:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def _new_project_name(clip_path: str) -> str:
    if not clip_path:
        raise ProjectError("give a clip path or the name of an existing project")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(clip_path).stem).strip("-.") or "clip"
    return f"{stem[:60]}-{secrets.token_hex(4)}"


def _check_index(index: int, session: Session) -> int:
    total = session.project.state.clip.num_frames
    if not 0 <= index < total:
        raise KeyframeError(f"frame {index} is outside the clip: valid frames are 0 to {total - 1}")
    return index


def _keyframes(state: ProjectState) -> KeyframesResponse:
    with_reference = tuple(k for k in state.keyframes if state.reference(k) is not None)
    return KeyframesResponse(state.keyframes, with_reference)


def _output_size(state: ProjectState) -> tuple[int, int]:
    """(width, height) References are made at: the engine's scale times the LR size."""
    scale = state.options.scale
    return state.clip.width * scale, state.clip.height * scale


# ---------------------------------------------------------------------------------------------
# Clients


class WorkerClient(Protocol):
    """What the UI talks to: the Worker's methods, in-process or over HTTP."""

    def open_clip(self, request: OpenClipRequest) -> SessionInfo: ...
    def close_session(self, request: SessionRequest) -> SessionInfo: ...
    def update_settings(self, request: SettingsRequest) -> SessionInfo: ...
    def frame(self, request: FrameRequest) -> FrameResponse: ...
    def set_keyframe(self, request: KeyframeRequest) -> KeyframesResponse: ...
    def remove_keyframe(self, request: KeyframeRequest) -> KeyframesResponse: ...
    def make_reference(self, request: ReferenceRequest) -> ReferenceResponse: ...
    def reference(self, request: KeyframeRequest) -> ReferenceResponse: ...
    def preview(self, request: PreviewRequest) -> PreviewResponse: ...
    def render(self, request: RenderRequest) -> Iterator[RenderProgress]: ...
    def cancel(self, request: SessionRequest) -> CancelResponse: ...
    def status(self, request: StatusRequest | None = None) -> WorkerStatus: ...
    def get_file(self, request: FileRequest) -> FileResponse: ...
    def upload_clip(self, local_path: str | Path) -> UploadResponse: ...
    def close(self) -> None: ...


METHODS: dict[str, tuple[type, type | None]] = {
    "open_clip": (OpenClipRequest, SessionInfo),
    "close_session": (SessionRequest, SessionInfo),
    "update_settings": (SettingsRequest, SessionInfo),
    "frame": (FrameRequest, FrameResponse),
    "set_keyframe": (KeyframeRequest, KeyframesResponse),
    "remove_keyframe": (KeyframeRequest, KeyframesResponse),
    "make_reference": (ReferenceRequest, ReferenceResponse),
    "reference": (KeyframeRequest, ReferenceResponse),
    "preview": (PreviewRequest, PreviewResponse),
    "cancel": (SessionRequest, CancelResponse),
    "status": (StatusRequest, WorkerStatus),
}
"""Request/response types of the plain (non-streaming) methods; ``render`` streams
RenderProgress and ``get_file`` transfers bytes."""


class InProcessClient:
    """The default client: calls a Worker in this process (built from ``config`` if not given)."""

    def __init__(self, worker: Worker | None = None, config: WorkerConfig | None = None):
        self.worker = worker or Worker(config)
        self._owns_worker = worker is None

    def open_clip(self, request: OpenClipRequest) -> SessionInfo:
        return self.worker.open_clip(request)

    def close_session(self, request: SessionRequest) -> SessionInfo:
        return self.worker.close_session(request)

    def update_settings(self, request: SettingsRequest) -> SessionInfo:
        return self.worker.update_settings(request)

    def frame(self, request: FrameRequest) -> FrameResponse:
        return self.worker.frame(request)

    def set_keyframe(self, request: KeyframeRequest) -> KeyframesResponse:
        return self.worker.set_keyframe(request)

    def remove_keyframe(self, request: KeyframeRequest) -> KeyframesResponse:
        return self.worker.remove_keyframe(request)

    def make_reference(self, request: ReferenceRequest) -> ReferenceResponse:
        return self.worker.make_reference(request)

    def reference(self, request: KeyframeRequest) -> ReferenceResponse:
        return self.worker.reference(request)

    def preview(self, request: PreviewRequest) -> PreviewResponse:
        return self.worker.preview(request)

    def render(self, request: RenderRequest) -> Iterator[RenderProgress]:
        return self.worker.render(request)

    def cancel(self, request: SessionRequest) -> CancelResponse:
        return self.worker.cancel(request)

    def status(self, request: StatusRequest | None = None) -> WorkerStatus:
        return self.worker.status(request)

    def get_file(self, request: FileRequest) -> FileResponse:
        return self.worker.get_file(request)

    def upload_clip(self, local_path: str | Path) -> UploadResponse:
        """In process the worker reads the file where it is: nothing is copied."""
        path = Path(local_path)
        if not path.exists():
            raise ProjectError(f"{path} does not exist")
        size = path.stat().st_size if path.is_file() else 0
        return UploadResponse(str(path.absolute()), size)

    def close(self) -> None:
        if self._owns_worker:
            self.worker.close()

    def __enter__(self) -> InProcessClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HttpClient:
    """The same methods over HTTP to ``python -m sparkvsr worker`` (see sparkvsr/server.py).

    base_url: e.g. ``http://127.0.0.1:7861``; token: the worker's ``--token``. Files fetched with
    ``get_file`` are downloaded under ``download_dir`` (a temp folder by default).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 600.0,
        download_dir: str | Path | None = None,
    ):
        import httpx  # only HTTP clients need it

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)
        self._httpx = httpx
        self._downloads = Path(download_dir or tempfile.mkdtemp(prefix="sparkvsr-downloads-"))
        self.base_url = base_url

    def _call(self, method: str, request: Any) -> Any:
        response_type = METHODS[method][1]
        try:
            reply = self._http.post(f"/api/{method}", json=to_wire(request))
        except self._httpx.HTTPError as e:
            raise SparkVSRError(f"cannot reach the worker at {self.base_url}: {e}") from e
        _raise_for_error(reply.status_code, reply.content)
        return from_wire(response_type, reply.json())

    def open_clip(self, request: OpenClipRequest) -> SessionInfo:
        return self._call("open_clip", request)

    def close_session(self, request: SessionRequest) -> SessionInfo:
        return self._call("close_session", request)

    def update_settings(self, request: SettingsRequest) -> SessionInfo:
        return self._call("update_settings", request)

    def frame(self, request: FrameRequest) -> FrameResponse:
        return self._call("frame", request)

    def set_keyframe(self, request: KeyframeRequest) -> KeyframesResponse:
        return self._call("set_keyframe", request)

    def remove_keyframe(self, request: KeyframeRequest) -> KeyframesResponse:
        return self._call("remove_keyframe", request)

    def make_reference(self, request: ReferenceRequest) -> ReferenceResponse:
        return self._call("make_reference", request)

    def reference(self, request: KeyframeRequest) -> ReferenceResponse:
        return self._call("reference", request)

    def preview(self, request: PreviewRequest) -> PreviewResponse:
        return self._call("preview", request)

    def cancel(self, request: SessionRequest) -> CancelResponse:
        return self._call("cancel", request)

    def status(self, request: StatusRequest | None = None) -> WorkerStatus:
        return self._call("status", request or StatusRequest())

    def render(self, request: RenderRequest) -> Iterator[RenderProgress]:
        """Streams progress lines (NDJSON) from the worker; raises the worker's error, if any."""
        try:
            with self._http.stream("POST", "/api/render", json=to_wire(request)) as reply:
                if reply.status_code != 200:
                    _raise_for_error(reply.status_code, reply.read())
                for line in reply.iter_lines():
                    if not line.strip():
                        continue
                    data = json.loads(line)
                    if "error" in data:
                        _raise_for_error(500, line.encode())
                    yield from_wire(RenderProgress, data)
        except self._httpx.HTTPError as e:
            raise SparkVSRError(f"lost the worker at {self.base_url} during a render: {e}") from e

    def get_file(self, request: FileRequest) -> FileResponse:
        """Download a project file (streamed to disk); ``local_path`` is the downloaded copy."""
        # The worker refuses unsafe paths; the local copy keeps only the file name.
        local = self._downloads / secrets.token_hex(4) / Path(request.path).name
        local.parent.mkdir(parents=True, exist_ok=True)
        params = {"session_id": request.session_id, "path": request.path}
        try:
            with self._http.stream("GET", "/api/file", params=params) as reply:
                if reply.status_code != 200:
                    _raise_for_error(reply.status_code, reply.read())
                with open(local, "wb") as out:
                    for block in reply.iter_bytes(1 << 20):
                        out.write(block)
        except self._httpx.HTTPError as e:
            raise SparkVSRError(f"cannot reach the worker at {self.base_url}: {e}") from e
        return FileResponse(request.path, str(local), local.stat().st_size)

    def upload_clip(self, local_path: str | Path) -> UploadResponse:
        """Send a clip file from this machine to the worker (streamed)."""
        path = Path(local_path)
        if not path.is_file():
            raise ProjectError(f"{path} is not a file; upload a video file")

        def blocks() -> Iterator[bytes]:
            with open(path, "rb") as source:
                while block := source.read(1 << 20):
                    yield block

        try:
            reply = self._http.post(
                "/api/upload_clip", params={"filename": path.name}, content=blocks()
            )
        except self._httpx.HTTPError as e:
            raise SparkVSRError(f"cannot reach the worker at {self.base_url}: {e}") from e
        _raise_for_error(reply.status_code, reply.content)
        return from_wire(UploadResponse, reply.json())

    def close(self) -> None:
        self._http.close()
        shutil.rmtree(self._downloads, ignore_errors=True)

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _raise_for_error(status: int, body: bytes) -> None:
    if status == 200:
        return
    try:
        data = json.loads(body)
        name, message = data["error"], data["message"]
    except (ValueError, KeyError, TypeError):
        raise SparkVSRError(f"the worker answered HTTP {status}: {body[:300]!r}") from None
    error_class = _ERROR_CLASSES.get(name, SparkVSRError)
    raise error_class(message)


_ERROR_CLASSES: dict[str, type[SparkVSRError]] = {
    name: cls
    for name, cls in {**vars(errors), **globals()}.items()
    if isinstance(cls, type) and issubclass(cls, SparkVSRError)
}


# ---------------------------------------------------------------------------------------------
# Wire form: dataclasses <-> JSON, arrays as PNG (uint8 images) or npz bytes, never JSON lists


def to_wire(value: Any) -> Any:
    """A JSON-ready form of a request/response (dataclasses, arrays, bytes, tuples, paths)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_wire(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, np.ndarray):
        return _array_to_wire(value)
    if isinstance(value, bytes):
        return {"bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, tuple | list):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def from_wire(kind: Any, data: Any) -> Any:
    """Rebuild a value of type ``kind`` from its wire form (the inverse of ``to_wire``)."""
    if data is None:
        return None
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        return from_wire(options[0], data) if len(options) == 1 else data
    if kind is np.ndarray:
        return _array_from_wire(data)
    if kind is bytes:
        return base64.b64decode(data["bytes"])
    if origin is tuple:
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_wire(args[0], v) for v in data)
        return tuple(from_wire(a, v) for a, v in zip(args, data))
    if origin is dict:
        return dict(data)
    if isinstance(kind, type) and is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        values = {
            f.name: from_wire(hints[f.name], data[f.name]) for f in fields(kind) if f.name in data
        }
        return kind(**values)
    if kind is Path:
        return Path(data)
    if kind is float:
        return float(data)
    return data


def _array_to_wire(array: np.ndarray) -> dict[str, str]:
    if array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
        return {"png": base64.b64encode(buffer.getvalue()).decode("ascii")}
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return {"npy": base64.b64encode(buffer.getvalue()).decode("ascii")}


def _array_from_wire(data: dict[str, str]) -> np.ndarray:
    if "png" in data:
        from PIL import Image

        with Image.open(io.BytesIO(base64.b64decode(data["png"]))) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    return np.load(io.BytesIO(base64.b64decode(data["npy"])), allow_pickle=False)
