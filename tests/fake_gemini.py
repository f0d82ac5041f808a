"""A local fake of the Gemini API's ``generateContent`` endpoint, for tests of ``nano-banana-pro``.

It listens on 127.0.0.1 (a free port), checks each request the way the real service would be used
(model path, API key header, an inline image, the prompt text, ``imageConfig``) and answers with
scripted replies, one per request, the last repeating. Replies: ``image``, ``error`` (429, 500...),
``slow`` (sleeps past the client's timeout), ``prompt_blocked``, ``finish`` (e.g. IMAGE_SAFETY,
no image), ``text_only``. Every request is recorded; problems with a request are listed in
``problems`` (and answered with HTTP 400) so a test can assert there were none.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``kind`` is image / error / slow / prompt_blocked / finish / text_only."""

    kind: str
    status: int = 200
    size: tuple[int, int] = (64, 48)  # (W, H) of a returned image
    reason: str = ""
    text: str = ""
    delay_s: float = 0.0


def image(width: int = 64, height: int = 48) -> Reply:
    return Reply("image", size=(width, height))


def error(status: int) -> Reply:
    return Reply("error", status=status)


def slow(delay_s: float) -> Reply:
    return Reply("slow", delay_s=delay_s)


def prompt_blocked(reason: str = "SAFETY") -> Reply:
    return Reply("prompt_blocked", reason=reason)


def finish(reason: str = "IMAGE_SAFETY") -> Reply:
    return Reply("finish", reason=reason)


def text_only(text: str = "I cannot restore this image.") -> Reply:
    return Reply("text_only", text=text)


_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def pattern_image(width: int, height: int) -> np.ndarray:
    """A deterministic ``[H, W, 3]`` uint8 test picture with a bright centre marker."""
    y, x = np.mgrid[0:height, 0:width]
    picture = np.stack(
        [(x * 255 // max(1, width - 1)), (y * 255 // max(1, height - 1)), (x + y) % 256], axis=-1
    ).astype(np.uint8)
    picture[height // 2 - 1 : height // 2 + 1, width // 2 - 1 : width // 2 + 1] = 255
    return picture


def png_bytes(picture: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Expect:
    """What every request must carry; None skips that check."""

    model: str = "gemini-3-pro-image-preview"
    api_key: str = "test-key-0123456789"
    prompt_contains: tuple[str, ...] = ()
    image_size: str | None = None
    aspect_ratio: str | None = None
    image_shape: tuple[int, int] | None = None  # (H, W) of the inline image


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any] = field(repr=False)


class FakeGemini:
    """Start with ``with FakeGemini() as fake:``; point the SDK at ``fake.base_url``."""

    def __init__(self, expect: Expect | None = None):
        self.expect = expect or Expect()
        self.script: list[Reply] = [image()]
        self.requests: list[Recorded] = []
        self.problems: list[str] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def reply(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies`` in order; the last one repeats."""
        with self._lock:
            self.script = list(replies)

    def __enter__(self) -> FakeGemini:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()  # wakes any "slow" handler still sleeping
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- request handling ------------------------------------------------------------------------

    def _next_reply(self) -> Reply:
        with self._lock:
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def _check(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> list[str]:
        expect = self.expect
        problems = []
        wanted_path = f"/v1beta/models/{expect.model}:generateContent"
        if path != wanted_path:
            problems.append(f"path {path!r} != {wanted_path!r}")
        if headers.get("x-goog-api-key") != expect.api_key:
            problems.append("missing or wrong x-goog-api-key header")
        parts = [p for c in body.get("contents", []) for p in c.get("parts", [])]
        # The real service parses proto JSON: camelCase and snake_case names are both accepted.
        inline = [p.get("inlineData") or p.get("inline_data") for p in parts]
        inline = [i for i in inline if i]
        mime = inline[0].get("mimeType") or inline[0].get("mime_type") if inline else None
        if len(inline) != 1 or mime != "image/png":
            problems.append(f"expected one inline PNG image, got {len(inline)}")
        else:
            try:
                # Proto JSON bytes: standard or URL-safe base64, padding optional.
                text = inline[0]["data"].replace("-", "+").replace("_", "/")
                data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
                with Image.open(io.BytesIO(data)) as sent:
                    shape = (sent.height, sent.width)
                if expect.image_shape and shape != expect.image_shape:
                    problems.append(f"inline image is {shape}, expected {expect.image_shape}")
            except Exception as e:  # a fake reports, never crashes
                problems.append(f"inline image does not decode: {e}")
        text = " ".join(p.get("text", "") for p in parts)
        for needle in expect.prompt_contains:
            if needle not in text:
                problems.append(f"prompt lacks {needle!r}")
        image_config = body.get("generationConfig", {}).get("imageConfig", {})
        if expect.image_size and image_config.get("imageSize") != expect.image_size:
            problems.append(f"imageConfig.imageSize {image_config.get('imageSize')!r}")
        if expect.aspect_ratio and image_config.get("aspectRatio") != expect.aspect_ratio:
            problems.append(f"imageConfig.aspectRatio {image_config.get('aspectRatio')!r}")
        return problems

    def _answer(self, reply: Reply) -> tuple[int, dict[str, Any]]:
        if reply.kind == "error":
            status_name = _STATUS_NAMES.get(reply.status, "UNKNOWN")
            message = "Resource has been exhausted (e.g. check quota)." * (reply.status == 429)
            return reply.status, {
                "error": {"code": reply.status, "message": message or "boom", "status": status_name}
            }
        if reply.kind == "prompt_blocked":
            return 200, {"promptFeedback": {"blockReason": reply.reason}}
        if reply.kind == "finish":
            return 200, {"candidates": [{"finishReason": reply.reason, "index": 0}]}
        if reply.kind == "text_only":
            content = {"role": "model", "parts": [{"text": reply.text}]}
            return 200, {"candidates": [{"content": content, "finishReason": "STOP"}]}
        if reply.kind == "slow":
            self._stopping.wait(reply.delay_s)
        width, height = reply.size
        data = base64.b64encode(png_bytes(pattern_image(width, height))).decode()
        content = {
            "role": "model",
            "parts": [
                {"text": "Here is the restored frame."},
                {"inlineData": {"mimeType": "image/png", "data": data}},
            ],
        }
        return 200, {"candidates": [{"content": content, "finishReason": "STOP", "index": 0}]}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {}
                with fake._lock:
                    fake.requests.append(Recorded(self.path, headers, body))
                problems = fake._check(self.path, headers, body)
                if problems:
                    with fake._lock:
                        fake.problems.extend(problems)
                    status, payload = (
                        400,
                        {"error": {"code": 400, "message": "; ".join(problems), "status": "FAKE"}},
                    )
                else:
                    status, payload = fake._answer(fake._next_reply())
                encoded = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(encoded)))
                    self.end_headers()
                    self.wfile.write(encoded)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        return Handler
