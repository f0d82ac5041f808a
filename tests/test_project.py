"""The Project folder and the render loop: autosave, reopen, corruption, missing clip, full disk,
exact resume, stale-chunk invalidation."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sparkvsr import media
from sparkvsr.engines.base import RestoreOptions
from sparkvsr.errors import Cancelled, KeyframeError, ProjectError
from sparkvsr.project import MANIFEST, ClipSummary, OutputSettings, Project
from sparkvsr.references import load_editor
from sparkvsr.references.base import EditRequest
from sparkvsr.render import render_clip, render_project
from tests.project_helpers import (
    PYTHON,
    ROOT,
    UpscaleEngine,
    decode_all,
    make_clip,
    make_clip_with_audio,
)


@pytest.fixture()
def clip(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "clip.mp4", num_frames=20)


def new_project(folder: Path, clip: Path, **options) -> Project:
    opts = RestoreOptions(chunk=4, overlap=0, **options)
    return Project.create(folder, ClipSummary.from_info(media.probe(clip)), options=opts)


def classic_reference(clip: Path, frame: int, scale: int = 4):
    with media.open_clip(clip) as source:
        lr = source.frame(frame)
        width, height = source.size
    return load_editor("classic").make(lr, (width * scale, height * scale), EditRequest())


def manifest_bytes(folder: Path) -> bytes:
    return (folder / MANIFEST).read_bytes()


# ---------------------------------------------------------------------------------------------
# Manifest


def test_every_change_is_saved_and_reopens_identically(tmp_path, clip):
    folder = tmp_path / "proj"
    project = new_project(folder, clip)
    steps = [
        lambda: project.add_keyframe(0),
        lambda: project.add_keyframe(12),
        lambda: project.set_reference(12, classic_reference(clip, 12)),
        lambda: project.set_guidance(1.5),
        lambda: project.set_output(OutputSettings(path="final.mp4", crf=20)),
        lambda: project.remove_keyframe(0),
    ]
    for step in steps:
        state = step()
        assert Project.open(folder).state == state  # autosaved after every change

    reopened = Project.open(folder)
    assert reopened.state.keyframes == (12,)
    assert reopened.state.guidance == 1.5
    assert reopened.state.restore_options().guidance == 1.5
    assert reopened.state.output == OutputSettings("final.mp4", 20)
    entry = reopened.state.reference(12)
    assert entry.provenance.editor == "classic"
    image = reopened.reference_image(12)
    assert np.array_equal(image, classic_reference(clip, 12).image)  # PNG is lossless
    assert (folder / entry.file).suffix == ".png"
    assert json.loads(manifest_bytes(folder))["version"] == 1


def test_keyframe_rules_and_failed_change_leave_state(tmp_path, clip):
    project = new_project(tmp_path / "proj", clip)
    project.add_keyframe(8)
    before = manifest_bytes(project.folder)
    with pytest.raises(KeyframeError, match="8 and 10 are 2 frames apart"):
        project.add_keyframe(10)
    with pytest.raises(KeyframeError, match="outside the clip"):
        project.add_keyframe(20)
    with pytest.raises(KeyframeError, match="not pinned"):
        project.set_reference(4, classic_reference(clip, 4))
    assert project.state.keyframes == (8,)
    assert manifest_bytes(project.folder) == before


def test_unpin_keeps_reference_for_repin(tmp_path, clip):
    project = new_project(tmp_path / "proj", clip)
    project.add_keyframe(4)
    project.set_reference(4, classic_reference(clip, 4))
    project.remove_keyframe(4)
    assert project.reference_images() == {}
    project.add_keyframe(4)
    assert list(project.reference_images()) == [4]


@pytest.mark.parametrize(
    "damage",
    ["{not json", '{"format": "sparkvsr-project", "version": 1}', "", '["a list"]'],
    ids=["garbage", "missing-fields", "empty", "wrong-type"],
)
def test_corrupt_manifest_is_refused_and_left_untouched(tmp_path, clip, damage):
    project = new_project(tmp_path / "proj", clip)
    (project.folder / MANIFEST).write_text(damage)
    with pytest.raises(ProjectError, match=r"left untouched|not a SparkVSR"):
        Project.open(project.folder)
    assert (project.folder / MANIFEST).read_text() == damage


def test_manifest_from_a_newer_version_is_refused(tmp_path, clip):
    project = new_project(tmp_path / "proj", clip)
    data = json.loads(manifest_bytes(project.folder))
    data["version"] = 99
    (project.folder / MANIFEST).write_text(json.dumps(data))
    before = manifest_bytes(project.folder)
    with pytest.raises(ProjectError, match=r"newer SparkVSR.*version 99"):
        Project.open(project.folder)
    assert manifest_bytes(project.folder) == before
    with pytest.raises(ProjectError, match="already holds a project"):
        new_project(project.folder, clip)
    assert manifest_bytes(project.folder) == before


def test_missing_clip_on_reopen_is_a_clear_error_and_state_survives(tmp_path, clip):
    project = new_project(tmp_path / "proj", clip)
    project.add_keyframe(4)
    project.set_reference(4, classic_reference(clip, 4))
    before = manifest_bytes(project.folder)
    moved = clip.rename(tmp_path / "moved.mp4")
    with pytest.raises(ProjectError, match=f"clip .*missing.*{clip.name}"):
        Project.open(project.folder)
    assert manifest_bytes(project.folder) == before

    reopened = Project.open(project.folder, require_clip=False)
    reopened.relink_clip(ClipSummary.from_info(media.probe(moved)))
    again = Project.open(project.folder)
    assert again.state.clip.path == str(moved.resolve())
    assert again.state.keyframes == (4,)
    assert np.array_equal(again.reference_image(4), project.reference_image(4))


def test_paths_outside_the_project_are_refused(tmp_path, clip):
    project = new_project(tmp_path / "proj", clip)
    (tmp_path / "secret.txt").write_text("no")
    (project.folder / "link").symlink_to(tmp_path / "secret.txt")
    for bad in ["../secret.txt", "/etc/passwd", str(tmp_path / "secret.txt"), "link", "a/../../x"]:
        with pytest.raises(ProjectError, match="refused"):
            project.resolve(bad)
    assert project.resolve("project.json") == (project.folder / MANIFEST).resolve()


# ---------------------------------------------------------------------------------------------
# Chunks


def test_chunks_round_trip_exactly_and_stale_ones_are_dropped(tmp_path, clip):
    project = new_project(tmp_path / "proj", clip)
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 16, 24, 3), dtype=np.uint8)
    project.begin_render("settings-a")
    entry = project.save_chunk(0, frames)
    assert np.array_equal(Project.open(project.folder).load_chunk(entry), frames)
    with pytest.raises(ProjectError, match="does not follow"):
        project.save_chunk(5, frames)

    (project.folder / "chunks.log").write_text("")  # killed after the commit, before the log
    kept = project.begin_render("settings-a")  # same settings: resume after the chunk
    assert kept.resume_frame == 3
    assert project.chunk_log() == [(0, 3, "settings-a")]  # the finished chunk, logged once
    project.begin_render("settings-a")
    assert len(project.chunk_log()) == 1
    fresh = project.begin_render("settings-b")  # other settings: start over
    assert fresh.resume_frame == 0 and fresh.chunks == ()
    assert not (project.folder / entry.file).exists()


def test_write_error_while_saving_a_chunk_keeps_previous_state(tmp_path, clip):
    """A full disk, simulated with a file-size limit (EFBIG) in a child process."""
    project = new_project(tmp_path / "proj", clip)
    project.begin_render("settings")
    first = np.full((2, 16, 24, 3), 7, np.uint8)
    project.save_chunk(0, first)
    before = manifest_bytes(project.folder)
    script = textwrap.dedent(
        """
        import resource, signal, sys
        import numpy as np
        from sparkvsr.errors import ProjectError
        from sparkvsr.project import Project
        project = Project.open(sys.argv[1])
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        noise = np.random.default_rng(0).integers(0, 256, (4, 128, 128, 3), dtype=np.uint8)
        try:
            project.save_chunk(2, noise)
        except ProjectError as error:
            print("ProjectError:", error)
            print("state chunks:", len(project.state.render.chunks))
        """
    )
    result = subprocess.run(
        [PYTHON, "-c", script, str(project.folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "ProjectError: cannot save chunk 2-6" in result.stdout, result.stderr
    assert "Free disk space" in result.stdout
    assert "state chunks: 1" in result.stdout  # the in-memory state did not move either
    assert manifest_bytes(project.folder) == before
    reopened = Project.open(project.folder)
    assert reopened.state.render.resume_frame == 2
    assert np.array_equal(next(reopened.iter_chunks())[1], first)
    leftovers = [p.name for p in (project.folder / "chunks").iterdir()]
    assert leftovers == ["000000-000002.npz"]  # no half-written temp file


# ---------------------------------------------------------------------------------------------
# Render loop


def render_with(project: Project, engine, **kwargs):
    return render_project(engine, project, **kwargs)


def test_render_writes_output_and_interrupted_render_resumes_exactly(tmp_path, clip):
    engine = UpscaleEngine()
    full = new_project(tmp_path / "full", clip)
    full.add_keyframe(8)
    full.set_reference(8, classic_reference(clip, 8))
    result = render_with(full, engine)
    assert result.output == full.folder / "output.mp4"
    expected = decode_all(result.output)
    assert expected.shape == (20, 128, 192, 3)
    assert [c.start for c in full.state.render.chunks] == [0, 4, 8, 12, 16]

    part = new_project(tmp_path / "part", clip)
    part.add_keyframe(8)
    part.set_reference(8, classic_reference(clip, 8))
    calls = iter(range(100))
    with pytest.raises(Cancelled):  # the user cancels after the second chunk
        render_with(part, engine, cancel=lambda: next(calls) >= 2)
    assert part.state.render.resume_frame == 8

    resumed = render_with(Project.open(part.folder), engine)
    assert (resumed.chunks_resumed, resumed.chunks_rendered, resumed.resumed_from) == (2, 3, 8)
    starts = [row[0] for row in Project.open(part.folder).chunk_log()]
    assert starts == [0, 4, 8, 12, 16]  # no chunk rendered twice
    assert np.array_equal(decode_all(resumed.output), expected)

    again = render_with(Project.open(part.folder), engine)
    assert again.skipped and again.chunks_rendered == 0


def test_changed_setting_does_not_resume_stale_chunks(tmp_path, clip):
    engine = UpscaleEngine()
    project = new_project(tmp_path / "proj", clip)
    project.add_keyframe(0)
    project.set_reference(0, classic_reference(clip, 0))
    calls = iter(range(100))
    with pytest.raises(Cancelled):
        render_with(project, engine, cancel=lambda: next(calls) >= 3)
    project.set_guidance(2.0)
    result = render_with(project, engine)
    assert (result.chunks_resumed, result.chunks_rendered) == (0, 5)
    reference = new_project(tmp_path / "ref", clip, guidance=2.0)
    reference.add_keyframe(0)
    reference.set_reference(0, classic_reference(clip, 0))
    assert np.array_equal(
        decode_all(result.output), decode_all(render_with(reference, engine).output)
    )


def test_render_keeps_fps_and_copies_audio(tmp_path):
    clip = make_clip_with_audio(tmp_path / "talk.mp4", num_frames=12)
    project = new_project(tmp_path / "proj", clip)
    result = render_with(project, UpscaleEngine())
    info = media.probe(result.output)
    assert info.num_frames == 12 and info.frame_rate == 25
    assert info.codec == "h264"
    assert len(info.audio) == 1 and info.audio[0].codec == "aac"


def test_render_clip_without_project_streams_to_the_writer(tmp_path, clip):
    engine = UpscaleEngine()
    out = tmp_path / "direct.mp4"
    progress = []
    result = render_clip(
        engine, clip, {}, RestoreOptions(chunk=4, overlap=0), out, progress=progress.append
    )
    assert result.chunks_rendered == 5
    assert progress[-1].stage == "done" and progress[-1].output == str(out)
    project = new_project(tmp_path / "proj", clip)
    assert np.array_equal(decode_all(out), decode_all(render_with(project, engine).output))


def test_render_refuses_a_missing_clip_and_keeps_chunks(tmp_path, clip):
    project = new_project(tmp_path / "proj", clip)
    calls = iter(range(100))
    with pytest.raises(Cancelled):
        render_with(project, UpscaleEngine(), cancel=lambda: next(calls) >= 1)
    os.remove(clip)
    with pytest.raises(ProjectError, match="missing"):
        render_with(project, UpscaleEngine())
    assert Project.open(project.folder, require_clip=False).state.render.resume_frame == 4


def test_restore_options_round_trip(tmp_path, clip):
    options = RestoreOptions(chunk=9, overlap=2, tile=64, tile_overlap=8, color_fix="adain")
    project = Project.create(
        tmp_path / "p", ClipSummary.from_info(media.probe(clip)), options=options
    )
    assert Project.open(project.folder).state.options == replace(options, guidance=1.0)


def test_render_chunks_follow_a_byte_budget_and_the_encode_reads_a_few_frames_at_a_time(
    tmp_path, clip
):
    from sparkvsr.engines.base import RestoreOptions
    from sparkvsr.render import chunk_within

    frame = 5120 * 2880 * 3  # one output frame at 4x of 720p
    dit = chunk_within(RestoreOptions(chunk=33, overlap=8), frame, 512 << 20, form=8)
    assert dit.chunk == 9 and dit.overlap == 8
    flow = chunk_within(RestoreOptions(chunk=33, overlap=0), frame, 512 << 20)
    assert flow.chunk == 12 and flow.overlap == 0
    small = RestoreOptions(chunk=33)
    assert chunk_within(small, 640 * 384 * 3, 512 << 20) is small
    assert chunk_within(RestoreOptions(chunk=5, overlap=2), frame, 1).chunk == 1

    project = new_project(tmp_path / "p", clip)
    project.begin_render("fp")
    frames = np.random.default_rng(0).integers(0, 256, (10, 8, 12, 3), np.uint8)
    project.save_chunk(0, frames[:7])
    project.save_chunk(7, frames[7:])
    batches = list(project.iter_frames(3))
    assert [start for start, _ in batches] == [0, 3, 6, 7]
    assert np.array_equal(np.concatenate([b for _, b in batches]), frames)


def test_the_render_and_the_studio_estimate_plan_the_same_chunks(clip):
    from types import SimpleNamespace

    from sparkvsr.render import RENDER_CHUNK_BYTES, _bounded_options, chunk_within, render_chunk

    options = RestoreOptions(chunk=33, overlap=8, output_size=(5120, 2880))  # 4x of 720p
    frame_size = (5120, 2880)
    with media.open_clip(clip) as source:
        for name, budget, chunk in (
            ("dit", 512 << 20, 9),
            ("flow", 512 << 20, 12),
            ("dit", RENDER_CHUNK_BYTES, 9),  # 3 frames fit; dit's smallest chunk is 8 + 1
            ("flow", RENDER_CHUNK_BYTES, 3),
        ):
            rendered = _bounded_options(SimpleNamespace(name=name), source, options, budget)
            estimated = render_chunk(name, options, frame_size, budget)  # what #estimate asks
            assert rendered == estimated and estimated.chunk == chunk, (name, budget)
    # the estimate's old plan (no chunk form) gave dit 3-frame chunks the render never uses
    assert chunk_within(options, 5120 * 2880 * 3, RENDER_CHUNK_BYTES).chunk == 3
