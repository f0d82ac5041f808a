"""What the studio's buttons and sliders do. Every callback talks only to a worker client.

Each method is one event handler. Its outputs are listed in its docstring, in the order the
layout wires them; the last output is always the ``#error`` panel. On a failure a handler
returns ``gr.skip()`` for everything but the error panel, so the page keeps what it showed and
nothing the user made is touched (the worker keeps the project on disk either way).
"""

import contextlib
import itertools
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from html import escape
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from sparkvsr.engines.base import RestoreOptions
from sparkvsr.errors import Cancelled, ClipMissing, KeyframeError, MediaError, SparkVSRError
from sparkvsr.estimate import SAMPLE_FRAMES, OutputEstimate, estimate_output, source_audio_bytes
from sparkvsr.keyframes import KeyframeSelection, select_keyframes
from sparkvsr.references.base import DEFAULT_TASK_PROMPT
from sparkvsr.render import RENDER_CHUNK_BYTES, RenderProgress, chunk_within
from sparkvsr.worker import (
    AccessDenied,
    FileRequest,
    FrameRequest,
    KeyframeRequest,
    OpenClipRequest,
    PreviewRequest,
    ReferenceRequest,
    RenderRequest,
    SessionInfo,
    SessionRequest,
    SettingsRequest,
    StatusRequest,
    WorkerClient,
    WorkerStatus,
)
from ui import output as output_panel
from ui.images import ViewImages, upscale_for_compare
from ui.messages import error_html, notice_html, render_hint
from ui.state import StudioState
from ui.timeline import frame_label, keyframe_caption, timeline_html
from ui.viewer import ZOOMS, Viewers, before_view, parse_size

log = logging.getLogger("sparkvsr.ui")

