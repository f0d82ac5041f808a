"""The HR half's resampling pieces: bands of LR rows, banded integer upscales equal to the whole
frame's, the down(up(.)) filter of back-projection, and the 4-channel padding the warps use."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from sparkvsr.engines.flow.caches import _Scratch

# LR rows per band of the HR half (see _bands)
BAND_ROWS = 16


def _unpadded(image: np.ndarray) -> np.ndarray:
    """``[H, W, 4]`` -> ``[H, W, 3]``: drop ``_padded``'s 4th channel."""
    return cv2.cvtColor(image, cv2.COLOR_RGBA2RGB)


def _padded(image: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` float32 -> ``[H, W, 4]``: the HR half works on 4-channel images.

    OpenCV 5's remap has vector paths for 1 and 4 channels, not 3 (a 1280x960 float remap:
    6.5 ms with 3 channels, 4.2 ms with 4); the rest (area downscale, adds) is faster with 3,
    so the warps and their blend work on 4 and drop the 4th at once. It is padding, never
    read (1.0 here).
    """
    return cv2.cvtColor(image, cv2.COLOR_RGB2RGBA)


# LR rows each side that an integer upscale's taps reach (bilinear 2 taps, bicubic 4, Lanczos 8)
_TAP_REACH = {cv2.INTER_LINEAR: 1, cv2.INTER_CUBIC: 2, cv2.INTER_LANCZOS4: 4}


def _bands(lr_rows: int, band: int | None = None) -> list[tuple[int, int]]:
    """LR row ranges ``[first, last)`` covering ``lr_rows`` rows, ``band`` rows each (the last
    may be shorter). The HR half works band by band: at 16 LR rows x4 of a 1280-wide frame, a
    band's buffers (~6 MB) stay in the cache instead of streaming 15-20 MB arrays through
    memory several times per frame. Beside a running encoder, 16 and 32 rows measured alike,
    8 a little slower, 4 slower (more calls).
    """
    band = BAND_ROWS if band is None else band
    return [(first, min(first + band, lr_rows)) for first in range(0, lr_rows, band)]


def _upscale_rows(
    image: np.ndarray,
    first: int,
    last: int,
    scale: int,
    interpolation: int,
    scratch: _Scratch,
    name: str,
) -> np.ndarray:
    """Rows ``[first * scale, last * scale)`` of ``cv2.resize(image, x scale)``, from LR rows
    ``[first, last)`` plus the few around them the taps reach: ``[(last - first) * scale, W, C]``.

    Equal to the same rows of the whole-frame resize: an integer upscale applies the same taps
    to every row, and the frame's own top and bottom rows are the edges either way. The result
    is a view into ``scratch``'s buffer ``name``.
    """
    # one row more than the taps reach: from a source of fewer rows than taps (a 1-row band at
    # the frame's edge), OpenCV's bicubic differs from the whole frame's by ~1e-7
    reach = _TAP_REACH[interpolation] + 1
    top, bottom = max(first - reach, 0), min(last + reach, image.shape[0])
    height, width = (bottom - top) * scale, image.shape[1] * scale
    channels = image.shape[2:]
    up = cv2.resize(
        image[top:bottom],
        (width, height),
        dst=scratch.array(name, (height, width, *channels)),
        interpolation=interpolation,
    )
    skip = (first - top) * scale
    return up[skip : skip + (last - first) * scale]


@lru_cache(maxsize=8)
def _down_up_kernel(interpolation: int, scale: int) -> np.ndarray:
    """The 2-D filter equal to area-``downscale(upscale(.))`` on the LR grid: odd square float32.

    Both resizes are separable and shift-invariant for an integer scale, and OpenCV's bicubic
    and Lanczos upscales replicate borders, so filtering with this kernel and replicated borders
    matches the two resizes to float precision. Measured by sending an impulse through them.
    """
    radius = 6  # Lanczos-4 reaches 4 LR pixels and the area average one more
    size = 2 * radius + 1
    impulse = np.zeros((size, size), np.float32)
    impulse[radius, radius] = 1.0
    up = cv2.resize(impulse, (size * scale, size * scale), interpolation=interpolation)
    kernel = cv2.resize(up, (size, size), interpolation=cv2.INTER_AREA)
    # crop to the support (5x5 for bicubic x4): OpenCV filters kernels above 11x11 by DFT,
    # 25x slower here
    rows, cols = np.nonzero(np.abs(kernel) > 1e-7)
    reach = max(abs(rows - radius).max(), abs(cols - radius).max())
    kernel = np.ascontiguousarray(
        kernel[radius - reach : radius + reach + 1, radius - reach : radius + reach + 1]
    )
    kernel.setflags(write=False)
    return kernel
