"""The worker over HTTP: a whole session against real uvicorn on 127.0.0.1, token auth, the bind
rule, PNG transport, and kill -9 of a worker process mid-render followed by an exact resume."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from sparkvsr.engines import load_engine
from sparkvsr.engines.base import RestoreOptions
from sparkvsr.errors import KeyframeError, SparkVSRError
from sparkvsr.project import Project
from sparkvsr.server import (
    ServeOptions,
    ServerError,
    allowed_host_names,
    check_bind,
    create_app,
    is_loopback,
    uvicorn_config,
)
from sparkvsr.worker import (
    AccessDenied,
    FileRequest,
    FrameRequest,
    HttpClient,
    InProcessClient,
    KeyframeRequest,
    OpenClipRequest,
    ReferenceRequest,
    RenderRequest,
    SessionNotFound,
    SessionRequest,
    SettingsRequest,
    StatusRequest,
    Worker,
    WorkerConfig,
)
from sparkvsr.worker.limits import RequestError, TooLarge
from tests.project_helpers import (
    decode_all,
    free_port,
    make_clip,
    run_module,
    run_session,
    start_module,
)

OPTIONS = RestoreOptions(chunk=4, overlap=0)


@pytest.fixture()
def clip(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "clip.mp4", num_frames=24)


@contextlib.contextmanager
def serving(worker: Worker, token: str | None = None, **limits):
    """Real uvicorn on 127.0.0.1 and a free port with the worker's own server settings (header
    timeout, connection limit), in a thread; stopped on exit."""
    import uvicorn

    options = ServeOptions(port=free_port(), token=token, **limits)
    port = options.port
    server = uvicorn.Server(uvicorn_config(create_app(worker, options=options), options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_whole_session_over_http_equals_in_process(tmp_path, clip):
    config = WorkerConfig(projects_root=tmp_path / "http", options=OPTIONS)
    with (
        Worker(config, engine=load_engine("flow")) as worker,
        serving(worker, "s3cret") as url,
        HttpClient(url, token="s3cret", timeout=60) as client,
    ):
        _, over_http = run_session(client, clip)
        assert client.status().engine.name == "flow"
        assert client.status().sessions == 1
    local = WorkerConfig(projects_root=tmp_path / "local", options=OPTIONS)
    with InProcessClient(config=local) as client:
        _, in_process = run_session(client, clip)
    assert np.array_equal(over_http, in_process)


def test_token_is_required_and_errors_cross_the_wire(tmp_path, clip):
    config = WorkerConfig(projects_root=tmp_path / "p", options=OPTIONS)
    with (
        Worker(config, engine=load_engine("flow")) as worker,
        serving(worker, "right-token-0123456789") as url,
    ):
        for token in (None, "wrong"):
            with (
                HttpClient(url, token=token, timeout=60) as client,
                pytest.raises(SparkVSRError, match="token"),
            ):
                client.status()
        with HttpClient(url, token="right-token-0123456789", timeout=60) as client:
            info = client.open_clip(OpenClipRequest(str(clip)))
            client.set_keyframe(KeyframeRequest(info.session_id, 0))
            with pytest.raises(KeyframeError, match="0 and 2 are 2 frames apart"):
                client.set_keyframe(KeyframeRequest(info.session_id, 2))
            with pytest.raises(AccessDenied, match="refused"):
                client.get_file(FileRequest(info.session_id, "../../etc/passwd"))
            with pytest.raises(SessionNotFound):
                client.status(StatusRequest("forged-session-id"))
            settings = client.update_settings(SettingsRequest(info.session_id, chunk=8, crf=20))
            assert (settings.options.chunk, settings.crf) == (8, 20)

        # arrays travel as PNG bytes, never as JSON lists
        raw = httpx.post(
            f"{url}/api/frame",
            json={"session_id": info.session_id, "index": 3},
            headers={"Authorization": "Bearer right-token-0123456789"},
        )
        image = raw.json()["image"]
        assert list(image) == ["png"]
        assert base64.b64decode(image["png"]).startswith(b"\x89PNG\r\n\x1a\n")


def test_a_non_loopback_bind_needs_a_token():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20")
    with pytest.raises(ServerError, match="without a token"):
        check_bind(ServeOptions(host="0.0.0.0", port=7861))
    check_bind(ServeOptions(host="0.0.0.0", port=7861, token="t" * 16))
    with pytest.raises(ServerError, match="at least 16"):
        check_bind(ServeOptions(host="0.0.0.0", port=7861, token="short"))
    check_bind(ServeOptions(host="127.0.0.1", port=7861))

    result = run_module("worker", "--host", "0.0.0.0", "--port", str(free_port()), timeout=60)
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 without a token" in result.stderr


def _start_worker(tmp_path: Path, projects: Path, token: str, name: str):
    port = free_port()
    process = start_module(
        "worker",
        "--port",
        str(port),
        "--projects",
        str(projects),
        "--token",
        token,
        log=tmp_path / f"{name}.log",
    )
    client = HttpClient(f"http://127.0.0.1:{port}", token=token, timeout=60)
    deadline = time.monotonic() + 90
    while True:
        try:
            client.status()
            return process, client
        except SparkVSRError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError((tmp_path / f"{name}.log").read_text()) from None
            time.sleep(0.2)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


def _prepare(client, clip: Path, project: str) -> str:
    sid = client.open_clip(OpenClipRequest(str(clip), project=project)).session_id
    client.update_settings(SettingsRequest(sid, chunk=4, overlap=0))
    for frame in (0, 20):
        client.set_keyframe(KeyframeRequest(sid, frame))
        client.make_reference(ReferenceRequest(sid, frame))
    return sid


def test_kill_9_of_a_worker_mid_render_then_resume_is_exact(tmp_path):
    clip = make_clip(tmp_path / "long.mp4", num_frames=40, width=96, height=64)
    projects, token = tmp_path / "projects", "kill-test-token-0123456789"

    # 1. render in a worker process and kill -9 it after two finished chunks
    process, client = _start_worker(tmp_path, projects, token, "first")
    try:
        sid = _prepare(client, clip, "killed")
        for update in client.render(RenderRequest(sid)):
            if update.chunks_rendered >= 2:
                os.kill(process.pid, signal.SIGKILL)
                break
        process.wait(timeout=20)
    finally:
        client.close()
        _stop(process)
    kept = Project.open(projects / "killed").state.render
    assert 8 <= kept.resume_frame < 40, "the kill must land mid-render"

    # 2. a fresh worker reopens the project and finishes the same render
    process, client = _start_worker(tmp_path, projects, token, "second")
    try:
        info = client.open_clip(OpenClipRequest(project="killed"))
        assert info.keyframes == (0, 20)
        updates = list(client.render(RenderRequest(info.session_id)))
        resumed = decode_all(
            Path(client.get_file(FileRequest(info.session_id, "output.mp4")).local_path)
        )
    finally:
        client.close()
        _stop(process)
    assert updates[-1].chunks_resumed == len(kept.chunks)
    starts = [row[0] for row in Project.open(projects / "killed").chunk_log()]
    assert starts == list(range(0, 40, 4))  # every chunk rendered exactly once

    # 3. identical, frame for frame, to an uninterrupted render
    config = WorkerConfig(projects_root=tmp_path / "reference")
    with InProcessClient(config=config) as local:
        sid = _prepare(local, clip, "whole")
        list(local.render(RenderRequest(sid)))
        whole = decode_all(Path(local.get_file(FileRequest(sid, "output.mp4")).local_path))
    assert np.array_equal(resumed, whole)


def test_a_remote_client_uploads_its_clip_and_other_paths_are_refused(tmp_path, clip):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    config = WorkerConfig(projects_root=tmp_path / "p", options=OPTIONS, clip_roots=(allowed,))
    with (
        Worker(config, engine=load_engine("flow")) as worker,
        serving(worker) as url,
        HttpClient(url, timeout=60) as client,
    ):
        with pytest.raises(AccessDenied, match="outside the folders"):
            client.open_clip(OpenClipRequest(str(clip)))
        uploaded = client.upload_clip(clip)
        assert uploaded.size == clip.stat().st_size
        assert Path(uploaded.clip_path).read_bytes() == clip.read_bytes()
        info = client.open_clip(OpenClipRequest(uploaded.clip_path))
        frame = client.frame(FrameRequest(info.session_id, 3)).image
        assert np.array_equal(frame, decode_all(clip)[3])


# ---------------------------------------------------------------------------------------------
# Hardening: what a hostile page or client sends is refused before any work


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _png_bomb(width: int, height: int) -> bytes:
    """A 1-bit greyscale PNG of ``width`` x ``height`` zero pixels, compressed row by row so
    making it never holds the pixels (13,000 x 13,000 = 169 Mpx in about 25 KB)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row) for _ in range(height)]
    idat = b"".join(parts) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_a_foreign_host_header_and_text_plain_bodies_are_refused(tmp_path, clip):
    config = WorkerConfig(projects_root=tmp_path / "p", options=OPTIONS)
    with Worker(config, engine=load_engine("flow")) as worker, serving(worker) as url:
        # DNS rebinding: a page served from evil.example resolving to 127.0.0.1
        for host in ("evil.example", "evil.example:7861", "127.0.0.1.evil.example"):
            reply = httpx.post(f"{url}/api/status", json={}, headers={"Host": host})
            assert reply.status_code == 421 and "--allowed-host" in reply.json()["message"]
        for host in ("127.0.0.1", "localhost:1234", "[::1]:7861"):
            assert httpx.post(f"{url}/api/status", json={}, headers={"Host": host}).is_success
        # a cross-origin form/fetch without preflight can only send text/plain, form types
        upload = httpx.post(
            f"{url}/api/upload_clip?filename=x.mp4",
            content=clip.read_bytes(),
            headers={"Content-Type": "text/plain"},
        )
        assert upload.status_code == 415
        assert not (tmp_path / "p" / "_uploads").exists() or not any(
            (tmp_path / "p" / "_uploads").iterdir()
        )
        opened = httpx.post(
            f"{url}/api/open_clip",
            content=json.dumps({"clip_path": str(clip)}),
            headers={"Content-Type": "text/plain"},
        )
        assert opened.status_code == 415 and worker.status().sessions == 0
        # no CORS: nothing invites a browser to read answers from another origin
        assert "access-control-allow-origin" not in opened.headers
    config_hosts = ServeOptions(allowed_hosts=("studio.example",))
    assert "studio.example" in allowed_host_names(config_hosts)


