"""What the studio's event handlers share: the config, the failure convention, the
per-tab bookkeeping and small helpers.
"""

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from sparkvsr.errors import SparkVSRError
from sparkvsr.worker import (
    FrameRequest,
    WorkerClient,
)
from ui.images import ViewImages
from ui.messages import error_html
from ui.state import StudioState
from ui.timeline import timeline_html
from ui.viewer import Viewers


@dataclass(frozen=True)
class StudioConfig:
    """What the studio opens and offers.

    clip:           clip opened in every new browser session ("" = none; the user uploads).
    clip_named:     the user named ``clip`` on the command line (not the demo default): a
                    browser's remembered project is reopened only if it works on that clip.
    project:        project name to reopen at start instead ("" = a new project per session).
    default_editor: editor preselected in the edit panel.
    """

    clip: str = ""
    clip_named: bool = False
    project: str = ""
    default_editor: str = "classic"
    editors: tuple[str, ...] = ()


def _skip(count: int) -> tuple[Any, ...]:
    return tuple(gr.skip() for _ in range(count))


def _failed(
    count: int, error: BaseException, action: str, *, work_at_stake: bool = False
) -> tuple[Any, ...]:
    """``count`` skipped outputs followed by the error panel."""
    return (*_skip(count), error_html(error, action, work_at_stake=work_at_stake))


class NoClip(SparkVSRError):
    """The page has no clip open yet."""


@dataclass
class _RenderRun:
    """One ``#render`` handler in flight for a worker session: ``done`` is set when it ends
    (the worker's job has finished, failed or stopped), ``cancelled`` once the user asked."""

    done: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False


class StudioBase:
    """What every group of handlers shares: the worker client, the images the page shows
    and per-tab bookkeeping. One object serves all browser sessions; per-session data lives
    in each session's ``StudioState``."""

    def __init__(self, client: WorkerClient, config: StudioConfig, images: ViewImages):
        self.client = client
        self.config = config
        self.images = images
        # Which worker session each open tab holds, only to close it the moment the tab goes
        # (``unload``); Gradio deletes a closed tab's gr.State an hour later, and until then
        # its project would stay locked against reopening.
        self._tabs: dict[str, str] = {}
        self._tabs_lock = threading.Lock()
        # The last full-quality preview asked for per worker session, as (order, frame,
        # guidance): a live preview that finishes after it must not replace the full one.
        self._full_asked: dict[str, tuple[int, int, float]] = {}
        # The keyframe whose Reference the viewer's Reference tab shows, per worker session.
        self._reference_shown: dict[str, int] = {}
        # The proxy video each worker session's page has loaded (ui.callbacks.clip_media).
        self._media_shown: dict[str, str] = {}
        self.viewers = Viewers()  # each tab's viewer size, zoom and pan
        self._order = itertools.count()
        # The render handler running per worker session: a Render pressed right after Cancel
        # waits for the cancelled one to finish its chunk instead of being refused unseen.
        self._renders: dict[str, _RenderRun] = {}
        self._engine_name: str | None = None

    # Helpers every group uses ---------------------------------------------------------------
    def _frame_path(self, state: StudioState, index: int) -> str:
        image = self.client.frame(FrameRequest(state.session_id, index)).image
        return self.images.frame(state.session_id, "frame", image)

    def _timeline(self, state: StudioState, current: int) -> str:
        clip = state.clip
        return timeline_html(
            clip.num_frames,
            current,
            clip.iframes,
            state.keyframes,
            state.with_reference,
            state.in_point,
            state.out_point,
            fps=clip.fps,
        )


def _require(state: StudioState | None) -> StudioState:
    if state is None:
        raise NoClip("no clip is open: upload a clip or reopen a project first")
    return state


def _frame_size(state: StudioState) -> tuple[int, int]:
    """(width, height) of a whole restored frame: the output size, else the engine's."""
    return state.render_size if min(state.render_size) > 0 else state.output_size


def _clamp(frame: float | None, state: StudioState) -> int:
    return min(max(0, round(frame or 0)), state.last_frame)
