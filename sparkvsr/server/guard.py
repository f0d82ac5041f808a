"""The checks in front of the application, before a byte of the body is read: the ``Host``
header (DNS rebinding), the token (failures rate-limited per address), the content type, the
declared size.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sparkvsr.server.options import LOOPBACK_NAMES, ServeOptions


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


class Guard:
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
            await error_response(status, name, message)(scope, receive, send)
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


def _authorized(header: str, token: str) -> bool:
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(given.strip(), token)


def error_response(status: int, name: str, message: str) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": name, "message": message}, status_code=status)
