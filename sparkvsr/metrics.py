"""Quality metrics on frames: pure functions from arrays to numbers.

Conventions (the ones restoration papers report, stated so tables can be compared):

- Frames are RGB ``uint8`` arrays ``[H, W, 3]`` (or float arrays on the same 0..255 scale).
  The data range is 255.
- ``y_channel=True`` measures on the BT.601 luma of studio-range YCbCr,
  ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` (values 16..235, kept as floats, never
  rounded): MATLAB's ``rgb2ycbcr`` as used by the SR literature. ``y_channel=False`` measures on
  all three RGB channels.
- ``crop=N`` drops N pixels from every border before measuring (papers crop the scale factor).
- PSNR = 10 log10(255² / MSE), MSE over all kept pixels and channels; identical images give
  ``inf``. A clip's PSNR is the mean of its per-frame PSNRs.
- SSIM follows Wang et al. (2004): 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03,
  L = 255, statistics over every window that fits inside the image ("valid", as the authors'
  MATLAB code), averaged over the image; RGB SSIM is the mean over the three channels.

Learned metrics (LPIPS, DISTS, MUSIQ, CLIP-IQA, NIQE) come from ``pyiqa``, an optional extra: when
it is missing or cannot build a metric (no torchvision, weights that cannot be downloaded), the
metric raises ``MetricUnavailable`` with the reason; no number is ever invented.

Temporal consistency: ``warping_error`` is the occlusion-masked flow-warping error of Lai et al.
(2018) between consecutive frames, with OpenCV DIS optical flow; ``xt_slice`` stacks one scanline
over time (an X-T image), where flicker shows up as horizontal streaks and steady motion as
straight slanted lines.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from sparkvsr.errors import EvaluationError, SparkVSRError

DATA_RANGE = 255.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
# BT.601 studio-range luma weights applied to 0..255 RGB (MATLAB rgb2ycbcr), offset 16.
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0
_Y_OFFSET = 16.0


class MetricUnavailable(SparkVSRError):
    """A metric cannot run here; the message says why (missing package, weights, installation)."""


# ---------------------------------------------------------------------------------------------
# Catalogue


@dataclass(frozen=True)
class MetricSpec:
    """One metric the evaluation can report.

    kind:    "full-reference" (needs GT), "no-reference" (output only), "temporal" (consecutive
             output frames) or "video" (one score per clip from an external model).
    backend: "native" (this module), "pyiqa" (optional extra) or "external" (the user's own
             installation of the model's official code).
    """

    name: str
    label: str
    kind: str
    higher_better: bool
    backend: str
    description: str

    @property
    def header(self) -> str:
        """Column title with the direction arrow papers use."""
        return f"{self.label} {'↑' if self.higher_better else '↓'}"


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("psnr", "PSNR", "full-reference", True, "native", "peak signal-to-noise, dB"),
        MetricSpec("ssim", "SSIM", "full-reference", True, "native", "Wang et al. 2004"),
        MetricSpec("lpips", "LPIPS", "full-reference", False, "pyiqa", "learned perceptual"),
        MetricSpec("dists", "DISTS", "full-reference", False, "pyiqa", "structure + texture"),
        MetricSpec("musiq", "MUSIQ", "no-reference", True, "pyiqa", "multi-scale transformer"),
        MetricSpec("clipiqa", "CLIP-IQA", "no-reference", True, "pyiqa", "CLIP prompt pairs"),
        MetricSpec("niqe", "NIQE", "no-reference", False, "pyiqa", "natural scene statistics"),
        MetricSpec(
            "ewarp", "E_warp×10³", "temporal", False, "native", "flow-warping error (Lai 2018)"
        ),
        MetricSpec("dover", "DOVER", "video", True, "external", "video quality, fused score"),
        MetricSpec("fastervqa", "FasterVQA", "video", True, "external", "video quality score"),
    )
}
PYIQA_NAMES = {
    "lpips": "lpips",
    "dists": "dists",
    "musiq": "musiq",
    "clipiqa": "clipiqa",
    "niqe": "niqe",
}
"""Our metric name -> pyiqa's ``create_metric`` name."""


def check_metric_names(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Return ``names`` in catalogue order, de-duplicated; raise naming an unknown one."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise EvaluationError(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
    return tuple(n for n in METRICS if n in set(names))


# ---------------------------------------------------------------------------------------------
# Colour and cropping


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """BT.601 studio-range luma ``[H, W]`` float64 in 16..235 from RGB ``[H, W, 3]`` on 0..255."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"rgb_to_y needs an RGB image [H, W, 3]; got shape {image.shape}")
    return image @ _Y_WEIGHTS + _Y_OFFSET


def _prepare(image: np.ndarray, y_channel: bool, crop: int) -> np.ndarray:
    """float64 ``[H', W', C]`` (C = 1 for Y) with ``crop`` pixels removed from every border."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an RGB frame [H, W, 3]; got shape {image.shape}")
    out = rgb_to_y(image)[..., None] if y_channel else image.astype(np.float64)
    if crop:
        if crop < 0 or 2 * crop >= min(out.shape[:2]):
            raise ValueError(
                f"crop {crop} is invalid for a {image.shape[1]}x{image.shape[0]} frame "
                f"(use 0 <= crop < {min(out.shape[:2]) // 2})"
            )
        out = out[crop:-crop, crop:-crop]
    return out


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if np.shape(a) != np.shape(b):
        raise ValueError(
            f"frames differ in shape: {np.shape(a)} vs {np.shape(b)}; compare frames of one size"
        )


# ---------------------------------------------------------------------------------------------
# Full reference: PSNR, SSIM


def psnr(pred: np.ndarray, gt: np.ndarray, *, y_channel: bool = False, crop: int = 0) -> float:
    """PSNR in dB of ``pred`` against ``gt`` (both RGB ``[H, W, 3]`` on 0..255).

    RGB (default) or BT.601 Y channel (``y_channel``), ``crop`` border pixels removed, data
    range 255. Identical frames give ``inf``.
    """
    _check_pair(pred, gt)
    a, b = _prepare(pred, y_channel, crop), _prepare(gt, y_channel, crop)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(DATA_RANGE**2 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian taps ``[size]`` (the SSIM window is its outer product)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    taps = np.exp(-(x**2) / (2.0 * sigma**2))
    return taps / taps.sum()


def _filter_valid(image: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable correlation keeping only the windows fully inside ``image`` ([H, W] float64)."""
    half = len(taps) // 2
    out = cv2.sepFilter2D(image, cv2.CV_64F, taps, taps, borderType=cv2.BORDER_REFLECT)
    return out[half:-half, half:-half]


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-window SSIM of two single-channel images ``[H, W]`` float on 0..255 (valid windows)."""
    if min(a.shape) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels after cropping; "
            f"got {a.shape[1]}x{a.shape[0]}"
        )
    taps = gaussian_window()
    c1 = (SSIM_K1 * DATA_RANGE) ** 2
    c2 = (SSIM_K2 * DATA_RANGE) ** 2
    mu_a, mu_b = _filter_valid(a, taps), _filter_valid(b, taps)
    var_a = _filter_valid(a * a, taps) - mu_a**2
    var_b = _filter_valid(b * b, taps) - mu_b**2
    cov = _filter_valid(a * b, taps) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )


def ssim(pred: np.ndarray, gt: np.ndarray, *, y_channel: bool = False, crop: int = 0) -> float:
    """SSIM of ``pred`` against ``gt`` (RGB ``[H, W, 3]`` on 0..255), Wang et al. 2004.

    Gaussian window 11 / sigma 1.5, K1 0.01, K2 0.03, L 255, valid windows only; RGB is the mean
    of the per-channel SSIMs, ``y_channel`` uses the BT.601 Y channel; ``crop`` as in ``psnr``.
    """
    _check_pair(pred, gt)
    a, b = _prepare(pred, y_channel, crop), _prepare(gt, y_channel, crop)
    return float(np.mean([ssim_map(a[..., c], b[..., c]).mean() for c in range(a.shape[-1])]))


# ---------------------------------------------------------------------------------------------
# Temporal: optical flow, warping error, X-T slices


def to_gray(frame: np.ndarray) -> np.ndarray:
    """``[H, W]`` uint8 luma of an RGB ``[H, W, 3]`` uint8 frame (what the flow runs on)."""
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def new_flow_estimator() -> Any:
    """An OpenCV DIS estimator (medium preset); build once and pass to ``optical_flow``."""
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)


