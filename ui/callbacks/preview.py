"""The viewer: scrubbing the input frame, the live and full-quality guidance previews, the
viewer's size, zoom and pan, and saving the guidance.
"""

import logging
from typing import Any

import gradio as gr

from sparkvsr.errors import SparkVSRError
from sparkvsr.worker import (
    FrameRequest,
    PreviewRequest,
    SettingsRequest,
)
from ui.callbacks.base import (
    StudioBase,
    _clamp,
    _failed,
    _frame_size,
    _require,
    _skip,
)
from ui.callbacks.keyframes import pin_label
from ui.state import StudioState
from ui.timeline import frame_label
from ui.viewer import MODES, ZOOMS, before_view, parse_point, parse_size

log = logging.getLogger("sparkvsr.ui")


class PreviewHandlers(StudioBase):
    """What the scrubber, the guidance slider and the viewer do."""

    # Settings ---------------------------------------------------------------------------------
    def remember_guidance(self, state: StudioState | None, guidance: float) -> None:
        """Autosave the guidance into the project (best effort: during a render the worker
        refuses, and the render already carries the guidance it started with)."""
        if state is None:
            return
        try:
            self.client.update_settings(SettingsRequest(state.session_id, guidance=guidance))
        except SparkVSRError as e:
            log.info("guidance not saved: %s", e)

    # Scrubbing --------------------------------------------------------------------------------
    def scrub(self, state: StudioState | None, frame: float) -> tuple[Any, ...]:
        """``#scrubber`` moved. Outputs: frame view, frame index, timeline, pin button, error."""
        try:
            state = _require(state)
            index = _clamp(frame, state)
            path = self._frame_path(state, index)
        except Exception as e:
            return _failed(4, e, f"showing frame {frame}")
        return (
            path,
            frame_label(index, state.clip.num_frames, state.clip.fps),
            self._timeline(state, index),
            pin_label(state, index),
            "",
        )

    # Guidance preview -------------------------------------------------------------------------
    def preview_live(self, state: StudioState | None, frame: float, guidance: float):
        """``#guidance`` ``.input``: a small fast preview. Outputs: preview, error."""
        if state is None:  # nothing open yet; the open handler already said why
            return _skip(2)
        started = next(self._order)
        try:
            index = _clamp(frame, state)
            viewport = self.viewers.get(state.session_id).viewport
            request = PreviewRequest(state.session_id, index, guidance, viewport)
            response = self.client.preview(request)
            if self._full_preview_wins(state.session_id, started, index, response.guidance):
                return _skip(2)
            path = self.images.cheap(state.session_id, "live", response.image)
            # Once more after encoding, so the window for a stale live image stays tiny.
            if self._full_preview_wins(state.session_id, started, index, response.guidance):
                return _skip(2)
        except Exception as e:
            return _failed(1, e, "previewing")
        # The error panel is left alone: a preview must not hide the message of an earlier action.
        label = preview_label(index, response.guidance, live=True)
        return gr.Image(value=path, label=label), gr.skip()

    def preview_full(self, state: StudioState | None, frame: float, guidance: float):
        """Slider released: the exact frame at full resolution and the before/after view.
        Outputs: preview, before/after, error."""
        if state is None:
            return _skip(3)
        try:
            index = _clamp(frame, state)
            with self._tabs_lock:
                self._full_asked[state.session_id] = (next(self._order), index, float(guidance))
            viewport = self.viewers.get(state.session_id).viewport
            request = PreviewRequest(state.session_id, index, guidance, viewport)
            response = self.client.preview(request)
            lr = self.client.frame(FrameRequest(state.session_id, index)).image
            path = self.images.full(state.session_id, "full", response.image)
            # the same part of the input frame, at the same size
            size = _frame_size(state)
            view = self.viewers.shown(state.session_id, size)
            before = before_view(lr, view, (size[0] / lr.shape[1], size[1] / lr.shape[0]))
            # The "after" side is the same file: at 4x of 720p one JPEG costs a second.
            pair = (self.images.full(state.session_id, "before", before), path)
        except Exception as e:
            return _failed(2, e, "previewing")
        label = preview_label(index, response.guidance, live=False)
        return gr.Image(value=path, label=label), pair, gr.skip()

    # Viewer -------------------------------------------------------------------------------
    def set_viewer_size(self, state: StudioState | None, text: str, frame: float, guidance: float):
        """``#viewport`` (the page measured its viewer): previews come at that size from now
        on; the shown one is remade when the size changed. Outputs: preview, before/after, error."""
        size = parse_size(text)
        if state is None or size is None:
            return _skip(3)
        if (
            self.viewers.get(state.session_id).width,
            self.viewers.get(state.session_id).height,
        ) == size:
            return _skip(3)
        self.viewers.update(state.session_id, width=size[0], height=size[1])
        return self.preview_full(state, frame, guidance)

    def set_zoom(self, state: StudioState | None, zoom: str, frame: float, guidance: float):
        """``#zoom``: Fit, 100 %, 200 % or 400 % around the pan centre (a click on the
        preview sets it). Outputs: preview, before/after, error."""
        if state is None or zoom not in ZOOMS:
            return _skip(3)
        self.viewers.update(state.session_id, zoom=ZOOMS[zoom])
        return self.preview_full(state, frame, guidance)

    def pan_to(self, state: StudioState | None, point: str, frame: float, guidance: float):
        """``#pan-at`` (the page measured a click on the preview or on either side of the side
        by side view, in the shown image's pixels): centre the view there (zoomed: at once;
        fitted: for the next zoom). Outputs: preview, before/after, error."""
        at = parse_point(point)
        if state is None or at is None:
            return _skip(3)
        settings = self.viewers.pan_to(state.session_id, *at)
        if settings.zoom == 0:
            return _skip(3)
        return self.preview_full(state, frame, guidance)

    def set_viewer_mode(self, state: StudioState | None, mode: str) -> None:
        """A viewer tab was chosen (``ui.viewer.MODES``): remembered so that views only that
        tab shows (the Reference) are made while it is shown, never on the preview path."""
        if state is not None and mode in MODES:
            self.viewers.update(state.session_id, mode=mode)

    def side_by_side(self, state: StudioState | None, pair: Any) -> tuple[Any, ...]:
        """``#before-after`` changed: while the side by side view is shown, the same two images
        side by side (``#side-before``, ``#side-after``): the same region of the input and of
        the restored frame, so zoom and pan move both. Nothing is computed: the files are the
        wipe's. Outputs: both sides."""
        if state is None or self.viewers.get(state.session_id).mode != "side":
            return _skip(2)
        return _sides(pair)

    def show_side_by_side(self, state: StudioState | None, pair: Any) -> tuple[Any, ...]:
        """The side by side tab was opened: remembered, and the wipe's two images shown there.
        Outputs: both sides."""
        if state is not None:
            self.viewers.update(state.session_id, mode="side")
        return _sides(pair)

    def _full_preview_wins(self, session_id: str, started: int, frame: int, guidance: float):
        """True when a full-quality preview was asked after this live one started, or for the
        same frame and guidance: showing the live image would replace a better one."""
        with self._tabs_lock:
            asked = self._full_asked.get(session_id)
        if asked is None:
            return False
        order, full_frame, full_guidance = asked
        same = full_frame == frame and abs(full_guidance - guidance) < 1e-6
        return order > started or same


def preview_label(index: int, guidance: float, live: bool) -> str:
    kind = "live preview" if live else "full quality"
    return f"Restored frame {index} · guidance {guidance:.2f} · {kind}"


def _sides(pair: Any) -> tuple[Any, ...]:
    """The wipe's (before, after) files for the two sides, or skips when it has none yet."""
    if not isinstance(pair, list | tuple) or len(pair) != 2 or None in pair:
        return _skip(2)
    return pair[0], pair[1]
