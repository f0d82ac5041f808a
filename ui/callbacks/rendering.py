"""Rendering: start or follow the project's render job (it outlives the page), its progress
with stage, pace and time left, cancel.
"""

import logging
import time
from collections.abc import Iterator
from html import escape
from pathlib import Path
from typing import Any

import gradio as gr

from sparkvsr.errors import Cancelled
from sparkvsr.render import RenderProgress
from sparkvsr.worker import (
    FileRequest,
    RenderRequest,
    SessionRequest,
)
from ui.callbacks.base import (
    StudioBase,
    _failed,
    _RenderRun,
    _require,
    _skip,
)
from ui.messages import error_html, notice_html, render_hint
from ui.output import playable
from ui.state import StudioState

log = logging.getLogger("sparkvsr.ui")


RUNNING_JOB = ("rendering", "encoding")
"""Render job states (``RenderJobInfo.state``) of a render still at work."""
PROGRESS_EVERY_S = 0.25
"""Progress updates closer than this are skipped (the latest one always shows)."""

DOWNLOAD_LABEL = "Download"


class RenderHandlers(StudioBase):
    """Render, follow and cancel the project's render job."""

    def _rendering(self, state: StudioState) -> bool:
        with self._tabs_lock:
            run = self._renders.get(state.session_id)
        if run is not None and not run.done.is_set():
            return True
        try:
            job = self._render_job(state)
        except Exception:
            return False
        return job is not None and job.state in RUNNING_JOB

    # Render -----------------------------------------------------------------------------------
    def render(self, state: StudioState | None, guidance: float) -> Iterator[tuple[Any, ...]]:
        """``#render``: stream progress, then show and offer the mp4.
        Outputs: progress, result video, download button, render message. The render message
        (beside the progress bar) keeps a render's errors until dismissed or the next render;
        progress updates never overwrite it."""
        try:
            state = _require(state)
        except Exception as e:
            yield error_progress(), gr.skip(), gr.skip(), error_html(e, "rendering")
            return
        run = _RenderRun()
        with self._tabs_lock:
            previous = self._renders.get(state.session_id)
            if previous is not None and not previous.done.is_set() and not previous.cancelled:
                busy = "a render is already running; press Cancel first to start over"
                yield gr.skip(), gr.skip(), gr.skip(), notice_html(busy)
                return
            self._renders[state.session_id] = run
        try:
            if previous is not None and not previous.done.is_set():
                # Cancel stops after the current chunk; start once it has, so the new render
                # resumes from every chunk the cancelled one finished.
                yield (
                    progress_html(None, "waiting for the cancelled render to finish its chunk"),
                    gr.skip(),
                    gr.skip(),
                    gr.skip(),
                )
                previous.done.wait()
            yield from self._render_steps(state, guidance)
        finally:
            run.done.set()
            with self._tabs_lock:
                if self._renders.get(state.session_id) is run:
                    del self._renders[state.session_id]

    def _render_steps(self, state: StudioState, guidance: float) -> Iterator[tuple[Any, ...]]:
        hint = render_hint(state.used_editors())
        try:
            job = self._render_job(state)
            if job is not None and job.state in RUNNING_JOB and getattr(job, "frames", None):
                busy = "a range render is running; let it finish or press Cancel, then render"
                yield gr.skip(), gr.skip(), gr.skip(), notice_html(busy)
                return
            if job is not None and job.state in RUNNING_JOB:
                # started before a reload or in another tab: follow it instead of refusing
                steps = self.client.attach(SessionRequest(state.session_id))
                output, note = Path(job.output).name, "following the render already running"
            else:
                output = self._output_name(state, guidance)
                steps = self.client.render(
                    RenderRequest(state.session_id, guidance=guidance, output=output)
                )
                note = "starting the render"
        except Exception as e:
            failed = error_html(e, "rendering", work_at_stake=True)
            yield error_progress(), gr.skip(), gr.skip(), failed
            return
        yield progress_html(None, note), gr.skip(), gr.skip(), notice_html(hint) if hint else ""
        yield from self._follow(state, steps, output)

    def follow_render(self, state: StudioState | None) -> Iterator[tuple[Any, ...]]:
        """After the page opened a project: when its render is still running (started before
        a reload, or in another tab), follow it to the end and show the result. The render
        never needed the page. Outputs: progress, result video, download button, render
        message."""
        # (a generator that yields nothing would blank its outputs: it yields skips instead)
        if state is None:
            yield _skip(4)
            return
        try:
            job = self._render_job(state)
        except Exception as e:  # the session just closed: nothing to follow
            log.info("render job unavailable: %s", e)
            job = None
        if job is None or job.state not in RUNNING_JOB or getattr(job, "frames", None):
            yield _skip(4)  # nothing running, or a range preview (a few seconds; not the clip)
            return
        run = _RenderRun()
        with self._tabs_lock:
            self._renders[state.session_id] = run
        try:
            note = "the render kept going while the page was away; following it"
            yield progress_html(job.progress, note), gr.skip(), gr.skip(), gr.skip()
            steps = self.client.attach(SessionRequest(state.session_id))
            yield from self._follow(state, steps, Path(job.output).name)
        finally:
            run.done.set()
            with self._tabs_lock:
                if self._renders.get(state.session_id) is run:
                    del self._renders[state.session_id]

    def _is_range_job(self, state: StudioState) -> bool:
        try:
            job = self._render_job(state)
        except Exception:
            return False
        return job is not None and bool(getattr(job, "frames", None))

    def _render_job(self, state: StudioState) -> Any:
        """The project's render job (``RenderJobInfo``), or None from a worker without jobs."""
        ask = getattr(self.client, "render_job", None)
        return ask(SessionRequest(state.session_id)) if ask is not None else None

    def _follow(
        self, state: StudioState, steps: Iterator[RenderProgress], output: str
    ) -> Iterator[tuple[Any, ...]]:
        """Progress of ``steps`` until the render ends, then its result (or why it stopped)."""
        last = None
        shown = 0.0
        try:
            clock = _Eta()
            for last in steps:
                if last.stage == "done":
                    continue  # "Done" shows with the result and its download, not before them
                now = time.monotonic()
                if now - shown < PROGRESS_EVERY_S and last.stage == "render":
                    continue  # a re-attach replays every update: show the latest few
                shown = now
                yield progress_html(last, clock.eta(last)), gr.skip(), gr.skip(), gr.skip()
            path = self.client.get_file(FileRequest(state.session_id, output)).local_path
        except Cancelled:
            yield notice_html(cancelled_note(last)), gr.skip(), gr.skip(), gr.skip()
            return
        except Exception as e:
            failed = error_html(e, "rendering", work_at_stake=True)
            yield error_progress(), gr.skip(), gr.skip(), failed
            return
        yield (
            progress_html(last),
            playable(path),
            gr.DownloadButton(label=DOWNLOAD_LABEL, value=path, interactive=True),
            gr.skip(),
        )

    def cancel(self, state: StudioState | None) -> tuple[Any, ...]:
        """``#cancel``. Outputs: progress, error."""
        try:
            state = _require(state)
            response = self.client.cancel(SessionRequest(state.session_id))
        except Exception as e:
            return _failed(1, e, "cancelling")
        if not response.cancelled:
            return gr.skip(), notice_html("no render is running")
        with self._tabs_lock:
            run = self._renders.get(state.session_id)
            if run is not None:
                run.cancelled = True
        if run is None and self._is_range_job(state):  # its own panel says it was cancelled
            return gr.skip(), ""
        return notice_html("cancelling after the current chunk; finished chunks are kept"), ""


