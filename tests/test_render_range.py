"""Range renders (issue 18): only the in/out frames, equal to the same frames of the full render,
encoded with the clip's timing and the audio of that span; the full render reuses their chunks."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from sparkvsr import media
from sparkvsr.engines.base import RestoreOptions
from sparkvsr.engines.flow import FlowEngine
from sparkvsr.errors import EngineError, ProjectError
from sparkvsr.frames import ArrayFrames
from sparkvsr.project import ChunkEntry, ClipSummary, OutputSettings, Project, cover, frame_gaps
from sparkvsr.references import load_editor
from sparkvsr.references.base import EditRequest
from sparkvsr.render import range_name, render_project, render_range_steps
from tests.project_helpers import CountingEngine, decode_all, make_clip, make_clip_with_audio
from tests.test_flow_engine import degrade, moving_scene


def _entry(start: int, stop: int) -> ChunkEntry:
    return ChunkEntry(start, stop, f"chunks/{start}-{stop}.npz", "")


def test_cover_and_gaps_find_the_finished_frames_of_a_range():
    entries = [_entry(0, 6), _entry(6, 12), _entry(20, 26)]
    pieces = cover(entries, 4, 23)
    assert [(e.start, a, b) for e, a, b in pieces] == [(0, 4, 6), (6, 6, 12), (20, 20, 23)]
    assert frame_gaps(pieces, 4, 23) == [(12, 20)]
    assert frame_gaps(cover([], 3, 9), 3, 9) == [(3, 9)]
    assert frame_gaps(cover(entries, 0, 12), 0, 12) == []
    # an entry listed first wins where two hold the same frames (the full render's, then a range's)
    both = cover([_entry(0, 10), _entry(5, 8)], 0, 10)
    assert [(e.start, a, b) for e, a, b in both] == [(0, 0, 10)]


def test_range_names_carry_the_in_and_out_frames():
    assert range_name("clip_x4_flow_g1.0.mp4", 120, 196) == "clip_x4_flow_g1.0_f120-195.mp4"
    assert range_name("out.mkv", 0, 1) == "out_f0-0.mkv"


def test_stop_is_checked():
    with pytest.raises(EngineError, match="must be after the start frame"):
        RestoreOptions(start=5, stop=5)
    with pytest.raises(EngineError, match="not all inside the clip"):
        RestoreOptions(stop=30).end(20)
    assert RestoreOptions(start=3).end(20) == 20


# ---------------------------------------------------------------------------------------------
# Engines: a range's frames are the full restore's


def test_flow_range_frames_equal_the_full_restore_with_keyframes_outside_the_range():
    hr = moving_scene(30)
    lr = degrade(hr)
    refs = {2: hr[2], 27: hr[27]}  # both outside the range 9..19, both reach into it
    engine = FlowEngine()
    full = np.concatenate(
        [
            c.frames
            for c in engine.restore(ArrayFrames(lr), refs, RestoreOptions(chunk=8, overlap=0))
        ]
    )
    chunks = list(
        FlowEngine().restore(
            ArrayFrames(lr), refs, RestoreOptions(chunk=4, overlap=0, start=9, stop=20)
        )
    )
    assert (chunks[0].start, chunks[-1].stop) == (9, 20)
    part = np.concatenate([c.frames for c in chunks])
    assert np.array_equal(part, full[9:20])
    # and the keyframes did reach into the range: it is not the plain upscale there
    blind = FlowEngine().restore(
        ArrayFrames(lr), refs, RestoreOptions(guidance=0.0, chunk=4, overlap=0, start=9, stop=20)
    )
    assert not np.array_equal(np.concatenate([c.frames for c in blind]), part)


def test_dit_range_keeps_the_clips_chunk_plan(tmp_path_factory):
    from sparkvsr.engines.dit import DitEngine
    from tests.test_dit_engine import _frames, _reference
    from tests.tiny_cogvideox import build_tiny_pipeline

    folder = build_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "sparkvsr")
    engine = DitEngine(str(folder), device="cpu", fit_weights=False)
    source = ArrayFrames(_frames(17, seed=3))
    refs = {0: _reference(seed=4), 16: _reference(seed=5)}
    options = RestoreOptions(guidance=0.8, chunk=9, overlap=3)
    full = np.concatenate([c.frames for c in engine.restore(source, refs, options)])
    engine.cache.clear()
    # 5..12 starts inside the overlap of the first two chunks and ends inside the last one
    chunks = list(
        engine.restore(source, refs, RestoreOptions(**{**options.__dict__, "start": 5, "stop": 13}))
    )
    assert (chunks[0].start, chunks[-1].stop) == (5, 13)
    assert np.array_equal(np.concatenate([c.frames for c in chunks]), full[5:13])


# ---------------------------------------------------------------------------------------------
# Projects: range render, reuse by the full render


def _project(tmp_path: Path, clip: Path, output: OutputSettings, chunk: int = 5) -> Project:
    options = RestoreOptions(chunk=chunk, overlap=0)
    project = Project.create(
        tmp_path / "proj", ClipSummary.from_info(media.probe(clip)), options=options, output=output
    )
    with media.open_clip(clip) as source:
        size = (source.size[0] * 4, source.size[1] * 4)
        for frame in (2, source.num_frames - 6):
            project.add_keyframe(frame)
            image = load_editor("classic").make(source.frame(frame), size, EditRequest())
            project.set_reference(frame, image)
    return project


def _run(steps):
    while True:
        try:
            next(steps)
        except StopIteration as finished:
            return finished.value


def test_the_range_equals_the_full_render_and_the_full_render_reuses_its_chunks(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", num_frames=36)
    project = _project(tmp_path, clip, OutputSettings(path="out.mkv", codec="ffv1"))
    engine = CountingEngine(FlowEngine())

    # 1. the range 12..22 (in 12, out 22): only those frames are restored
    result = _run(render_range_steps(engine, project, (12, 23)))
    assert result.output == project.folder / "out_f12-22.mkv"
    assert engine.chunks[0][0] == 12 and engine.chunks[-1][1] == 23
    assert sum(b - a for a, b in engine.chunks) == 11
    ranged = decode_all(result.output)
    assert len(ranged) == 11
    with av.open(str(result.output)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "ffv1"
        first = next(container.decode(video))
        assert abs(float(first.pts * video.time_base)) < 1e-6  # the range starts at 0

    # 2. the full render of the same settings adopts the range's chunks: no frame twice
    engine.chunks.clear()
    full = render_project(engine, project)
    restored = sorted(f for a, b in engine.chunks for f in range(a, b))
    assert restored == [*range(0, 12), *range(23, 36)]
    assert full.chunks_reused == len(project.state.range_render.chunks) > 0
    frames = decode_all(full.output)
    assert np.array_equal(frames[12:23], ranged)
    fingerprint = project.state.render.fingerprint
    logged = [f for a, b, fp in project.chunk_log() if fp == fingerprint for f in range(a, b)]
    assert sorted(logged) == list(range(36))  # every frame made once across both renders

    # 3. a range inside the finished render reads its chunks: no engine work at all
    engine.chunks.clear()
    again = _run(render_range_steps(engine, project, (3, 9)))
    assert engine.chunks == [] and again.chunks_reused > 0
    assert np.array_equal(decode_all(again.output), frames[3:9])


def test_a_range_of_other_settings_renders_again_and_forgets_the_old_chunks(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", num_frames=20)
    project = _project(tmp_path, clip, OutputSettings(path="out.mkv", codec="ffv1"))
    engine = CountingEngine(FlowEngine())
    first = _run(render_range_steps(engine, project, (4, 10)))
    old_files = [project.folder / c.file for c in project.state.range_render.chunks]
    assert project.state.range_render.complete and first.output.is_file()
    # the same range and settings: already rendered
    engine.chunks.clear()
    assert _run(render_range_steps(engine, project, (4, 10))).skipped and not engine.chunks
    project.set_guidance(0.5)
    engine.chunks.clear()
    _run(render_range_steps(engine, project, (4, 10)))
    assert sum(b - a for a, b in engine.chunks) == 6
    assert not any(path.exists() for path in old_files)
    # the range survives a reopen; clearing caches forgets its chunks but keeps its clip
    reopened = Project.open(project.folder)
    assert reopened.state.range_render == project.state.range_render
    reopened.forget_chunks()
    assert reopened.state.range_render.chunks == () and reopened.state.range_render.complete
    with pytest.raises(ProjectError, match="not inside the clip"):
        _run(render_range_steps(engine, reopened, (15, 25)))


def test_the_range_clip_keeps_the_rate_and_the_audio_of_its_span(tmp_path):
    clip = make_clip_with_audio(tmp_path / "clip.mp4", num_frames=40)
    project = _project(tmp_path, clip, OutputSettings(path="out.mp4"), chunk=8)
    result = _run(render_range_steps(FlowEngine(), project, (10, 35)))
    info = media.probe(result.output)
    assert info.num_frames == 25 and info.frame_rate == 25
    with av.open(str(result.output)) as container:
        audio = container.streams.audio[0]
        packets = [p for p in container.demux(audio) if p.pts is not None]
        starts = [float(p.pts * audio.time_base) for p in packets]
        end = max(float((p.pts + p.duration) * audio.time_base) for p in packets)
    # the audio of frames 10..34 (0.4 s to 1.4 s of the source), moved to start with the video
    assert -0.05 <= min(starts) <= 0.05
    assert 0.95 <= end <= 1.05


# ---------------------------------------------------------------------------------------------
# The worker: a range render is a job like the full render, over HTTP too


def test_a_range_render_job_in_the_worker_and_over_http(tmp_path):
    from sparkvsr.worker import (
        FileRequest,
        HttpClient,
        KeyframeRequest,
        OpenClipRequest,
        ReferenceRequest,
        RenderRequest,
        SessionRequest,
        SettingsRequest,
        Worker,
        WorkerConfig,
    )
    from sparkvsr.worker.limits import RequestError
    from tests.test_server import serving

    clip = make_clip(tmp_path / "clip.mp4", num_frames=24)
    config = WorkerConfig(
        projects_root=tmp_path / "projects", options=RestoreOptions(chunk=4, overlap=0)
    )
    engine = CountingEngine(FlowEngine())
    with (
        Worker(config, engine=engine) as worker,
        serving(worker) as url,
        HttpClient(url, timeout=60) as client,
    ):
        info = client.open_clip(OpenClipRequest(str(clip)))
        sid = info.session_id
        for k in (0, 16):
            client.set_keyframe(KeyframeRequest(sid, k))
            client.make_reference(ReferenceRequest(sid, k, editor="classic"))
        with pytest.raises(RequestError, match="before its in point"):
            list(client.render(RenderRequest(sid, frames=(10, 10))))
        updates = list(client.render(RenderRequest(sid, frames=(5, 13))))
        assert updates[-1].stage == "done" and updates[-1].total_frames == 8
        assert all(u.first == 5 for u in updates)
        job = client.render_job(SessionRequest(sid))
        assert job.state == "done" and job.frames == (5, 13)
        session = client.update_settings(SettingsRequest(sid))  # no change: the info
        assert (session.range_result, session.range_frames, session.range_current) == (
            "output_f5-12.mp4",  # the project's output name with the in and out frames
            (5, 13),
            True,
        )
        fetched = client.get_file(FileRequest(sid, session.range_result)).local_path
        assert media.probe(fetched).num_frames == 8
        assert sorted({f for a, b in engine.chunks for f in range(a, b)}) == list(range(5, 13))
        # a change that needs a re-render marks the range out of date, like the full render
        assert not client.update_settings(SettingsRequest(sid, guidance=0.4)).range_current


def test_a_cancelled_range_keeps_its_chunks_and_the_next_run_renders_only_the_rest(tmp_path):
    from sparkvsr.errors import Cancelled

    clip = make_clip(tmp_path / "clip.mp4", num_frames=30)
    project = _project(tmp_path, clip, OutputSettings(path="out.mkv", codec="ffv1"), chunk=4)
    engine = CountingEngine(FlowEngine())
    updates = []
    steps = render_range_steps(
        engine, project, (6, 22), progress=updates.append, cancel=lambda: len(engine.chunks) >= 2
    )
    with pytest.raises(Cancelled):
        _run(steps)
    kept = [(c.start, c.stop) for c in project.state.range_render.chunks]
    assert kept == [(6, 10), (10, 14)] and not project.state.range_render.complete
    assert all(u.total_frames == 16 and u.first == 6 for u in updates)
    engine.chunks.clear()
    result = _run(render_range_steps(engine, project, (6, 22)))
    assert engine.chunks == [(14, 18), (18, 22)] and result.chunks_reused == 2
    assert len(decode_all(result.output)) == 16


def test_restore_range_on_the_command_line(tmp_path):
    from tests.project_helpers import run_module

    clip = make_clip(tmp_path / "clip.mp4", num_frames=24)
    project, out = tmp_path / "proj", tmp_path / "range.mp4"
    args = ["restore", str(clip), "-o", str(out), "--keyframes", "0,16"]
    args += ["--chunk", "4", "--overlap", "0"]
    done = run_module(*args, "--project", str(project), "--range", "5-12")
    assert done.returncode == 0, done.stderr
    assert media.probe(out).num_frames == 8
    assert Project.open(project).state.range_render.start == 5
    refused = run_module(*args, "--range", "12-5", "--project", str(project))
    assert refused.returncode == 2 and "in frame must not be after the out frame" in refused.stderr
    alone = run_module(*args, "--range", "5-12")
    assert alone.returncode == 2 and "--range needs --project" in alone.stderr


def test_a_moved_project_keeps_its_range_output(tmp_path):
    import shutil

    clip = make_clip(tmp_path / "clip.mp4", num_frames=20)
    project = _project(tmp_path, clip, OutputSettings(path="out.mkv", codec="ffv1"))
    _run(render_range_steps(FlowEngine(), project, (3, 9)))
    moved = tmp_path / "moved"
    shutil.move(project.folder, moved)
    reopened = Project.open(moved)
    reopened.moved_from(project.folder)
    assert Path(reopened.state.range_render.output) == moved / "out_f3-8.mkv"


def test_a_png_sequence_is_a_zip_of_the_lossless_frames_and_a_range_names_its_own(tmp_path):
    """The studio's "PNG sequence (zip)": every frame as a PNG named by its clip index, equal
    to the FFV1 render of the same settings; the estimate lands within 30 % of the zip."""
    import io
    import zipfile

    from PIL import Image

    from sparkvsr.estimate import estimate_output

    clip = make_clip_with_audio(tmp_path / "clip.mp4", num_frames=16)
    lossless = _project(tmp_path / "a", clip, OutputSettings(path="out.mkv", codec="ffv1"))
    expected = decode_all(render_project(FlowEngine(), lossless).output)

    project = _project(tmp_path / "b", clip, OutputSettings(path="out.zip", codec="png"))
    result = render_project(FlowEngine(), project)
    assert any("no sound" in note for note in result.notes)  # the clip's audio cannot go along
    with zipfile.ZipFile(result.output) as archive:
        names = archive.namelist()
        frames = np.stack(
            [
                np.asarray(Image.open(io.BytesIO(archive.read(name))).convert("RGB"))
                for name in names
            ]
        )
    assert names == [f"frame_{i:06d}.png" for i in range(16)]
    assert np.array_equal(frames, expected)
    estimate = estimate_output(expected[4:15], 25, 16, project.state.output)
    size = result.output.stat().st_size
    assert abs(estimate.bytes - size) <= 0.3 * size, (estimate.bytes, size)

    ranged = _run(render_range_steps(FlowEngine(), project, (5, 9)))
    with zipfile.ZipFile(ranged.output) as archive:
        assert archive.namelist() == [f"frame_{i:06d}.png" for i in range(5, 9)]
    with pytest.raises(ProjectError, match=r"\*\.zip"):
        project.set_output(OutputSettings(path="frames.mp4", codec="png"))
        render_project(FlowEngine(), project)


def test_a_render_renders_what_was_asked_not_edits_made_while_it_waited(tmp_path):
    """The worker takes a snapshot when a render is asked for; the job may start later (behind
    previews). Edits made meanwhile (codec, guidance, a Reference) apply to the next render."""
    from sparkvsr.render import render_steps, take_snapshot

    clip = make_clip(tmp_path / "clip.mp4", num_frames=12)
    project = _project(tmp_path, clip, OutputSettings(path="out.mkv", codec="ffv1"))
    asked = take_snapshot(project)
    expected = decode_all(render_project(FlowEngine(), project).output)
    project.forget_chunks()
    (project.folder / "out.mkv").unlink()

    steps = render_steps(FlowEngine(), project, output="out.mkv", snapshot=asked)
    project.set_output(OutputSettings(path="out.zip", codec="png"))  # edits while it waits
    project.set_guidance(0.25)
    height, width = asked.references[2].shape[:2]
    flat = np.full((height // 4, width // 4, 3), 200, np.uint8)  # another picture for keyframe 2
    project.set_reference(2, load_editor("classic").make(flat, (width, height), EditRequest()))
    result = _run(steps)
    assert result.output == project.folder / "out.mkv"
    assert np.array_equal(decode_all(result.output), expected)
    # the edits are kept for the next render
    assert project.state.output.codec == "png" and project.state.guidance == 0.25
