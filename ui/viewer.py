"""The viewer: what the page shows of the restored frame (size, zoom, pan), per browser tab.

The page measures the preview's display pixels (``VIEWER_SIZE_JS`` writes them into the hidden
``#viewport`` box whenever they change); the zoom control and clicks on the preview (written into
the hidden ``#pan-at`` box) set the zoom and the pan. Every preview request carries the resulting ``Viewport``, so the worker makes the
frame at the size it is seen: the whole frame at display size when fitted, the zoomed region at
full resolution from 100 % on.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, replace

import numpy as np

from sparkvsr.viewport import View, Viewport, shrink

ZOOMS = {"Fit": 0.0, "100%": 1.0, "200%": 2.0, "400%": 4.0}
"""The zoom control's choices: display pixels per output pixel (0 = fit the whole frame)."""
MODES = ("preview", "wipe", "side", "reference")
"""What the viewer shows: the restored frame, a before/after wipe, before and after side by side
(the same region, zoomed and panned together), or the keyframe's Reference and its fit."""
DEFAULT_SIZE = (960, 540)
"""Display pixels assumed until the page has measured its viewer."""


@dataclass(frozen=True)
class ViewerSettings:
    """One tab's viewer: display size (pixels), zoom (``ZOOMS`` value), pan centre (0-1) and
    what it shows (``MODES``)."""

    width: int = DEFAULT_SIZE[0]
    height: int = DEFAULT_SIZE[1]
    zoom: float = 0.0
    center: tuple[float, float] = (0.5, 0.5)
    mode: str = "preview"

    @property
    def viewport(self) -> Viewport:
        return Viewport(self.width, self.height, self.zoom, self.center)


class Viewers:
    """Viewer settings and the last view shown, by worker session (thread-safe)."""

    def __init__(self):
        self._settings: dict[str, ViewerSettings] = {}
        self._shown: dict[str, tuple[View, tuple[int, int]]] = {}
        self._lock = threading.Lock()

    def get(self, session_id: str) -> ViewerSettings:
        with self._lock:
            return self._settings.get(session_id, ViewerSettings())

    def update(self, session_id: str, **changes) -> ViewerSettings:
        with self._lock:
            settings = replace(self._settings.get(session_id, ViewerSettings()), **changes)
            Viewport(settings.width, settings.height, settings.zoom, settings.center)  # checks
            self._settings[session_id] = settings
            return settings

    def shown(self, session_id: str, frame_size: tuple[int, int]) -> View:
        """Record what the viewer now shows, for clicks on it (``pan_to``); returns the view."""
        view = self.get(session_id).viewport.view(frame_size)
        with self._lock:
            self._shown[session_id] = (view, frame_size)
        return view

    def pan_to(self, session_id: str, x: float, y: float) -> ViewerSettings:
        """A click at image pixel (x, y) of the shown view centres the view there."""
        with self._lock:
            shown = self._shown.get(session_id)
        if shown is None:
            return self.get(session_id)
        view, (width, height) = shown
        box_w, box_h = view.box_size
        fx = (view.box[0] + x * box_w / view.size[0]) / width
        fy = (view.box[1] + y * box_h / view.size[1]) / height
        return self.update(session_id, center=(min(1.0, max(0.0, fx)), min(1.0, max(0.0, fy))))

    def forget(self, session_id: str) -> None:
        with self._lock:
            self._settings.pop(session_id, None)
            self._shown.pop(session_id, None)


def parse_size(text: str) -> tuple[int, int] | None:
    """The page's ``{"width": w, "height": h, ...}`` (display pixels) or None when unreadable."""
    try:
        data = json.loads(text or "")
        width, height = int(data["width"]), int(data["height"])
    except (ValueError, TypeError, KeyError):
        return None
    if not (16 <= width <= 16384 and 16 <= height <= 16384):
        return None
    return width, height


def parse_point(text: str) -> tuple[float, float] | None:
    """The page's ``{"x": x, "y": y, ...}`` (pixels of the shown image) or None when unreadable."""
    try:
        data = json.loads(text or "")
        x, y = float(data["x"]), float(data["y"])
    except (ValueError, TypeError, KeyError):
        return None
    if not (0 <= x <= 16384 and 0 <= y <= 16384):
        return None
    return x, y


def before_view(lr: np.ndarray, view: View, scale_xy: tuple[float, float]) -> np.ndarray:
    """The LR frame ``[h, w, 3]`` cut to ``view``'s box (output pixels, ``scale_xy`` output
    pixels per LR pixel) and resized to the view's size: the "before" side of a compare."""
    sx, sy = scale_xy
    x0, y0, x1, y1 = view.box
    lx0, ly0 = int(x0 / sx), int(y0 / sy)
    lx1 = max(lx0 + 1, min(lr.shape[1], round(x1 / sx + 0.4999)))
    ly1 = max(ly0 + 1, min(lr.shape[0], round(y1 / sy + 0.4999)))
    return shrink(lr[ly0:ly1, lx0:lx1], view.size)


VIEWER_SIZE_JS = """
() => {
  if (window.__sparkvsrViewer) return;
  window.__sparkvsrViewer = true;
  let last = "";
  const measure = () => {
    const box = document.querySelector("#viewport textarea, #viewport input");
    const preview = document.querySelector("#preview");
    // only once a session shows its preview (the server keeps the size per session); sent
    // again when another clip or project opens (a new session)
    if (!box || !preview || !preview.offsetParent || !preview.querySelector("img")) return;
    const title = document.querySelector("#clip-title");
    const frame = preview.querySelector(".image-frame, .image-container") || preview;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.round(frame.clientWidth * ratio);
    const height = Math.round(frame.clientHeight * ratio);
    if (width < 16 || height < 16) return;
    const text = JSON.stringify({ width, height, clip: title ? title.innerText : "" });
    if (text === last) return;
    last = text;
    box.value = text;
    box.dispatchEvent(new Event("input", { bubbles: true }));
  };
  window.addEventListener("resize", measure);
  setInterval(measure, 700);

  // A click on the shown picture (the preview, either side of the side by side view) pans the
  // view there: the point in the image's own pixels goes to #pan-at. Measured here because
  // the viewer draws a zoomed region larger than its pixels (object-fit: contain), which
  // Gradio's own select coordinates do not allow for.
  document.addEventListener("click", (event) => {
    // by position: Gradio lays its own layers over the picture
    const inside = (r) => event.clientX >= r.left && event.clientX < r.right &&
      event.clientY >= r.top && event.clientY < r.bottom;
    const img = [...document.querySelectorAll("#preview img, #side-before img, #side-after img")]
      .find((i) => i.offsetParent && i.naturalWidth && inside(i.getBoundingClientRect()));
    const box = document.querySelector("#pan-at textarea, #pan-at input");
    if (!img || !box) return;
    const r = img.getBoundingClientRect();
    const scale = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
    const x = (event.clientX - r.left - (r.width - img.naturalWidth * scale) / 2) / scale;
    const y = (event.clientY - r.top - (r.height - img.naturalHeight * scale) / 2) / scale;
    if (x < 0 || y < 0 || x >= img.naturalWidth || y >= img.naturalHeight) return;
    box.value = JSON.stringify({ x, y, at: Date.now() });
    box.dispatchEvent(new Event("input", { bubbles: true }));
  }, true);
}
"""
