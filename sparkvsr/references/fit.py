"""Fitting a Reference to its keyframe: the shared last steps of every editor.

1. Size: a Reference must be exactly the target size (W, H) with the clip's aspect ratio. Editors
   that get an image of another shape (an upload, an image model's output) centre-crop it to the
   target's aspect ratio first, so nothing is stretched, then resize (``fit_to_size``).
2. Place and judge (``fit_reference``): the image is registered to its LR keyframe
   (``registration``), then ``assess`` compares the two at the LR frame's resolution: the PSNR of
   the area-downscaled Reference against the LR frame, its low-frequency colour change, the share
   of pixels whose structure disagrees (and where), a verdict (fits / shifted / recoloured /
   different content), a sentence for the user and an automatic per-keyframe weight. Engines call
   ``assess`` again for the maps they need (cheap, LR-size filters).

Images are ``[H, W, 3]`` uint8 RGB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np
from PIL import Image

from sparkvsr.errors import EditorError
from sparkvsr.references.base import Provenance, Reference, ReferenceFit
from sparkvsr.references.registration import Registration, register

# Aspect ratios closer than this (relative) are treated as equal: resizing stretches by < 2%.
ASPECT_TOLERANCE = 0.02
MAX_SIDE = 16384

_RESAMPLING = {
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "bilinear": Image.Resampling.BILINEAR,
}


def check_target_size(target_size: tuple[int, int]) -> tuple[int, int]:
    """Return ``(W, H)`` as ints, or raise EditorError naming the bad size."""
    try:
        width, height = (int(v) for v in target_size)
    except (TypeError, ValueError) as e:
        raise EditorError(f"target size must be (width, height); got {target_size!r}") from e
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise EditorError(
            f"target size {width}x{height} is outside 1..{MAX_SIDE} pixels per side; "
            "choose a size such as 4x the clip's size"
        )
    return width, height


def check_frame(frame: np.ndarray) -> np.ndarray:
    """Return an LR frame as contiguous ``[h, w, 3]`` uint8, or raise EditorError."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise EditorError(
            f"an editor needs one RGB frame shaped [H, W, 3] uint8; got {frame.dtype} "
            f"{tuple(frame.shape)}"
        )
    if min(frame.shape[:2]) < 1:
        raise EditorError(f"the frame is empty ({frame.shape[1]}x{frame.shape[0]} pixels)")
    return np.ascontiguousarray(frame)


def aspect_error(size: tuple[int, int], target_size: tuple[int, int]) -> float:
    """Relative difference of the aspect ratios (W/H) of two sizes: 0.0 when equal."""
    aspect = size[0] / size[1]
    target = target_size[0] / target_size[1]
    return abs(aspect - target) / target


def center_crop_to_aspect(image: np.ndarray, aspect: float) -> np.ndarray:
    """The largest centred crop of ``image`` whose W/H equals ``aspect`` (to the pixel)."""
    height, width = image.shape[:2]
    if width / height > aspect:  # too wide: trim left and right
        new_width = max(1, min(width, round(height * aspect)))
        left = (width - new_width) // 2
        return image[:, left : left + new_width]
    new_height = max(1, min(height, round(width / aspect)))
    top = (height - new_height) // 2
    return image[top : top + new_height, :]


def resize(image: np.ndarray, size: tuple[int, int], method: str = "bicubic") -> np.ndarray:
    """Resize ``[H, W, 3]`` uint8 to ``size`` = (W, H) with antialiasing when shrinking."""
    if method not in _RESAMPLING:
        raise ValueError(
            f"unknown resize method {method!r}; choose one of {', '.join(_RESAMPLING)}"
        )
    width, height = size
    if image.shape[1] == width and image.shape[0] == height:
        return np.ascontiguousarray(image)
    resized = Image.fromarray(np.ascontiguousarray(image)).resize(
        (width, height), _RESAMPLING[method]
    )
    return np.asarray(resized, dtype=np.uint8)


def fit_to_size(
    image: np.ndarray,
    target_size: tuple[int, int],
    method: str = "bicubic",
    tolerance: float = 0.0,
) -> tuple[np.ndarray, bool]:
    """Centre-crop ``image`` to the aspect of ``target_size`` (W, H), then resize to it.

    Aspects within ``tolerance`` (relative) are resized without cropping. Returns the fitted
    ``[H, W, 3]`` uint8 image and whether a crop happened.
    """
    height, width = image.shape[:2]
    cropped = aspect_error((width, height), target_size) > tolerance
    if cropped:
        image = center_crop_to_aspect(image, target_size[0] / target_size[1])
        cropped = image.shape[:2] != (height, width)
    return resize(image, target_size, method), cropped


