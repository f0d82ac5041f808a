"""The resident worker, in-process: a whole session, preview coalescing, cancel and resume,
session isolation and path refusal."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sparkvsr.engines import load_engine
from sparkvsr.engines.base import RestoreOptions
from sparkvsr.errors import Cancelled, EditorError, KeyframeError, ProjectError
from sparkvsr.project import Project
from sparkvsr.project_lock import ProjectLocked
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
from sparkvsr.worker.limits import RequestError, TooLarge
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
        # while the session is open the project is the worker's: no one else may write it
        with pytest.raises(ProjectLocked, match="in use by the SparkVSR worker"):
            Project.open(tmp_path / "projects" / info.project, lock="a test")
        # the output equals a render of the same project outside the worker
        client.close_session(SessionRequest(info.session_id))
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


def test_a_render_that_outlives_its_tab_keeps_its_project_from_clean_ups(tmp_path, clip):
    """Closing the last tab leaves the render running; until it ends, the projects panel may
    not clear, rename or delete the project under it (its chunks would vanish mid-render)."""
    from sparkvsr.errors import ProjectError
    from sparkvsr.worker import ProjectActionRequest

    with make_worker(tmp_path, UpscaleEngine(delay=0.3)) as worker:
        info = open_with_keyframes(worker, clip)
        progress = worker.render(RenderRequest(info.session_id))
        assert next(progress).stage == "render"
        worker.close_session(SessionRequest(info.session_id))  # the tab goes; the render stays
        for action in ("clear_caches", "delete"):
            with pytest.raises(ProjectError, match="rendering"):
                worker.project_action(ProjectActionRequest(info.project, action))
        folder = tmp_path / "projects" / info.project
        assert Project.open(folder, require_clip=False).state.render is not None


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


# ---------------------------------------------------------------------------------------------
# Render jobs, one writer per project, the engine thread kept for the engine, session lifetime

SHARED_CLIP = Path("../shared/data/zhengchen1999_006.mp4")  # 100 frames of 320x240


def wait_for(condition, timeout: float = 60.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.01)
    return value


def test_a_render_outlives_its_caller_and_can_be_followed_again(tmp_path, clip):
    with make_worker(tmp_path, UpscaleEngine(delay=0.1)) as worker:
        info = open_with_keyframes(worker, clip)
        sid = info.session_id
        assert worker.render_job(SessionRequest(sid)).state == "none"
        progress = worker.render(RenderRequest(sid))
        next(progress)
        del progress  # the caller goes away (a closed tab): the job goes on
        # pins made during the render stay; the render keeps the settings it started with
        worker.set_keyframe(KeyframeRequest(sid, 20))
        job = worker.render_job(SessionRequest(sid))
        assert job.state in ("rendering", "encoding") and job.project == info.project
        replayed = list(worker.attach(SessionRequest(sid)))  # from the start, to the end
        assert replayed[0].frames_done == 0 and replayed[-1].stage == "done"
        done = worker.render_job(SessionRequest(sid))
        assert done.state == "done" and done.output.endswith("output.mp4") and done.finished
        assert len(decode_all(Path(done.output))) == 24
        project = json.loads((tmp_path / "projects" / info.project / "project.json").read_text())
        assert project["keyframes"] == [0, 12, 20]
        again = worker.render(RenderRequest(sid))  # settings changed (a pin): renders anew
        with pytest.raises(ProjectError, match="already running"):
            worker.render(RenderRequest(sid))
        assert list(again)[-1].stage == "done"


def test_closing_during_the_encode_then_reopening_and_pinning_keeps_the_pin(tmp_path, clip):
    with make_worker(tmp_path, UpscaleEngine(delay=0.05)) as worker:
        info = open_with_keyframes(worker, clip, project="pinned")
        worker.render(RenderRequest(info.session_id))
        worker.close_session(SessionRequest(info.session_id))  # the render goes on
        again = worker.open_clip(OpenClipRequest(project="pinned"))
        worker.set_keyframe(KeyframeRequest(again.session_id, 20))
        updates = list(worker.attach(SessionRequest(again.session_id)))
        assert updates[-1].stage == "done"
        state = Project.open(tmp_path / "projects" / "pinned").state
        assert state.keyframes == (0, 12, 20) and state.render.complete
        # another session of the project can cancel; a tab left open can be taken over
        with pytest.raises(AccessDenied, match="take_over"):
            worker.open_clip(OpenClipRequest(project="pinned"))
        third = worker.open_clip(OpenClipRequest(project="pinned", take_over=True))
        with pytest.raises(SessionNotFound):
            worker.frame(FrameRequest(again.session_id, 0))
        assert worker.status().sessions == 1 and third.keyframes == (0, 12, 20)


def test_a_project_has_one_writer_across_processes_and_kill_9_frees_it(tmp_path, clip):
    import subprocess
    import sys

    folder = tmp_path / "projects" / "shared"
    with make_worker(tmp_path, UpscaleEngine()) as worker:
        info = open_with_keyframes(worker, clip, project="shared")
        # another process cannot take the project while the worker has it open
        probe = (
            "import sys; from sparkvsr.project import Project\n"
            "try:\n    Project.open(sys.argv[1], lock='probe')\n"
            "except Exception as e:\n    print(e); sys.exit(3)\n"
        )
        refused = subprocess.run(
            [sys.executable, "-c", probe, str(folder)], capture_output=True, text=True, timeout=60
        )
        assert refused.returncode == 3
        assert f"in use by the SparkVSR worker (pid {os.getpid()}" in refused.stdout
        worker.close_session(SessionRequest(info.session_id))
    # a holder killed with -9 leaves a note but no lock: the next opener takes it over
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from sparkvsr.project import Project\n"
            "p = Project.open(sys.argv[1], lock='a doomed holder'); print('held', flush=True)\n"
            "time.sleep(120)\n",
            str(folder),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with make_worker(tmp_path, UpscaleEngine()) as worker:
            with pytest.raises(ProjectLocked, match=f"a doomed holder \\(pid {holder.pid} on"):
                worker.open_clip(OpenClipRequest(project="shared"))
            with pytest.raises(ProjectLocked):  # waiting, if asked, up to a limit
                Project.open(folder, lock="a patient opener", wait=0.3)
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(timeout=30)
            taken = Project.open(folder, lock="after the crash")
            assert taken.lock.stale is not None and taken.lock.stale.pid == holder.pid
            taken.close()
            reopened = worker.open_clip(OpenClipRequest(project="shared"))
            assert list(worker.render(RenderRequest(reopened.session_id)))[-1].stage == "done"
    finally:
        holder.kill()
        holder.wait(timeout=30)


class _FastRenderFlowPreview:
    """The flow engine for previews, a nearest-neighbour engine for the render's chunks: the
    chunks finish in moments, so the test reaches the final encode (what it is about) quickly."""

    name = "flow"

    def __init__(self):
        self.flow = load_engine("flow")
        self.fast = UpscaleEngine()

    def restore(self, *args, **kwargs):
        return self.fast.restore(*args, **kwargs)

    def preview(self, *args, **kwargs):
        return self.flow.preview(*args, **kwargs)

    def status(self):
        return self.flow.status()


@pytest.mark.skipif(not SHARED_CLIP.exists(), reason=f"{SHARED_CLIP} is not here")
def test_the_final_encode_neither_blocks_previews_nor_ignores_cancel(tmp_path):
    options = RestoreOptions(chunk=25, overlap=0)
    config = WorkerConfig(projects_root=tmp_path / "projects", options=options)
    with Worker(config, engine=_FastRenderFlowPreview()) as worker:
        rendering = open_with_keyframes(worker, SHARED_CLIP, keyframes=(0, 60))
        other = open_with_keyframes(worker, SHARED_CLIP, keyframes=(10, 50))
        worker.preview(PreviewRequest(other.session_id, 30, 1.0))  # flows for this frame cached
        progress = worker.render(RenderRequest(rendering.session_id))
        wait_for(
            lambda: worker.render_job(SessionRequest(rendering.session_id)).state == "encoding",
            what="the final encode",
        )
        start = time.monotonic()
        preview = worker.preview(PreviewRequest(other.session_id, 30, 0.5))
        preview_seconds = time.monotonic() - start
        assert preview.image.shape == (960, 1280, 3)
        assert worker.render_job(SessionRequest(rendering.session_id)).state == "encoding"

        start = time.monotonic()
        assert worker.cancel(SessionRequest(other.session_id)).cancelled is False  # not its own
        assert worker.cancel(SessionRequest(rendering.session_id)).cancelled
        with pytest.raises(Cancelled):
            list(progress)
        cancel_seconds = time.monotonic() - start
        job = worker.render_job(SessionRequest(rendering.session_id))
        assert job.state == "cancelled" and job.error == "Cancelled"
        folder = tmp_path / "projects" / rendering.project
        assert not (folder / "output.mp4").exists()
        assert not list(folder.glob(".output.partial*"))
        assert not Project.open(folder).state.render.complete
    print(f"preview during the encode {preview_seconds:.3f} s, cancel {cancel_seconds:.3f} s")
    assert preview_seconds < 1.0, f"a preview during the encode took {preview_seconds:.2f} s"
    assert cancel_seconds < 2.0, f"cancel during the encode took {cancel_seconds:.2f} s"


def test_idle_sessions_expire_but_never_while_rendering(tmp_path, clip):
    with make_worker(tmp_path, UpscaleEngine(delay=0.6), idle_timeout=1.0) as worker:
        busy = open_with_keyframes(worker, clip)
        progress = worker.render(RenderRequest(busy.session_id))  # ~4 s, no requests meanwhile
        idle = worker.open_clip(OpenClipRequest(str(clip)))
        counts = []
        while worker.status().renders_running:  # status without a session touches none
            counts.append(worker.status().sessions)
            time.sleep(0.05)
        assert counts[0] == 2 and counts[-1] == 1, counts  # the idle one closed, the busy not
        with pytest.raises(SessionNotFound):
            worker.frame(FrameRequest(idle.session_id, 0))
        assert list(progress)[-1].stage == "done"
        # once the render is done the session may expire too, and its project is released
        wait_for(lambda: worker.status().sessions == 0, timeout=10, what="the second expiry")
        with Project.open(tmp_path / "projects" / busy.project, lock="after expiry", wait=10):
            pass


def test_previews_are_shared_between_sessions_of_one_clip(tmp_path, clip):
    engine = CountingEngine(load_engine("flow"))
    with make_worker(tmp_path, engine, preview_interval=0.0) as worker:
        a = open_with_keyframes(worker, clip)
        b = open_with_keyframes(worker, clip)  # same clip, same classic References
        first = worker.preview(PreviewRequest(a.session_id, 6, 0.7))
        computed = worker.status().previews_computed
        second = worker.preview(PreviewRequest(b.session_id, 6, 0.7))
        assert worker.status().previews_computed == computed
        assert np.array_equal(first.image, second.image)
        worker.make_reference(
            ReferenceRequest(b.session_id, 12, editor="upload", upload=first.image)
        )
        third = worker.preview(PreviewRequest(b.session_id, 6, 0.7))  # other References now
        assert worker.status().previews_computed == computed + 1
        assert not np.array_equal(third.image, first.image)


def test_an_upload_over_the_limit_keeps_nothing(tmp_path, clip):
    with make_worker(tmp_path, UpscaleEngine()) as worker:
        with pytest.raises(TooLarge, match="larger than this worker accepts"):
            worker.upload_clip("c.mp4", iter([b"x" * 100]), max_bytes=10)
        stored = worker.upload_clip("a.mp4", iter([clip.read_bytes()]))
        assert Path(stored.clip_path).read_bytes() == clip.read_bytes()
        files = [p for p in worker.uploads_root.rglob("*") if p.is_file()]
        assert files == [Path(stored.clip_path)], files


def test_the_cli_is_refused_naming_the_holder_or_waits_if_asked(tmp_path, clip):
    import subprocess
    import sys

    from tests.project_helpers import run_module, start_module

    folder, output = tmp_path / "cli-project", tmp_path / "out.mp4"
    first = run_module("restore", str(clip), "-o", str(output), "--project", str(folder))
    assert first.returncode == 0, first.stderr
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from sparkvsr.project import Project\n"
            "p = Project.open(sys.argv[1], lock='the studio'); print('held', flush=True)\n"
            "time.sleep(120)\n",
            str(folder),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        args = ("restore", str(clip), "-o", str(output), "--project", str(folder), "--crf", "20")
        refused = run_module(*args)
        assert refused.returncode == 2
        assert f"in use by the studio (pid {holder.pid} on" in refused.stderr
        waiting = start_module(*args, "--wait", "60", log=tmp_path / "wait.log")
        time.sleep(1.0)
        assert waiting.poll() is None, (tmp_path / "wait.log").read_text()
        os.kill(holder.pid, signal.SIGKILL)  # the holder dies: the kernel frees its lock
        assert waiting.wait(timeout=120) == 0, (tmp_path / "wait.log").read_text()
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert len(decode_all(output)) == 24
    assert Project.open(folder).state.output.crf == 20
