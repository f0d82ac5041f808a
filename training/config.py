"""Typed training settings with the published SparkVSR values as defaults.

A run is described by one frozen ``TrainConfig``. It is built from the defaults of a stage
(``stage1_config()`` / ``stage2_config()``), then a JSON or YAML file (``--config``), then
``--set key.path=value`` overrides and a few shortcut flags, in that order. Values are checked
when the dataclasses are built, so a typo fails before any model is loaded.

Degradation ranges follow RealBasicVSR (video) and Real-ESRGAN (images); intensities are in
0..255 units for Gaussian noise sigma, as in those papers, and all images are float32 in [0, 1].
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparkvsr.errors import SparkVSRError

BLUR_KERNELS = (
    "iso",
    "aniso",
    "generalized_iso",
    "generalized_aniso",
    "plateau_iso",
    "plateau_aniso",
    "sinc",
)
RESIZE_MODES = ("up", "down", "keep")
INTERPOLATIONS = ("area", "bilinear", "bicubic")
VIDEO_CODECS = ("libx264", "h264", "mpeg4")
LR_SCHEDULES = ("constant", "cosine", "linear")
MIXED_PRECISION = ("no", "bf16", "fp16")
PERCEPTUAL = ("dists",)


class TrainingError(SparkVSRError):
    """The trainer cannot run as configured (bad setting, missing extra, empty dataset...)."""


def _check_range(name: str, pair: tuple[float, float], low: float, high: float) -> None:
    if len(pair) != 2 or not (low <= pair[0] <= pair[1] <= high):
        raise TrainingError(
            f"{name} {pair} must be a (min, max) pair with {low} <= min <= max <= {high}"
        )


def _check_probs(name: str, probs: tuple[float, ...], options: tuple[str, ...]) -> None:
    if len(probs) != len(options) or min(probs) < 0 or abs(sum(probs) - 1.0) > 1e-6:
        raise TrainingError(
            f"{name} {probs} must be {len(options)} non-negative probabilities summing to 1, "
            f"one per option in {options}"
        )


def _check_choices(name: str, values: tuple[str, ...], options: tuple[str, ...]) -> None:
    for value in values:
        if value not in options:
            raise TrainingError(f"{name}: {value!r} is unknown; choose from {', '.join(options)}")


@dataclass(frozen=True)
class BlurConfig:
    """One random blur: a kernel type drawn from ``kernels`` with ``kernel_probs``.

    sinc_omega: cut-off frequency range (radians) of the sinc (ringing) kernel.
    """

    prob: float = 1.0
    kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    kernels: tuple[str, ...] = BLUR_KERNELS
    kernel_probs: tuple[float, ...] = (0.405, 0.225, 0.108, 0.027, 0.108, 0.027, 0.1)
    sigma: tuple[float, float] = (0.2, 3.0)
    beta_gaussian: tuple[float, float] = (0.5, 4.0)
    beta_plateau: tuple[float, float] = (1.0, 2.0)
    sinc_omega: tuple[float, float] = (3.1416 / 3, 3.1416)

    def __post_init__(self) -> None:
        _check_range("blur prob", (0.0, self.prob), 0.0, 1.0)
        _check_choices("blur kernels", self.kernels, BLUR_KERNELS)
        _check_probs("blur kernel_probs", self.kernel_probs, self.kernels)
        if not self.kernel_sizes or any(k < 3 or k % 2 == 0 for k in self.kernel_sizes):
            raise TrainingError(f"blur kernel_sizes {self.kernel_sizes} must be odd sizes >= 3")
        _check_range("blur sigma", self.sigma, 0.01, 50.0)
        _check_range("blur beta_gaussian", self.beta_gaussian, 0.01, 20.0)
        _check_range("blur beta_plateau", self.beta_plateau, 0.01, 20.0)
        _check_range("blur sinc_omega", self.sinc_omega, 0.01, 3.1416)


@dataclass(frozen=True)
class ResizeConfig:
    """Random rescale: up / down / keep with ``mode_probs``; scale drawn from ``scale``."""

    mode_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)
    scale: tuple[float, float] = (0.15, 1.5)
    interpolations: tuple[str, ...] = INTERPOLATIONS
    interpolation_probs: tuple[float, ...] = (1 / 3, 1 / 3, 1 / 3)

    def __post_init__(self) -> None:
        _check_probs("resize mode_probs", self.mode_probs, RESIZE_MODES)
        _check_range("resize scale", self.scale, 0.01, 10.0)
        _check_choices("resize interpolations", self.interpolations, INTERPOLATIONS)
        _check_probs("resize interpolation_probs", self.interpolation_probs, self.interpolations)


@dataclass(frozen=True)
class NoiseConfig:
    """Gaussian (sigma in 0..255 units) or Poisson noise, grey with ``gray_prob``."""

    gaussian_prob: float = 0.5
    gaussian_sigma: tuple[float, float] = (1.0, 30.0)
    poisson_scale: tuple[float, float] = (0.05, 3.0)
    gray_prob: float = 0.4

    def __post_init__(self) -> None:
        _check_range("noise gaussian_prob", (0.0, self.gaussian_prob), 0.0, 1.0)
        _check_range("noise gray_prob", (0.0, self.gray_prob), 0.0, 1.0)
        _check_range("noise gaussian_sigma", self.gaussian_sigma, 0.0, 255.0)
        _check_range("noise poisson_scale", self.poisson_scale, 0.0, 100.0)


@dataclass(frozen=True)
class JpegConfig:
    prob: float = 1.0
    quality: tuple[int, int] = (30, 95)

    def __post_init__(self) -> None:
        _check_range("jpeg prob", (0.0, self.prob), 0.0, 1.0)
        _check_range("jpeg quality", self.quality, 1, 100)


@dataclass(frozen=True)
class VideoCompressionConfig:
    """In-memory encode/decode with PyAV at a random codec and bitrate (bits per second)."""

    prob: float = 1.0
    codecs: tuple[str, ...] = VIDEO_CODECS
    codec_probs: tuple[float, ...] = (1 / 3, 1 / 3, 1 / 3)
    bitrate: tuple[float, float] = (1e4, 1e5)

    def __post_init__(self) -> None:
        _check_range("video compression prob", (0.0, self.prob), 0.0, 1.0)
        _check_choices("video compression codecs", self.codecs, VIDEO_CODECS)
        _check_probs("video compression codec_probs", self.codec_probs, self.codecs)
        _check_range("video compression bitrate", self.bitrate, 1.0, 1e9)


@dataclass(frozen=True)
class DegradationStageConfig:
    """One pass of blur -> resize -> noise -> JPEG (Real-ESRGAN's first or second order)."""

    blur: BlurConfig = BlurConfig()
    resize: ResizeConfig = ResizeConfig()
    noise: NoiseConfig = NoiseConfig()
    jpeg: JpegConfig = JpegConfig()


def _second_stage() -> DegradationStageConfig:
    return DegradationStageConfig(
        blur=BlurConfig(prob=0.8, sigma=(0.2, 1.5)),
        resize=ResizeConfig(mode_probs=(0.3, 0.4, 0.3), scale=(0.3, 1.2)),
        noise=NoiseConfig(gaussian_sigma=(1.0, 25.0), poisson_scale=(0.05, 2.5)),
    )


@dataclass(frozen=True)
class DegradationConfig:
    """A two-order degradation with a final resize to HR / scale and a sinc filter.

    Video (RealBasicVSR): first order, video compression, second order, then in random order
    [video compression] and [resize to target + sinc]. Images (Real-ESRGAN): first order,
    second order, then in random order [JPEG] and [resize to target + sinc].
    Parameters are drawn once per clip and applied to every frame alike.
    """

    first: DegradationStageConfig = DegradationStageConfig()
    second: DegradationStageConfig = field(default_factory=_second_stage)
    video_compression: VideoCompressionConfig = VideoCompressionConfig()
    final_sinc_prob: float = 0.8
    final_sinc_omega: tuple[float, float] = (3.1416 / 3, 3.1416)
    final_kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)

    def __post_init__(self) -> None:
        _check_range("final_sinc_prob", (0.0, self.final_sinc_prob), 0.0, 1.0)
        _check_range("final_sinc_omega", self.final_sinc_omega, 0.01, 3.1416)


