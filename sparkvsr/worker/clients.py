"""Clients with the Worker's methods: in-process (the default) and over HTTP."""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from sparkvsr import errors, workspace
from sparkvsr.errors import ProjectError, SparkVSRError
from sparkvsr.render import RenderProgress
from sparkvsr.worker import limits as _limits
from sparkvsr.worker import requests as _requests
from sparkvsr.worker.core import Worker
from sparkvsr.worker.requests import (
    CancelResponse,
    ClipMediaInfo,
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
    ReferenceRequest,
    ReferenceResponse,
    RenderJobInfo,
    RenderRequest,
    SessionInfo,
    SessionRequest,
    SettingsRequest,
    StatusRequest,
    UploadResponse,
    WorkerConfig,
    WorkerStatus,
)
from sparkvsr.worker.wire import from_wire, to_wire


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
    def render_job(self, request: SessionRequest) -> RenderJobInfo: ...
    def clip_media(self, request: SessionRequest) -> ClipMediaInfo: ...
    def attach(self, request: SessionRequest) -> Iterator[RenderProgress]: ...
    def status(self, request: StatusRequest | None = None) -> WorkerStatus: ...
    def get_file(self, request: FileRequest) -> FileResponse: ...
    def upload_clip(self, local_path: str | Path) -> UploadResponse: ...
    def projects(self, request: ProjectsRequest) -> ProjectsResponse: ...
    def project_action(self, request: ProjectActionRequest) -> ProjectActionResponse: ...
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
    "render_job": (SessionRequest, RenderJobInfo),
    "clip_media": (SessionRequest, ClipMediaInfo),
    "status": (StatusRequest, WorkerStatus),
    "projects": (ProjectsRequest, ProjectsResponse),
    "project_action": (ProjectActionRequest, ProjectActionResponse),
}
"""Request/response types of the plain (non-streaming) methods; ``render`` streams
RenderProgress (as does ``attach``) and ``get_file`` transfers bytes."""


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

    def render_job(self, request: SessionRequest) -> RenderJobInfo:
        return self.worker.render_job(request)

    def clip_media(self, request: SessionRequest) -> ClipMediaInfo:
        return self.worker.clip_media(request)

    def attach(self, request: SessionRequest) -> Iterator[RenderProgress]:
        return self.worker.attach(request)

    def status(self, request: StatusRequest | None = None) -> WorkerStatus:
        return self.worker.status(request)

    def get_file(self, request: FileRequest) -> FileResponse:
        return self.worker.get_file(request)

    def upload_clip(self, local_path: str | Path) -> UploadResponse:
        """Copy a file (a browser upload's temporary file) into the worker's media store, so
        the project made from it owns its clip; a folder of images is used where it is."""
        path = Path(local_path)
        if not path.exists():
            raise ProjectError(f"{path} does not exist")
        if path.is_dir():
            return UploadResponse(str(path.absolute()), 0)
        if workspace.is_stored_media(self.worker.projects_root, path):
            return UploadResponse(str(path.absolute()), path.stat().st_size)
        return self.worker.upload_clip(path.name, workspace.read_blocks(path))

    def projects(self, request: ProjectsRequest) -> ProjectsResponse:
        return self.worker.projects(request)

    def project_action(self, request: ProjectActionRequest) -> ProjectActionResponse:
        return self.worker.project_action(request)

    def close(self) -> None:
        if self._owns_worker:
            self.worker.close()

    def __enter__(self) -> InProcessClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HttpClient:
    """The same methods over HTTP to ``python -m sparkvsr worker`` (see sparkvsr/server/).

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

    def render_job(self, request: SessionRequest) -> RenderJobInfo:
        return self._call("render_job", request)

    def clip_media(self, request: SessionRequest) -> ClipMediaInfo:
        return self._call("clip_media", request)

    def attach(self, request: SessionRequest) -> Iterator[RenderProgress]:
        """Follow the project's running (or last) render from its start (NDJSON stream)."""
        return self._stream("attach", request)

    def status(self, request: StatusRequest | None = None) -> WorkerStatus:
        return self._call("status", request or StatusRequest())

    def render(self, request: RenderRequest) -> Iterator[RenderProgress]:
        """Streams progress lines (NDJSON) from the worker; raises the worker's error, if any.
        Stopping the iteration leaves the render running on the worker (see ``attach``)."""
        return self._stream("render", request)

    def _stream(self, method: str, request: Any) -> Iterator[RenderProgress]:
        try:
            with self._http.stream("POST", f"/api/{method}", json=to_wire(request)) as reply:
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
                "/api/upload_clip",
                params={"filename": path.name},
                content=blocks(),
                headers={"Content-Type": "application/octet-stream"},
            )
        except self._httpx.HTTPError as e:
            raise SparkVSRError(f"cannot reach the worker at {self.base_url}: {e}") from e
        _raise_for_error(reply.status_code, reply.content)
        return from_wire(UploadResponse, reply.json())

    def projects(self, request: ProjectsRequest) -> ProjectsResponse:
        return self._call("projects", request)

    def project_action(self, request: ProjectActionRequest) -> ProjectActionResponse:
        return self._call("project_action", request)

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
    for name, cls in {**vars(errors), **vars(_requests), **vars(_limits)}.items()
    if isinstance(cls, type) and issubclass(cls, SparkVSRError)
}