def optical_flow(a: np.ndarray, b: np.ndarray, estimator: Any = None) -> np.ndarray:
    """Dense flow ``[H, W, 2]`` float32 (dx, dy) with ``a(p) ≈ b(p + flow(p))``.

    ``a``, ``b``: RGB ``[H, W, 3]`` or gray ``[H, W]`` uint8 frames of one size.
    """
    estimator = estimator or new_flow_estimator()
    a = to_gray(a) if a.ndim == 3 else a
    b = to_gray(b) if b.ndim == 3 else b
    return estimator.calc(np.ascontiguousarray(a), np.ascontiguousarray(b), None)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warp: ``out(p) = image(p + flow(p))``, bilinear; ``image`` ``[H, W, C]``."""
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(
        np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    )
    return cv2.remap(
        np.asarray(image, dtype=np.float32),
        grid_x + flow[..., 0],
        grid_y + flow[..., 1],
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def occlusion_mask(
    forward: np.ndarray, backward: np.ndarray, alpha: float = 0.01, beta: float = 0.5
) -> np.ndarray:
    """``[H, W]`` bool, True where ``forward`` (a->b) is trusted.

    A pixel is kept when its target lies inside the frame and the forward-backward check of
    Sundaram et al. (2010) holds: |f + b(p + f)|² < alpha (|f|² + |b(p + f)|²) + beta.
    """
    height, width = forward.shape[:2]
    back = warp(backward, forward)
    residual = np.sum((forward + back) ** 2, axis=-1)
    bound = alpha * (np.sum(forward**2, axis=-1) + np.sum(back**2, axis=-1)) + beta
    grid_x, grid_y = np.meshgrid(np.arange(width), np.arange(height))
    target_x, target_y = grid_x + forward[..., 0], grid_y + forward[..., 1]
    inside = (target_x >= 0) & (target_x <= width - 1) & (target_y >= 0) & (target_y <= height - 1)
    return (residual < bound) & inside


@dataclass(frozen=True)
class FramePairFlow:
    """Motion from frame t to frame t-1: ``cur(p) ≈ prev(p + flow(p))`` where ``mask`` is True.

    flow: ``[H, W, 2]`` float32; mask: ``[H, W]`` bool (False at occlusions and at pixels whose
    match falls outside the frame).
    """

    flow: np.ndarray
    mask: np.ndarray


def pair_flow(prev: np.ndarray, cur: np.ndarray, estimator: Any = None) -> FramePairFlow:
    """Occlusion-masked motion between two consecutive RGB ``[H, W, 3]`` uint8 frames."""
    estimator = estimator or new_flow_estimator()
    prev_gray, cur_gray = to_gray(prev), to_gray(cur)
    to_prev = optical_flow(cur_gray, prev_gray, estimator)
    to_cur = optical_flow(prev_gray, cur_gray, estimator)
    return FramePairFlow(to_prev, occlusion_mask(to_prev, to_cur))


def warping_error(prev: np.ndarray, cur: np.ndarray, motion: FramePairFlow | None = None) -> float:
    """Occlusion-masked flow-warping error between consecutive frames (Lai et al. 2018).

    ``prev``, ``cur``: RGB ``[H, W, 3]`` uint8. ``motion``: the flow between these two time steps;
    pass the flow of the ground truth so every method is judged against the same motion, or
    leave None to estimate it on ``prev``/``cur`` themselves. Returns the mean squared difference
    between ``cur`` and ``prev`` warped onto it, over non-occluded pixels and the three channels,
    with values scaled to 0..1 (0 = perfectly consistent; papers print it ×10³).
    """
    _check_pair(prev, cur)
    motion = motion or pair_flow(prev, cur)
    if motion.flow.shape[:2] != cur.shape[:2]:
        raise ValueError(
            f"flow is {motion.flow.shape[1]}x{motion.flow.shape[0]} but frames are "
            f"{cur.shape[1]}x{cur.shape[0]}"
        )
    warped = warp(prev, motion.flow) / 255.0
    diff = np.sum((cur.astype(np.float32) / 255.0 - warped) ** 2, axis=-1)
    kept = int(motion.mask.sum())
    if kept == 0:
        return math.nan
    return float(diff[motion.mask].sum() / (3 * kept))


def scanline_row(height: int, fraction: float = 0.5) -> int:
    """Row index at ``fraction`` of a frame's height (0 = top, 1 = bottom)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"scanline position {fraction} must be between 0 and 1")
    return min(height - 1, int(fraction * height))


