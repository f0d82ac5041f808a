"""Opening a clip or a project: page load (reopening this browser's last project), uploads,
relink, reopen by name, closing a tab's worker session; the header's engine line.
"""

import contextlib
import secrets
import time
from html import escape
from pathlib import Path
from typing import Any

import gradio as gr

from sparkvsr.errors import ClipMissing, MediaError, SparkVSRError
from sparkvsr.worker import (
    AccessDenied,
    OpenClipRequest,
    SessionInfo,
    SessionRequest,
    StatusRequest,
    WorkerStatus,
)
from ui.callbacks.base import (
    NoClip,
    StudioBase,
    _failed,
    _skip,
)
from ui.callbacks.keyframes import pin_label
from ui.messages import notice_html
from ui.state import StudioState
from ui.timeline import frame_label

REOPEN_WAIT_S = 5.0
"""How long a reloaded page waits for its old tab to release the project it reopens."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
"""Uploads with these suffixes are pictures: the page says where a picture belongs instead."""


class SessionHandlers(StudioBase):
    """Opening and closing: which project a tab works on."""

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
            self._reference_shown.pop(session_id, None)
            self._media_shown.pop(session_id, None)
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

    def engine_status(self, state: StudioState | None) -> str:
        """Timer tick: the engine line (engine, device, model, cache)."""
        try:
            request = StatusRequest(state.session_id if state else "")
            return engine_status_markdown(self.client.status(request))
        except Exception as e:  # the worker may be gone; say so in the status line itself
            return f"**Engine**: unavailable ({escape(str(e))})"


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
