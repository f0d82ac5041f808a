"""Training samples: layout and ranges, reproducible by draw number, keyframes and references."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from sparkvsr.media import VideoWriter
from training.config import (
    DataConfig,
    DegradationConfig,
    ReferenceAugmentConfig,
    TrainingError,
    image_degradation_config,
)
from training.data import (
    TrainingSet,
    augment_reference,
    build_index,
    collate,
    list_hash,
    load_index,
    main,
    random_crop,
)

from .test_training import smooth_video

DATA = DataConfig(num_frames=9, height=32, width=32, num_workers=0, no_keyframe_prob=0.0)


@pytest.fixture(scope="module")
def entries(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for index in range(2):
        with VideoWriter(root / f"v{index}.mp4", Fraction(25), crf=12) as writer:
            writer.write(smooth_video(10, 40, 48, seed=index))
    return build_index([root], root / "list.jsonl")


def make_set(entries, **changes) -> TrainingSet:
    return TrainingSet(
        entries, DATA, DegradationConfig(), image_degradation_config(), seed=5, **changes
    )


def test_video_samples_have_the_documented_layout(entries) -> None:
    sample = make_set(entries)[3]
    assert sample.hr.shape == (3, 9, 32, 32) and sample.hr.dtype == torch.float32
    assert sample.lr.shape == (3, 9, 8, 8) and sample.lr.dtype == torch.float32
    assert float(sample.hr.min()) >= -1 and float(sample.hr.max()) <= 1
    assert float(sample.lr.min()) >= 0 and float(sample.lr.max()) <= 1
    assert sample.keyframes[0] == 0 and not sample.is_image
    assert sample.references.shape == (len(sample.keyframes), 3, 32, 32)
    # A reference is its (augmented) HR keyframe: close to it, but not a copy.
    difference = (sample.references[0] - sample.hr[:, 0]).abs().mean()
    assert 0 < float(difference) < 0.3


def test_samples_are_a_function_of_the_draw(entries) -> None:
    first, again, other = make_set(entries)[7], make_set(entries)[7], make_set(entries)[8]
    assert torch.equal(first.hr, again.hr) and torch.equal(first.lr, again.lr)
    assert first.keyframes == again.keyframes
    assert torch.equal(first.references, again.references)
    assert not torch.equal(first.lr, other.lr)


def test_image_batches_are_whole_and_about_the_ratio(entries) -> None:
    dataset = make_set(entries, image_ratio=0.5, batch_size=2)
    kinds = [dataset.is_image_draw(draw) for draw in range(400)]
    assert all(kinds[i] == kinds[i + 1] for i in range(0, 400, 2)), "per batch, never mixed"
    assert 0.35 < np.mean(kinds) < 0.65
    draw = kinds.index(True)
    batch = collate([dataset[draw], dataset[draw + 1]])
    assert batch.is_image and batch.hr.shape == (2, 3, 1, 32, 32)
    assert batch.lr.shape == (2, 3, 1, 8, 8)
    assert batch.keyframes == ((), ()), "images train with the zero reference"


def test_blind_share_of_clips(entries) -> None:
    data = DataConfig(num_frames=9, height=32, width=32, num_workers=0, no_keyframe_prob=1.0)
    dataset = TrainingSet(entries, data, DegradationConfig(), image_degradation_config(), seed=1)
    sample = dataset[0]
    assert sample.keyframes == () and sample.references.shape == (0, 3, 32, 32)


def test_too_short_videos_are_refused(entries) -> None:
    data = DataConfig(num_frames=33, height=32, width=32)
    with pytest.raises(TrainingError, match="no video in the data list has 33 frames"):
        TrainingSet(entries, data, DegradationConfig(), image_degradation_config(), seed=1)


def test_small_frames_are_enlarged_to_fit_the_crop() -> None:
    frames = np.zeros((2, 20, 30, 3), np.uint8)
    crop = random_crop(frames, 32, 64, np.random.default_rng(0))
    assert crop.shape == (2, 32, 64, 3) and crop.dtype == np.float32


def test_reference_augmentation_keeps_layout_and_range() -> None:
    image = np.random.default_rng(0).random((16, 24, 3), dtype=np.float32)
    out = augment_reference(image, ReferenceAugmentConfig(), np.random.default_rng(1))
    assert out.shape == image.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1 and np.abs(out - image).mean() > 0
    off = ReferenceAugmentConfig(prob=0.0)
    np.testing.assert_array_equal(augment_reference(image, off, np.random.default_rng(1)), image)


def test_index_command_line(tmp_path: Path, entries, capsys) -> None:
    folder = Path(entries[0].path).parent
    out = tmp_path / "list.jsonl"
    assert main(["index", str(folder), "--out", str(out), "--min-frames", "9"]) == 0
    assert "indexed 2 videos and 0 images" in capsys.readouterr().out
    assert [e.path for e in load_index(out)] == [e.path for e in entries]
    assert len(list_hash(out)) == 64
    assert main(["index", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