def xt_slice(frames: np.ndarray, row: int) -> np.ndarray:
    """X-T image ``[T, W, 3]``: scanline ``row`` of each frame of ``[T, H, W, 3]``, top = first."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or not 0 <= row < frames.shape[1]:
        raise ValueError(
            f"xt_slice needs frames [T, H, W, 3] and a row inside 0..H-1; got shape "
            f"{frames.shape} and row {row}"
        )
    return frames[:, row].copy()


# ---------------------------------------------------------------------------------------------
# pyiqa (optional extra)


def pyiqa_status() -> str | None:
    """None when pyiqa imports; otherwise why not, in words a user can act on."""
    try:
        importlib.import_module("pyiqa")
    except ImportError as e:
        return (
            f"pyiqa is not installed ({e}); it is an optional extra: pip install pyiqa "
            "(it needs torchvision)"
        )
    except Exception as e:  # pyiqa imports torchvision, which can fail in many ways
        return f"pyiqa cannot be imported: {type(e).__name__}: {e}"
    return None


class PyiqaScorer:
    """A resident pyiqa model scoring batches of frames.

    ``name`` is ours (``lpips``, ``dists``, ``musiq``, ``clipiqa``, ``niqe``). Building raises
    ``MetricUnavailable`` when pyiqa is missing or cannot build the model (e.g. its weights cannot
    be downloaded here).
    """

    def __init__(self, name: str, device: str = "cpu"):
        if name not in PYIQA_NAMES:
            raise ValueError(
                f"{name!r} is not a pyiqa metric; choose from {', '.join(PYIQA_NAMES)}"
            )
        reason = pyiqa_status()
        if reason:
            raise MetricUnavailable(reason)
        import pyiqa
        import torch

        self.name = name
        self.full_reference = METRICS[name].kind == "full-reference"
        self._torch = torch
        self._device = torch.device(device)
        try:
            self._model = pyiqa.create_metric(PYIQA_NAMES[name], device=self._device, as_loss=False)
        except Exception as e:  # network, missing weights, bad device: all mean "cannot run"
            raise MetricUnavailable(
                f"pyiqa could not build {PYIQA_NAMES[name]}: {type(e).__name__}: {e}"
            ) from e

    def _tensor(self, frames: np.ndarray) -> Any:
        batch = np.ascontiguousarray(np.asarray(frames, dtype=np.float32).transpose(0, 3, 1, 2))
        return self._torch.from_numpy(batch / 255.0).to(self._device)

    def __call__(self, pred: np.ndarray, gt: np.ndarray | None = None) -> np.ndarray:
        """Scores ``[N]`` float64 for RGB uint8 frames ``[N, H, W, 3]`` (``gt`` for FR metrics)."""
        if self.full_reference and gt is None:
            raise ValueError(f"{self.name} is full-reference: pass the ground-truth frames")
        with self._torch.no_grad():
            if self.full_reference:
                scores = self._model(self._tensor(pred), self._tensor(gt))
            else:
                scores = self._model(self._tensor(pred))
        values = np.asarray(scores.detach().cpu().numpy(), dtype=np.float64).reshape(-1)
        if values.size != len(pred):
            raise MetricUnavailable(
                f"pyiqa {self.name} returned {values.size} scores for {len(pred)} frames"
            )
        return values