# ---------------------------------------------------------------------------------------------
# Fitting a Reference to its keyframe: registration, agreement, verdict (issue 16)

# The colour / tone part of an editor's change is its LR offset low-passed with this sigma, as a
# share of the LR frame's short side (8 LR pixels on a 180x120 frame): smooth grades, not detail.
COLOUR_SIGMA_SHARE = 1 / 16
# Structure is compared on the LR offset with its colour part removed, smoothed with this sigma
# (LR pixels): an editor's sharpening of the LR frame's own edges averages out, a moved or
# changed object does not.
STRUCTURE_SIGMA = 2.0
# Structure differences (0-255 levels, mean over channels) below LOW agree, above HIGH disagree;
# the confidence falls smoothly between them (no hard edges where a mask starts).
DISAGREE_LOW, DISAGREE_HIGH = 4.0, 10.0
# A mean colour change below this (levels) is an upscaler's rounding, not a grade: engines keep
# such a Reference as it is (exactly reproduced at its keyframe).
COLOUR_NEGLIGIBLE = 0.3
# The global tone curve (``ungraded``): bands of LR levels, the fewest LR pixels a band needs,
# and the largest departure from the identity (levels) that is left alone.
TONE_BINS = 32
TONE_MIN_SAMPLES = 24
TONE_NEGLIGIBLE = 2.0
# Blockiness (``blockiness``) from which a Reference counts as JPEG-blocked (the clips' own
# H.264 frames measure 1.0-1.26; JPEG q30 1.44-2.5), and the share of its weight it keeps then.
BLOCKY = 1.35
BLOCKY_WEIGHT = 0.5
RECOLOURED = 3.0  # mean colour change (levels) from which a Reference counts as recoloured
SHIFTED = 0.75  # corrected motion (HR pixels) from which a Reference counts as shifted
DIFFERENT = 0.3  # share of disagreeing pixels from which the content counts as different
NOTE_SHARE = 0.03  # share from which a local difference is named ("content differs at ...")
# Auto weight: 1 while at most WEIGHT_FULL of the frame disagrees, 0 from WEIGHT_NONE on.
WEIGHT_FULL, WEIGHT_NONE = 0.08, 0.4

VERDICTS = ("fits", "shifted", "recoloured", "different content")


@dataclass(frozen=True)
class FitMaps:
    """What an engine needs of a fitted Reference (LR size ``h x w``).

    colour:     ``[h, w, 3]`` float32, the low-frequency colour / tone change of the Reference
                against the LR keyframe (0-255 levels): dropped unless the user keeps colours.
    confidence: ``[h, w]`` float32 in [0, 1]: 1 where the Reference shows the keyframe's content,
                falling smoothly to 0 where its structure differs (never counts as intended).
    fit:        the summary the user sees (verdict, numbers, message, auto weight).
    """

    colour: np.ndarray
    confidence: np.ndarray
    fit: ReferenceFit


