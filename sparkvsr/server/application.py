"""The ASGI application: one route per worker method (control calls on their own thread pool),
NDJSON progress streams, streamed clip uploads and file downloads, errors as JSON with their
HTTP status.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import Request

from sparkvsr.errors import Cancelled, SparkVSRError
from sparkvsr.server.bodies import ENDPOINTS, STREAMING, parse_body
from sparkvsr.server.guard import Guard, error_response
from sparkvsr.server.options import ServeOptions
from sparkvsr.worker import AccessDenied, FileRequest, SessionNotFound, Worker, to_wire
from sparkvsr.worker.limits import RequestError, TooLarge


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
        return error_response(_status_for(error), type(error).__name__, str(error))

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

    for name in STREAMING:
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

    return Guard(app, options)


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