def image_degradation_config() -> DegradationConfig:
    """Real-ESRGAN's published image ranges (kernel probabilities differ from the video ones)."""
    image_blur = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03, 0.0)
    first = DegradationStageConfig(blur=BlurConfig(kernel_probs=_with_sinc(image_blur, 0.1)))
    second = _second_stage()
    second = dataclasses.replace(
        second, blur=dataclasses.replace(second.blur, kernel_probs=_with_sinc(image_blur, 0.1))
    )
    return DegradationConfig(first=first, second=second)


def _with_sinc(probs: tuple[float, ...], sinc: float) -> tuple[float, ...]:
    """Real-ESRGAN picks sinc with ``sinc`` probability first, then the others by ``probs``."""
    rest = sum(probs[:-1])
    return (*(p / rest * (1 - sinc) for p in probs[:-1]), sinc)


@dataclass(frozen=True)
class ReferenceAugmentConfig:
    """How an HR keyframe is perturbed into a training Reference (editors are imperfect).

    Colour jitter factors are drawn from ``1 +- value`` (hue: a shift of +- value turns);
    blur sigma in HR pixels; noise sigma in [0, 1] intensity units.
    """

    prob: float = 1.0
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.02
    blur_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    noise_prob: float = 0.5
    noise_sigma: float = 0.05

    def __post_init__(self) -> None:
        for name in ("prob", "blur_prob", "noise_prob"):
            _check_range(f"reference {name}", (0.0, getattr(self, name)), 0.0, 1.0)
        _check_range("reference blur_sigma", self.blur_sigma, 0.01, 20.0)