def test_wrong_types_are_422_naming_the_field_and_never_saved(tmp_path, clip):
    config = WorkerConfig(projects_root=tmp_path / "p", options=OPTIONS)
    with (
        Worker(config, engine=load_engine("flow")) as worker,
        serving(worker) as url,
        httpx.Client(base_url=url, timeout=60) as http,  # one keep-alive connection throughout
    ):
        sid = http.post("/api/open_clip", json={"clip_path": str(clip)}).json()["session_id"]
        bad = [
            ("frame", {"session_id": sid, "index": "5"}, "index"),
            ("frame", {"session_id": sid, "index": 1.5}, "index"),
            ("frame", {"session_id": [sid], "index": 1}, "session_id"),
            ("preview", {"session_id": sid, "frame": 1, "guidance": None}, "guidance"),
            ("preview", {"session_id": sid, "frame": 1, "guidance": "1"}, "guidance"),
            ("update_settings", {"session_id": sid, "chunk": 8.5}, "chunk"),
            ("update_settings", {"session_id": sid, "chunk": 10**12}, "chunk"),
            ("update_settings", {"session_id": sid, "crf": 20.7}, "crf"),
            ("update_settings", {"session_id": sid, "color_fix": "sepia"}, "color_fix"),
            ("update_settings", {"session_id": sid, "chunk": 8, "surprise": 1}, "surprise"),
        ]
        for method, body, field_name in bad:
            reply = http.post(f"/api/{method}", json=body)
            assert reply.status_code == 422, (method, body, reply.text)
            assert reply.json()["error"] == "RequestError"
            assert f"'{field_name}" in reply.json()["message"], reply.json()["message"]
        for raw in (b"[1, 2]", b"{not json", b'"text"'):
            reply = http.post(
                "/api/frame", content=raw, headers={"Content-Type": "application/json"}
            )
            assert reply.status_code == 422
        # the connection still serves the next request
        assert http.post("/api/frame", json={"session_id": sid, "index": 5}).is_success
        project = next(p for p in (tmp_path / "p").iterdir() if p.name != "_uploads")
        options = json.loads((project / "project.json").read_text())["options"]
        assert options["chunk"] == OPTIONS.chunk
        # the worker checks the same limits for in-process callers
        with pytest.raises(RequestError, match="chunk"):
            worker.update_settings(SettingsRequest(sid, chunk=8.5))
        with pytest.raises(RequestError, match="chunk 1000000000000"):
            worker.update_settings(SettingsRequest(sid, chunk=10**12))
        with pytest.raises(RequestError, match="crf"):
            worker.update_settings(SettingsRequest(sid, crf=20.7))
        options = json.loads((project / "project.json").read_text())["options"]
        assert options["chunk"] == OPTIONS.chunk


