"""HTTP transport for a remote worker: ``python -m sparkvsr worker --host H --port P``.

The UI can run on a laptop and the worker, with its models resident, on a GPU box. Every worker
method is ``POST /api/<method>`` with the request dataclass as JSON and the response dataclass as
JSON (see ``sparkvsr.worker.to_wire``: images travel as PNG bytes, other arrays as .npy bytes,
never as JSON lists). ``POST /api/render`` and ``POST /api/attach`` stream progress as NDJSON
lines; ``GET /api/file?session_id=..&path=..`` returns a file of the session's project folder;
``POST /api/upload_clip?filename=..`` stores a clip sent as the raw body
(``Content-Type: application/octet-stream``) and answers the path to open it with.
Errors come back as ``{"error": class name, "message": text}`` with a 4xx/5xx status
(422: a field has the wrong type or value, and the message names it; 413: too large).

Security (see README, "Running the worker on another machine"):

- The ``Host`` header must name this worker (loopback names by default, ``allowed_hosts`` for a
  deployment): a web page the user visits cannot drive the worker through DNS rebinding (421).
- State-changing requests must be ``application/json`` (uploads ``application/octet-stream``):
  a browser sends neither cross-origin without a CORS preflight, and CORS is off (415).
- With a token every request needs ``Authorization: Bearer <token>`` (at least 16 characters);
  repeated failures from one address are refused for a while (429). A worker refuses to listen
  on a non-loopback address without one.
- Every body is read with a size limit and checked against strict models (types and ranges)
  before any work; an uploaded image's size is read from its header before it is decoded.
- Connections that do not finish their request headers within ``header_timeout`` seconds are
  closed (slowloris), the number of connections is bounded, and repeated log lines are
  throttled.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import json
import logging
import math
import resource
import secrets
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sparkvsr.engines.base import COLOR_FIXES
from sparkvsr.errors import Cancelled, EditorError, SparkVSRError
from sparkvsr.project import OUTPUT_CODECS, OUTPUT_PRESETS
from sparkvsr.viewport import MAX_SIDE as VIEWPORT_MAX_SIDE
from sparkvsr.viewport import MAX_ZOOM as VIEWPORT_MAX_ZOOM
from sparkvsr.worker import (
    AccessDenied,
    FileRequest,
    FrameRequest,
    KeyframeRequest,
    OpenClipRequest,
    PreviewRequest,
    ProjectActionRequest,
    ProjectsRequest,
    ReferenceRequest,
    RenderRequest,
    SessionNotFound,
    SessionRequest,
    SettingsRequest,
    StatusRequest,
    Worker,
    WorkerConfig,
    from_wire,
    to_wire,
)
from sparkvsr.worker.limits import (
    GUIDANCE_RANGE,
    SETTING_RANGES,
    RequestError,
    TooLarge,
    check_image_pixels,
)
from sparkvsr.worker.requests import PROJECT_ACTIONS

MIN_TOKEN_LENGTH = 16
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class ServerError(SparkVSRError):
    """The worker server cannot start as asked (unsafe bind, short token, port in use...)."""


@dataclass(frozen=True)
class ServeOptions:
    """Where the worker listens and what it accepts.

    token:            required from clients (None = no auth, loopback only); >= 16 characters.
    allowed_hosts:    host names clients may address the worker by (the ``Host`` header),
                      besides the loopback names and the bind address; "*" accepts any (only
                      with a token, e.g. behind a reverse proxy that checks it).
    max_body_bytes:   largest JSON request (a Reference image travels in one, as PNG).
    max_upload_bytes: largest clip ``upload_clip`` stores (also bounded by free disk space).
    header_timeout:   seconds a connection may take to send a request's headers.
    keep_alive:       seconds an idle keep-alive connection stays open.
    max_connections:  open connections and running requests at once (more get 503).
    auth_failures / auth_window: this many failed tokens from one address within the window
                      (seconds) lock that address out for the rest of the window (429).
    """

    host: str = "127.0.0.1"
    port: int = 7861
    token: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    max_body_bytes: int = 96 << 20
    max_upload_bytes: int = 4 << 30
    header_timeout: float = 10.0
    keep_alive: float = 5.0
    max_connections: int = 2048
    auth_failures: int = 10
    auth_window: float = 60.0


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and names that resolve only to loopback (``localhost``)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def check_bind(options: ServeOptions) -> None:
    """Refuse to expose an unauthenticated worker beyond this machine, or a guessable token."""
    if not options.token and not is_loopback(options.host):
        raise ServerError(
            f"refusing to listen on {options.host} without a token: anyone who can reach it could "
            "read your projects and use the GPU. Pass --token auto (a random token, printed) or "
            "--token SECRET (clients send it as 'Authorization: Bearer SECRET'), or listen on "
            "127.0.0.1."
        )
    if options.token is not None and len(options.token) < MIN_TOKEN_LENGTH:
        raise ServerError(
            f"the token is {len(options.token)} characters; use at least {MIN_TOKEN_LENGTH} "
            "random characters (--token auto makes one)"
        )
    if "*" in options.allowed_hosts and not options.token:
        raise ServerError("--allowed-host '*' needs a token: without one any web page could call")
    if not 0 < options.port < 65536:
        raise ServerError(f"port {options.port} is out of range: use 1 to 65535")


def new_token() -> str:
    """A random token for ``--token`` (32 characters, 192 bits)."""
    return secrets.token_urlsafe(24)


# ---------------------------------------------------------------------------------------------
# Strict request models: wrong types are refused (not coerced) and ranges are checked, so a bad
# value never reaches the worker and a 422 names the field.


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


SessionId = Annotated[str, Field(min_length=1, max_length=128)]
FrameIndex = Annotated[int, Field(ge=0, le=100_000_000)]
Guidance = Annotated[float, Field(ge=GUIDANCE_RANGE[0], le=GUIDANCE_RANGE[1], allow_inf_nan=False)]
Scale = Annotated[float, Field(ge=0.0, le=10.0, allow_inf_nan=False)]
Prompt = Annotated[str, Field(max_length=8000)]


def _setting(name: str) -> Any:
    low, high = SETTING_RANGES[name]
    return Annotated[int, Field(ge=low, le=high)] | None


class OpenClipBody(_Strict):
    clip_path: Annotated[str, Field(max_length=4096)] = ""
    project: Annotated[str, Field(max_length=100)] = ""
    take_over: bool = False
    owner: Annotated[str, Field(max_length=200)] = ""
    reuse: bool = False


class SessionBody(_Strict):
    session_id: SessionId


class SettingsBody(_Strict):
    session_id: SessionId
    guidance: Guidance | None = None
    chunk: _setting("chunk") = None
    overlap: _setting("overlap") = None
    tile: _setting("tile") = None
    tile_overlap: _setting("tile_overlap") = None
    color_fix: Literal[COLOR_FIXES] | None = None  # type: ignore[valid-type]
    crf: _setting("crf") = None
    output_size: tuple[Annotated[int, Field(ge=0, le=16384)], ...] | None = None
    codec: Literal[OUTPUT_CODECS] | None = None  # type: ignore[valid-type]
    preset: Literal[OUTPUT_PRESETS] | None = None  # type: ignore[valid-type]
    audio: bool | None = None
    ten_bit: bool | None = None


class FrameBody(_Strict):
    session_id: SessionId
    index: FrameIndex


class KeyframeBody(_Strict):
    session_id: SessionId
    frame: FrameIndex


class ImageBody(_Strict):
    png: Annotated[str, Field(max_length=1 << 30)]


class ReferenceBody(_Strict):
    session_id: SessionId
    frame: FrameIndex
    editor: Annotated[str, Field(min_length=1, max_length=64)] = "classic"
    task_prompt: Prompt | None = None
    content_prompt: Prompt = ""
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    upload: ImageBody | None = None
    pixel_scale: Scale = 1.0
    semantic_scale: Scale = 1.0


class ViewportBody(_Strict):
    width: Annotated[int, Field(ge=1, le=VIEWPORT_MAX_SIDE)]
    height: Annotated[int, Field(ge=1, le=VIEWPORT_MAX_SIDE)]
    zoom: Annotated[float, Field(ge=0.0, le=VIEWPORT_MAX_ZOOM, allow_inf_nan=False)] = 0.0
    # a JSON array (strict mode takes no list for a tuple); the worker's Viewport makes it one
    center: Annotated[
        list[Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]],
        Field(min_length=2, max_length=2),
    ] = [0.5, 0.5]


class PreviewBody(_Strict):
    session_id: SessionId
    frame: FrameIndex
    guidance: Guidance
    viewport: ViewportBody | None = None


class RenderBody(_Strict):
    session_id: SessionId
    guidance: Guidance | None = None
    output: Annotated[str, Field(max_length=255)] = ""
    # a range render's [start, stop) (a JSON array; the worker checks it against the clip)
    frames: Annotated[list[FrameIndex], Field(min_length=2, max_length=2)] | None = None


class StatusBody(_Strict):
    session_id: Annotated[str, Field(max_length=128)] = ""
    editors: bool = False


class ProjectsBody(_Strict):
    owner: Annotated[str, Field(max_length=200)] = ""


class ProjectActionBody(_Strict):
    project: Annotated[str, Field(max_length=100)]
    action: Literal[PROJECT_ACTIONS]  # type: ignore[valid-type]
    new_name: Annotated[str, Field(max_length=100)] = ""
    owner: Annotated[str, Field(max_length=200)] = ""


@dataclass(frozen=True)
class _Endpoint:
    """A plain worker method: its body model, its request type, and whether it is a control
    call (answered from its own thread pool, never behind engine work)."""

    model: type[_Strict]
    request: type
    control: bool = False


ENDPOINTS: dict[str, _Endpoint] = {
    "open_clip": _Endpoint(OpenClipBody, OpenClipRequest),
    "close_session": _Endpoint(SessionBody, SessionRequest, control=True),
    "update_settings": _Endpoint(SettingsBody, SettingsRequest),
    "frame": _Endpoint(FrameBody, FrameRequest),
    "set_keyframe": _Endpoint(KeyframeBody, KeyframeRequest),
    "remove_keyframe": _Endpoint(KeyframeBody, KeyframeRequest),
    "make_reference": _Endpoint(ReferenceBody, ReferenceRequest),
    "reference": _Endpoint(KeyframeBody, KeyframeRequest),
    "preview": _Endpoint(PreviewBody, PreviewRequest),
    "cancel": _Endpoint(SessionBody, SessionRequest, control=True),
    "status": _Endpoint(StatusBody, StatusRequest, control=True),
    "projects": _Endpoint(ProjectsBody, ProjectsRequest, control=True),
    "project_action": _Endpoint(ProjectActionBody, ProjectActionRequest),
    "render_job": _Endpoint(SessionBody, SessionRequest, control=True),
    "clip_media": _Endpoint(SessionBody, SessionRequest, control=True),
}


def parse_body(name: str, body: bytes, worker: Worker | None = None) -> Any:
    """The request dataclass for method ``name`` from a raw JSON body.

    Raises RequestError (422) naming the first bad field, TooLarge (413) for an image whose
    header announces more pixels than the session allows (checked before decoding it).
    """
    endpoint = ENDPOINTS[name] if name in ENDPOINTS else _STREAMING[name]
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(f"the body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise RequestError(f"the body must be a JSON object, not {type(data).__name__}")
    try:
        checked = endpoint.model.model_validate(data)
    except ValidationError as e:
        raise RequestError(_describe(e)) from None
    values = checked.model_dump()
    upload = None
    if isinstance(checked, ReferenceBody):
        values.pop("upload")
        if checked.task_prompt is None:  # absent: the editor's default prompt
            values.pop("task_prompt")
        if checked.upload is not None:
            upload = _decode_upload(checked.upload.png, checked.session_id, worker)
    request = from_wire(endpoint.request, values)
    return replace(request, upload=upload) if upload is not None else request


def _decode_upload(encoded: str, session_id: str, worker: Worker | None) -> Any:
    """Decode an uploaded image after checking, from its header, that it is not too large."""
    from sparkvsr.references.upload import decode_upload

    limit = worker.upload_pixel_limit(session_id) if worker is not None else 64_000_000
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError(f"field 'upload.png': not base64 ({e})") from None
    try:
        return decode_upload(data, lambda width, height: check_image_pixels(width, height, limit))
    except EditorError as e:
        raise RequestError(f"field 'upload.png': {e}") from None


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:3]:
        where = ".".join(str(p) for p in item["loc"]) or "body"
        given = item.get("input")
        shown = repr(given)[:60] if not isinstance(given, dict) else "an object"
        parts.append(f"field '{where}': {item['msg']} (got {shown})")
    return "; ".join(parts)


_STREAMING: dict[str, _Endpoint] = {
    "render": _Endpoint(RenderBody, RenderRequest),
    "attach": _Endpoint(SessionBody, SessionRequest),
}


# ---------------------------------------------------------------------------------------------
# Guards in front of the application: host, auth (rate-limited), content type, body size


@dataclass
class _AuthFailures:
    """Failed-token timestamps per client address (bounded: oldest addresses dropped)."""

    limit: int
    window: float
    failures: dict[str, deque] = field(default_factory=dict)

    def locked(self, address: str, now: float) -> float:
        """Seconds ``address`` is still locked out (0: not locked)."""
        times = self.failures.get(address)
        while times and now - times[0] > self.window:
            times.popleft()
        if times and len(times) >= self.limit:
            return self.window - (now - times[0])
        return 0.0

    def record(self, address: str, now: float) -> None:
        if address not in self.failures and len(self.failures) >= 10_000:
            self.failures.pop(next(iter(self.failures)))
        self.failures.setdefault(address, deque(maxlen=self.limit)).append(now)


def allowed_host_names(options: ServeOptions) -> frozenset[str]:
    """Host names the ``Host`` header may carry: loopback, the bind address, ``allowed_hosts``."""
    names = {*LOOPBACK_NAMES, *(h.lower().rstrip(".") for h in options.allowed_hosts)}
    if options.host not in ("0.0.0.0", "::", ""):
        names.add(options.host.lower().strip("[]"))
    return frozenset(names)


def _host_name(header: str) -> str:
    header = header.strip().lower()
    if header.startswith("["):  # [::1]:7861
        return header[1 : header.find("]")] if "]" in header else header
    name, _, port = header.rpartition(":")
    if name and port.isdigit():
        header = name
    return header.rstrip(".")


class _Guard:
    """ASGI middleware: every check here runs before the request body is read."""

    def __init__(self, app: Any, options: ServeOptions):
        self.app = app
        self.options = options
        self.hosts = allowed_host_names(options)
        self.any_host = "*" in options.allowed_hosts
        self.auth = _AuthFailures(options.auth_failures, options.auth_window)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            status, name, message = refusal
            await _error(status, name, message)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: dict, headers: dict[str, str]) -> tuple[int, str, str] | None:
        # 1. the Host header names this worker (DNS rebinding)
        host = _host_name(headers.get("host", ""))
        if not self.any_host and host not in self.hosts:
            return (
                421,
                "MisdirectedRequest",
                f"this worker does not answer to the host name {host!r}; start it with "
                f"--allowed-host {host or 'NAME'} if that is how clients reach it",
            )
        # 2. the token, with failures rate-limited per address
        token = self.options.token
        if token:
            address = (scope.get("client") or ("?", 0))[0]
            now = time.monotonic()
            wait = self.auth.locked(address, now)
            if wait > 0:
                return 429, "TooManyAttempts", f"too many wrong tokens; wait {math.ceil(wait)} s"
            if not _authorized(headers.get("authorization", ""), token):
                self.auth.record(address, now)
                return 401, "Unauthorized", "missing or wrong token: send 'Bearer <token>'"
        # 3. bodies only in types a browser cannot send cross-origin without a preflight
        if scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            kind = headers.get("content-type", "").split(";")[0].strip().lower()
            wanted = (
                "application/octet-stream"
                if scope["path"] == "/api/upload_clip"
                else "application/json"
            )
            if kind != wanted:
                return (
                    415,
                    "UnsupportedMediaType",
                    f"{scope['path']} takes Content-Type {wanted}, not {kind or 'none'}",
                )
        # 4. the declared size, before a byte of the body is read
        limit = (
            self.options.max_upload_bytes
            if scope["path"] == "/api/upload_clip"
            else self.options.max_body_bytes
        )
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            return (
                413,
                "TooLarge",
                f"the request body is {int(length)} bytes; this worker accepts at most {limit}",
            )
        return None


# ---------------------------------------------------------------------------------------------
# The application


def create_app(
    worker: Worker, token: str | None = None, options: ServeOptions | None = None
) -> Any:
    """The ASGI application serving ``worker``.

    token: required bearer token (None: none). options: limits and allowed host names (the
    defaults when None; ``options.token`` is used when ``token`` is not given).
    """
    from fastapi import FastAPI
    from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

    options = options or ServeOptions()
    token = token if token is not None else options.token
    limits = options
    # Work waits on the engine; control calls (cancel, close, status) never queue behind it.
    work_pool = ThreadPoolExecutor(32, thread_name_prefix="sparkvsr-http-work")
    control_pool = ThreadPoolExecutor(8, thread_name_prefix="sparkvsr-http-control")
    stream_pool = ThreadPoolExecutor(32, thread_name_prefix="sparkvsr-http-stream")

    app = FastAPI(title="SparkVSR worker", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(SparkVSRError)
    async def user_error(request: Request, error: SparkVSRError) -> JSONResponse:
        return _error(_status_for(error), type(error).__name__, str(error))

    @app.get("/api/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    async def run(pool: ThreadPoolExecutor, call: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, call)

    async def body_of(request: Request) -> bytes:
        return await _read_limited(request, limits.max_body_bytes)

    def plain(name: str) -> Callable:
        endpoint = ENDPOINTS[name]
        method = getattr(worker, name)
        pool = control_pool if endpoint.control else work_pool

        async def call(request: Request) -> Any:
            body = await body_of(request)
            parsed = await run(pool, lambda: parse_body(name, body, worker))
            if name == "preview":  # waits on a Future: no thread held while queued
                return to_wire(await asyncio.wrap_future(worker.submit_preview(parsed)))
            result = await run(pool, lambda: method(parsed))
            return await run(pool, lambda: to_wire(result))

        call.__name__ = f"api_{name}"
        return call

    for name in ENDPOINTS:
        app.add_api_route(f"/api/{name}", plain(name), methods=["POST"])

    def streaming(name: str) -> Callable:
        method = getattr(worker, name)

        async def call(request: Request) -> StreamingResponse:
            parsed = parse_body(name, await body_of(request), worker)
            # starts now; errors before the first step answer here with their status. A client
            # that goes away stops only its stream: the render goes on (``attach`` follows it).
            progress = await run(control_pool, lambda: method(parsed))
            return StreamingResponse(
                _ndjson(progress, stream_pool), media_type="application/x-ndjson"
            )

        call.__name__ = f"api_{name}"
        return call

    for name in _STREAMING:
        app.add_api_route(f"/api/{name}", streaming(name), methods=["POST"])

    @app.post("/api/upload_clip")
    async def upload_clip(request: Request, filename: str) -> dict[str, Any]:
        length = request.headers.get("content-length", "")
        if length.isdigit():
            await run(control_pool, lambda: worker.check_upload_space(int(length)))
        return to_wire(await _store_upload(worker, request, filename, limits, work_pool))

    @app.get("/api/file")
    def get_file(session_id: str, path: str) -> FileResponse:
        found = worker.get_file(FileRequest(session_id, path))
        return FileResponse(found.local_path, filename=found.local_path.rsplit("/", 1)[-1])

    return _Guard(app, options)


async def _read_limited(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it passes ``limit`` bytes (chunked bodies
    declare no length up front)."""
    parts: list[bytes] = []
    size = 0
    async for block in request.stream():
        size += len(block)
        if size > limit:
            raise TooLarge(f"the request body is larger than this worker accepts ({limit} bytes)")
        parts.append(block)
    return b"".join(parts)


