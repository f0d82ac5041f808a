"""Dense optical flow helpers for keyframe propagation. Pure array functions (plus a small DIS wrapper).

Conventions used everywhere in this module:

- A flow is ``[H, W, 2]`` float32 in pixels of the frames it was computed on (LR pixels in the flow
  engine): ``(dx, dy)`` per pixel.
- ``flow_ab`` maps frame a to frame b: pixel ``x`` of a sits at ``x + flow_ab[x]`` in b. Warping b
  by ``flow_ab`` (backward warping) therefore gives an image aligned with a.
- Images are ``[H, W]`` or ``[H, W, C]``; uint8 frames in [0, 255], float32 images in the same range.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


class DisFlow:
    """OpenCV DIS optical flow with fixed settings.

    preset:        "ultrafast", "fast" or "medium" (patch size, iterations, refinement).
    finest_scale:  pyramid level the flow is finished at: 0 = the input resolution (most precise),
                   1 = half of it (OpenCV's default for "medium", 4x cheaper). Sub-pixel precision
                   is what residual propagation lives on, so the engine refines at level 0.
    iterations:    gradient-descent iterations per patch, or None for the preset's own.
    patch_stride:  pixels between neighbouring patches, or None for the preset's own (4 for
                   "ultrafast", whose patches are 8 pixels): the finest level's cost is about
                   proportional to the number of patches.
    """

    def __init__(
        self,
        preset: str = "medium",
        finest_scale: int = 0,
        iterations: int | None = None,
        patch_stride: int | None = None,
    ):
        if preset not in DIS_PRESETS:
            raise ValueError(
                f"unknown DIS preset {preset!r}; choose one of {', '.join(DIS_PRESETS)}"
            )
        if finest_scale < 0:
            raise ValueError(f"finest_scale {finest_scale} must be 0 or more")
        self.preset = preset
        self.finest_scale = finest_scale
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])
        self._dis.setFinestScale(finest_scale)
        if iterations is not None:
            if iterations < 1:
                raise ValueError(f"iterations {iterations} must be at least 1")
            self._dis.setGradientDescentIterations(iterations)
        if patch_stride is not None:
            if not 1 <= patch_stride <= self.patch_size:
                raise ValueError(
                    f"patch_stride {patch_stride} must be 1 to the patch size {self.patch_size}"
                )
            self._dis.setPatchStride(patch_stride)

    @property
    def patch_size(self) -> int:
        """Side of the square patches matched at each level, in pixels."""
        return self._dis.getPatchSize()

    def __call__(self, a: np.ndarray, b: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
        """Flow from gray frame ``a`` to gray frame ``b`` (both ``[H, W]`` uint8) -> ``[H, W, 2]``.

        ``init`` (a flow a -> b) seeds the coarse-to-fine search, so large motion found by
        composing short steps is kept while the fine levels re-align it directly.
        """
        seed = None if init is None else np.ascontiguousarray(init, dtype=np.float32).copy()
        return self._dis.calc(a, b, seed)


def to_gray(frame: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB -> ``[H, W]`` uint8 luma."""
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


@lru_cache(maxsize=8)
def _grid(height: int, width: int) -> np.ndarray:
    """Pixel coordinates ``[H, W, 2]`` float32 (x, y), read-only."""
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    grid = np.ascontiguousarray(np.stack([xs, ys], axis=-1))
    grid.setflags(write=False)
    return grid