@dataclass(frozen=True)
class DataConfig:
    """What the trainer reads.

    list_file:    the index written by ``python -m training.data index`` (made from ``roots`` on
                  first use when missing).
    roots:        folders searched recursively for videos and images.
    num_frames:   frames per training clip, 8k+1 (the model was trained with 33).
    height/width: HR crop size (multiples of 16 * scale / 4 so LR latents stay integral).
    scale:        HR / LR size ratio (the model's 4).
    no_keyframe_prob: share of clips trained with no reference at all (blind restoration).
    """

    list_file: str = "data/train_list.jsonl"
    roots: tuple[str, ...] = ()
    num_frames: int = 33
    height: int = 320
    width: int = 640
    scale: int = 4
    no_keyframe_prob: float = 0.1
    num_workers: int = 2
    reference: ReferenceAugmentConfig = ReferenceAugmentConfig()

    def __post_init__(self) -> None:
        if self.num_frames < 1 or (self.num_frames - 1) % 8:
            raise TrainingError(
                f"num_frames {self.num_frames} must be 8k+1 (e.g. 9, 17, 33): the VAE decodes an "
                "odd latent count back to exactly that many frames"
            )
        unit = 8 * self.scale
        if self.height % unit or self.width % unit or self.height < unit or self.width < unit:
            raise TrainingError(
                f"crop {self.width}x{self.height} must be positive multiples of {unit} "
                f"(8 x scale {self.scale}) so the LR crop maps to whole latent pixels"
            )
        _check_range("no_keyframe_prob", (0.0, self.no_keyframe_prob), 0.0, 1.0)
        if self.num_workers < 0:
            raise TrainingError(f"num_workers {self.num_workers} must be 0 or more")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a linear warm-up, then ``schedule``; gradients clipped to ``max_grad_norm``."""

    lr: float = 2e-5
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 1e-4
    eps: float = 1e-8
    warmup_steps: int = 100
    schedule: str = "constant"
    max_grad_norm: float = 0.1
    max_steps: int = 10_000

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.max_steps < 1 or self.warmup_steps < 0 or self.max_grad_norm <= 0:
            raise TrainingError(
                f"optimiser settings lr={self.lr}, max_steps={self.max_steps}, "
                f"warmup_steps={self.warmup_steps}, max_grad_norm={self.max_grad_norm} must be positive"
            )
        _check_choices("optim schedule", (self.schedule,), LR_SCHEDULES)


@dataclass(frozen=True)
class LossConfig:
    """Stage 2 pixel loss weights: MSE + dists * DISTS + frame_diff * frame-difference L1."""

    mse: float = 1.0
    dists: float = 1.0
    frame_diff: float = 1.0
    perceptual: str = "dists"

    def __post_init__(self) -> None:
        if min(self.mse, self.dists, self.frame_diff) < 0:
            raise TrainingError("loss weights must be 0 or more")
        _check_choices("loss perceptual", (self.perceptual,), PERCEPTUAL)


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    pretrained:        the pipeline folder (or hub id) to start from: the base model for stage 1,
                       a stage-1 export for stage 2.
    output_dir:        checkpoints (``checkpoints/step-XXXXXX``), ``metrics.jsonl``, TensorBoard.
    image_ratio:       stage 2 share of steps trained on single images (zero reference).
    resume:            "latest", a checkpoint folder, or "" to start fresh.
    """

    stage: int = 1
    pretrained: str = "THUDM/CogVideoX1.5-5B-I2V"
    output_dir: str = "runs/stage1"
    seed: int = 42
    batch_size: int = 1
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "bf16"
    gradient_checkpointing: bool = True
    image_ratio: float = 0.0
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 1
    resume: str = ""
    data: DataConfig = DataConfig()
    degradation: DegradationConfig = DegradationConfig()
    image_degradation: DegradationConfig = field(default_factory=image_degradation_config)
    optim: OptimConfig = OptimConfig()
    loss: LossConfig = LossConfig()

    def __post_init__(self) -> None:
        if self.stage not in (1, 2):
            raise TrainingError(f"stage {self.stage} is unknown; use 1 (latent) or 2 (pixel)")
        _check_choices("mixed_precision", (self.mixed_precision,), MIXED_PRECISION)
        _check_range("image_ratio", (0.0, self.image_ratio), 0.0, 1.0)
        if self.stage == 1 and self.image_ratio:
            raise TrainingError("image_ratio is a stage 2 setting; stage 1 trains on videos only")
        if min(self.batch_size, self.gradient_accumulation_steps, self.checkpoint_every) < 1:
            raise TrainingError(
                "batch_size, gradient_accumulation_steps and checkpoint_every must be at least 1"
            )
        if self.keep_checkpoints < 1 or self.log_every < 1:
            raise TrainingError("keep_checkpoints and log_every must be at least 1")