async def _store_upload(
    worker: Worker, request: Request, filename: str, options: ServeOptions, pool: ThreadPoolExecutor
) -> Any:
    """Stream the body into the worker's upload store on a thread (the event loop stays free)."""
    import queue

    blocks: queue.Queue = queue.Queue(maxsize=8)
    loop = asyncio.get_running_loop()

    def feed() -> Iterator[bytes]:
        while (block := blocks.get()) is not None:
            if isinstance(block, BaseException):
                raise block
            yield block

    stored = loop.run_in_executor(
        pool, lambda: worker.upload_clip(filename, feed(), max_bytes=options.max_upload_bytes)
    )
    try:
        buffer = bytearray()
        async for block in request.stream():
            buffer += block
            if len(buffer) >= 1 << 20:
                await loop.run_in_executor(None, blocks.put, bytes(buffer))
                buffer.clear()
            if stored.done():  # refused early (too large): stop reading
                break
        if not stored.done():
            await loop.run_in_executor(None, blocks.put, bytes(buffer))
            await loop.run_in_executor(None, blocks.put, None)
    except BaseException as e:
        if not stored.done():
            await loop.run_in_executor(None, blocks.put, SparkVSRError(f"upload interrupted: {e}"))
        raise
    return await stored


async def _ndjson(progress: Iterator[Any], pool: ThreadPoolExecutor) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    end = object()
    try:
        while (update := await loop.run_in_executor(pool, next, progress, end)) is not end:
            yield (json.dumps(to_wire(update)) + "\n").encode()
    except SparkVSRError as e:
        yield (json.dumps({"error": type(e).__name__, "message": str(e)}) + "\n").encode()
    except Exception as e:  # the stream has started: report instead of cutting it
        message = f"the render failed unexpectedly: {type(e).__name__}: {e}"
        yield (json.dumps({"error": "SparkVSRError", "message": message}) + "\n").encode()


