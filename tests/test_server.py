"""The worker over HTTP: a whole session against real uvicorn on 127.0.0.1, token auth, the bind
rule, PNG transport, and kill -9 of a worker process mid-render followed by an exact resume."""

from __future__ import annotations

import base64
import contextlib
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
from sparkvsr.server import ServeOptions, ServerError, check_bind, create_app, is_loopback
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
    SettingsRequest,
    StatusRequest,
    Worker,
    WorkerConfig,
)
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
def serving(worker: Worker, token: str | None = None):
    """Real uvicorn on 127.0.0.1 and a free port, in a thread; stopped on exit."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        create_app(worker, token), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
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
    with Worker(config, engine=load_engine("flow")) as worker, serving(worker, "right") as url:
        for token in (None, "wrong"):
            with (
                HttpClient(url, token=token, timeout=60) as client,
                pytest.raises(SparkVSRError, match="token"),
            ):
                client.status()
        with HttpClient(url, token="right", timeout=60) as client:
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
            headers={"Authorization": "Bearer right"},
        )
        image = raw.json()["image"]
        assert list(image) == ["png"]
        assert base64.b64decode(image["png"]).startswith(b"\x89PNG\r\n\x1a\n")


def test_a_non_loopback_bind_needs_a_token():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20")
    with pytest.raises(ServerError, match="without a token"):
        check_bind(ServeOptions(host="0.0.0.0", port=7861))
    check_bind(ServeOptions(host="0.0.0.0", port=7861, token="t"))
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
    projects, token = tmp_path / "projects", "kill-test"

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
