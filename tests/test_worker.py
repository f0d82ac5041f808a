"""The resident worker, in-process: a whole session, preview coalescing, cancel and resume,
session isolation and path refusal."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sparkvsr.engines import load_engine
from sparkvsr.engines.base import RestoreOptions
from sparkvsr.errors import Cancelled, EditorError, KeyframeError, ProjectError
from sparkvsr.project import Project
from sparkvsr.render import render_project
from sparkvsr.worker import (
    AccessDenied,
    FileRequest,
    FrameRequest,
    InProcessClient,
    KeyframeRequest,
    OpenClipRequest,
    PreviewRequest,
    ReferenceRequest,
    RenderRequest,
    SessionNotFound,
    SessionRequest,
    StatusRequest,
    Worker,
    WorkerConfig,
)
from sparkvsr.worker.limits import RequestError
from tests.project_helpers import (
    CountingEngine,
    UpscaleEngine,
    decode_all,
    make_clip,
    run_session,
)

OPTIONS = RestoreOptions(chunk=4, overlap=0)


@pytest.fixture()
def clip(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "clip.mp4", num_frames=24)


@pytest.fixture()
def flow() -> CountingEngine:
    return CountingEngine(load_engine("flow"))


def make_worker(tmp_path: Path, engine, **config) -> Worker:
    return Worker(
        WorkerConfig(projects_root=tmp_path / "projects", options=OPTIONS, **config), engine=engine
    )


def open_with_keyframes(worker: Worker, clip: Path, keyframes=(0, 12), project: str = ""):
    info = worker.open_clip(OpenClipRequest(str(clip), project))
    for k in keyframes:
        worker.set_keyframe(KeyframeRequest(info.session_id, k))
        worker.make_reference(ReferenceRequest(info.session_id, k))
    return info


def test_whole_session_in_process_with_flow(tmp_path, clip, flow):
    with InProcessClient(make_worker(tmp_path, flow)) as client:
        info, frames = run_session(client, clip)
        # the output equals a render of the same project outside the worker
        project = Project.open(tmp_path / "projects" / info.project)
        direct = render_project(load_engine("flow"), project, output=tmp_path / "direct.mp4")
        assert np.array_equal(frames, decode_all(direct.output))
        assert flow.chunks == [(0, 4), (4, 8), (8, 12), (12, 16), (16, 20), (20, 24)]
        client.worker.close()


def test_twenty_previews_within_a_second_coalesce_and_the_last_guidance_wins(tmp_path, clip, flow):
    with make_worker(tmp_path, flow) as worker:
        sid = open_with_keyframes(worker, clip).session_id
        guidances = [round(0.1 * i, 2) for i in range(1, 21)]
        responses: dict[float, object] = {}

        def ask(s: float) -> None:
            responses[s] = worker.preview(PreviewRequest(sid, 6, s))

        threads = []
        started = time.monotonic()
        for s in guidances:  # a slider drag: one request every 40 ms
            thread = threading.Thread(target=ask, args=(s,))
            thread.start()
            threads.append(thread)
            time.sleep(0.04)
        assert time.monotonic() - started < 1.0
        for thread in threads:
            thread.join(timeout=30)

        assert 1 <= flow.previews <= 3, flow.preview_guidances
        assert flow.preview_guidances[-1] == guidances[-1]  # the last s wins
        last = responses[guidances[-1]]
        assert last.guidance == guidances[-1] and not last.superseded
        assert len(responses) == 20 and sum(r.superseded for r in responses.values()) >= 17
        # every caller got a real image for the newest guidance at the time it ran
        plain = worker.preview(PreviewRequest(sid, 6, guidances[-1])).image
        assert np.array_equal(last.image, plain)


def test_a_burst_of_previews_runs_at_most_twice(tmp_path, clip, flow):
    flow.preview_delay = 0.5  # a slow engine: the burst arrives while the first one computes
    with make_worker(tmp_path, flow, preview_interval=0.0) as worker:
        sid = open_with_keyframes(worker, clip).session_id
        barrier = threading.Barrier(20)
        results = []

        def ask(s: float) -> None:
            barrier.wait()
            results.append(worker.preview(PreviewRequest(sid, 3, s)))

        threads = [threading.Thread(target=ask, args=(0.1 * i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(results) == 20
        assert flow.previews <= 2


def test_previews_stay_live_during_a_render_and_cancel_keeps_chunks(tmp_path, clip):
    engine = CountingEngine(UpscaleEngine(delay=0.15))
    with make_worker(tmp_path, engine, preview_interval=0.0) as worker:
        info = open_with_keyframes(worker, clip)
        sid = info.session_id
        progress = worker.render(RenderRequest(sid))
        first = next(progress)
        assert first.stage == "render"
        preview = worker.preview(PreviewRequest(sid, 20, 1.0))  # served between chunks
        assert preview.image.shape == (128, 192, 3)
        assert worker.status(StatusRequest(sid)).render.stage == "render"

        while next(progress).chunks_rendered < 2:
            pass
        assert worker.cancel(SessionRequest(sid)).cancelled
        with pytest.raises(Cancelled):
            for _ in progress:
                pass
        done_before = len(engine.chunks)
        assert done_before < 6

        updates = list(worker.render(RenderRequest(sid)))
        assert updates[-1].stage == "done"
        assert updates[-1].chunks_resumed == done_before
        log = Project.open(tmp_path / "projects" / info.project).chunk_log()
        assert [row[0] for row in log] == [0, 4, 8, 12, 16, 20]  # no chunk rendered twice
        assert not worker.cancel(SessionRequest(sid)).cancelled


def test_a_reopened_project_resumes_in_a_new_worker(tmp_path, clip):
    with make_worker(tmp_path, UpscaleEngine(delay=0.05)) as worker:
        info = open_with_keyframes(worker, clip, project="walk")
        progress = worker.render(RenderRequest(info.session_id))
        while next(progress).chunks_rendered < 3:
            pass
        worker.cancel(SessionRequest(info.session_id))
        with pytest.raises(Cancelled):
            list(progress)
    with make_worker(tmp_path, UpscaleEngine()) as worker:
        reopened = worker.open_clip(OpenClipRequest(project="walk"))
        assert reopened.keyframes == (0, 12) and len(reopened.references) == 2
        updates = list(worker.render(RenderRequest(reopened.session_id)))
        assert updates[-1].chunks_resumed >= 3


def test_sessions_are_isolated(tmp_path, clip):
    with make_worker(tmp_path, UpscaleEngine()) as worker:
        a = worker.open_clip(OpenClipRequest(str(clip)))
        b = worker.open_clip(OpenClipRequest(str(clip)))
        assert a.session_id != b.session_id and len(a.session_id) >= 32
        assert a.project != b.project

        def pin(session_id: str, frames: list[int]) -> None:
            for frame in frames:
                worker.set_keyframe(KeyframeRequest(session_id, frame))

        threads = [
            threading.Thread(target=pin, args=(a.session_id, [0, 8, 16])),
            threading.Thread(target=pin, args=(b.session_id, [4, 20])),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        reopened_a = Project.open(tmp_path / "projects" / a.project).state.keyframes
        reopened_b = Project.open(tmp_path / "projects" / b.project).state.keyframes
        assert (reopened_a, reopened_b) == ((0, 8, 16), (4, 20))
        with pytest.raises(KeyframeError, match="not pinned"):
            worker.make_reference(ReferenceRequest(b.session_id, 8))

        # naming another session's project, or a path that leaves the own folder, is refused
        with pytest.raises(AccessDenied, match="open in another session"):
            worker.open_clip(OpenClipRequest(str(clip), project=a.project))
        other = f"../{a.project}/project.json"
        secret = tmp_path / "projects" / a.project / "project.json"
        (tmp_path / "projects" / b.project / "escape").symlink_to(secret)
        for bad in [other, str(secret), "/etc/passwd", "escape", "references/../../x"]:
            with pytest.raises(AccessDenied, match="refused"):
                worker.get_file(FileRequest(b.session_id, bad))
        for bad_name in ["../x", "/tmp/x", "a/b", ".hidden"]:
            with pytest.raises(AccessDenied):
                worker.open_clip(OpenClipRequest(str(clip), project=bad_name))
        with pytest.raises(AccessDenied):
            worker.render(RenderRequest(b.session_id, output="../stolen.mp4"))
        assert worker.get_file(FileRequest(b.session_id, "project.json")).size > 0
        with pytest.raises(SessionNotFound):
            worker.frame(FrameRequest("not-a-session", 0))

        worker.close_session(SessionRequest(a.session_id))
        with pytest.raises(SessionNotFound):
            worker.set_keyframe(KeyframeRequest(a.session_id, 4))
        again = worker.open_clip(OpenClipRequest(project=a.project))  # free once closed
        assert again.keyframes == (0, 8, 16)


def test_bad_requests_get_clear_errors_and_change_nothing(tmp_path, clip):
    with make_worker(tmp_path, UpscaleEngine()) as worker:
        info = open_with_keyframes(worker, clip, keyframes=(8,))
        sid = info.session_id
        with pytest.raises(KeyframeError, match="8 and 10 are 2 frames apart"):
            worker.set_keyframe(KeyframeRequest(sid, 10))
        with pytest.raises(RequestError, match="guidance 11"):
            worker.preview(PreviewRequest(sid, 3, 11.0))
        with pytest.raises(KeyframeError, match="outside the clip"):
            worker.preview(PreviewRequest(sid, 99, 1.0))
        with pytest.raises(EditorError, match="unknown editor 'photoshop'"):
            worker.make_reference(ReferenceRequest(sid, 8, editor="photoshop"))
        with pytest.raises(ProjectError, match="does not exist"):
            worker.open_clip(OpenClipRequest(project="never-made"))
        state = Project.open(tmp_path / "projects" / info.project).state
        assert state.keyframes == (8,) and len(state.references) == 1


def test_a_project_whose_clip_moved_reports_it_and_relinks(tmp_path, clip):
    with make_worker(tmp_path, UpscaleEngine()) as worker:
        info = open_with_keyframes(worker, clip, keyframes=(4,), project="moved")
        worker.close_session(SessionRequest(info.session_id))
        moved = clip.rename(tmp_path / "elsewhere.mp4")
        with pytest.raises(ProjectError, match=r"clip of project .* is missing"):
            worker.open_clip(OpenClipRequest(project="moved"))
        relinked = worker.open_clip(OpenClipRequest(str(moved), project="moved"))
        assert relinked.clip.path == str(moved.resolve())
        assert relinked.keyframes == (4,) and [r.frame for r in relinked.references] == [4]
