"""The worker's request and response types, its configuration and its two error classes.

Every worker method takes one frozen request dataclass and returns one frozen response
dataclass; the same types travel over HTTP (``sparkvsr.worker.wire``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparkvsr.engines.base import EngineStatus, RestoreOptions
from sparkvsr.errors import ProjectError
from sparkvsr.project import ClipSummary, OutputSettings
from sparkvsr.references.base import DEFAULT_TASK_PROMPT, Provenance
from sparkvsr.render import RenderProgress
from sparkvsr.viewport import Viewport
from sparkvsr.workspace import ProjectSummary


class SessionNotFound(ProjectError):
    """No open session has this id (closed, expired, or never existed)."""


class AccessDenied(ProjectError):
    """The request names something this session may not touch."""


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
    max_upload_bytes: the largest clip ``upload_clip`` stores.
    min_free_bytes:  free disk space an upload must leave on the projects' disk.
    idle_timeout:    seconds without requests after which a session is closed (never while
                     its project renders); 0 = never.
    preview_cache_bytes: finished preview frames kept for every session of the same clip.
    """

    engine: str = "flow"
    engine_config: dict[str, Any] = field(default_factory=dict)
    projects_root: Path = Path("projects")
    options: RestoreOptions = field(default_factory=RestoreOptions)
    preview_interval: float = 0.5
    clip_roots: tuple[Path, ...] = ()
    max_upload_bytes: int = 4 << 30
    min_free_bytes: int = 1 << 30
    idle_timeout: float = 1800.0
    preview_cache_bytes: int = 96 << 20


@dataclass(frozen=True)
class OpenClipRequest:
    """Open a clip in a new session.

    clip_path: the clip on the worker's machine (a video file or a folder of images); may be
               empty when ``project`` names an existing project (its clip is used). Naming an
               existing project whose clip has moved relinks it to ``clip_path`` (same frame
               count and size required).
    project:   a project name (a folder under the worker's projects root): reopened when it
               exists, created otherwise. Empty: a new project named after the clip.
    take_over: the project is open in another session (a tab that was reloaded or left open):
               close that session and open it here (its render, if any, keeps running).
    owner:     the caller's owner secret (the studio: its browser's). A project made with one
               opens only for the same secret; empty = the trusted host (no check, no owner).
    reuse:     without ``project``: reopen the owner's latest project of this clip, or an
               untouched one, instead of making a new project (a visit that changes nothing
               leaves no project behind).
    """

    clip_path: str = ""
    project: str = ""
    take_over: bool = False
    owner: str = field(default="", repr=False)
    reuse: bool = False


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
    options renders use (``options.guidance`` equals ``guidance``). result: the last complete
    render's clip, relative to the project folder ("" = none; fetch it with ``get_file``);
    result_current: it was rendered from the project's current settings (else it is out of
    date: keyframes, References or settings changed since). range_result / range_frames /
    range_current: the same for the last complete range render of frames
    ``start <= i < stop`` (a preview of a few seconds; ``range_frames`` None = none).
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
    result: str = ""
    result_current: bool = False
    output: OutputSettings = field(default_factory=OutputSettings)
    range_result: str = ""
    range_frames: tuple[int, int] | None = None
    range_current: bool = False


@dataclass(frozen=True)
class SettingsRequest:
    """Change a session's render settings; None leaves a setting as it is.

    guidance: s for the render; chunk / overlap / tile / tile_overlap / color_fix: engine
    options (see RestoreOptions); crf: H.264 quality of the output (lower is better).
    output_size: (width, height) of the output frames; (0, 0) = the engine's scale x the clip.
    codec / preset / audio / ten_bit: how the final clip is encoded (see OutputSettings).
    A request with nothing set changes nothing and returns the session as it is.
    """

    session_id: str
    guidance: float | None = None
    chunk: int | None = None
    overlap: int | None = None
    tile: int | None = None
    tile_overlap: int | None = None
    color_fix: str | None = None
    crf: int | None = None
    output_size: tuple[int, int] | None = None
    codec: str | None = None
    preset: str | None = None
    audio: bool | None = None
    ten_bit: bool | None = None


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
    """A keyframe's Reference: ``image`` ``[H, W, 3]`` uint8 RGB at the output size.
    ``raw_file``: the editor's image before registration moved it, a project file (read it
    with ``get_file``); "" when registration did not move it."""

    frame: int
    image: np.ndarray = field(repr=False)
    content_hash: str
    provenance: Provenance
    raw_file: str = ""


