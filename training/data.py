"""Training data: an index of videos and images, and deterministic paired samples.

Indexing (once, ``python -m training.data index ROOT... --out LIST``) walks folders for videos
and images and probes every video with ``sparkvsr.media.probe`` (frame count as displayed, frame
timestamps for seeking); the result is a JSONL list file, one entry per line. Training reopens a
video from its stored probe, so reading a window costs the window plus one GOP, not the clip.

Samples are a pure function of a *draw number* (and the run's seed): which clip, which window
and crop, the degradation, the keyframes and the Reference augmentation all come from
``numpy.random.default_rng([seed, draw, purpose])``. The trainer maps (step, rank, position) to a
draw number, so a resumed run (on the same number of processes) sees exactly the batches an
uninterrupted run would, without replaying the data loader.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch

from sparkvsr.conditioning import unit_to_signed
from sparkvsr.errors import MediaError
from sparkvsr.media import IMAGE_SUFFIXES, Clip, ClipInfo, ColourInfo, probe, read_image
from training.config import DataConfig, DegradationConfig, ReferenceAugmentConfig, TrainingError
from training.degradations import degrade_image, degrade_video
from training.keyframe_sampler import sample_keyframes

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".y4m")

# Purposes keep the random streams of one draw independent of each other.
_PICK, _DEGRADE, _KEYFRAMES, _REFERENCE, _KIND = range(5)


# ---------------------------------------------------------------------------------------------
# The index


@dataclasses.dataclass(frozen=True)
class IndexEntry:
    """One training source: a video (with its stored probe) or a single image."""

    kind: str  # "video" or "image"
    path: str
    num_frames: int
    width: int
    height: int
    info: ClipInfo | None = None

    def to_json(self) -> str:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "info"}
        if self.info is not None:
            data["info"] = _info_to_json(self.info)
        return json.dumps(data, sort_keys=True)

    @staticmethod
    def from_json(line: str) -> IndexEntry:
        data = json.loads(line)
        if "info" in data:
            data["info"] = _info_from_json(data["info"])
        return IndexEntry(**data)


def _info_to_json(info: ClipInfo) -> dict:
    data = {name: getattr(info, name) for name in ClipInfo.__dataclass_fields__}
    data["frame_rate"] = str(info.frame_rate)
    data["time_base"] = str(info.time_base)
    data["audio"] = []  # training never reads audio
    data["iframes"] = list(info.iframes)
    data["seek_frames"] = list(info.seek_frames)
    data["frame_pts"] = list(info.frame_pts)
    data["sar"] = str(info.sar)
    data["colour"] = dataclasses.asdict(info.colour)
    data["streams"] = []  # nor the other streams
    return data


def _info_from_json(data: dict) -> ClipInfo:
    values = dict(data)
    values["frame_rate"] = Fraction(values["frame_rate"])
    values["time_base"] = Fraction(values["time_base"])
    values["audio"] = ()
    for key in ("iframes", "seek_frames", "frame_pts"):
        values[key] = tuple(values[key])
    values["sar"] = Fraction(values.get("sar", "1"))
    values["colour"] = ColourInfo(**values.get("colour", {}))
    values["streams"] = ()
    return ClipInfo(**values)


def find_media(roots: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """(videos, images) under ``roots`` (files or folders, searched recursively), sorted."""
    videos: list[Path] = []
    images: list[Path] = []
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise TrainingError(f"data root {root} does not exist; check data.roots")
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            suffix = path.suffix.lower()
            if suffix in VIDEO_SUFFIXES:
                videos.append(path)
            elif suffix in IMAGE_SUFFIXES:
                images.append(path)
    return videos, images


def build_index(
    roots: Sequence[str | os.PathLike], list_file: str | os.PathLike, min_frames: int = 1
) -> list[IndexEntry]:
    """Probe every video and image under ``roots`` and write the JSONL ``list_file``.

    Videos shorter than ``min_frames`` and unreadable files are skipped and reported on stderr
    (a large crawl always has a few); an index with nothing in it is an error.
    """
    videos, images = find_media(roots)
    entries: list[IndexEntry] = []
    for path in videos:
        try:
            info = probe(path)
        except MediaError as e:
            print(f"skipping {path}: {e}", file=sys.stderr)
            continue
        if info.num_frames < min_frames:
            print(f"skipping {path}: {info.num_frames} frames < {min_frames}", file=sys.stderr)
            continue
        entries.append(
            IndexEntry("video", str(path), info.num_frames, info.width, info.height, info)
        )
    for path in images:
        try:
            height, width = read_image(path).shape[:2]
        except MediaError as e:
            print(f"skipping {path}: {e}", file=sys.stderr)
            continue
        entries.append(IndexEntry("image", str(path), 1, width, height))
    if not entries:
        raise TrainingError(
            f"no usable videos ({', '.join(VIDEO_SUFFIXES)}) or images under {list(map(str, roots))}"
        )
    list_file = Path(list_file)
    list_file.parent.mkdir(parents=True, exist_ok=True)
    partial = list_file.with_suffix(list_file.suffix + ".partial")
    partial.write_text("".join(entry.to_json() + "\n" for entry in entries))
    partial.replace(list_file)  # atomic: other processes never see half an index
    return entries


def load_index(list_file: str | os.PathLike) -> list[IndexEntry]:
    """Read a list file written by ``build_index``."""
    path = Path(list_file)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise TrainingError(
            f"cannot read the data list {path}: {e}. Build it with "
            f"`python -m training.data index ROOT... --out {path}` or set data.roots"
        ) from e
    try:
        return [IndexEntry.from_json(line) for line in lines if line.strip()]
    except (ValueError, KeyError, TypeError) as e:
        raise TrainingError(f"data list {path} is damaged ({e}); rebuild it") from e


def list_hash(list_file: str | os.PathLike) -> str:
    """sha256 of the list file: which data a checkpoint was trained on."""
    return hashlib.sha256(Path(list_file).read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Samples


@dataclasses.dataclass(frozen=True)
class Sample:
    """One training example.

    hr:         ``[3, F, H, W]`` float32 in [-1, 1] (the target).
    lr:         ``[3, F, H/s, W/s]`` float32 in [0, 1] (the degraded input, before the x4 upscale).
    references: ``[K, 3, H, W]`` float32 in [-1, 1], augmented HR keyframes (K may be 0).
    keyframes:  the K frame indices the references belong to.
    is_image:   a single-image example (stage 2): F = 1 and no references.
    """

    hr: torch.Tensor
    lr: torch.Tensor
    references: torch.Tensor
    keyframes: tuple[int, ...]
    is_image: bool
    draw: int


@dataclasses.dataclass(frozen=True)
class Batch:
    """Samples stacked: ``hr [B, 3, F, H, W]`` in [-1, 1], ``lr [B, 3, F, h, w]`` in [0, 1]."""

    hr: torch.Tensor
    lr: torch.Tensor
    references: tuple[torch.Tensor, ...]
    keyframes: tuple[tuple[int, ...], ...]
    is_image: bool
    draws: tuple[int, ...]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.hr.to(device),
            self.lr.to(device),
            tuple(r.to(device) for r in self.references),
            self.keyframes,
            self.is_image,
            self.draws,
        )


def collate(samples: Sequence[Sample]) -> Batch:
    kinds = {s.is_image for s in samples}
    if len(kinds) != 1:
        raise TrainingError("a batch mixes images and videos; draws of one batch must agree")
    return Batch(
        torch.stack([s.hr for s in samples]),
        torch.stack([s.lr for s in samples]),
        tuple(s.references for s in samples),
        tuple(s.keyframes for s in samples),
        samples[0].is_image,
        tuple(s.draw for s in samples),
    )


class TrainingSet(torch.utils.data.Dataset):
    """Paired samples by draw number: ``dataset[draw] -> Sample`` (deterministic).

    image_ratio: share of batches that are single images (stage 2); the kind is drawn per
                 batch (``draw // batch_size``) so a batch never mixes them. Images come from the
                 index's images, or single video frames when it has none.
    """

    def __init__(
        self,
        entries: Sequence[IndexEntry],
        data: DataConfig,
        video_degradation: DegradationConfig,
        image_degradation: DegradationConfig,
        seed: int,
        image_ratio: float = 0.0,
        batch_size: int = 1,
    ):
        self.data = data
        self.videos = [e for e in entries if e.kind == "video" and e.num_frames >= data.num_frames]
        self.images = [e for e in entries if e.kind == "image"]
        if not self.videos:
            longest = max((e.num_frames for e in entries if e.kind == "video"), default=0)
            raise TrainingError(
                f"no video in the data list has {data.num_frames} frames (the longest has "
                f"{longest}); add longer clips or lower data.num_frames"
            )
        self.video_degradation = video_degradation
        self.image_degradation = image_degradation
        self.seed = seed
        self.image_ratio = image_ratio
        self.batch_size = batch_size

    def _rng(self, draw: int, purpose: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, draw, purpose])

    def is_image_draw(self, draw: int) -> bool:
        if not self.image_ratio:
            return False
        return bool(self._rng(draw // self.batch_size, _KIND).random() < self.image_ratio)

    def __getitem__(self, draw: int) -> Sample:
        if self.is_image_draw(draw):
            return self._image_sample(draw)
        return self._video_sample(draw)

    # Steps of a video sample: window + crop -> degrade -> keyframes -> references.
    def _video_sample(self, draw: int) -> Sample:
        data = self.data
        rng = self._rng(draw, _PICK)
        entry = self.videos[rng.integers(len(self.videos))]
        start = int(rng.integers(entry.num_frames - data.num_frames + 1))
        frames = _read_window(entry, start, data.num_frames)
        hr = random_crop(frames, data.height, data.width, rng)
        lr = degrade_video(hr, data.scale, self.video_degradation, _seed(self._rng(draw, _DEGRADE)))
        keyframes = sample_keyframes(
            data.num_frames, _seed(self._rng(draw, _KEYFRAMES)), data.no_keyframe_prob
        )
        aug_rng = self._rng(draw, _REFERENCE)
        references = [augment_reference(hr[k], data.reference, aug_rng) for k in keyframes]
        return _sample(hr, lr, references, keyframes, False, draw)

    def _image_sample(self, draw: int) -> Sample:
        data = self.data
        rng = self._rng(draw, _PICK)
        if self.images:
            entry = self.images[rng.integers(len(self.images))]
            image = read_image(entry.path)[None]
        else:
            entry = self.videos[rng.integers(len(self.videos))]
            image = _read_window(entry, int(rng.integers(entry.num_frames)), 1)
        hr = random_crop(image, data.height, data.width, rng)
        lr = degrade_image(hr, data.scale, self.image_degradation, _seed(self._rng(draw, _DEGRADE)))
        return _sample(hr, lr, [], (), True, draw)


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**63))


def _sample(
    hr: np.ndarray,
    lr: np.ndarray,
    references: list[np.ndarray],
    keyframes: tuple[int, ...],
    is_image: bool,
    draw: int,
) -> Sample:
    def video(frames: np.ndarray) -> torch.Tensor:  # [F, H, W, 3] -> [3, F, H, W]
        return torch.from_numpy(np.ascontiguousarray(frames.transpose(3, 0, 1, 2)))

    height, width = hr.shape[1:3]
    refs = (
        torch.from_numpy(np.stack(references).transpose(0, 3, 1, 2).copy())
        if references
        else torch.zeros(0, 3, height, width)
    )
    return Sample(
        unit_to_signed(video(hr)), video(lr), unit_to_signed(refs), keyframes, is_image, draw
    )


def _read_window(entry: IndexEntry, start: int, count: int) -> np.ndarray:
    """Frames ``[count, H, W, 3]`` uint8 from a video entry, reusing its stored probe."""
    info = entry.info if entry.info is not None else probe(entry.path)
    try:
        with Clip(info) as clip:
            return clip.read(start, start + count)
    except MediaError as e:
        raise TrainingError(f"training clip {entry.path} could not be read: {e}") from e


def random_crop(
    frames: np.ndarray, height: int, width: int, rng: np.random.Generator
) -> np.ndarray:
    """A random ``height`` x ``width`` crop of uint8 ``[F, H, W, 3]`` -> float32 in [0, 1].

    Frames smaller than the crop are first enlarged (bicubic) just enough to hold it.
    """
    src_h, src_w = frames.shape[1:3]
    grow = max(height / src_h, width / src_w)
    if grow > 1:
        size = (max(width, round(src_w * grow)), max(height, round(src_h * grow)))
        frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_CUBIC) for f in frames])
        src_h, src_w = frames.shape[1:3]
    top = int(rng.integers(src_h - height + 1))
    left = int(rng.integers(src_w - width + 1))
    crop = frames[:, top : top + height, left : left + width]
    return crop.astype(np.float32) / 255.0


def augment_reference(
    image: np.ndarray, config: ReferenceAugmentConfig, rng: np.random.Generator
) -> np.ndarray:
    """Perturb an HR keyframe ``[H, W, 3]`` float32 in [0, 1] like an imperfect editor would.

    Colour jitter (brightness, contrast, saturation, hue), then Gaussian blur and Gaussian
    noise (sigma ``config.noise_sigma``), each with its probability. Returns the same layout.
    """
    image = image.copy()
    if rng.random() >= config.prob:
        return image
    image = color_jitter(image, config, rng)
    if rng.random() < config.blur_prob:
        sigma = float(rng.uniform(*config.blur_sigma))
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101)
    if rng.random() < config.noise_prob:
        image = image + rng.standard_normal(image.shape, dtype=np.float32) * config.noise_sigma
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def color_jitter(
    image: np.ndarray, config: ReferenceAugmentConfig, rng: np.random.Generator
) -> np.ndarray:
    """Random brightness, contrast, saturation and hue on ``[H, W, 3]`` float32 in [0, 1]."""
    brightness = rng.uniform(1 - config.brightness, 1 + config.brightness)
    contrast = rng.uniform(1 - config.contrast, 1 + config.contrast)
    saturation = rng.uniform(1 - config.saturation, 1 + config.saturation)
    hue = rng.uniform(-config.hue, config.hue)
    image = np.clip(image * brightness, 0, 1)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    image = np.clip(gray.mean() + (image - gray.mean()) * contrast, 0, 1)
    gray = cv2.cvtColor(image.astype(np.float32), cv2.COLOR_RGB2GRAY)[..., None]
    image = np.clip(gray + (image - gray) * saturation, 0, 1).astype(np.float32)
    if hue:
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)  # float input: H in degrees
        hsv[..., 0] = (hsv[..., 0] + hue * 360.0) % 360.0
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(image, 0, 1).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Command line: python -m training.data index ROOT... --out LIST


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data")
    sub = parser.add_subparsers(dest="command", required=True)
    index = sub.add_parser("index", help="probe videos/images under folders into a list file")
    index.add_argument("roots", nargs="+", help="folders (or files) to index")
    index.add_argument("--out", required=True, help="the JSONL list file to write")
    index.add_argument("--min-frames", type=int, default=1, help="skip shorter videos")
    args = parser.parse_args(argv)
    try:
        entries = build_index(args.roots, args.out, args.min_frames)
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    videos = sum(e.kind == "video" for e in entries)
    print(f"indexed {videos} videos and {len(entries) - videos} images into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