def stage1_config() -> TrainConfig:
    """Published stage 1: 33 x 320 x 640 clips, lr 2e-5, 10k steps, latent MSE."""
    return TrainConfig()


def stage2_config() -> TrainConfig:
    """Published stage 2: lr 5e-6, 500 steps, half the steps on images, MSE + DISTS + frame diff."""
    return TrainConfig(
        stage=2,
        pretrained="runs/stage1/export",
        output_dir="runs/stage2",
        image_ratio=0.5,
        checkpoint_every=100,
        optim=OptimConfig(lr=5e-6, max_steps=500),
    )


# ---------------------------------------------------------------------------------------------
# Building configs from files and command lines


def config_from_dict(cls: type, values: dict[str, Any], base: Any = None, where: str = "") -> Any:
    """Build dataclass ``cls`` from nested ``values`` on top of ``base`` (or the defaults).

    Unknown keys raise a TrainingError that lists the valid ones; lists become tuples.
    """
    base = base if base is not None else cls()
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in names:
            raise TrainingError(
                f"unknown setting {where + key!r}; valid settings here: {', '.join(sorted(names))}"
            )
        hint = hints[key]
        current = getattr(base, key)
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise TrainingError(f"setting {where + key!r} is a section; give a mapping")
            changes[key] = config_from_dict(hint, value, current, where=f"{where}{key}.")
        else:
            changes[key] = _coerce(hint, value, where + key)
    try:
        return dataclasses.replace(base, **changes)
    except TypeError as e:
        raise TrainingError(f"bad settings under {where or 'the top level'}: {e}") from e