@dataclass(frozen=True)
class PreviewRequest:
    """One restored frame at guidance ``guidance`` (not saved to the project).

    viewport: what the viewer shows and how big (``sparkvsr.viewport``): the image comes back
    as that view (the whole frame at display size, or the zoomed region at full resolution);
    None = the whole frame at full resolution.
    """

    session_id: str
    frame: int
    guidance: float
    viewport: Viewport | None = None


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
    """Render the whole clip, or with ``frames = (start, stop)`` only frames
    ``start <= i < stop`` (a range preview at the output settings; its chunks serve the full
    render of the same settings). ``guidance``: set the project's guidance first (None: keep).
    ``output``: file name inside the project folder (empty: the project's output setting; for a
    range, that name with the in and out frames: ``render.range_name``).
    """

    session_id: str
    guidance: float | None = None
    output: str = ""
    frames: tuple[int, int] | None = None


@dataclass(frozen=True)
class ClipMediaInfo:
    """The open clip's proxy for the studio's player and timeline (``media.proxy``), made once
    per clip in the background (``clip_media``).

    state:       "making", "ready" or "failed".
    video:       the proxy mp4 (one frame per clip frame at the clip's rate), a project file
                 (read it with ``get_file``); "" until ready.
    filmstrip:   JPEG of ``len(frames)`` thumbnails side by side, each ``thumb_width`` wide.
    frames:      the clip frame each thumbnail shows, left to right.
    message:     why it failed.
    """

    state: str
    video: str = ""
    filmstrip: str = ""
    frames: tuple[int, ...] = ()
    thumb_width: int = 0
    message: str = ""


@dataclass(frozen=True)
class RenderJobInfo:
    """Where a project's render job stands (``render_job``): it runs on the worker whether or
    not any client follows it.

    state:    "rendering" | "encoding" | "done" | "cancelled" | "failed".
    progress: the last progress update (None before the first); output: the clip it writes
              (inside the project folder); guidance: the guidance it renders with (its settings
              are those of the project when it started). frames: a range render's
              ``(start, stop)``; None for the whole clip.
    error / message: the error class and text when it failed or was cancelled.
    started / finished: seconds since the epoch (finished 0 while running).
    """

    job_id: str
    project: str
    state: str
    progress: RenderProgress | None
    output: str
    guidance: float
    error: str = ""
    message: str = ""
    started: float = 0.0
    finished: float = 0.0
    frames: tuple[int, int] | None = None


@dataclass(frozen=True)
class CancelResponse:
    """``cancelled``: the project's render was running and stops (between chunks, or between
    frames of the final encode); its job ends "cancelled"."""

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


@dataclass(frozen=True)
class ProjectsRequest:
    """The projects ``owner`` may open (empty owner: the trusted host, every project)."""

    owner: str = field(default="", repr=False)


@dataclass(frozen=True)
class ProjectsResponse:
    """Projects, most recently changed first."""

    projects: tuple[ProjectSummary, ...]


PROJECT_ACTIONS = ("rename", "duplicate", "delete", "clear_caches")


@dataclass(frozen=True)
class ProjectActionRequest:
    """Do ``action`` (one of ``PROJECT_ACTIONS``) to project ``project`` of ``owner``;
    ``new_name`` for rename and duplicate. Refused while the project is open in a session."""

    project: str
    action: str
    new_name: str = ""
    owner: str = field(default="", repr=False)


@dataclass(frozen=True)
class ProjectActionResponse:
    """project: the project's name after the action ("" once deleted); freed: bytes freed."""

    project: str
    freed: int = 0
