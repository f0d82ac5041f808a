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

Modules: ``options`` (``ServeOptions``, bind checks, tokens), ``bodies`` (strict request models,
``parse_body``), ``guard`` (host, token, content type and size checks), ``application``
(``create_app``: routes, streams, uploads), ``serving`` (uvicorn settings, log throttle, ``serve``).
"""

from sparkvsr.server.application import create_app
from sparkvsr.server.bodies import (
    ENDPOINTS,
    STREAMING,
    FrameBody,
    FrameIndex,
    Guidance,
    ImageBody,
    KeyframeBody,
    OpenClipBody,
    PreviewBody,
    ProjectActionBody,
    ProjectsBody,
    Prompt,
    ReferenceBody,
    RenderBody,
    Scale,
    SessionBody,
    SessionId,
    SettingsBody,
    StatusBody,
    ViewportBody,
    parse_body,
)
from sparkvsr.server.guard import Guard, allowed_host_names
from sparkvsr.server.options import (
    LOOPBACK_NAMES,
    MIN_TOKEN_LENGTH,
    ServeOptions,
    ServerError,
    check_bind,
    is_loopback,
    new_token,
)
from sparkvsr.server.serving import (
    LogThrottle,
    build_worker,
    guarded_h11,
    serve,
    throttle_logs,
    uvicorn_config,
)

__all__ = [
    "ENDPOINTS",
    "LOOPBACK_NAMES",
    "MIN_TOKEN_LENGTH",
    "STREAMING",
    "FrameBody",
    "FrameIndex",
    "Guard",
    "Guidance",
    "ImageBody",
    "KeyframeBody",
    "LogThrottle",
    "OpenClipBody",
    "PreviewBody",
    "ProjectActionBody",
    "ProjectsBody",
    "Prompt",
    "ReferenceBody",
    "RenderBody",
    "Scale",
    "ServeOptions",
    "ServerError",
    "SessionBody",
    "SessionId",
    "SettingsBody",
    "StatusBody",
    "ViewportBody",
    "allowed_host_names",
    "build_worker",
    "check_bind",
    "create_app",
    "guarded_h11",
    "is_loopback",
    "new_token",
    "parse_body",
    "serve",
    "throttle_logs",
    "uvicorn_config",
]