def warp(image: np.ndarray, flow: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Backward-warp ``image`` ``[H, W(, C)]`` by ``flow`` ``[H, W, 2]``: ``out[x] = image[x + flow[x]]``.

    Samples outside the image repeat the border (the confidence maps, not the warp, decide whether
    such pixels are used).
    """
    height, width = flow.shape[:2]
    positions = cv2.add(flow, _grid(height, width))
    return cv2.remap(image, positions, None, interpolation, borderMode=cv2.BORDER_REPLICATE)


def hr_positions(flow: np.ndarray, scale: int) -> np.ndarray:
    """Where each LR pixel centre samples an HR image warped by the LR ``flow`` ``[h, w, 2]``:
    ``[h, w, 2]`` float32 HR coordinates (x, y), ``scale`` x the LR pixel's centre plus its flow.

    Upscaled bilinearly to the HR size, these are the sampling positions of warping an HR image
    by the LR flow: a linear function of the position is reproduced exactly, so they equal the
    HR grid plus the flow upscaled (bilinear, times ``scale``) except on the outer
    ``(scale - 1) / 2`` HR pixels of each side, where the upscale repeats the border position
    instead of extrapolating it (a shift of at most that much). The flow engine upscales them band by band, just before each warp.
    """
    return cv2.scaleAdd(flow, float(scale), _centres(flow.shape[0], flow.shape[1], scale))


@lru_cache(maxsize=8)
def _centres(height: int, width: int, scale: int) -> np.ndarray:
    """HR coordinates ``[h, w, 2]`` float32 (x, y) of the LR pixel centres, read-only."""
    centres = (_grid(height, width) + np.float32(0.5)) * np.float32(scale) - np.float32(0.5)
    centres.setflags(write=False)
    return centres


def compose(flow_ab: np.ndarray, flow_bc: np.ndarray) -> np.ndarray:
    """Flow a -> c from a -> b and b -> c (all ``[H, W, 2]``): follow a's pixel to b, then on to c."""
    return flow_ab + warp(flow_bc, flow_ab)


def forward_backward_mask(
    flow_ab: np.ndarray,
    flow_ba: np.ndarray,
    alpha: float = 0.01,
    beta: float = 1.0,
    soft: bool = False,
) -> np.ndarray:
    """1 where a -> b and back lands where it started, 0 where it does not (occlusions): ``[H, W]``.

    The test of Sundaram et al. (2010): ``|f + b(x + f)|^2 < alpha (|f|^2 + |b(x + f)|^2) + beta``,
    with ``beta`` in squared pixels of the flows' frames.
    """
    back = warp(flow_ba, flow_ab)
    # one channel sum of |f + b|^2 - alpha |f|^2 - alpha |b|^2: fewer full passes than three sums
    excess = cv2.pow(cv2.add(flow_ab, back), 2)
    excess = cv2.scaleAdd(cv2.pow(flow_ab, 2), -alpha, excess)
    excess = cv2.scaleAdd(cv2.pow(back, 2), -alpha, excess)
    if not soft:
        return (_channel_sum(excess) < beta).astype(np.float32)
    # 1 up to beta, falling linearly to 0 at 2 beta: no hard edge where trust ends
    return np.clip(2.0 - _channel_sum(excess) * np.float32(1.0 / beta), 0.0, 1.0)


def agreement(aligned: np.ndarray, target: np.ndarray, sigma: float, window: int) -> np.ndarray:
    """How well an aligned frame matches the target locally: ``[H, W]`` float32 in (0, 1].

    ``aligned`` and ``target`` are ``[H, W, 3]`` (or one-channel ``[H, W]``) float32 in [0, 255].
    The squared difference is averaged over channels and a ``window`` x ``window`` box, then
    mapped by ``exp(-e / sigma^2)``: where the warp is right, the LR frames agree; where it is
    not, detail carried along would land in the wrong place, and it costs more than the missing
    detail would.
    """
    squared = cv2.pow(cv2.subtract(aligned, target), 2)
    channels = 1 if squared.ndim == 2 else squared.shape[-1]
    summed = squared if channels == 1 else _channel_sum(squared)
    error = cv2.boxFilter(summed, -1, (window, window))
    return cv2.exp(error * np.float32(-1.0 / (channels * sigma * sigma)))


def _channel_sum(image: np.ndarray) -> np.ndarray:
    """``[H, W, C]`` float32 -> ``[H, W]``: the sum over channels, in one OpenCV pass."""
    summed = cv2.transform(image, np.ones((1, image.shape[-1]), np.float32))
    return summed.reshape(image.shape[:2])


def scene_cut_score(previous: np.ndarray, current: np.ndarray, flow: np.ndarray) -> float:
    """How badly motion explains ``current`` from ``previous``: about 0.1-0.3 within a shot, ~1+ at a cut.

    ``previous`` and ``current`` are ``[H, W, 3]`` uint8 neighbouring frames and ``flow`` the flow
    ``current -> previous`` ``[H, W, 2]``. The mean absolute error of the motion-compensated
    frame is divided by the current frame's mean absolute deviation (contrast, floored at 2 levels
    so flat frames do not divide by zero): two unrelated shots differ by about their own
    contrast whatever the warp, while one shot is explained up to noise and occlusions.
    """
    values = current.size
    # warped as uint8: its rounding moves the error by < 0.25 levels, far below a cut's
    error = cv2.norm(warp(previous, flow), current, cv2.NORM_L1) / values
    target = current.astype(np.float32)
    contrast = cv2.norm(cv2.subtract(target, cv2.mean(target)), cv2.NORM_L1) / values
    return error / (contrast + 2.0)


def fit_homography(
    flow: np.ndarray, trusted: np.ndarray, stride: int = 8, threshold: float = 0.75
) -> np.ndarray | None:
    """The global motion (a homography) that explains ``flow`` where it is ``trusted``.

    ``flow`` ``[H, W, 2]`` a -> b, ``trusted`` ``[H, W]`` bool. Samples every ``stride``-th
    trusted pixel and fits with RANSAC (inliers within ``threshold`` pixels). Returns the 3x3
    float64 matrix taking a pixel of a to its place in b, or None when too few pixels are
    trusted, the fit fails, or the map folds the frame (its projective denominator reaches 0
    inside it). Where dense flow is ambiguous (repeating texture, blur) but the camera's motion
    is global, this recovers it.
    """
    height, width = flow.shape[:2]
    grid = _grid(height, width)
    picked = trusted[::stride, ::stride]
    if np.count_nonzero(picked) < 24:
        return None
    source = grid[::stride, ::stride][picked]
    target = source + flow[::stride, ::stride][picked]
    # 200 RANSAC rounds: with half the samples outliers, a clean 4-point set is found with
    # probability 1 - (1 - 0.5^4)^200 > 0.9999. (OpenCV's USAC_FAST fits 6-7x faster, but its
    # fits on real flows differ: bikes with a scaled Reference, E_warp ratio 1.08 -> 1.11.)
    matrix, inliers = cv2.findHomography(source, target, cv2.RANSAC, threshold, maxIters=200)
    if matrix is None or inliers is None or inliers.sum() < 16 or not np.isfinite(matrix).all():
        return None
    # the denominator is linear in (x, y): positive at the four corners, positive everywhere
    corners = np.array(
        [[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]]
    )
    if (corners @ matrix[2]).min() <= 1e-6 * abs(matrix[2, 2]):
        return None
    return matrix


def warp_homography(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``warp(image, flow)`` for the flow of a homography ``matrix`` (``fit_homography``):
    ``out[x] = image[matrix @ x]``, bilinear, borders repeated, without building the flow."""
    height, width = image.shape[:2]
    return cv2.warpPerspective(
        image,
        matrix,
        (width, height),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def _homography_at(matrix: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    moved = cv2.perspectiveTransform(pixels.reshape(1, -1, 2), matrix).reshape(-1, 2)
    return moved - pixels


def homography_flow(
    flow: np.ndarray, trusted: np.ndarray, stride: int = 8, threshold: float = 0.75
) -> np.ndarray | None:
    """``fit_homography``'s motion as a dense flow ``[H, W, 2]`` float32, or None (see there)."""
    matrix = fit_homography(flow, trusted, stride, threshold)
    return None if matrix is None else motion_flow(matrix, flow.shape[0], flow.shape[1])


def motion_flow(matrix: np.ndarray, height: int, width: int) -> np.ndarray:
    """The flow ``[height, width, 2]`` float32 of a homography ``matrix`` (``fit_homography``)."""
    grid = _grid(height, width)
    return _homography_at(matrix, grid.reshape(-1, 2)).reshape(height, width, 2)
