"""`python -m sparkvsr edit`: one keyframe's Reference from the command line."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sparkvsr.cli import main
from sparkvsr.media import read_image
from tests.conftest import moving_frames, write_test_video
from tests.fake_gemini import Expect, FakeGemini, finish, image


@pytest.fixture
def clip(tmp_path):
    return write_test_video(tmp_path / "clip.mp4", moving_frames(12, 32, 24))


def run(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse rejects bad arguments by exiting
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_classic_writes_the_reference_at_four_times_the_size(clip, tmp_path, capsys):
    out = tmp_path / "ref8.png"
    code, stdout, _ = run(["edit", clip, "--frame", 8, "--editor", "classic", "-o", out], capsys)
    assert code == 0, stdout
    assert read_image(out).shape == (96, 128, 3)
    assert "wrote" in stdout and "128x96" in stdout
    assert "fit: fits" in stdout  # an upscale of the frame fits it


def test_edit_prints_how_a_moved_upload_was_fitted(clip, tmp_path, capsys):
    import cv2

    from sparkvsr.media import open_clip

    with open_clip(clip) as source:
        frame = source.read(6, 7)[0]
    sharp = cv2.resize(frame, (128, 96), interpolation=cv2.INTER_CUBIC)
    moved = cv2.warpAffine(
        sharp, np.float32([[1, 0, 5], [0, 1, 0]]), (128, 96), borderMode=cv2.BORDER_REFLECT
    )
    mine = tmp_path / "moved.png"
    Image.fromarray(moved).save(mine)
    argv = [
        "edit",
        clip,
        "--frame",
        6,
        "--editor",
        "upload",
        "--image",
        mine,
        "-o",
        tmp_path / "r.png",
    ]
    code, stdout, _ = run(argv, capsys)
    assert code == 0
    assert "fit: shifted" in stdout and "Shifted 5 px, corrected" in stdout


def test_upload_is_fitted_and_the_user_told(clip, tmp_path, capsys):
    mine = tmp_path / "mine.png"
    Image.fromarray(np.full((60, 100, 3), 200, np.uint8)).save(mine)  # 5:3, the clip is 4:3
    out = tmp_path / "ref.png"
    argv = ["edit", clip, "--frame", 4, "--editor", "upload", "--image", mine, "-o", out]
    code, _, stderr = run(argv, capsys)
    assert code == 0
    assert read_image(out).shape == (96, 128, 3)
    assert "centre-cropped" in stderr


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--frame", 12], "outside"),
        (["--frame", 3, "--editor", "upload"], "--image"),
        (["--frame", 3, "--size", "big"], "--size"),
        (["--frame", 3, "--editor", "warp-drive"], "invalid choice"),
    ],
)
def test_errors_exit_2_with_one_line(clip, tmp_path, capsys, extra, words):
    code, _, stderr = run(["edit", clip, *extra, "-o", tmp_path / "x.png"], capsys)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], stderr
    assert not (tmp_path / "x.png").exists()


def test_nano_banana_without_a_key_exits_2_naming_the_variables(
    clip, tmp_path, capsys, monkeypatch
):
    for variable in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI"):
        monkeypatch.delenv(variable, raising=False)
    argv = ["edit", clip, "--frame", 3, "--editor", "nano-banana-pro", "-o", tmp_path / "x.png"]
    code, _, stderr = run(argv, capsys)
    assert code == 2 and "GEMINI_API_KEY" in stderr and len(stderr.strip().splitlines()) == 1


def test_nano_banana_through_the_sdk_base_url_variable(clip, tmp_path, capsys, monkeypatch):
    key = "cli-key-0123456789"
    monkeypatch.setenv("GEMINI_API_KEY", key)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("SPARKVSR_CACHE", str(tmp_path / "cache"))
    expect = Expect(api_key=key, prompt_contains=("a quiet street",), image_size="1K")
    with FakeGemini(expect) as fake:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.base_url)
        out = tmp_path / "ref3.png"
        argv = ["edit", clip, "--frame", 3, "--editor", "nano-banana-pro"]
        argv += ["--content", "a quiet street", "-o", out]
        fake.reply(image(128, 96))
        code, stdout, _ = run(argv, capsys)
        assert code == 0, stdout
        assert read_image(out).shape == (96, 128, 3)

        fake.reply(finish("IMAGE_SAFETY"))
        argv2 = [*argv[:2], "--frame", 5, *argv[4:]]
        code, _, stderr = run(argv2, capsys)
        assert code == 2 and "IMAGE_SAFETY" in stderr
        assert key not in stderr
        assert fake.problems == [] and len(fake.requests) == 2


def test_restore_into_a_project_keeps_each_editors_provenance(clip, tmp_path, capsys):
    from sparkvsr.project import Project

    mine = tmp_path / "mine.png"
    Image.fromarray(np.full((60, 128, 3), 128, np.uint8)).save(mine)  # 32:15, not the clip's 4:3
    project = tmp_path / "project"
    argv = ["restore", clip, "-o", tmp_path / "out.mp4", "--project", project]
    argv += ["--keyframes", "0,8", "--ref", f"8={mine}", "--editor", "classic"]
    code, _, stderr = run(argv, capsys)
    assert code == 0, stderr
    state = Project.open(project).state
    classic, upload = state.reference(0).provenance, state.reference(8).provenance
    assert (classic.editor, classic.model) == ("classic", "lanczos") and classic.created
    assert upload.editor == "upload" and any("crop" in note for note in upload.notes)


def test_restore_takes_per_keyframe_weights_and_colour_switches(clip, tmp_path, capsys):
    from sparkvsr.engines.base import KeyframeGuidance
    from sparkvsr.project import Project

    project = tmp_path / "project"
    argv = ["restore", clip, "-o", tmp_path / "out.mp4", "--project", project]
    argv += ["--keyframes", "0,8", "--keyframe-weight", "8=0.5", "--keep-colors", "0"]
    code, _, stderr = run(argv, capsys)
    assert code == 0, stderr
    state = Project.open(project).state  # the project keeps them with its options
    assert state.options.keyframe_guidance == (
        KeyframeGuidance(0, None, True),
        KeyframeGuidance(8, 0.5, False),
    )
    assert state.reference(0).provenance.fit.verdict == "fits"
    bad = ["restore", clip, "-o", tmp_path / "x.mp4", "--keyframes", "0,8"]
    code, _, stderr = run([*bad, "--keyframe-weight", "8=lots"], capsys)
    assert code == 2 and "FRAME=WEIGHT" in stderr
    code, _, stderr = run([*bad, "--keyframe-weight", "8=3"], capsys)
    assert code == 2 and "0 to 2" in stderr


def test_an_editor_that_cannot_run_is_refused_before_any_work(clip, tmp_path, capsys, monkeypatch):
    for variable in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI"):
        monkeypatch.delenv(variable, raising=False)
    out = tmp_path / "out.mp4"
    argv = ["restore", clip, "-o", out, "--keyframes", "0", "--editor", "nano-banana-pro"]
    code, _, stderr = run(argv, capsys)
    assert code == 2 and "cannot run here" in stderr and "GEMINI_API_KEY" in stderr
    assert not out.exists()