def _authorized(header: str, token: str) -> bool:
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(given.strip(), token)


def _status_for(error: SparkVSRError) -> int:
    if isinstance(error, SessionNotFound):
        return 404
    if isinstance(error, AccessDenied):
        return 403
    if isinstance(error, Cancelled):
        return 409
    if isinstance(error, RequestError):
        return 422
    if isinstance(error, TooLarge):
        return 413
    return 400


def _error(status: int, name: str, message: str) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": name, "message": message}, status_code=status)


# ---------------------------------------------------------------------------------------------
# Serving: uvicorn with a header timeout, a connection limit and throttled logs


def serve(worker: Worker, options: ServeOptions) -> None:
    """Run the HTTP server until interrupted (blocks). Checks the bind first."""
    import uvicorn

    check_bind(options)
    _raise_open_file_limit()
    throttle_logs()
    config = uvicorn_config(create_app(worker, options=options), options)
    uvicorn.Server(config).run()


def uvicorn_config(app: Any, options: ServeOptions, **overrides: Any) -> Any:
    """A uvicorn Config for ``app`` with this module's connection limits (h11, header timeout,
    keep-alive, ``limit_concurrency``)."""
    import uvicorn

    settings = dict(
        host=options.host,
        port=options.port,
        log_level="warning",
        http=guarded_h11(options.header_timeout),
        timeout_keep_alive=options.keep_alive,
        limit_concurrency=options.max_connections,
        h11_max_incomplete_event_size=32 * 1024,
        backlog=1024,
    )
    settings.update(overrides)
    return uvicorn.Config(app, **settings)