# UI labels of the auto-pick modes -> sparkvsr.keyframes modes.
_AUTO_MODE = {"I-frames": "iframes", "uniform": "uniform", "random": "random"}
AUTO_MODES = tuple(_AUTO_MODE)
THUMB_WIDTH = 320
REOPEN_WAIT_S = 5.0
"""How long a reloaded page waits for its old tab to release the project it reopens."""
RUNNING_JOB = ("rendering", "encoding")
"""Render job states (``RenderJobInfo.state``) of a render still at work."""
PROGRESS_EVERY_S = 0.25
"""Progress updates closer than this are skipped (the latest one always shows)."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
"""Uploads with these suffixes are pictures: the page says where a picture belongs instead."""


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


class Studio:
    """The event handlers of one studio page (shared by all browser sessions; per-session data
    lives in each session's ``StudioState``).
    """

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
        self.viewers = Viewers()  # each tab's viewer size, zoom and pan
        self._order = itertools.count()
        # The render handler running per worker session: a Render pressed right after Cancel
        # waits for the cancelled one to finish its chunk instead of being refused unseen.
        self._renders: dict[str, _RenderRun] = {}
        self._engine_name: str | None = None

    # Sessions ---------------------------------------------------------------------------------
    def close_state(self, state: StudioState | None) -> None:
        """``gr.State`` delete callback: the tab is gone, close its worker session."""
        if state is None:
            return
        self._forget(state.session_id)
        # Already closed or the worker restarted: nothing to release.
        with contextlib.suppress(SparkVSRError):
            self.client.close_session(SessionRequest(state.session_id))

    def _forget(self, session_id: str) -> None:
        with self._tabs_lock:
            self._full_asked.pop(session_id, None)
        self.viewers.forget(session_id)

    def unload(self, request: gr.Request) -> None:
        """The tab closed or reloaded: close its worker session now (the project stays)."""
        with self._tabs_lock:
            session_id = self._tabs.pop(request.session_hash or "", None)
        if session_id:
            self._forget(session_id)
            with contextlib.suppress(SparkVSRError):
                self.client.close_session(SessionRequest(session_id))

    def start(
        self,
        state: StudioState | None,
        remembered: str | None,
        owner: str | None,
        request: gr.Request,
    ) -> tuple[Any, ...]:
        """Page load: reopen this browser's last project (``remembered``, kept in the browser's
        storage, so a reload loses nothing), else open the configured clip or project.
        ``owner``: this browser's owner secret (made here on its first visit and stored).
        Outputs: see ``OPEN_OUTPUTS``."""
        owner = (owner or "").strip() or secrets.token_urlsafe(24)
        return _with_owner(self._start(state, remembered, owner, request), owner)

    def _start(
        self, state: StudioState | None, remembered: str | None, owner: str, request: gr.Request
    ) -> tuple[Any, ...]:
        if state is not None:
            return self._opened(state, notice="")
        remembered = (remembered or "").strip()
        note = ""
        if remembered and not self.config.project:
            try:
                info = self._open_remembered(remembered, owner)
            except Exception as e:
                held = isinstance(e, AccessDenied) and "another session" in str(e)
                why = "it is open in another tab" if held else str(e)
                later = " Reopen it by name once that tab is closed." if held else ""
                if isinstance(e, ClipMissing):
                    later = " Relink it under 'Open a clip or a saved project'."
                note = notice_html(
                    f"Your last project {remembered} was not reopened ({why}); another project "
                    f"was opened here.{later}"
                )
            else:
                if not self._other_clip_named(info):
                    return self._session_opened(state, info, request, "", owner)
                # The user asked for another clip by name: that wins over the remembered project.
                with contextlib.suppress(SparkVSRError):
                    self.client.close_session(SessionRequest(info.session_id))
        if not (self.config.clip or self.config.project):
            return (*self._no_clip()[:-1], note or self._no_clip()[-1])
        if self.config.project:
            # named on the studio's command line: the host's own project, no owner check
            opening = OpenClipRequest(clip_path=self.config.clip, project=self.config.project)
        else:
            # a visit that changes nothing reuses an untouched project of the clip
            opening = OpenClipRequest(clip_path=self.config.clip, owner=owner, reuse=True)
        return self._open(state, opening, "opening the clip", request, notice=note, owner=owner)

    def _other_clip_named(self, info: SessionInfo) -> bool:
        if not self.config.clip_named:
            return False
        return Path(info.clip.path).resolve() != Path(self.config.clip).resolve()

    def _open_remembered(self, name: str, owner: str) -> SessionInfo:
        """Open project ``name``; on a reload the old tab may still hold it for a moment (its
        session closes when the server notices the tab left), so a refusal is retried."""
        deadline = time.monotonic() + REOPEN_WAIT_S
        while True:
            try:
                return self.client.open_clip(OpenClipRequest(project=name, owner=owner))
            except AccessDenied as e:
                if "another session" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.25)

    def open_upload(
        self, state: StudioState | None, upload: Any, owner: str | None, request: gr.Request
    ) -> tuple[Any, ...]:
        """``#clip-upload``: store the uploaded file beside the projects (the project owns its
        copy; the browser's temporary upload may vanish) and open it: this browser's earlier
        project of the same clip is reopened, else a new project is made."""
        path = upload if isinstance(upload, str) else getattr(upload, "name", None)
        if not path:
            return _failed(len(OPEN_OUTPUTS) - 1, NoClip("no file was received"), "uploading")
        name = Path(str(path)).name
        if Path(name).suffix.lower() in IMAGE_SUFFIXES:
            error = MediaError(
                f"{name} is a picture, not a video clip: upload a clip here (mp4, mkv, mov, "
                "avi, webm). To use a picture as a keyframe's reference, pin the frame, select "
                "it in the gallery and drop the picture on 'Your own edited image'."
            )
            return _failed(len(OPEN_OUTPUTS) - 1, error, f"opening {name}")
        try:
            stored = self.client.upload_clip(str(path))
        except Exception as e:
            return _failed(len(OPEN_OUTPUTS) - 1, e, "storing the upload")
        opening = OpenClipRequest(clip_path=stored.clip_path, owner=owner or "", reuse=True)
        opened = self._open(state, opening, f"opening {name}", request, owner=owner or "")
        return _name_not_path(opened, {str(path): name, stored.clip_path: name})

    def relink(
        self,
        state: StudioState | None,
        name: str,
        upload: Any,
        owner: str | None,
        request: gr.Request,
    ) -> tuple[Any, ...]:
        """``#relink-upload``: give project ``name`` (whose clip moved) its clip again. The
        clip must have the same frame count and size; it is stored beside the projects."""
        name = (name or "").strip()
        path = upload if isinstance(upload, str) else getattr(upload, "name", None)
        try:
            if not name:
                raise NoClip("type the name of the project to relink (the message named it)")
            if not path:
                raise NoClip("no file was received; drop the project's clip on the box")
            stored = self.client.upload_clip(str(path))
        except Exception as e:
            return _failed(len(OPEN_OUTPUTS) - 1, e, f"relinking {name}")
        opening = OpenClipRequest(clip_path=stored.clip_path, project=name, owner=owner or "")
        notice = notice_html(f"{name} was relinked to {Path(str(path)).name}")
        opened = self._open(
            state, opening, f"relinking {name}", request, notice=notice, owner=owner or ""
        )
        return _name_not_path(opened, {str(path): Path(str(path)).name})

    def reopen(
        self, state: StudioState | None, name: str, owner: str | None, request: gr.Request
    ) -> tuple[Any, ...]:
        """Reopen a saved project by name (one this browser made, or one without an owner)."""
        name = (name or "").strip()
        if state is not None and name == state.project:
            return (*_skip(len(OPEN_OUTPUTS) - 1), notice_html(f"{name} is already open here"))
        if not name:
            error = NoClip("type the name of a saved project (shown under the title)")
            return _failed(len(OPEN_OUTPUTS) - 1, error, "reopening a project")
        opening = OpenClipRequest(project=name, owner=owner or "")
        return self._open(state, opening, f"reopening {name}", request, owner=owner or "")

    def _open(
        self,
        state: StudioState | None,
        opening: OpenClipRequest,
        action: str,
        request: gr.Request | None,
        notice: str = "",
        owner: str = "",
    ) -> tuple[Any, ...]:
        try:
            info = self.client.open_clip(opening)
        except ClipMissing as e:
            relink = ClipMissing(
                f"{e} To relink: open 'Open a clip or a saved project', type the project's name "
                "under Relink and drop the clip there."
            )
            return _failed(len(OPEN_OUTPUTS) - 1, relink, action)
        except Exception as e:
            # The previous session stays open: the user keeps working on what they had.
            return _failed(len(OPEN_OUTPUTS) - 1, e, action)
        if not notice and (info.keyframes or info.references) and opening.reuse:
            notice = notice_html(f"Your earlier work on this clip ({info.project}) was reopened.")
        return self._session_opened(state, info, request, notice, owner)

    def _session_opened(
        self,
        state: StudioState | None,
        info: SessionInfo,
        request: gr.Request | None,
        notice: str,
        owner: str = "",
    ) -> tuple[Any, ...]:
        self.close_state(state)
        if request is not None and request.session_hash:
            with self._tabs_lock:
                self._tabs[request.session_hash] = info.session_id
        return self._opened(
            StudioState.from_session(info, owner or (state.owner if state else "")),
            notice=notice,
            guidance=info.guidance,
            color_fix=info.options.color_fix,
        )

    def _opened(
        self,
        state: StudioState,
        notice: str,
        guidance: float | None = None,
        color_fix: str | None = None,
    ) -> tuple[Any, ...]:
        try:
            frame = self._frame_path(state, 0)
            gallery = self._gallery(state)
            status = self.client.status(StatusRequest(state.session_id))
            progress, result, download = self._result_view(state)
        except Exception as e:
            return _failed(len(OPEN_OUTPUTS) - 1, e, "showing the clip")
        clip = state.clip
        title = (
            f"**{escape(clip.path.rsplit('/', 1)[-1])}** · {clip.width}×{clip.height} · "
            f"{clip.num_frames} frames · {clip.fps:.3g} fps"
            f"{' · audio' if clip.has_audio else ''} · project `{state.project}`"
        )
        return (
            state,
            title,
            gr.Slider(minimum=0, maximum=state.last_frame, value=0, step=1, interactive=True),
            frame,
            frame_label(0, clip.num_frames, clip.fps),
            self._timeline(state, 0),
            pin_label(state, 0),
            gallery,
            gr.Column(visible=False),
            gr.Slider(value=guidance) if guidance is not None else gr.skip(),
            None,
            None,
            result,
            download,
            progress,
            engine_status_markdown(status),
            color_fix if color_fix is not None else gr.skip(),
            state.project,
            state.owner or gr.skip(),
            "",
            notice,
        )

    def _no_clip(self) -> tuple[Any, ...]:
        message = notice_html("Upload a clip to begin, or reopen a saved project.")
        return (*_skip(len(OPEN_OUTPUTS) - 1), message)

    def _result_view(self, state: StudioState) -> tuple[str, str | None, Any]:
        """(progress panel, result video, download button) for the project's last complete
        render: "Done" when it matches the current settings, "out of date" when not."""
        info = self.client.update_settings(SettingsRequest(state.session_id))  # reads only
        if not info.result:
            return progress_html(None), None, gr.DownloadButton(value=None, interactive=False)
        path = self.client.get_file(FileRequest(state.session_id, info.result)).local_path
        # current: the same frames (fingerprint) and the same encoding (the name says it)
        wanted = self._output_name(state.with_settings(info), info.guidance)
        current = info.result_current and Path(info.result).name == wanted
        label = DOWNLOAD_LABEL if current else f"{DOWNLOAD_LABEL} (out of date)"
        button = gr.DownloadButton(label=label, value=path, interactive=True)
        return result_html(Path(info.result).name, current), path, button

    def _output_name(self, state: StudioState, guidance: float) -> str:
        if self._engine_name is None:
            self._engine_name = self.client.status(StatusRequest()).engine.name
        return output_panel.output_name(
            state.clip.path,
            state.render_size,
            (state.clip.width, state.clip.height),
            self._engine_name,
            float(guidance),
            state.output,
        )

    # Output panel ---------------------------------------------------------------------------
    def output_values(self, state: StudioState | None) -> tuple[Any, ...]:
        """The output panel as the project has it. Outputs: scale, custom width, codec, crf,
        preset, 10-bit, audio, output note."""
        if state is None:
            return _skip(8)
        clip_size = (state.clip.width, state.clip.height)
        choice, width = output_panel.scale_choice(state.render_size, clip_size)
        out = state.output
        return (
            choice,
            width,
            output_panel.CODEC_LABELS[out.codec],
            out.crf,
            out.preset,
            out.ten_bit,
            out.audio,
            output_note(state),
        )

    def set_output(
        self,
        state: StudioState | None,
        scale: str,
        custom_width: float | None,
        codec: str,
        crf: float,
        preset: str,
        ten_bit: bool,
        audio: bool,
    ) -> tuple[Any, ...]:
        """An output-panel control changed: save the output settings into the project (a
        running render keeps the ones it started with). Outputs: state, output note, error."""
        try:
            state = _require(state)
            size = output_panel.size_for(scale, custom_width, (state.clip.width, state.clip.height))
            value = output_panel.CODECS.get(codec, codec)
            crf_codec = value in output_panel.CRF_CODECS
            info = self.client.update_settings(
                SettingsRequest(
                    state.session_id,
                    output_size=size,
                    codec=value,
                    crf=int(crf) if crf_codec else None,
                    preset=preset if crf_codec else None,
                    ten_bit=bool(ten_bit) and crf_codec,
                    audio=bool(audio),
                )
            )
        except ValueError as e:
            return gr.skip(), gr.skip(), error_html(NoClip(str(e)), "changing the output")
        except Exception as e:
            return gr.skip(), gr.skip(), error_html(e, "changing the output")
        state = state.with_settings(info)
        return state, output_note(state), ""

    def result_status(self, state: StudioState | None) -> tuple[Any, ...]:
        """After a change: the result is marked out of date if the change needs a re-render
        (left alone while a render of this page runs). Outputs: progress, download button."""
        if state is None:
            return _skip(2)
        if self._rendering(state):
            return _skip(2)
        try:
            progress, _, download = self._result_view(state)
        except Exception as e:  # the status line is a courtesy: never an error panel
            log.info("result status unavailable: %s", e)
            return _skip(2)
        return progress, download

    def editor_info(self, current: str | None) -> tuple[Any, ...]:
        """After load: label editors that cannot run on this worker and say why.
        Outputs: editor choice, editor note. (The first call may take seconds: the worker
        imports each editor's libraries to answer.)"""
        try:
            status = self.client.status(StatusRequest(editors=True))
        except Exception as e:
            return gr.skip(), f"Editors: cannot ask the worker ({escape(str(e))})"
        choices, note = editor_choices(status, self.config.editors)
        values = [value for _, value in choices]
        keep = current if current in values else self.config.default_editor
        return gr.Dropdown(choices=choices, value=keep if keep in values else values[0]), note

    def editor_names(self) -> list[str]:
        """Editor names for the dropdown before ``editor_info`` has run."""
        try:
            names = list(self.client.status(StatusRequest()).editors)
        except Exception:
            names = [self.config.default_editor]
        return [n for n in names if not self.config.editors or n in self.config.editors] or names

    def estimate(
        self,
        state: StudioState | None,
        guidance: float,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way to ask for progress)
    ) -> str:
        """``#estimate``: output size, time and memory of a render with the current settings,
        from a real sample: a few consecutive restored frames from the middle of the clip,
        encoded with the chosen codec. Outputs: the estimate line."""
        try:
            state = _require(state)
            total = state.clip.num_frames
            count = min(SAMPLE_FRAMES, total)
            first = max(0, total // 2 - count // 2)
            frames, seconds = [], []
            for n, index in enumerate(range(first, first + count)):
                progress(n / (count + 1), desc=f"restoring sample frame {index}")
                started = time.monotonic()
                request = PreviewRequest(state.session_id, index, float(guidance))
                frames.append(self.client.preview(request).image)
                seconds.append(time.monotonic() - started)
            progress(count / (count + 1), desc="encoding the sample")
            sample = np.stack(frames)
            width, height = state.render_size
            chunk = chunk_within(
                replace(RestoreOptions(), chunk=33), width * height * 3, RENDER_CHUNK_BYTES
            )
            result = estimate_output(
                sample,
                state.clip.fps,
                total,
                state.output,
                seconds_per_frame=float(np.median(seconds[1:] or seconds)),
                audio_bytes=source_audio_bytes(state.clip.path) if state.clip.has_audio else 0,
                chunk_frames=chunk.chunk,
            )
        except Exception as e:
            return f"Estimate unavailable: {escape(str(e))}"
        return estimate_markdown(result)

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

    def set_color_fix(self, state: StudioState | None, color_fix: str) -> str:
        """``#color-fix`` changed: save it into the project. During a render the render keeps
        the setting it started with, and the page says the change is for the next one.
        Outputs: error."""
        try:
            state = _require(state)
            self.client.update_settings(SettingsRequest(state.session_id, color_fix=color_fix))
        except Exception as e:
            return error_html(e, "changing the colour correction")
        if self._rendering(state):
            return notice_html(
                f"Colour correction {color_fix} is saved; the render now running keeps the "
                "setting it started with, so the next render uses it."
            )
        return ""

    def color_fix_applies(self) -> bool:
        """Whether this worker's engine has a colour correction to choose (the flow engine
        ties colour to the input itself, by back-projection: the menu is hidden there)."""
        try:
            return self.client.status(StatusRequest()).engine.name != "flow"
        except Exception:
            return True

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

    # Keyframes --------------------------------------------------------------------------------
    def toggle_pin(self, state: StudioState | None, frame: float) -> tuple[Any, ...]:
        """``#pin``: pin the current frame, or unpin it when pinned.
        Outputs: state, pin button, timeline, gallery, edit panel, error."""
        try:
            state = _require(state)
            index = _clamp(frame, state)
            request = KeyframeRequest(state.session_id, index)
            if index in state.keyframes:
                response = self.client.remove_keyframe(request)
            else:
                response = self.client.set_keyframe(request)
            state = state.with_keyframes(response)
            gallery = self._gallery(state)
        except Exception as e:
            action = f"{'unpinning' if state and frame in state.keyframes else 'pinning'} frame"
            return _failed(5, e, f"{action} {int(frame)}")
        panel = gr.skip() if state.selected is not None else gr.Column(visible=False)
        return (state, pin_label(state, index), self._timeline(state, index), gallery, panel, "")

    def auto_pick(
        self, state: StudioState | None, mode: str, every: float, seed: float, frame: float
    ) -> tuple[Any, ...]:
        """Replace the pinned keyframes with an automatic pick (References are kept by frame).
        Outputs: state, pin button, timeline, gallery, edit panel, error."""
        try:
            state = _require(state)
            wanted = pick_keyframes(state, mode, int(every or 0), int(seed or 0))
            response = None
            for old in sorted(set(state.keyframes) - set(wanted)):
                response = self.client.remove_keyframe(KeyframeRequest(state.session_id, old))
            for new in wanted:
                if new not in state.keyframes:
                    response = self.client.set_keyframe(KeyframeRequest(state.session_id, new))
            if response is not None:
                state = state.with_keyframes(response)
            gallery = self._gallery(state)
        except Exception as e:
            return _failed(5, e, f"picking keyframes ({mode})")
        index = _clamp(frame, state)
        panel = gr.skip() if state.selected is not None else gr.Column(visible=False)
        return (state, pin_label(state, index), self._timeline(state, index), gallery, panel, "")

    def select_keyframe(self, state: StudioState | None, evt: gr.SelectData) -> tuple[Any, ...]:
        """A gallery item was chosen: open the edit panel on it and move the playhead there.
        Outputs: state, edit panel, panel title, LR-vs-reference slider, provenance, scrubber,
        frame view, frame index, timeline, pin button, upload box, error. The upload box is
        emptied: an image dropped for one keyframe never becomes another one's reference."""
        try:
            state = _require(state)
            index = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
            frame = state.keyframes[int(index)]
            state = state.select(frame)
            compare, provenance = self._reference_view(state, frame)
            path = self._frame_path(state, frame)
        except Exception as e:
            return _failed(11, e, "opening the keyframe")
        return (
            state,
            gr.Column(visible=True),
            f"### Keyframe {frame}",
            compare,
            provenance,
            frame,
            path,
            frame_label(frame, state.clip.num_frames, state.clip.fps),
            self._timeline(state, frame),
            pin_label(state, frame),
            None,
            "",
        )

    # References -------------------------------------------------------------------------------
    def make_reference(
        self,
        state: StudioState | None,
        editor: str,
        task_prompt: str,
        content_prompt: str,
        seed: float | None,
        upload: np.ndarray | None,
        pixel_scale: float,
        semantic_scale: float,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way to ask for progress)
    ) -> tuple[Any, ...]:
        """``#make-reference`` for the keyframe in the edit panel.
        Outputs: state, LR-vs-reference slider, provenance, gallery, timeline, error."""
        try:
            state = _require(state)
            if state.selected is None:
                raise KeyframeError("choose a keyframe in the gallery first")
            frame = state.selected
            progress(0.1, desc=f"{editor}: making the reference for frame {frame}")
            self.client.make_reference(
                _reference_request(
                    state,
                    frame,
                    editor,
                    task_prompt,
                    content_prompt,
                    seed,
                    upload,
                    pixel_scale,
                    semantic_scale,
                )
            )
            state = state.with_reference_made(frame, editor)
            progress(0.9, desc="showing it")
            compare, provenance = self._reference_view(state, frame)
            gallery = self._gallery(state)
        except Exception as e:
            return _failed(5, e, f"making a reference with {editor}", work_at_stake=True)
        return (state, compare, provenance, gallery, self._timeline(state, frame), "")

    def make_all_references(
        self,
        state: StudioState | None,
        editor: str,
        task_prompt: str,
        content_prompt: str,
        seed: float | None,
        upload: np.ndarray | None,
        pixel_scale: float,
        semantic_scale: float,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> tuple[Any, ...]:
        """Make References for every pinned keyframe that has none (same outputs as above).
        Stops at the first failure; the ones already made are kept. The upload editor is
        refused: one picture belongs to one keyframe."""
        try:
            state = _require(state)
            if editor == "upload":
                raise KeyframeError(
                    "an uploaded image belongs to the one keyframe it was made for: select each "
                    "keyframe and drop its own picture, or choose another editor for the rest"
                )
            todo = [k for k in state.keyframes if k not in state.with_reference]
            if not todo:
                raise KeyframeError(
                    "every pinned keyframe already has a reference"
                    if state.keyframes
                    else "pin a keyframe first"
                )
        except Exception as e:
            return _failed(5, e, "making references")
        error = ""
        # the editor inputs are read once; each keyframe's request differs only in its frame
        request = _reference_request(
            state,
            todo[0],
            editor,
            task_prompt,
            content_prompt,
            seed,
            None,
            pixel_scale,
            semantic_scale,
        )
        for n, frame in enumerate(todo):
            progress(n / len(todo), desc=f"{editor}: frame {frame} ({n + 1} of {len(todo)})")
            try:
                self.client.make_reference(replace(request, frame=frame))
            except Exception as e:
                error = error_html(
                    e, f"making the reference for frame {frame} with {editor}", work_at_stake=True
                )
                break
            state = state.with_reference_made(frame, editor)
        try:
            shown = state.selected if state.selected is not None else todo[0]
            compare, provenance = (
                self._reference_view(state, shown)
                if state.selected is not None
                else (gr.skip(), gr.skip())
            )
            gallery = self._gallery(state)
        except Exception as e:
            return (state, *_skip(4), error_html(e, "showing the references"))
        return (state, compare, provenance, gallery, self._timeline(state, shown), error)

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

    def pan_to(self, state: StudioState | None, frame: float, guidance: float, evt: gr.SelectData):
        """A click on the preview centres the view there (zoomed: at once; fitted: for the
        next zoom). Outputs: preview, before/after, error."""
        if state is None or not isinstance(evt.index, list | tuple) or len(evt.index) != 2:
            return _skip(3)
        settings = self.viewers.pan_to(state.session_id, float(evt.index[0]), float(evt.index[1]))
        if settings.zoom == 0:
            return _skip(3)
        return self.preview_full(state, frame, guidance)

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
        if job is None or job.state not in RUNNING_JOB:
            yield _skip(4)
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
            path,
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
        return notice_html("cancelling after the current chunk; finished chunks are kept"), ""

    def engine_status(self, state: StudioState | None) -> str:
        """Timer tick: the engine line (engine, device, model, cache)."""
        try:
            request = StatusRequest(state.session_id if state else "")
            return engine_status_markdown(self.client.status(request))
        except Exception as e:  # the worker may be gone; say so in the status line itself
            return f"**Engine**: unavailable ({escape(str(e))})"

    # Helpers ----------------------------------------------------------------------------------
    def _frame_path(self, state: StudioState, index: int) -> str:
        image = self.client.frame(FrameRequest(state.session_id, index)).image
        return self.images.frame(state.session_id, "frame", image)

    def _timeline(self, state: StudioState, current: int) -> str:
        clip = state.clip
        return timeline_html(
            clip.num_frames, current, clip.iframes, state.keyframes, state.with_reference
        )

    def _gallery(self, state: StudioState) -> list[tuple[str, str]]:
        """One thumbnail per keyframe: its Reference when it has one, else the LR frame."""
        items = []
        for frame in state.keyframes:
            if frame in state.with_reference:
                reference = self.client.reference(KeyframeRequest(state.session_id, frame))
                image, editor = reference.image, reference.provenance.editor
            else:
                image = self.client.frame(FrameRequest(state.session_id, frame)).image
                editor = None
            thumb = _thumbnail(image)
            path = self.images.frame(state.session_id, f"kf{frame}", thumb)
            items.append((path, keyframe_caption(frame, editor)))
        return items

    def _reference_view(self, state: StudioState, frame: int) -> tuple[Any, str]:
        """(LR vs Reference pair or None, provenance markdown) for keyframe ``frame``."""
        if frame not in state.with_reference:
            return None, "No reference yet: choose an editor and press **Make reference**."
        reference = self.client.reference(KeyframeRequest(state.session_id, frame))
        lr = self.client.frame(FrameRequest(state.session_id, frame)).image
        size = (reference.image.shape[1], reference.image.shape[0])
        pair = (
            self.images.full(state.session_id, "ref-before", upscale_for_compare(lr, size)),
            self.images.full(state.session_id, "ref-after", reference.image),
        )
        return pair, provenance_markdown(reference.provenance, reference.content_hash)


OPEN_OUTPUTS = (
    "state",
    "title",
    "scrubber",
    "frame_view",
    "frame_index",
    "timeline",
    "pin",
    "gallery",
    "edit_panel",
    "guidance",
    "preview",
    "before_after",
    "result_video",
    "download",
    "progress",
    "engine_status",
    "color_fix",
    "remembered",
    "owner",
    "render_message",
    "error",
)
"""Outputs of every handler that opens a clip (names of the layout's components)."""


# ---------------------------------------------------------------------------------------------
# Pure helpers


DOWNLOAD_LABEL = "Download"


def estimate_markdown(estimate: OutputEstimate) -> str:
    """The ``#output-estimate`` line: size, time, memory."""
    return (
        f"**Estimate** ≈ {_size_text(estimate.bytes)} · ≈ {_time_text(estimate.seconds)} · "
        f"render buffers ≈ {_size_text(estimate.memory)}"
    )


def _size_text(count: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} B"


def _time_text(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{max(1, round(seconds))} s"


def output_note(state: StudioState) -> str:
    """The line under the output panel: what the render will write."""
    width, height = state.render_size
    out = state.output
    codec = output_panel.CODEC_LABELS.get(out.codec, out.codec)
    bits = []
    if out.codec in output_panel.CRF_CODECS:
        bits.append(f"CRF {out.crf}, {out.preset}{', 10-bit' if out.ten_bit else ''}")
    bits.append("with audio" if out.audio and state.clip.has_audio else "no audio")
    return f"Renders {width}×{height} {codec} ({'; '.join(bits)})."


def result_html(name: str, current: bool) -> str:
    """The ``#progress`` panel for a finished render: done, or out of date."""
    if current:
        text, stage = f"Done · {name} is below", "done"
    else:
        text = (
            f"Out of date · {name} was rendered before the latest changes to keyframes, "
            "references or settings; render again to update it"
        )
        stage = "stale"
    return (
        f'<div class="progress" data-stage="{stage}"><div class="bar"><span style="width:'
        f'{100 if current else 0}%"></span></div><div class="progress-text">{escape(text)}'
        "</div></div>"
    )


def cancelled_note(last: RenderProgress | None) -> str:
    """What a cancelled render kept, from the last progress it reported."""
    if last is None or not (last.chunks_rendered + last.chunks_resumed):
        return "Render cancelled before its first chunk finished. Press Render to start again."
    done = last.chunks_rendered + last.chunks_resumed
    return (
        f"Render cancelled: {done} finished chunk{'s' if done != 1 else ''} "
        f"({last.frames_done} of {last.total_frames} frames) kept. Press Render to resume."
    )


def _with_owner(outputs: tuple[Any, ...], owner: str) -> tuple[Any, ...]:
    """``outputs`` (``OPEN_OUTPUTS``) with the owner secret stored whatever happened: a first
    visit whose clip failed to open must still keep the secret it was given."""
    at = OPEN_OUTPUTS.index("owner")
    return (*outputs[:at], owner, *outputs[at + 1 :])


def _name_not_path(outputs: tuple[Any, ...], paths: dict[str, str]) -> tuple[Any, ...]:
    """``outputs`` with the uploads' temporary paths in the error panel shown as file names."""
    message = outputs[-1]
    if not isinstance(message, str):
        return outputs
    for path, name in paths.items():
        if path:
            message = message.replace(escape(path), escape(name))
    return (*outputs[:-1], message)


def _require(state: StudioState | None) -> StudioState:
    if state is None:
        raise NoClip("no clip is open: upload a clip or reopen a project first")
    return state


def _frame_size(state: StudioState) -> tuple[int, int]:
    """(width, height) of a whole restored frame: the output size, else the engine's."""
    return state.render_size if min(state.render_size) > 0 else state.output_size


def _clamp(frame: float | None, state: StudioState) -> int:
    return min(max(0, round(frame or 0)), state.last_frame)


def _thumbnail(image: np.ndarray) -> np.ndarray:
    if image.shape[1] <= THUMB_WIDTH:
        return image
    step = int(np.ceil(image.shape[1] / THUMB_WIDTH))
    return np.ascontiguousarray(image[::step, ::step])


def _reference_request(
    state: StudioState,
    frame: int,
    editor: str,
    task_prompt: str,
    content_prompt: str,
    seed: float | None,
    upload: np.ndarray | None,
    pixel_scale: float,
    semantic_scale: float,
) -> ReferenceRequest:
    return ReferenceRequest(
        state.session_id,
        frame,
        editor=editor,
        task_prompt=(task_prompt or "").strip() or DEFAULT_TASK_PROMPT,
        content_prompt=(content_prompt or "").strip(),
        seed=None if seed is None or seed < 0 else int(seed),
        upload=upload if editor == "upload" else None,
        pixel_scale=float(pixel_scale),
        semantic_scale=float(semantic_scale),
    )


def pick_keyframes(state: StudioState, mode: str, every: int, seed: int) -> tuple[int, ...]:
    """Automatic keyframes for ``mode``: I-frames, ``uniform`` every ``every`` frames, or
    ``random`` (``every`` = how many, reproducible from ``seed``)."""
    if mode not in _AUTO_MODE:
        raise KeyframeError(
            f"unknown auto-pick mode {mode!r}; choose one of {', '.join(AUTO_MODES)}"
        )
    selection = KeyframeSelection(_AUTO_MODE[mode], every=every, count=every, seed=seed)
    picked = select_keyframes(selection, state.clip.num_frames, state.clip.iframes)
    if mode == "I-frames" and not picked:
        raise KeyframeError("the clip reports no I-frames; use uniform or random instead")
    return picked


def pin_label(state: StudioState, index: int) -> Any:
    text = f"Unpin frame {index}" if index in state.keyframes else f"Pin frame {index}"
    return gr.Button(value=text)


def preview_label(index: int, guidance: float, live: bool) -> str:
    kind = "live preview" if live else "full quality"
    return f"Restored frame {index} · guidance {guidance:.2f} · {kind}"


def editor_choices(
    status: WorkerStatus, only: tuple[str, ...] = ()
) -> tuple[list[tuple[str, str]], str]:
    """Dropdown choices ``(label, value)`` and a note on the editors that cannot run here."""
    reasons = dict(editor_reasons(status))
    names = [n for n in status.editors if not only or n in only] or list(status.editors)
    choices = []
    notes = []
    for name in names:
        reason = reasons.get(name, "")
        choices.append((f"{name} (unavailable)" if reason else name, name))
        if reason:
            notes.append(f"- **{name}** cannot run here: {escape(reason)}")
    return choices, "\n".join(notes)


def editor_reasons(status: WorkerStatus) -> tuple[tuple[str, str], ...]:
    """(editor, why it cannot run) for the editors the worker reports unavailable."""
    return tuple(
        (entry.name, entry.reason) for entry in getattr(status, "editor_status", ()) if entry.reason
    )


def engine_status_markdown(status: WorkerStatus) -> str:
    engine = status.engine
    cache = (
        f"{engine.cache_entries} entries, {engine.cache_bytes / 2**20:.1f} MiB"
        if engine.cache_entries
        else "empty"
    )
    parts = [
        f"**Engine** `{engine.name}`",
        f"**device** `{engine.device}`",
        f"**model** {escape(engine.model or '-')}",
        f"**cache** {cache}",
    ]
    if status.renders_running:
        parts.append(f"**renders running** {status.renders_running}")
    return " · ".join(parts)


def provenance_markdown(provenance: Any, content_hash: str) -> str:
    bits = [f"**{escape(provenance.editor)}**"]
    if provenance.model:
        bits.append(f"model `{escape(provenance.model)}`")
    if provenance.seed is not None:
        bits.append(f"seed {provenance.seed}")
    if provenance.created:
        bits.append(escape(provenance.created))
    bits.append(f"hash `{content_hash[:12]}`")
    text = " · ".join(bits)
    if provenance.content_prompt:
        text += f"\n\ncontent prompt: {escape(provenance.content_prompt)}"
    for note in provenance.notes:
        text += f"\n\n_{escape(note)}_"
    fit = getattr(provenance, "fit", None)  # how well it fits its frame (references.fit)
    if fit is not None:
        text += (
            f"\n\n**fit: {escape(fit.verdict)}** · {fit.psnr:.1f} dB against the frame · "
            f"weight {fit.weight:.2f} — {escape(fit.message)}"
        )
    return text


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
