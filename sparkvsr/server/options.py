"""Where the worker listens and what it accepts (``ServeOptions``), and the bind checks:
no unauthenticated worker beyond loopback, no guessable token.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
from dataclasses import dataclass

from sparkvsr.errors import SparkVSRError

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
