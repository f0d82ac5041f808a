"""What comes out is the source, restored: timing, sync, aspect, colour, audio and tracks kept.

Each odd input is made on the spot (tests/media_corpus.py), restored end to end through the CLI
with the flow engine, and read back with PyAV the way a player reads it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from sparkvsr import cli, metrics
from sparkvsr.engines.base import RestoreOptions
from sparkvsr.media import VideoWriter, probe
from sparkvsr.media.timing import measure_rate, plan_timing
from tests import media_corpus as mc

pytestmark = pytest.mark.skipif(mc.FFMPEG is None, reason="ffmpeg (Debian) makes the test inputs")
ROOT = Path(__file__).resolve().parents[1]


def restore(capsys, src: Path, out: Path, *args: str) -> tuple[int, str]:
    """``python -m sparkvsr restore`` in process: (exit code, what it printed: notes, errors)."""
    code = cli.main(["restore", str(src), "-o", str(out), "--scale", "2", *args])
    printed = capsys.readouterr()
    return code, printed.err + printed.out


def notes(stderr: str) -> str:
    return "\n".join(line for line in stderr.splitlines() if line.startswith("note: "))


# --- timing ------------------------------------------------------------------------------------


def test_vfr_with_jitter_and_a_gap_keeps_every_frame_time_within_1ms(tmp_path, capsys):
    src = mc.make_vfr(tmp_path / "vfr.mp4")
    assert probe(src).vfr
    code, err = restore(capsys, src, tmp_path / "out.mp4")
    assert code == 0, err
    source = np.array(mc.read_video(src, 0)[0].times)
    output = np.array(mc.read_video(tmp_path / "out.mp4", 0)[0].times)
    assert len(output) == len(source) == 24
    assert np.abs((output - output[0]) - (source - source[0])).max() <= 0.001


def test_one_dropped_frame_gap_makes_a_clip_vfr_and_container_rounding_does_not():
    ms = Fraction(1, 1000)
    steady = [round(i * 1000 / 29.97) for i in range(60)]  # MKV's 1 ms rounding: 33/34 ms
    assert not measure_rate(steady, ms, Fraction(30000, 1001))[1]
    gap = steady[:30] + [t + 67 for t in steady[30:]]  # two frames missing once
    _, vfr, _ = measure_rate(gap, ms, Fraction(30000, 1001))
    assert vfr


@pytest.mark.parametrize(("codec", "rate"), [("mpeg4", "25"), ("libx264", "24000/1001")])
def test_avi_with_b_frames_has_its_true_rate_stays_cfr_and_restores(tmp_path, capsys, codec, rate):
    src = mc.make_avi_bframes(tmp_path / "b.avi", codec, rate)
    info = probe(src)
    assert info.frame_rate == Fraction(rate) and not info.vfr
    code, err = restore(capsys, src, tmp_path / "out.mp4")
    assert code == 0, err
    times = np.array(mc.read_video(tmp_path / "out.mp4", 0)[0].times)
    assert len(times) == info.num_frames == 30
    assert np.ptp(np.diff(times)) < 1e-3  # constant rate
    assert 1 / np.diff(times).mean() == pytest.approx(float(Fraction(rate)), abs=0.01)


def test_writer_given_frame_times_makes_a_clip_of_that_length(tmp_path):
    """The stream's and the encoder's time bases agree (a 1.7 s VFR clip once came out 7,119 s)."""
    times = [0.0, 0.04, 0.1, 0.5, 0.9, 1.7]
    out = tmp_path / "vfr.mp4"
    with VideoWriter(out, 25, frame_times=times) as writer:
        writer.write(np.zeros((len(times), 32, 32, 3), np.uint8))
    got = mc.read_video(out, 0)[0].times
    assert np.abs(np.array(got) - np.array(times)).max() < 0.001
    assert probe(out).duration < 2.5  # the span plus one average frame


def test_cfr_output_timestamps_are_exact_multiples_of_the_rational_rate():
    timing = plan_timing([0, 1001, 2002], Fraction(1, 30000), Fraction(30000, 1001), False, [])
    assert timing.time_base == Fraction(1001, 30000)
    assert [timing.pts(i) for i in range(3)] == [0, 1, 2] and timing.shift == 0


# --- sync --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("maker", "name"),
    [
        (mc.make_audio_offsets, "in.mp4"),
        (mc.make_ts_offsets, "in.ts"),
        (mc.make_ps_offsets, "in.mpg"),
    ],
)
def test_audio_offsets_to_the_first_video_frame_are_kept(tmp_path, capsys, maker, name):
    src = maker(tmp_path / name)
    want = mc.audio_starts(src)
    code, err = restore(capsys, src, tmp_path / "out.mp4")
    assert code == 0, err
    got = mc.audio_starts(tmp_path / "out.mp4")
    assert len(got) == len(want)
    assert np.abs(np.array(got) - np.array(want)).max() <= 0.020, (want, got)
    if maker is mc.make_audio_offsets:
        assert want[0] < -0.4 and want[1] > 0.4  # the corpus file is what it says


# --- geometry ----------------------------------------------------------------------------------


def test_anamorphic_sar_is_kept_so_the_display_aspect_is_unchanged(tmp_path, capsys):
    src = mc.make_sar(tmp_path / "sar.mp4")
    info = probe(src)
    assert info.sar == Fraction(32, 27)
    assert restore(capsys, src, tmp_path / "out.mp4")[0] == 0
    out = mc.read_video(tmp_path / "out.mp4", 0)[0]
    assert (out.width, out.height) == (128, 96)
    assert float(out.width * out.sar / out.height) == pytest.approx(float(info.dar), rel=0.01)


def test_square_pixels_option_resamples_to_the_display_aspect(tmp_path, capsys):
    src = mc.make_sar(tmp_path / "sar.mp4")
    code, err = restore(capsys, src, tmp_path / "out.mp4", "--square-pixels")
    assert code == 0, err
    out = mc.read_video(tmp_path / "out.mp4", 0)[0]
    assert out.sar == 1
    assert out.width / out.height == pytest.approx(float(probe(src).dar), rel=0.01)
    assert "square" in notes(err)


# --- colour ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["bt709", "bt601", "full-range", "10-bit", "pq"])
def test_colours_of_flat_patches_survive_within_4_levels_read_by_the_tags(tmp_path, capsys, case):
    src = mc.make_colour(tmp_path / f"{case}.mp4", case)
    out = tmp_path / "out.mp4"
    code, err = cli.main(["restore", str(src), "-o", str(out), "--scale", "4"]), capsys.readouterr()
    assert code == 0, err.err
    _, source = mc.read_video(src, 3)
    result, restored = mc.read_video(out, 3)
    assert (result.width, result.height) == (1280, 720)  # HD: untagged would mean BT.709
    error = np.abs(mc.patch_means(source[2]) - mc.patch_means(restored[2])).max()
    assert error <= 4, (case, error)
    assert result.tags["matrix"] != "unspecified" and result.tags["range"] == "tv"
    assert result.tags["primaries"] != "unspecified" and result.tags["transfer"] != "unspecified"
    if case in ("10-bit", "pq"):
        assert result.pix_fmt == "yuv420p10le"
    if case == "pq":
        assert result.tags["transfer"] == "smpte2084" and result.tags["primaries"] == "bt2020"
        assert "HDR" in notes(err.err)
    if case == "bt601":
        assert result.tags["matrix"] == "smpte170m"  # the source's own matrix, tagged


def test_pq_tonemapped_on_request_is_sdr_bt709_and_said(tmp_path, capsys):
    src = mc.make_colour(tmp_path / "pq.mp4", "pq")
    out = tmp_path / "out.mp4"
    code, err = restore(capsys, src, out, "--tonemap")
    assert code == 0, err
    result, frames = mc.read_video(out, 3)
    assert result.pix_fmt == "yuv420p"
    assert (result.tags["transfer"], result.tags["primaries"]) == ("bt709", "bt709")
    assert "tone-mapped" in notes(err)
    grey = mc.patch_means(frames[2])[3]  # PQ 128/255 is ~94 nits: mid grey on SDR, not white
    assert 150 < grey.mean() < 210 and np.ptp(grey) < 6


def test_tone_mapping_puts_pq_and_hlg_reference_white_at_the_same_sdr_level():
    from sparkvsr.media.colour import hdr_to_nits, tonemap_to_sdr

    grey = lambda v: np.full((1, 1, 3), v, np.float32)  # noqa: E731
    # BT.2408: reference white is 203 nits, PQ signal 0.58, HLG signal 0.75.
    assert hdr_to_nits(grey(0.58), "pq")[0, 0, 0] == pytest.approx(203, rel=0.01)
    assert hdr_to_nits(grey(0.75), "hlg")[0, 0, 0] == pytest.approx(203, rel=0.02)
    pq_white, hlg_white = tonemap_to_sdr(grey(0.58), "pq"), tonemap_to_sdr(grey(0.75), "hlg")
    assert abs(int(pq_white[0, 0, 0]) - int(hlg_white[0, 0, 0])) <= 2
    levels = [int(tonemap_to_sdr(grey(v), "pq")[0, 0, 0]) for v in (0, 0.3, 0.5, 0.58, 0.75, 1)]
    assert levels[0] == 0 and levels == sorted(levels) and levels[-1] == 255
    assert 235 < levels[3] < 255  # reference white stays just below peak: highlights roll off


def test_h265_keeps_10_bit_and_the_tags(tmp_path, capsys):
    src = mc.make_colour(tmp_path / "deep.mp4", "10-bit")
    code, err = restore(capsys, src, tmp_path / "out.mkv", "--codec", "h265")
    assert code == 0, err
    result, frames = mc.read_video(tmp_path / "out.mkv", 3)
    _, source = mc.read_video(src, 3)
    assert result.pix_fmt == "yuv420p10le" and result.tags["matrix"] == "bt709"
    assert np.abs(mc.patch_means(source[2]) - mc.patch_means(frames[2])).max() <= 4


def test_prores_is_10_bit_422_tagged_in_mov(tmp_path, capsys):
    src = mc.make_colour(tmp_path / "bt709.mp4", "bt709")
    code, err = restore(capsys, src, tmp_path / "out.mov", "--codec", "prores")
    assert code == 0, err
    result, frames = mc.read_video(tmp_path / "out.mov", 3)
    _, source = mc.read_video(src, 3)
    assert result.pix_fmt == "yuv422p10le" and result.tags["matrix"] == "bt709"
    assert np.abs(mc.patch_means(source[2]) - mc.patch_means(frames[2])).max() <= 4
    code, err = restore(capsys, src, tmp_path / "out.mp4", "--codec", "prores")
    assert code == 2 and ".mov" in err


# --- interlaced --------------------------------------------------------------------------------


def test_interlaced_source_is_detected_deinterlaced_and_said(tmp_path, capsys):
    src = mc.make_interlaced(tmp_path / "int.mp4")
    assert probe(src).field_order == "tt"
    code, err = restore(capsys, src, tmp_path / "out.mp4")
    assert code == 0, err
    _, source = mc.read_video(src, 8)
    _, restored = mc.read_video(tmp_path / "out.mp4", 8)
    height, width = source[0].shape[:2]
    combed = np.mean([mc.combing(f) for f in source[2:8]])
    left = np.mean([mc.combing(mc.down_to(f, width, height)) for f in restored[2:8]])
    assert combed > 30 and left < 0.2 * combed, (combed, left)
    assert "deinterlaced" in notes(err)


def test_deinterlaced_windows_read_after_a_seek_equal_the_frames_read_straight_through(tmp_path):
    from sparkvsr.media import open_clip

    src = mc.make_interlaced_intra(tmp_path / "int.mp4")  # every frame a seek point
    with open_clip(src) as clip:
        straight = clip.read(0, clip.num_frames)
    with open_clip(src) as clip:
        assert np.array_equal(clip.read(5, 9), straight[5:9])
        assert np.array_equal(clip.read(2, 4), straight[2:4])


def test_project_renders_keep_the_reading_and_encoding_settings(tmp_path, capsys):
    src = mc.make_interlaced(tmp_path / "int.mp4")
    out = tmp_path / "out.mkv"
    args = ["--project", str(tmp_path / "p"), "--keep-fields", "--codec", "h265"]
    code, err = restore(capsys, src, out, *args)
    assert code == 0, err
    assert "fields kept" in notes(err)
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "hevc"
    _, source = mc.read_video(src, 4)
    _, restored = mc.read_video(out, 4)
    kept = mc.combing(mc.down_to(restored[2], source[2].shape[1], source[2].shape[0]))
    assert kept > 0.3 * mc.combing(source[2])
    code, err = restore(capsys, src, out, *args)  # same settings: nothing to do
    assert code == 0 and "already rendered" in err


def test_field_rate_gives_one_progressive_frame_per_field(tmp_path, capsys):
    src = mc.make_interlaced(tmp_path / "int.mp4")
    code, err = restore(capsys, src, tmp_path / "out.mp4", "--field-rate")
    assert code == 0, err
    assert "field rate" in notes(err)
    result, frames = mc.read_video(tmp_path / "out.mp4", 6)
    assert len(result.times) == 2 * probe(src).num_frames
    assert 1 / np.diff(result.times).mean() == pytest.approx(50)
    _, source = mc.read_video(src, 4)
    height, width = source[0].shape[:2]
    left = mc.combing(mc.down_to(frames[5], width, height))
    assert left < 0.3 * mc.combing(source[2])  # no woven fields left
    from sparkvsr.media import open_clip

    src = mc.make_interlaced_intra(tmp_path / "intra.mp4")
    with open_clip(src, field_rate=True) as clip:  # windows after a seek equal a straight read
        straight = clip.read(0, clip.num_frames)
    with open_clip(src, field_rate=True) as clip:
        assert np.array_equal(clip.read(9, 15), straight[9:15])


def test_keep_fields_leaves_the_combing(tmp_path, capsys):
    src = mc.make_interlaced(tmp_path / "int.mp4")
    code, err = restore(capsys, src, tmp_path / "out.mkv", "--keep-fields", "--lossless")
    assert code == 0, err
    _, source = mc.read_video(src, 4)
    _, restored = mc.read_video(tmp_path / "out.mkv", 4)
    kept = mc.combing(mc.down_to(restored[2], source[2].shape[1], source[2].shape[0]))
    assert kept > 0.3 * mc.combing(source[2])


# --- audio and tracks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("codec", "src_name", "out_name", "out_codec"),
    [
        ("aac", "in.mp4", "out.mp4", "aac"),
        ("pcm_s16le", "in.mov", "out.mp4", "aac"),  # MP4 cannot hold PCM: re-encoded, 5.1 kept
        ("pcm_s16le", "in.mov", "out.mov", "pcm_s16le"),  # MOV can: copied
    ],
)
def test_surround_stays_six_channels(tmp_path, capsys, codec, src_name, out_name, out_codec):
    src = mc.make_surround(tmp_path / src_name, codec)
    code, err = restore(capsys, src, tmp_path / out_name)
    assert code == 0, err
    assert [(s["codec"], s["channels"]) for s in mc.audio_streams(tmp_path / out_name)] == [
        (out_codec, 6)
    ]
    assert ("re-encoded" in notes(err)) == (out_codec != codec)


def test_mkv_keeps_both_audio_languages_and_the_subtitle(tmp_path, capsys):
    src = mc.make_tracks(tmp_path / "tracks.mkv")
    info = probe(src)
    assert [(s.kind, s.language) for s in info.streams] == [
        ("audio", "eng"),
        ("audio", "deu"),
        ("subtitle", "eng"),
    ]
    code, err = restore(capsys, src, tmp_path / "out.mkv")
    assert code == 0, err
    audio = mc.audio_streams(tmp_path / "out.mkv")
    assert [(a["language"], a["title"]) for a in audio] == [("eng", "English"), ("deu", "Deutsch")]
    assert mc.subtitle_count(tmp_path / "out.mkv") == 1


def test_mp4_keeps_the_audio_languages_and_says_the_subtitle_is_dropped(tmp_path, capsys):
    src = mc.make_tracks(tmp_path / "tracks.mkv")
    code, err = restore(capsys, src, tmp_path / "out.mp4")
    assert code == 0, err
    assert [a["language"] for a in mc.audio_streams(tmp_path / "out.mp4")] == ["eng", "deu"]
    assert mc.subtitle_count(tmp_path / "out.mp4") == 0
    assert "subtitle" in notes(err) and ".mkv" in notes(err)


def test_a_second_video_stream_is_dropped_with_a_note():
    from sparkvsr.media.tracks import StreamInfo, plan_tracks

    plan = plan_tracks(
        (), (StreamInfo(3, "video", "mjpeg", disposition=("attached_pic",)),), ".mp4"
    )
    assert plan.action(3) == "drop" and "cover picture #3" in plan.notes[0]


def test_opus_into_mov_is_reencoded_to_aac_and_said(tmp_path, capsys):
    src = mc.make_opus(tmp_path / "opus.mkv")
    code, err = restore(capsys, src, tmp_path / "out.mov")
    assert code == 0, err
    assert [a["codec"] for a in mc.audio_streams(tmp_path / "out.mov")] == ["aac"]
    assert "opus" in notes(err) and "AAC" in notes(err)


def test_alpha_is_dropped_with_a_note(tmp_path, capsys):
    src = mc.make_alpha(tmp_path / "alpha.mkv")
    assert probe(src).alpha
    code, err = restore(capsys, src, tmp_path / "out.mp4")
    assert code == 0, err
    assert "alpha" in notes(err)
    # What is kept is the colour picture itself: the same frames as the same source made
    # without alpha (the alpha plane neither blackens nor tints them).
    opaque = tmp_path / "opaque.mkv"
    mc.ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-frames:v", "6",
        "-vf", "format=yuv420p", "-c:v", "ffv1", str(opaque),
    )  # fmt: skip
    code, err = restore(capsys, opaque, tmp_path / "opaque.mp4")
    assert code == 0, err
    _, restored = mc.read_video(tmp_path / "out.mp4")
    _, expected = mc.read_video(tmp_path / "opaque.mp4")
    assert len(restored) == len(expected) == 6
    for got, want in zip(restored, expected):
        assert got.shape == want.shape == (96, 128, 3)
        assert metrics.psnr(got, want) > 40, "the restored picture must be the source's colours"


def test_notes_reach_the_cli_the_studio_progress_and_the_project_manifest(tmp_path, capsys):
    from sparkvsr.engines import load_engine
    from sparkvsr.project import OutputSettings, Project
    from sparkvsr.render import ensure_project, render_project

    src = mc.make_opus(tmp_path / "opus.mkv")
    engine = load_engine("flow")
    output = OutputSettings(path=str(tmp_path / "out.mov"))
    project = ensure_project(tmp_path / "p", src, engine, RestoreOptions(scale=2), output)
    updates = []
    result = render_project(engine, project, progress=updates.append)
    assert any("AAC" in note for note in result.notes)  # what the CLI prints
    assert updates[-1].stage == "done" and "AAC" in updates[-1].message  # the studio shows it
    render = Project.open(tmp_path / "p").state.render  # and the manifest keeps it
    assert render.complete and render.notes == result.notes


# --- guards ------------------------------------------------------------------------------------


def test_output_over_the_input_or_a_hard_link_of_it_is_refused_and_the_source_kept(
    tmp_path, capsys
):
    src = mc.make_plain(tmp_path / "clip.mp4")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    code, err = restore(capsys, src, src)
    assert code == 2 and "destroy the source" in err
    link = tmp_path / "link.mp4"
    os.link(src, link)
    code, err = restore(capsys, src, link)
    assert code == 2 and "destroy the source" in err
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest


def test_unwritable_output_folder_is_refused_before_any_work(tmp_path, capsys):
    src = mc.make_plain(tmp_path / "clip.mp4")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be")
    code, err = restore(capsys, src, blocked / "out.mp4")
    assert code == 2 and "cannot write" in err


def test_too_little_disk_space_is_refused_with_the_numbers(tmp_path):
    from sparkvsr.errors import MediaError
    from sparkvsr.media import check_writable

    with pytest.raises(MediaError, match="not enough disk space") as caught:
        check_writable(tmp_path / "out.mp4", needed_bytes=2**62)
    assert "MB needed" in str(caught.value) and str(tmp_path) in str(caught.value)


def test_4k_input_at_x4_is_refused_before_any_work_and_output_size_fits_in_3gb(tmp_path):
    src = mc.make_big(tmp_path / "big.mp4")
    command = [sys.executable, "-m", "sparkvsr", "restore", str(src)]
    done = subprocess.run(
        [*command, "-o", str(tmp_path / "out.mp4")], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "16384x8640" in done.stderr and "--output-size" in done.stderr
    assert not (tmp_path / "out.mp4").exists()
    small = tmp_path / "small.mp4"
    proc = subprocess.Popen(
        [*command, "-o", str(small), "--output-size", "1024x540"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read()
    assert usage.ru_maxrss / 1024 < 3072  # MB (ru_maxrss is in KB on Linux)
    info = probe(small)
    assert (info.width, info.height, info.num_frames) == (1024, 540, 3)


# --- probe -------------------------------------------------------------------------------------


def test_probe_json_has_aspect_field_order_colour_hdr_and_streams(tmp_path):
    src = mc.make_tracks(tmp_path / "tracks.mkv")
    summary = probe(src).summary()
    assert summary["sar"] == "1:1" and summary["dar"] == "4:3"
    assert summary["field_order"] == "progressive"
    assert set(summary["colour"]) >= {"matrix", "range", "primaries", "transfer", "bit_depth"}
    assert summary["hdr"] is None
    assert [(s["kind"], s["language"]) for s in summary["streams"]] == [
        ("audio", "eng"),
        ("audio", "deu"),
        ("subtitle", "eng"),
    ]
    assert "default" in summary["streams"][0]["disposition"]
    pq = probe(mc.make_colour(tmp_path / "pq.mp4", "pq")).summary()
    assert pq["hdr"] == "pq" and pq["colour"]["bit_depth"] == 10
    assert pq["colour"]["primaries"] == "bt2020"