def test_a_169_megapixel_png_is_refused_from_its_header(tmp_path, clip):
    bomb = _png_bomb(13_000, 13_000)
    assert len(bomb) < 40_000
    config = WorkerConfig(projects_root=tmp_path / "p", options=OPTIONS)
    with Worker(config, engine=load_engine("flow")) as worker, serving(worker) as url:
        sid = httpx.post(f"{url}/api/open_clip", json={"clip_path": str(clip)}).json()["session_id"]
        httpx.post(f"{url}/api/set_keyframe", json={"session_id": sid, "frame": 0})
        body = {
            "session_id": sid,
            "frame": 0,
            "editor": "upload",
            "upload": {"png": base64.b64encode(bomb).decode()},
        }
        before = _rss_bytes()
        seconds = []
        for _ in range(3):
            start = time.monotonic()
            reply = httpx.post(f"{url}/api/make_reference", json=body, timeout=60)
            seconds.append(time.monotonic() - start)
            assert reply.status_code == 413 and "169.0 Mpx" in reply.json()["message"]
        assert min(seconds) < 1.0, seconds
        assert _rss_bytes() - before < 50 << 20
        # an unknown session is refused before the image is even looked at
        body["session_id"] = "forged"
        assert httpx.post(f"{url}/api/make_reference", json=body).status_code == 404


