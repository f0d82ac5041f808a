"""In and out points and the range preview render: render only the marked frames (or the 3 s
around the playhead) at the output settings, follow its progress, play it in the viewer's Range
tab at the clip's frame rate. Its chunks serve the full render of the same settings.
"""

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from sparkvsr.errors import Cancelled
from sparkvsr.render import range_name
from sparkvsr.worker import FileRequest, RenderRequest, SessionRequest, SettingsRequest
from ui import ranges
from ui.callbacks.base import StudioBase, _clamp, _failed, _require, _skip
from ui.callbacks.rendering import PROGRESS_EVERY_S, RUNNING_JOB, error_progress, progress_html
from ui.messages import error_html, notice_html
from ui.output import playable
from ui.state import StudioState

log = logging.getLogger("sparkvsr.ui")

RANGE_TAB = "tab-range"
"""The viewer tab the range's video plays in."""


class RangeHandlers(StudioBase):
    """In / out marks on the timeline and the range render."""

    # Marks ----------------------------------------------------------------------------------
    def mark_in(self, state: StudioState | None, frame: float) -> tuple[Any, ...]:
        """``#mark-in`` (key I): the in point at the playhead. Outputs: state, timeline,
        range info, error."""
        return self._mark(state, "in", frame)

    def mark_out(self, state: StudioState | None, frame: float) -> tuple[Any, ...]:
        """``#mark-out`` (key O): the out point at the playhead. Outputs as ``mark_in``."""
        return self._mark(state, "out", frame)

    def clear_marks(self, state: StudioState | None, frame: float) -> tuple[Any, ...]:
        """``#clear-range``: no in / out (the range is the 3 s around the playhead)."""
        return self._mark(state, "clear", frame)

    def range_info(self, state: StudioState | None, frame: float) -> str:
        """``#range-info`` after the playhead moved (the default range follows it)."""
        if state is None:
            return gr.skip()
        return self._info(state, _clamp(frame, state))

    def _mark(self, state: StudioState | None, mark: str, frame: float) -> tuple[Any, ...]:
        try:
            state = _require(state)
        except Exception as e:
            return _failed(3, e, "setting the range")
        at = _clamp(frame, state)
        if mark == "clear":
            state = state.with_marks(None, None)
        else:
            state = state.with_marks(*ranges.marks_after(mark, at, state.in_point, state.out_point))
        return state, self._timeline(state, at), self._info(state, at), ""

    def _info(self, state: StudioState, at: int) -> str:
        clip = state.clip
        span = ranges.range_span(state.in_point, state.out_point, at, clip.fps, clip.num_frames)
        return ranges.range_info_html(state.in_point, state.out_point, span, clip.fps)

    # Render -----------------------------------------------------------------------------------
    def render_range(
        self, state: StudioState | None, frame: float, guidance: float
    ) -> Iterator[tuple[Any, ...]]:
        """``#range-render``: render the range at the output settings, then play it in the
        viewer. Outputs: range progress, range video, viewer tabs, render message. Cancel is
        the render's ``#cancel`` (the range is the project's render job while it runs)."""
        try:
            state = _require(state)
            job = self._render_job(state)
            if job is not None and job.state in RUNNING_JOB:
                busy = "a render is running; let it finish or press Cancel, then render the range"
                yield gr.skip(), gr.skip(), gr.skip(), notice_html(busy)
                return
            clip = state.clip
            at = _clamp(frame, state)
            span = ranges.range_span(state.in_point, state.out_point, at, clip.fps, clip.num_frames)
            output = range_name(self._output_name(state, guidance), *span)
            steps = self.client.render(
                RenderRequest(state.session_id, guidance=guidance, output=output, frames=span)
            )
        except Exception as e:
            yield gr.skip(), gr.skip(), gr.skip(), error_html(e, "rendering the range")
            return
        note = f"rendering frames {span[0]}–{span[1] - 1}"
        yield progress_html(None, note), gr.skip(), gr.skip(), ""
        yield from self._follow_range(state, steps, output, span)

    def follow_range(self, state: StudioState | None) -> Iterator[tuple[Any, ...]]:
        """After the page opened a project: a range render still running (started before a
        reload, or in another tab) is followed to its result. Outputs as ``render_range``."""
        job = None
        if state is not None:
            try:
                job = self._render_job(state)
            except Exception as e:  # the session just closed: nothing to follow
                log.info("render job unavailable: %s", e)
        frames = getattr(job, "frames", None)
        if job is None or job.state not in RUNNING_JOB or not frames:
            yield _skip(4)
            return
        note = "the range render kept going while the page was away; following it"
        yield progress_html(job.progress, note), gr.skip(), gr.skip(), gr.skip()
        steps = self.client.attach(SessionRequest(state.session_id))
        yield from self._follow_range(state, steps, Path(job.output).name, tuple(frames))

    def _follow_range(
        self, state: StudioState, steps: Iterator[Any], output: str, span: tuple[int, int]
    ) -> Iterator[tuple[Any, ...]]:
        """Progress of a range render until it ends, then its video in the viewer."""
        last, shown = None, 0.0
        try:
            for last in steps:
                if last.stage == "done":
                    continue
                now = time.monotonic()
                if now - shown < PROGRESS_EVERY_S and last.stage == "render":
                    continue
                shown = now
                yield progress_html(last, "range"), gr.skip(), gr.skip(), gr.skip()
            path = self.client.get_file(FileRequest(state.session_id, output)).local_path
        except Cancelled:
            yield notice_html(range_cancelled_note(last)), gr.skip(), gr.skip(), gr.skip()
            return
        except Exception as e:
            failed = error_html(e, "rendering the range", work_at_stake=True)
            yield error_progress(), gr.skip(), gr.skip(), failed
            return
        ready = ranges.range_result_html(Path(output).name, span, True)
        if playable(path) is None:  # a PNG sequence: nothing to play, the viewer stays
            yield ready, None, gr.skip(), gr.skip()
            return
        yield ready, path, gr.Tabs(selected=RANGE_TAB), gr.skip()

    def range_view(self, state: StudioState | None) -> tuple[Any, ...]:
        """The project's last range render on opening (and its status after a change): ready
        or out of date. Outputs: range progress, range video, range info."""
        if state is None:
            return _skip(3)
        if self._rendering(state):  # a running range is shown by the handler following it
            return gr.skip(), gr.skip(), self._info(state, 0)
        try:
            info = self.client.update_settings(SettingsRequest(state.session_id))  # reads only
            if not info.range_result or info.range_frames is None:
                return "", None, self._info(state, 0)
            name = Path(info.range_result).name
            wanted = range_name(
                self._output_name(state.with_settings(info), info.guidance), *info.range_frames
            )
            current = info.range_current and name == wanted
            path = self.client.get_file(FileRequest(state.session_id, info.range_result))
        except Exception as e:  # a courtesy line: never an error panel
            log.info("range status unavailable: %s", e)
            return _skip(3)
        html = ranges.range_result_html(name, tuple(info.range_frames), current)
        return html, playable(path.local_path), self._info(state, 0)

    def range_status(self, state: StudioState | None) -> Any:
        """After a change: the range result marked out of date if the change needs a new
        render (left alone while a render runs). Output: range progress."""
        if state is None or self._rendering(state):
            return gr.skip()
        return self.range_view(state)[0]

    def status_after_change(self, state: StudioState | None) -> tuple[Any, ...]:
        """After a change to keyframes, References or settings: the full render's and the
        range's results, each marked out of date if the change needs a new render. Outputs:
        progress, download button, range progress."""
        return (*self.result_status(state), self.range_status(state))


def range_cancelled_note(last: Any) -> str:
    """What a cancelled range render kept (its chunks serve the next range or full render)."""
    done = (last.chunks_rendered + last.chunks_reused) if last is not None else 0
    if not done:
        return "Range render cancelled before its first chunk finished."
    return (
        f"Range render cancelled: {last.frames_done} of {last.total_frames} frames kept; "
        "Render range (or Render clip) goes on from them."
    )