def assess(
    reference: np.ndarray,
    lr_frame: np.ndarray,
    registration: Registration | None = None,
    down: np.ndarray | None = None,
) -> FitMaps:
    """How well ``reference`` ``[H, W, 3]`` uint8 fits ``lr_frame`` ``[h, w, 3]`` uint8.

    ``registration`` (when the Reference was just registered) adds the corrected motion to the
    verdict. ``down``: the Reference area-downscaled to the LR size, ``[h, w, 3]`` float32, when
    the caller has it (the flow engine does); then only LR-size filters run (~2 ms at 320x180).
    """
    lr_height, lr_width = lr_frame.shape[:2]
    lr = lr_frame.astype(np.float32)
    if down is None:  # from uint8 (no HR float copy: 15 ms at 720p); rounding is < 0.5 level
        down = cv2.resize(reference, (lr_width, lr_height), interpolation=cv2.INTER_AREA)
        down = down.astype(np.float32)
    offset = down - lr
    sigma = max(2.0, COLOUR_SIGMA_SHARE * min(lr_width, lr_height))
    colour = cv2.GaussianBlur(offset, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    structure = cv2.GaussianBlur(offset - colour, (0, 0), STRUCTURE_SIGMA)
    difference = np.abs(structure).mean(axis=2)
    ramp = np.clip((difference - DISAGREE_LOW) / (DISAGREE_HIGH - DISAGREE_LOW), 0.0, 1.0)
    confidence = (1.0 - ramp * ramp * (3.0 - 2.0 * ramp)).astype(np.float32)  # smoothstep
    if registration is not None and registration.valid is not None:
        inside = cv2.resize(
            registration.valid.astype(np.float32),
            (lr_width, lr_height),
            interpolation=cv2.INTER_AREA,
        )
        confidence *= inside
    disagreeing = confidence < 0.5
    share = float(disagreeing.mean())
    colour_change = float(np.abs(colour).mean())
    mse = float(np.mean(offset * offset))
    fit_psnr = 99.0 if mse == 0 else min(99.0, 10.0 * math.log10(255.0**2 / mse))
    weight = float(np.clip((WEIGHT_NONE - share) / (WEIGHT_NONE - WEIGHT_FULL), 0.0, 1.0))
    blocky = blockiness(reference) >= BLOCKY
    if blocky:  # its finest detail is partly compression artefacts
        weight *= BLOCKY_WEIGHT
    region = _region(disagreeing) if share >= NOTE_SHARE else ""
    shift = registration.shift if registration is not None else 0.0
    matrix = (
        tuple(float(v) for v in registration.matrix.ravel())
        if registration is not None
        else (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    )
    verdict, message = _verdict(share, colour_change, weight, registration, region, blocky)
    fit = ReferenceFit(
        verdict=verdict,
        message=message,
        psnr=round(fit_psnr, 2),
        shift=round(shift, 2),
        matrix=tuple(round(v, 5) for v in matrix),
        colour_change=round(colour_change, 2),
        disagreement=round(share, 4),
        weight=round(weight, 3),
        region=region,
    )
    return FitMaps(colour.astype(np.float32), confidence, fit)


def ungraded(reference: np.ndarray, lr_frame: np.ndarray) -> np.ndarray:
    """``reference`` ``[H, W, 3]`` uint8 with its global tone / colour grade undone.

    Per channel, the tone curve from the LR frame's values to the area-downscaled Reference's is
    fitted (mean per band of ``TONE_BINS`` LR levels, made monotone) and its inverse applied to
    the Reference as a lookup table: a gamma or a channel offset is removed from the detail too
    (a low-pass colour correction would leave the detail's contrast graded). A curve within
    ``TONE_NEGLIGIBLE`` levels of the identity leaves the Reference untouched (exact).
    """
    lr_height, lr_width = lr_frame.shape[:2]
    down = cv2.resize(reference, (lr_width, lr_height), interpolation=cv2.INTER_AREA)
    # both smoothed a little: the curve should follow tones, not detail or a sub-pixel offset
    down = cv2.GaussianBlur(down, (0, 0), 1.0).reshape(-1, 3).astype(np.float64)
    lr = cv2.GaussianBlur(lr_frame, (0, 0), 1.0).reshape(-1, 3).astype(np.float64)
    width = 256 // TONE_BINS
    tables = []
    graded = False
    for channel in range(3):
        band = (lr[:, channel] // width).astype(np.int64)
        counts = np.bincount(band, minlength=TONE_BINS)
        keep = counts >= TONE_MIN_SAMPLES
        if keep.sum() < 3:
            tables.append(np.arange(256, dtype=np.uint8))
            continue
        source = np.bincount(band, lr[:, channel], TONE_BINS)[keep] / counts[keep]
        target = np.maximum.accumulate(
            np.bincount(band, down[:, channel], TONE_BINS)[keep] / counts[keep]
        )
        graded |= bool(np.abs(target - source).max() >= TONE_NEGLIGIBLE)
        values = np.arange(256, dtype=np.float64)
        inverse = np.interp(values, target, source)
        # beyond the fitted tones, keep the offset of the nearest end
        inverse = np.where(values < target[0], values + source[0] - target[0], inverse)
        inverse = np.where(values > target[-1], values + source[-1] - target[-1], inverse)
        tables.append(np.clip(np.rint(inverse), 0, 255).astype(np.uint8))
    if not graded:
        return reference
    lut = np.stack(tables, axis=-1).reshape(256, 1, 3)
    return cv2.LUT(np.ascontiguousarray(reference), lut)


def fit_reference(
    image: np.ndarray, lr_frame: np.ndarray, align: bool = True
) -> tuple[np.ndarray, ReferenceFit | None]:
    """Register an editor's image ``[H, W, 3]`` uint8 (already at the target size) to its LR
    keyframe ``[h, w, 3]`` uint8 and judge it: the registered image and the fit the user sees.

    A frame whose aspect differs from the image's (more than ``ASPECT_TOLERANCE``) cannot be
    compared: the image comes back as it is, with no fit. ``align=False`` judges without
    registering (an upscaler's output is on the frame's grid by construction; ECC would cost
    ~100 ms at 720p to find nothing).
    """
    height, width = image.shape[:2]
    lr_height, lr_width = lr_frame.shape[:2]
    if aspect_error((width, height), (lr_width, lr_height)) > ASPECT_TOLERANCE:
        return image, None
    if not align:
        return image, assess(image, lr_frame).fit
    registration = register(image, lr_frame)
    return registration.image, assess(registration.image, lr_frame, registration).fit


def fitted_reference(
    image: np.ndarray, lr_frame: np.ndarray, provenance: Provenance, align: bool = True
) -> Reference:
    """The Reference every editor returns: ``image`` registered to ``lr_frame`` (see
    ``fit_reference``), with the fit in its provenance. So both engines get References on their
    keyframe's grid, and the user sees how well each one fits. When registration moved the
    image, the editor's own image is kept as the Reference's ``raw`` (a before/after for the
    user)."""
    image = np.ascontiguousarray(image)
    fitted, fit = fit_reference(image, check_frame(lr_frame), align)
    moved = fitted is not image and fitted.shape == image.shape
    return Reference.create(fitted, replace(provenance, fit=fit), raw=image if moved else None)


def _verdict(
    share: float,
    colour_change: float,
    weight: float,
    registration: Registration | None,
    region: str,
    blocky: bool = False,
) -> tuple[str, str]:
    """The verdict (one of VERDICTS, the most serious finding) and a sentence for the user."""
    findings = []
    if registration is not None and registration.corrected and registration.shift >= SHIFTED:
        findings.append(f"shifted {registration.shift:.0f} px, corrected")
    if registration is not None and registration.refused:
        findings.append(f"not re-aligned: {registration.refused}")
    if colour_change >= RECOLOURED:
        findings.append(
            f"recoloured (mean change {colour_change:.0f} levels); the output keeps the clip's "
            "colours unless you keep this reference's colours"
        )
    if share >= DIFFERENT:
        use = "it is not used" if weight == 0 else "it is used little"
        findings.insert(0, f"content differs from the frame over {share:.0%} of it; {use}")
        verdict = "different content"
    elif any(f.startswith("shifted") for f in findings):
        verdict = "shifted"
    elif colour_change >= RECOLOURED:
        verdict = "recoloured"
    else:
        verdict = "fits"
    if blocky:
        findings.append("shows JPEG-like blocking; its detail is used at reduced weight")
    if region and share < DIFFERENT:
        findings.append(f"content differs at the {region}; not propagated there")
    message = "; ".join(findings) if findings else "fits its frame"
    return verdict, message[:1].upper() + message[1:]


def blockiness(image: np.ndarray, block: int = 8) -> float:
    """How much stronger the steps between ``block``-pixel blocks are than those inside them
    (``[H, W, 3]`` uint8): ~1 for camera or rendered images, 1.4-2.5 for JPEG at quality 30.

    The grid's phase is searched (a crop or a shift moves it): the strongest phase's mean step,
    horizontal and vertical, over the median phase's.
    """
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    # mean absolute steps per column and per row, in uint8 with OpenCV (2 ms at 720p)
    across = cv2.reduce(cv2.absdiff(gray[:, 1:], gray[:, :-1]), 0, cv2.REDUCE_AVG, dtype=cv2.CV_32F)
    down = cv2.reduce(cv2.absdiff(gray[1:], gray[:-1]), 1, cv2.REDUCE_AVG, dtype=cv2.CV_32F)
    ratios = []
    for steps in (across.ravel(), down.ravel()):
        usable = len(steps) // (2 * block) * (2 * block)
        if usable < 4 * block:
            return 1.0
        # a JPEG grid steps at every block boundary alike; content with a period of two blocks
        # (an upscaled blocky frame) steps at every other one: the weaker half counts
        pairs = steps[:usable].reshape(-1, 2, block).mean(axis=0)
        phases = pairs.min(axis=0)
        ratios.append(phases.max() / max(float(np.median(pairs.mean(axis=0))), 1e-3))
    return float(np.mean(ratios))


_ROWS = ("top", "middle", "bottom")
_COLUMNS = ("left", "centre", "right")


def _region(mask: np.ndarray) -> str:
    """Where most of ``mask`` (``[h, w]`` bool) lies, in words: "top left", "centre", ..."""
    height, width = mask.shape
    counts = np.zeros((3, 3))
    for row in range(3):
        for column in range(3):
            cell = mask[
                row * height // 3 : (row + 1) * height // 3,
                column * width // 3 : (column + 1) * width // 3,
            ]
            counts[row, column] = cell.mean() if cell.size else 0.0
    row, column = np.unravel_index(int(counts.argmax()), counts.shape)
    if (row, column) == (1, 1):
        return "centre"
    if row == 1:
        return _COLUMNS[column]
    if column == 1:
        return _ROWS[row]
    return f"{_ROWS[row]} {_COLUMNS[column]}"