def test_bodies_and_uploads_over_the_limits_are_refused_and_nothing_is_kept(tmp_path, clip):
    config = WorkerConfig(projects_root=tmp_path / "p", options=OPTIONS)
    size = clip.stat().st_size
    with (
        Worker(config, engine=load_engine("flow")) as worker,
        serving(worker, max_body_bytes=4096, max_upload_bytes=size - 1) as url,
    ):
        big = httpx.post(f"{url}/api/open_clip", json={"clip_path": "x" * 5000})
        assert big.status_code == 413

        def chunked():
            yield b'{"clip_path": "'
            yield b"x" * 5000
            yield b'"}'

        streamed = httpx.post(
            f"{url}/api/open_clip", content=chunked(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413
        with HttpClient(url, timeout=60) as client, pytest.raises(TooLarge, match="larger"):
            client.upload_clip(clip)
        uploads = tmp_path / "p" / "_uploads"
        assert not uploads.exists() or not any(uploads.rglob("*.mp4"))


def test_failed_tokens_are_rate_limited_per_address(tmp_path):
    token = "a-long-enough-token-123"
    config = WorkerConfig(projects_root=tmp_path / "p", options=OPTIONS)
    with (
        Worker(config, engine=load_engine("flow")) as worker,
        serving(worker, token, auth_failures=5) as url,
    ):
        right = {"Authorization": f"Bearer {token}"}
        assert httpx.post(f"{url}/api/status", json={}, headers=right).is_success
        codes = [
            httpx.post(f"{url}/api/status", json={}, headers={"Authorization": f"Bearer x{i}"})
            for i in range(7)
        ]
        assert [c.status_code for c in codes] == [401] * 5 + [429] * 2
        # locked out for the window even with the right token
        assert httpx.post(f"{url}/api/status", json={}, headers=right).status_code == 429


def test_half_open_connections_neither_block_requests_nor_stay_open(tmp_path):
    import socket

    config = WorkerConfig(projects_root=tmp_path / "p", options=OPTIONS)
    with (
        Worker(config, engine=load_engine("flow")) as worker,
        serving(worker, header_timeout=2.0) as url,
    ):
        port = int(url.rsplit(":", 1)[1])
        sockets = []
        try:
            for _ in range(500):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                sockets.append(s)
            start = time.monotonic()
            assert httpx.get(f"{url}/api/health", timeout=10).json() == {"status": "ok"}
            assert time.monotonic() - start < 2.0
            # after the header timeout every half-open connection has been closed by the server
            deadline = time.monotonic() + 10
            for s in sockets:
                s.settimeout(max(0.1, deadline - time.monotonic()))
                assert s.recv(1024) == b""
        finally:
            for s in sockets:
                s.close()


def test_control_calls_answer_at_once_while_previews_queue_behind_the_engine(tmp_path, clip):
    from tests.project_helpers import CountingEngine, UpscaleEngine

    engine = CountingEngine(UpscaleEngine(), preview_delay=1.0)
    config = WorkerConfig(projects_root=tmp_path / "p", options=OPTIONS, preview_interval=0.0)
    with Worker(config, engine=engine) as worker, serving(worker) as url:
        sessions = [worker.open_clip(OpenClipRequest(str(clip))).session_id for _ in range(12)]
        answers: list[int] = []

        def ask(sid: str, guidance: float) -> None:
            body = {"session_id": sid, "frame": 3, "guidance": guidance}
            answers.append(httpx.post(f"{url}/api/preview", json=body, timeout=120).status_code)

        # 48 previews from 12 sessions: >= 12 s of engine work queued (coalesced per session);
        # a control call waiting behind it would take seconds, on any machine
        threads = [
            threading.Thread(target=ask, args=(sid, g / 10)) for g in range(4) for sid in sessions
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        for method, body in [
            ("status", {}),
            ("render_job", {"session_id": sessions[0]}),
            ("cancel", {"session_id": sessions[1]}),
            ("close_session", {"session_id": sessions[2]}),
        ]:
            start = time.monotonic()
            reply = httpx.post(f"{url}/api/{method}", json=body, timeout=30)
            assert reply.is_success, reply.text
            assert time.monotonic() - start < 2.0, f"{method} waited behind the engine"
        start = time.monotonic()
        assert httpx.get(f"{url}/api/health").is_success and time.monotonic() - start < 2.0
        for thread in threads:
            thread.join(timeout=120)
        # the closed session's callers are told so (404); every other preview was answered
        assert sorted(set(answers)) in ([200], [200, 404]) and len(answers) == 48
        assert engine.previews <= 12 * 2  # coalesced: at most the first and the latest each


def test_a_render_goes_on_when_its_http_client_leaves_and_another_follows_it(tmp_path, clip):
    from tests.project_helpers import UpscaleEngine

    config = WorkerConfig(projects_root=tmp_path / "p", options=OPTIONS)
    with Worker(config, engine=UpscaleEngine(delay=0.2)) as worker, serving(worker) as url:
        with HttpClient(url, timeout=60) as first:
            info = first.open_clip(OpenClipRequest(str(clip), project="walk"))
            progress = first.render(RenderRequest(info.session_id))
            assert next(progress).stage == "render"
            progress.close()  # the tab closes mid-render: its stream ends, the job does not
            first.close_session(SessionRequest(info.session_id))
        with HttpClient(url, timeout=60) as second:
            again = second.open_clip(OpenClipRequest(project="walk"))
            job = second.render_job(SessionRequest(again.session_id))
            assert job.state in ("rendering", "encoding") and job.progress is not None
            updates = list(second.attach(SessionRequest(again.session_id)))
            assert updates[0].frames_done == 0 and updates[-1].stage == "done"
            done = second.render_job(SessionRequest(again.session_id))
            assert done.state == "done" and done.progress.frames_done == 24
            output = second.get_file(FileRequest(again.session_id, "output.mp4"))
            assert len(decode_all(Path(output.local_path))) == 24


def test_a_flood_of_identical_log_lines_is_throttled():
    import logging

    from sparkvsr.server import LogThrottle

    throttle = LogThrottle(burst=10, window=60.0)
    records = [
        logging.LogRecord(
            "uvicorn.error", logging.WARNING, __file__, 1, "Invalid HTTP request", (), None
        )
        for _ in range(1000)
    ]
    passed = [r for r in records if throttle.filter(r)]
    assert len(passed) == 10
    other = logging.LogRecord("uvicorn.error", logging.WARNING, __file__, 1, "other", (), None)
    assert throttle.filter(other)  # a different message has its own allowance
