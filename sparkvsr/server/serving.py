"""Serving: uvicorn with a header timeout (slowloris), a connection limit, a raised open-file
limit and throttled logs.
"""

from __future__ import annotations

import logging
import resource
import time
from typing import Any

from sparkvsr.server.application import create_app
from sparkvsr.server.options import ServeOptions, check_bind
from sparkvsr.worker import Worker, WorkerConfig


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