def _coerce(hint: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TrainingError(f"setting {name!r} needs a list, got {value!r}")
        args = typing.get_args(hint)
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        if item is None and len(args) != len(value):
            raise TrainingError(f"setting {name!r} needs {len(args)} values, got {value!r}")
        return tuple(
            _coerce(item if item is not None else args[i], v, name) for i, v in enumerate(value)
        )
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise TrainingError(f"setting {name!r} needs a {hint.__name__}, got {value!r}")
    return value


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as plain JSON-ready data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML settings file into nested dicts."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise TrainingError(f"cannot read config file {path}: {e}") from e
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:
        raise TrainingError(f"config file {path} is not valid JSON/YAML: {e}") from e
    if not isinstance(data, dict):
        raise TrainingError(f"config file {path} must hold a mapping of settings at the top")
    return data


def parse_override(text: str) -> dict[str, Any]:
    """``"optim.lr=1e-5"`` -> ``{"optim": {"lr": 1e-05}}``; values are read as YAML scalars/lists."""
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise TrainingError(
            f"override {text!r} must look like section.key=value, e.g. optim.lr=1e-5"
        )
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise TrainingError(f"override {text!r}: cannot read value {raw!r}: {e}") from e
    if isinstance(value, str):
        value = _maybe_number(value)
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def _maybe_number(text: str) -> Any:
    """YAML 1.1 reads ``1e-5`` as a string; numbers are what a user means."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _merge(into: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def build_parser(stage: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"accelerate launch -m training.stage{stage}",
        description=f"SparkVSR stage {stage} training. Settings: defaults < --config < --set.",
    )
    parser.add_argument("--config", help="JSON or YAML file of settings (see training/config.py)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set optim.lr=1e-5 --set data.num_frames=17",
    )
    parser.add_argument("--pretrained", help="pipeline folder or hub id to start from")
    parser.add_argument("--output-dir", help="where checkpoints and logs go")
    parser.add_argument("--max-steps", type=int, help="optimiser steps to train for")
    parser.add_argument("--resume", help='"latest" or a checkpoint folder')
    return parser


def config_from_args(stage: int, argv: list[str] | None = None) -> TrainConfig:
    """Parse a stage's command line into a TrainConfig (defaults < file < overrides < flags)."""
    args = build_parser(stage).parse_args(argv)
    values: dict[str, Any] = load_config_file(args.config) if args.config else {}
    for override in args.overrides:
        _merge(values, parse_override(override))
    shortcuts = {
        "pretrained": args.pretrained,
        "output_dir": args.output_dir,
        "resume": args.resume,
    }
    values.update({k: v for k, v in shortcuts.items() if v is not None})
    if args.max_steps is not None:
        _merge(values, {"optim": {"max_steps": args.max_steps}})
    if values.get("stage", stage) != stage:
        raise TrainingError(
            f"the config says stage {values['stage']} but this is training.stage{stage}"
        )
    values["stage"] = stage
    base = stage1_config() if stage == 1 else stage2_config()
    return config_from_dict(TrainConfig, values, base)
