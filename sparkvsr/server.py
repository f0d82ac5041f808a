"""HTTP transport for a remote worker: ``python -m sparkvsr worker --host H --port P``.

The UI can run on a laptop and the worker, with its models resident, on a GPU box. Every worker
method is ``POST /api/<method>`` with the request dataclass as JSON and the response dataclass as
JSON (see ``sparkvsr.worker.to_wire``: images travel as PNG bytes, other arrays as .npy bytes,
never as JSON lists). ``POST /api/render`` streams progress as NDJSON lines;
``GET /api/file?session_id=..&path=..`` returns a file of the session's project folder;
``POST /api/upload_clip?filename=..`` stores a clip sent as the raw body (for a UI on another
machine) and answers the path to open it with.
Errors come back as ``{"error": class name, "message": text}`` with a 4xx/5xx status.

Security: with a token every request needs ``Authorization: Bearer <token>``; a worker refuses
to listen on a non-loopback address without one.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from sparkvsr.errors import Cancelled, SparkVSRError
from sparkvsr.worker import (
    METHODS,
    AccessDenied,
    FileRequest,
    RenderRequest,
    SessionNotFound,
    Worker,
    WorkerConfig,
    from_wire,
    to_wire,
)


class ServerError(SparkVSRError):
    """The worker server cannot start as asked (unsafe bind, port in use...)."""


@dataclass(frozen=True)
class ServeOptions:
    """Where the worker listens. ``token``: required from clients (None = no auth, loopback only)."""

    host: str = "127.0.0.1"
    port: int = 7861
    token: str | None = None


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
    """Refuse to expose an unauthenticated worker beyond this machine."""
    if not options.token and not is_loopback(options.host):
        raise ServerError(
            f"refusing to listen on {options.host} without a token: anyone who can reach it could "
            "read your projects and use the GPU. Pass --token SECRET (clients send it as "
            "'Authorization: Bearer SECRET') or listen on 127.0.0.1."
        )
    if not 0 < options.port < 65536:
        raise ServerError(f"port {options.port} is out of range: use 1 to 65535")


def create_app(worker: Worker, token: str | None = None) -> Any:
    """The FastAPI application serving ``worker`` (``token``: required bearer token, or None)."""
    from fastapi import FastAPI
    from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

    app = FastAPI(title="SparkVSR worker", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Any) -> Any:
        if token and not _authorized(request.headers.get("authorization", ""), token):
            return _error(401, "Unauthorized", "missing or wrong token: send 'Bearer <token>'")
        return await call_next(request)

    @app.exception_handler(SparkVSRError)
    async def user_error(request: Request, error: SparkVSRError) -> JSONResponse:
        return _error(_status_for(error), type(error).__name__, str(error))

    @app.get("/api/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/render")
    def render(body: dict[str, Any]) -> StreamingResponse:
        request = _parse(RenderRequest, body)
        progress = worker.render(request)  # starts now; errors before the first step raise here
        return StreamingResponse(_ndjson(progress), media_type="application/x-ndjson")

    @app.post("/api/upload_clip")
    async def upload_clip(request: Request, filename: str) -> dict[str, Any]:
        # Spool the body to a temp file first: the worker's writer is synchronous.
        spool = tempfile.SpooledTemporaryFile(max_size=1 << 24)  # noqa: SIM115 - closed below
        try:
            async for block in request.stream():
                spool.write(block)
            spool.seek(0)
            stored = worker.upload_clip(filename, iter(lambda: spool.read(1 << 20), b""))
        finally:
            spool.close()
        return to_wire(stored)

    @app.get("/api/file")
    def get_file(session_id: str, path: str) -> FileResponse:
        found = worker.get_file(FileRequest(session_id, path))
        return FileResponse(found.local_path, filename=found.local_path.rsplit("/", 1)[-1])

    for name, (request_type, _) in METHODS.items():
        app.add_api_route(f"/api/{name}", _endpoint(worker, name, request_type), methods=["POST"])
    return app


def serve(worker: Worker, options: ServeOptions) -> None:
    """Run the HTTP server until interrupted (blocks). Checks the bind first."""
    import uvicorn

    check_bind(options)
    app = create_app(worker, options.token)
    uvicorn.run(app, host=options.host, port=options.port, log_level="warning")


def new_token() -> str:
    """A random token for ``--token``."""
    return secrets.token_urlsafe(24)


# ---------------------------------------------------------------------------------------------
# Helpers


def _endpoint(worker: Worker, name: str, request_type: type) -> Any:
    method = getattr(worker, name)

    def call(body: dict[str, Any]) -> Any:
        return to_wire(method(_parse(request_type, body)))

    call.__name__ = f"api_{name}"
    return call


def _parse(request_type: type, body: dict[str, Any]) -> Any:
    try:
        return from_wire(request_type, body)
    except (TypeError, KeyError, ValueError) as e:
        raise SparkVSRError(f"malformed {request_type.__name__}: {e}") from e


def _ndjson(progress: Iterator[Any]) -> Iterator[bytes]:
    try:
        for update in progress:
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
    return 400


def _error(status: int, name: str, message: str) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": name, "message": message}, status_code=status)


def build_worker(
    engine: str, engine_config: dict[str, Any], projects_root: str, **options: Any
) -> Worker:
    """A Worker for the ``worker`` command."""
    return Worker(
        WorkerConfig(
            engine=engine, engine_config=engine_config, projects_root=projects_root, **options
        )
    )
