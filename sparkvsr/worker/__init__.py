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
    attach(SessionRequest(session_id))                     -> Iterator[RenderProgress] (follow
        the project's running or last render from its start, e.g. after a reload)
    render_job(SessionRequest(session_id))                 -> RenderJobInfo (state, progress)
    clip_media(SessionRequest(session_id))                 -> ClipMediaInfo (the clip's proxy
        video and filmstrip, made once in the background; "making" until ready)
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
  caches are never used from two threads. Renders advance one chunk per turn; previews are
  served round-robin between sessions, a render step after each round, so the slider stays live
  while a render runs. The final encode of a render runs on its own thread, cancellable between
  frames; control calls (status, cancel, close, render_job) never wait for the engine.
- Previews coalesce: each session has one preview slot. A newer request replaces a queued older
  one (the older caller receives the newer result, ``superseded=True``), and a session computes
  at most one preview per ``preview_interval`` seconds (the first one at once). The last
  guidance always wins. Finished previews are cached for every session of the same clip.
- Sessions are isolated: ids are unguessable (``secrets``); each session owns its own project
  folder under ``projects_root`` and a project is open in at most one session; files are served
  only from the session's own folder (no ``..``, absolute paths or symlinks out). Idle sessions
  close after ``idle_timeout`` (never while their project renders).
- One writer per project: an open project holds its folder's lock (``sparkvsr.project_lock``),
  so the CLI, batch or another worker cannot write it meanwhile (and vice versa).
- Renders are jobs of the project, not of the caller: they run on when the caller stops
  iterating or closes its session, can be followed again (``attach``) and cancelled from any
  session of the project. They save every finished chunk, so a killed worker resumes the same
  render from the last finished chunk (``render_steps`` in ``sparkvsr.render``).

Modules: ``requests`` (request/response types, config, errors), ``limits`` (ranges and
sizes), ``sessions`` (per-session and per-project state), ``previews`` (coalescing slots, shared
cache), ``jobs`` (render jobs), ``core`` (the Worker: sessions, Keyframes and References,
previews, status) with its mixins ``rendering`` (render calls), ``storage`` (files, uploads,
projects), ``lifetime`` (closing, reaping, releasing memory) and ``engine_thread`` (the engine
thread's tasks), ``clients`` (in-process and HTTP clients), ``wire`` (JSON wire form).
"""

from sparkvsr.worker.clients import METHODS, HttpClient, InProcessClient, WorkerClient
from sparkvsr.worker.core import Worker
from sparkvsr.worker.limits import RequestError, TooLarge
from sparkvsr.worker.requests import (
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
from sparkvsr.worker.sessions import OpenProject, Session
from sparkvsr.worker.wire import from_wire, to_wire

__all__ = [
    "METHODS",
    "AccessDenied",
    "CancelResponse",
    "ClipMediaInfo",
    "EditorAvailability",
    "FileRequest",
    "FileResponse",
    "FrameRequest",
    "FrameResponse",
    "HttpClient",
    "InProcessClient",
    "KeyframeRequest",
    "KeyframesResponse",
    "OpenClipRequest",
    "OpenProject",
    "PreviewRequest",
    "PreviewResponse",
    "ProjectActionRequest",
    "ProjectActionResponse",
    "ProjectsRequest",
    "ProjectsResponse",
    "ReferenceInfo",
    "ReferenceRequest",
    "ReferenceResponse",
    "RenderJobInfo",
    "RenderRequest",
    "RequestError",
    "Session",
    "SessionInfo",
    "SessionNotFound",
    "SessionRequest",
    "SettingsRequest",
    "StatusRequest",
    "TooLarge",
    "UploadResponse",
    "Worker",
    "WorkerClient",
    "WorkerConfig",
    "WorkerStatus",
    "from_wire",
    "to_wire",
]