def guarded_h11(header_timeout: float) -> type:
    """uvicorn's h11 protocol, closing a connection whose next request headers have not
    arrived ``header_timeout`` seconds after it opened or after its last response (uvicorn's
    own keep-alive timer restarts on every byte, so a slow trickle would keep it open)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_header_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_deadline()

        def _arm_header_deadline(self) -> None:
            self.loop.call_later(header_timeout, self._header_deadline, self.cycle)

        def _header_deadline(self, cycle: Any) -> None:
            # No new request since the timer was armed: the headers never arrived.
            idle = cycle is None or cycle.response_complete
            if self.cycle is cycle and idle and not self.transport.is_closing():
                self.transport.close()

    return GuardedH11


def _raise_open_file_limit() -> None:
    """Many idle connections must not exhaust file descriptors (accept errors flood the log)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, 65536), hard))


class LogThrottle(logging.Filter):
    """Let through at most ``burst`` records with the same message template per ``window``
    seconds; then one line saying how many were dropped (a flood of bad connections must not
    fill the disk)."""

    def __init__(self, burst: int = 10, window: float = 60.0):
        super().__init__()
        self.burst, self.window = burst, window
        self._seen: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        key = f"{record.name}:{record.msg}"
        start, count = self._seen.get(key, (now, 0))
        if now - start > self.window:
            if count > self.burst:
                record.msg = f"{record.msg} (and {count - self.burst} more like it)"
            start, count = now, 0
        count += 1
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[key] = (start, count)
        return count <= self.burst


def throttle_logs() -> None:
    """Install ``LogThrottle`` on uvicorn's loggers (idempotent)."""
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncio"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, LogThrottle) for f in logger.filters):
            logger.addFilter(LogThrottle())


def build_worker(
    engine: str, engine_config: dict[str, Any], projects_root: str, **options: Any
) -> Worker:
    """A Worker for the ``worker`` command."""
    return Worker(
        WorkerConfig(
            engine=engine, engine_config=engine_config, projects_root=projects_root, **options
        )
    )
