"""What a viewer shows of an output frame, and at what size: previews are made at that size.

A studio shows a 4x frame of a 720p clip (5120x2880) in a viewer about 900 pixels wide. Making,
encoding and sending every preview at full resolution costs seconds for pixels nobody sees, so
a preview request carries a ``Viewport`` (the viewer's size, zoom and pan) and the engine makes
only what is visible at that scale: the whole frame at display size when zoomed out, the
visible region at full resolution at 100 % zoom and above. Renders always make full frames.

``Viewport.view`` turns it into a ``View`` (a box of output pixels and the size to deliver it
at): a pure function, the same in every engine; ``apply_view`` cuts and resizes a finished
frame to it (engines that cannot do better, and tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from sparkvsr.errors import EngineError

MAX_SIDE = 16384
MAX_ZOOM = 64.0


@dataclass(frozen=True)
class View:
    """The part of an output frame to make and the size to deliver it at.

    box:  (x0, y0, x1, y1) output pixels, x1 / y1 exclusive.
    size: (width, height) of the delivered image: the box's own size at 100 % zoom and above
          (full resolution, the viewer enlarges), smaller when zoomed out.
    """

    box: tuple[int, int, int, int]
    size: tuple[int, int]

    @property
    def box_size(self) -> tuple[int, int]:
        return (self.box[2] - self.box[0], self.box[3] - self.box[1])

    @property
    def full_resolution(self) -> bool:
        """True when every output pixel of the box is delivered (no downscale)."""
        return self.size == self.box_size


@dataclass(frozen=True)
class Viewport:
    """A viewer of an output frame.

    width, height: the viewer's display pixels for the image (CSS pixels times the device
                   pixel ratio).
    zoom:          display pixels per output pixel: 1 = 100 % (one output pixel per display
                   pixel), 2 = 200 %; 0 = fit (the whole frame, as large as fits, never enlarged).
    center:        (x, y) the output-frame point at the viewer's centre, as fractions 0-1 of the
                   frame's width and height (the pan). The view is kept inside the frame.
    """

    width: int
    height: int
    zoom: float = 0.0
    center: tuple[float, float] = (0.5, 0.5)

    def __post_init__(self) -> None:
        object.__setattr__(self, "center", tuple(float(c) for c in self.center))
        if not (1 <= self.width <= MAX_SIDE and 1 <= self.height <= MAX_SIDE):
            raise EngineError(
                f"viewport {self.width}x{self.height} is out of range: each side 1 to {MAX_SIDE}"
            )
        if self.zoom != 0 and not 0.01 <= self.zoom <= MAX_ZOOM:
            raise EngineError(
                f"zoom {self.zoom} is out of range: 0 (fit) or 0.01 to {MAX_ZOOM:g} (1 = 100 %)"
            )
        if len(self.center) != 2 or not all(0.0 <= c <= 1.0 for c in self.center):
            raise EngineError(f"viewport center {self.center} must be two fractions 0 to 1")

    def view(self, frame_size: tuple[int, int]) -> View:
        """The ``View`` of an output frame of ``frame_size`` (width, height)."""
        width, height = frame_size
        if self.zoom == 0:
            fit = min(self.width / width, self.height / height, 1.0)
            size = (max(1, round(width * fit)), max(1, round(height * fit)))
            return View((0, 0, width, height), size)
        seen_w = min(width, math.ceil(self.width / self.zoom))
        seen_h = min(height, math.ceil(self.height / self.zoom))
        x0 = min(max(0, round(self.center[0] * width - seen_w / 2)), width - seen_w)
        y0 = min(max(0, round(self.center[1] * height - seen_h / 2)), height - seen_h)
        box = (x0, y0, x0 + seen_w, y0 + seen_h)
        if self.zoom >= 1:
            return View(box, (seen_w, seen_h))
        size = (max(1, round(seen_w * self.zoom)), max(1, round(seen_h * self.zoom)))
        return View(box, size)


def apply_view(image: np.ndarray, view: View) -> np.ndarray:
    """``image`` ``[H, W, 3]`` uint8 (a whole output frame) cut to ``view.box`` and resized to
    ``view.size`` (area averaging when shrinking)."""
    x0, y0, x1, y1 = view.box
    part = image[y0:y1, x0:x1]
    if view.full_resolution:
        return np.ascontiguousarray(part)
    return shrink(part, view.size)


def shrink(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` resized to ``size`` (width, height): area averaging down, bicubic up."""
    if (image.shape[1], image.shape[0]) == tuple(size):
        return np.ascontiguousarray(image)
    down = size[0] <= image.shape[1]
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if down else cv2.INTER_CUBIC)


def preview_scale(view: View, scale: int) -> int:
    """The smallest integer scale (1 to ``scale``) of the LR frame whose
    output still has at least ``view.size`` pixels across ``view.box`` (boxes are in pixels of
    the output at ``scale``): a preview made there and shrunk loses nothing the viewer shows."""
    if view.full_resolution:
        return scale
    box_w, box_h = view.box_size
    need = max(view.size[0] * scale / box_w, view.size[1] * scale / box_h)
    return max(1, min(scale, math.ceil(need - 1e-9)))


def engine_preview(engine, source, references, frame: int, options, viewport: Viewport | None):
    """``engine.preview`` for ``viewport``: engines that make previews at the viewer's size
    (``previews_at_viewport``) get it; for others the whole frame is cut and shrunk here."""
    if viewport is None:
        return engine.preview(source, references, frame, options)
    if getattr(engine, "previews_at_viewport", False):
        return engine.preview(source, references, frame, options, viewport=viewport)
    image = engine.preview(source, references, frame, options)
    return apply_view(image, viewport.view((image.shape[1], image.shape[0])))