def cancelled_note(last: RenderProgress | None) -> str:
    """What a cancelled render kept, from the last progress it reported."""
    if last is None or not (last.chunks_rendered + last.chunks_resumed):
        return "Render cancelled before its first chunk finished. Press Render to start again."
    done = last.chunks_rendered + last.chunks_resumed
    return (
        f"Render cancelled: {done} finished chunk{'s' if done != 1 else ''} "
        f"({last.frames_done} of {last.total_frames} frames) kept. Press Render to resume."
    )


class _Eta:
    """Estimates the time left from the frames finished since the render (re)started."""

    def __init__(self):
        self.start = time.monotonic()
        self.first: int | None = None

    def eta(self, update: RenderProgress) -> str:
        if update.stage != "render" or getattr(update, "elapsed", 0.0):
            return ""  # the worker's own pace (progress_html shows it), or nothing to estimate
        if self.first is None:
            self.first = update.frames_done
            return ""
        done = update.frames_done - self.first
        if done <= 0:
            return ""
        rate = done / (time.monotonic() - self.start)
        left = (update.total_frames - update.frames_done) / rate
        return f"ETA {left:.0f} s"


STAGES = {"render": "Rendering", "assemble": "Encoding the mp4", "done": "Done"}


def progress_html(update: RenderProgress | None, note: str = "") -> str:
    """The ``#progress`` bar: stage, frames, chunks and ETA; ``data-stage`` for scripts."""
    if update is None:
        text = escape(note) if note else "Not rendered yet"
        return (
            f'<div class="progress" data-stage="idle"><div class="bar"><span style="width:0%">'
            f'</span></div><div class="progress-text">{text}</div></div>'
        )
    percent = 100.0 * update.fraction
    chunks = update.chunks_rendered + update.chunks_resumed
    parts = [STAGES.get(update.stage, update.stage)]
    if update.stage == "assemble":
        parts.append(f"{update.encoded}/{update.total_frames} frames encoded ({percent:.0f} %)")
    else:
        parts.append(f"{update.frames_done}/{update.total_frames} frames")
    if chunks:
        resumed = f" ({update.chunks_resumed} resumed)" if update.chunks_resumed else ""
        parts.append(f"{chunks} chunk{'s' if chunks != 1 else ''} done{resumed}")
    if update.message:
        parts.append(update.message)
    parts.extend(pace_text(update))
    if note:
        parts.append(note)
    text = escape(" · ".join(parts))
    return (
        f'<div class="progress" data-stage="{escape(update.stage)}"><div class="bar">'
        f'<span style="width:{percent:.1f}%"></span></div>'
        f'<div class="progress-text">{text}</div></div>'
    )


def pace_text(update: RenderProgress) -> list[str]:
    """Elapsed time, pace and time left of the current stage (the worker measures them over
    the recent frames), e.g. ``["0:42 elapsed", "3.1 frames/s", "0:17 left"]``."""
    if update.stage == "done" or not update.elapsed:
        return [f"took {clock_text(update.elapsed)}"] if update.elapsed else []
    parts = [f"{clock_text(update.elapsed)} elapsed"]
    if update.rate > 0:
        parts.append(f"{update.rate:.1f} frames/s")
    if update.eta is None:
        parts.append("estimating time left")
    else:
        then = ", then encoding" if update.stage == "render" else ""
        parts.append(f"{clock_text(update.eta)} left{then}")
    return parts


def clock_text(seconds: float) -> str:
    """``75.4`` -> ``"1:15"``; an hour or more ``"1:02:03"``."""
    whole = round(max(0.0, seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def error_progress() -> str:
    return (
        '<div class="progress" data-stage="failed"><div class="bar"><span style="width:0%">'
        '</span></div><div class="progress-text">Render stopped: see the message below. '
        "Finished chunks are kept; render again to resume.</div></div>"
    )
