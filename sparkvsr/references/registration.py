"""Registering a Reference to its keyframe: the global affine motion an editor added.

Generative editors return images that are slightly moved, rescaled or re-framed against the frame
they were given; carried along the clip, a 2-pixel shift is worse than no Reference at all.
``register`` finds the affine map from the upscaled LR keyframe to the Reference and resamples the
Reference onto the keyframe's grid.

Both images are compared at the LR keyframe's bandwidth (the Reference area-downscaled to the LR
size), so the detail the editor added, which the LR frame cannot show, does not pull the fit: ECC
(Evangelidis and Psarakis, 2008; OpenCV's ``findTransformECC``) maximises the normalised
correlation, which also ignores a global brightness or contrast change. It runs coarse to fine on
a small pyramid, translation first, then affine. A result that does not improve the agreement, or
moves the image implausibly far, is refused: the Reference is then used as it is.

Coordinates: pixel centres at integers; an HR pixel ``X`` and an LR pixel ``x`` of a scale-``s``
pair meet at ``X = s * (x + 0.5) - 0.5``. Matrices are 2x3 float64 and map a pixel of the keyframe
to where its content sits in the Reference (``registered(X) = reference(M @ [X, 1])``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Pyramid levels are halved down to this short side (LR pixels): ECC needs enough structure.
MIN_LEVEL_SIDE = 40
# A registration that moves a corner farther than this share of the short side is refused:
# editors re-frame by a few percent at most; more is a different picture.
MAX_CORNER_SHARE = 0.08
# ... and one whose linear part is this far from the identity (scale, shear, rotation).
MAX_LINEAR_CHANGE = 0.08
# Below this corner motion (HR pixels) the Reference is left untouched: resampling softens it
# by more than the motion costs.
MIN_SHIFT = 0.2
# ... and one that leaves the normalised images this far apart (2 (1 - correlation): 0.8 is a
# correlation of 0.6; the same scene re-rendered by an editor keeps well above 0.9).
MAX_MISMATCH = 0.8
# The dense correction: smoothing (share of the LR short side) and largest motion (LR pixels).
DENSE_SIGMA_SHARE = 1 / 8
DENSE_LIMIT = 0.75
# The affine map is kept over the translation alone when it lowers the mismatch below this share.
AFFINE_GAIN = 0.9
_ECC_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 60, 1e-5)


@dataclass(frozen=True)
class Registration:
    """A Reference resampled onto its keyframe's grid, and how.

    image:       ``[H, W, 3]`` uint8, the registered Reference (the input itself when unmoved).
    valid:       ``[H, W]`` bool, False where the registered image has no content of the
                 Reference (outside its frame after the move), or None when all of it is valid.
    matrix:      2x3 float64, keyframe HR pixel -> Reference HR pixel.
    shift:       the largest displacement of the frame's four corners, in HR pixels.
    corrected:   whether the image was resampled (the motion was above ``MIN_SHIFT``).
    refused:     why a found motion was not applied ("" when it was, or none was found).
    """

    image: np.ndarray
    valid: np.ndarray | None
    matrix: np.ndarray
    shift: float
    corrected: bool
    refused: str = ""


def register(reference: np.ndarray, lr_frame: np.ndarray) -> Registration:
    """Register ``reference`` ``[H, W, 3]`` uint8 to ``lr_frame`` ``[h, w, 3]`` uint8.

    The scale need not be an integer, nor quite the same on both axes (sizes are rounded).
    """
    # 1. inputs, at the LR keyframe's bandwidth
    height, width = reference.shape[:2]
    lr_height, lr_width = lr_frame.shape[:2]
    scale = (width / lr_width, height / lr_height)
    target = _gray(lr_frame)
    moving = _gray(cv2.resize(reference, (lr_width, lr_height), interpolation=cv2.INTER_AREA))
    identity = np.eye(2, 3, dtype=np.float32)
    before = _mismatch(moving, target, identity)
    # 2. coarse to fine on the LR grid: translation on the coarsest level, then affine
    levels = [(target, moving)]
    while min(levels[-1][0].shape) // 2 >= MIN_LEVEL_SIDE:
        levels.append(tuple(cv2.pyrDown(image) for image in levels[-1]))
    #    (a translation alone is fitted beside, and kept unless the affine map explains the
    #    frame clearly better: on small frames the affine's extra freedom drifts, e.g. a shear
    #    of 1.5 px across 160x68 bikes for a pure shift)
    warp = translation = identity.copy()
    for depth in range(len(levels) - 1, -1, -1):
        level_target, level_moving = levels[depth]
        factor = 2.0**depth
        translation = _from_level(
            _ecc(
                level_target, level_moving, _to_level(translation, factor), cv2.MOTION_TRANSLATION
            ),
            factor,
        )
        start = translation if depth == len(levels) - 1 else warp
        warp = _from_level(
            _ecc(level_target, level_moving, _to_level(start, factor), cv2.MOTION_AFFINE), factor
        )
    if _mismatch(moving, target, warp) > AFFINE_GAIN * _mismatch(moving, target, translation):
        warp = translation
    # 3. keep it only where it is plausible and helps
    matrix = _lr_to_hr(warp.astype(np.float64), scale)
    shift = _corner_shift(matrix, width, height)
    refused = ""
    if shift > MAX_CORNER_SHARE * min(width, height):
        refused = f"a {shift:.0f}-pixel move is too far for a re-framing"
    elif np.abs(matrix[:, :2] - np.eye(2)).max() > MAX_LINEAR_CHANGE:
        refused = "the fitted scale or rotation is implausible"
    else:
        after = _mismatch(moving, target, warp)
        if after >= before:  # nothing better found: nothing to say either
            shift = 0.0
        elif after > MAX_MISMATCH:
            refused = "the image does not match the frame well enough to align it"
    if refused or shift < MIN_SHIFT:
        corrected = _dense_correction(reference, lr_frame, target)
        if corrected is None:
            return Registration(reference, None, np.eye(2, 3), 0.0, False, refused)
        return Registration(corrected, None, np.eye(2, 3), 0.0, True, refused)
    # 4. resample (bicubic: Lanczos-4 costs 250 ms at 720p against 60); where the moved
    #    Reference has no content (outside its frame) the upscaled keyframe fills in: no detail
    #    there, and no black band
    flags = cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
    image = cv2.warpAffine(reference, matrix, (width, height), flags=flags)
    inside = np.full((height, width), 255, np.uint8)
    valid = (
        cv2.warpAffine(
            inside, matrix, (width, height), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
        )
        > 0
    )
    if not valid.all():
        upscaled = cv2.resize(lr_frame, (width, height), interpolation=cv2.INTER_CUBIC)
        image[~valid] = upscaled[~valid]
    # 5. a small dense correction for what the global map leaves (lens, a slightly wrong scale
    #    on a small frame: 0.7 px across bikes' 272 rows)
    refined = _dense_correction(image, lr_frame, target)
    return Registration(image if refined is None else refined, valid, matrix, shift, True)


def _dense_correction(
    image: np.ndarray, lr_frame: np.ndarray, target: np.ndarray
) -> np.ndarray | None:
    """``image`` ``[H, W, 3]`` uint8 resampled by the smooth residual motion against the LR
    frame, or None when that motion stays below ``MIN_SHIFT`` HR pixels.

    DIS flow between the LR frame and the area-downscaled image, smoothed with a Gaussian of
    ``DENSE_SIGMA_SHARE`` of the short side (only slow, low-order motion is corrected, not the
    editor's local changes) and clamped to ``DENSE_LIMIT`` LR pixels.
    """
    height, width = image.shape[:2]
    lr_height, lr_width = lr_frame.shape[:2]
    down = cv2.resize(image, (lr_width, lr_height), interpolation=cv2.INTER_AREA)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    dis.setFinestScale(0)
    flow = dis.calc(
        np.clip(target, 0, 255).astype(np.uint8),
        cv2.cvtColor(down, cv2.COLOR_RGB2GRAY),
        None,
    )
    sigma = max(2.0, DENSE_SIGMA_SHARE * min(lr_width, lr_height))
    flow = cv2.GaussianBlur(flow, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    flow = np.clip(flow, -DENSE_LIMIT, DENSE_LIMIT)
    scale_x, scale_y = width / lr_width, height / lr_height
    if np.abs(flow).max() * max(scale_x, scale_y) < MIN_SHIFT:
        return None
    up = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(
        image,
        xs + up[..., 0] * np.float32(scale_x),
        ys + up[..., 1] * np.float32(scale_y),
        cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REPLICATE,
    )


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _ecc(target: np.ndarray, moving: np.ndarray, warp: np.ndarray, motion: int) -> np.ndarray:
    """One ECC fit from ``warp`` (2x3 float32); the start itself where ECC fails to converge."""
    try:
        _, found = cv2.findTransformECC(target, moving, warp.copy(), motion, _ECC_CRITERIA, None, 5)
    except cv2.error:
        return warp
    return found if np.isfinite(found).all() else warp


def _mismatch(moving: np.ndarray, target: np.ndarray, warp: np.ndarray) -> float:
    """Mean squared difference of ``moving`` warped onto ``target`` over a 5% inner margin,
    after matching means and contrasts (what ECC optimises)."""
    height, width = target.shape
    aligned = cv2.warpAffine(
        moving, warp, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    margin_y, margin_x = max(1, height // 20), max(1, width // 20)
    a = aligned[margin_y:-margin_y, margin_x:-margin_x]
    b = target[margin_y:-margin_y, margin_x:-margin_x]
    a = (a - a.mean()) / (a.std() + 1e-6)
    b = (b - b.mean()) / (b.std() + 1e-6)
    return float(np.mean((a - b) ** 2))


def _to_level(warp: np.ndarray, factor: float) -> np.ndarray:
    """An LR-grid warp expressed on a pyramid level ``factor`` times smaller (pyrDown halves
    about pixel centres: ``x_level = x / factor`` to ECC's precision)."""
    level = warp.copy()
    level[:, 2] /= factor
    return level


def _from_level(warp: np.ndarray, factor: float) -> np.ndarray:
    full = warp.copy()
    full[:, 2] *= factor
    return full


def _lr_to_hr(warp: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """An LR-grid affine map as the same map on the HR grid: with ``X = S x + c`` (``S`` the
    per-axis scales, ``c = (S - 1) / 2``), ``x' = L x + t`` becomes
    ``X' = S L S^-1 X + S t + c - S L S^-1 c``."""
    grow = np.diag(scale)
    centre = 0.5 * (np.array(scale) - 1.0)
    linear = grow @ warp[:, :2] @ np.linalg.inv(grow)
    offset = grow @ warp[:, 2] + centre - linear @ centre
    return np.hstack([linear, offset[:, None]])


def _corner_shift(matrix: np.ndarray, width: int, height: int) -> float:
    corners = np.array(
        [[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]]
    )
    moved = corners @ matrix.T
    return float(np.linalg.norm(moved - corners[:, :2], axis=1).max())
