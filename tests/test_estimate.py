"""The output estimate is measured from a sample, and lands near the real file's size."""

from __future__ import annotations

import av
import numpy as np
import pytest

from sparkvsr import media
from sparkvsr.estimate import estimate_output, source_audio_bytes
from sparkvsr.project import OutputSettings
from tests.conftest import moving_frames, write_test_video


@pytest.mark.parametrize(
    "settings", [OutputSettings(), OutputSettings(codec="ffv1"), OutputSettings(codec="h265")]
)
def test_the_estimate_is_within_30_percent_of_the_encoded_clip(tmp_path, settings):
    frames = moving_frames(48, 96, 64)
    suffix = ".mkv" if settings.codec == "ffv1" else ".mp4"
    out = tmp_path / f"whole{suffix}"
    lossless = settings.codec == "ffv1"
    codec = "h264" if lossless else settings.codec
    with media.VideoWriter(out, 24, crf=settings.crf, lossless=lossless, codec=codec) as writer:
        writer.write(frames)
    estimate = estimate_output(frames[18:29], 24, len(frames), settings, seconds_per_frame=0.5)
    real = out.stat().st_size
    assert abs(estimate.bytes - real) <= 0.3 * real, (estimate.bytes, real)
    assert estimate.seconds >= 48 * 0.5 and estimate.memory > frames[0].nbytes


def test_a_sample_must_be_frames():
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        estimate_output(np.zeros((8, 8, 3), np.uint8), 24, 10, OutputSettings())


def test_the_copied_audio_counts_its_packets_and_is_read_once_per_file_version(
    tmp_path, monkeypatch
):
    clip = write_test_video(tmp_path / "tone.mp4", moving_frames(10, 64, 48), audio_seconds=2.0)
    with av.open(str(clip)) as container:
        packets = sum(p.size for p in container.demux(audio=0) if p.size)
    opened = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))

    assert source_audio_bytes(clip) == packets > 0
    assert source_audio_bytes(clip) == packets
    assert len(opened) == 1, "a second Estimate click must not read the audio again"

    # A file rewritten in place (another clip, no audio) is read again.
    write_test_video(clip, moving_frames(12, 64, 48))
    assert source_audio_bytes(clip) == 0
    assert source_audio_bytes(tmp_path / "gone.mp4") == 0
