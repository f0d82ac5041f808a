"""The clip's proxy in the page: the filmstrip under the timeline and the player Space starts.

The worker makes both once per clip in the background (``Worker.clip_media``); a slow timer asks
until they are ready, shows them once and stops. Nothing here runs on the preview path.
"""

from typing import Any

import gradio as gr

from sparkvsr.worker import FileRequest, SessionRequest
from ui.callbacks.base import StudioBase, _skip
from ui.state import StudioState

MEDIA_POLL_S = 2.0
"""How often a page asks whether its clip's proxy is ready (the timer stops once it is)."""


class ClipMediaHandlers(StudioBase):
    """The filmstrip and the player of the open clip."""

    def clip_media(self, state: StudioState | None) -> tuple[Any, ...]:
        """Media timer tick: once the proxy is ready, show the filmstrip and load the player,
        then stop the timer. Outputs: filmstrip, player, timer."""
        if state is None:
            return _skip(3)
        session_id = state.session_id
        with self._tabs_lock:
            shown = self._media_shown.get(session_id)
        try:
            media = self.client.clip_media(SessionRequest(session_id))
            if media.state == "making":  # another clip's filmstrip must not stay meanwhile
                return (None, None, gr.skip()) if shown is None else _skip(3)
            if media.state != "ready":  # no filmstrip, no player; the studio works without
                return None, None, gr.Timer(active=False)
            if shown == media.video:
                return (*_skip(2), gr.Timer(active=False))
            strip = self.client.get_file(FileRequest(session_id, media.filmstrip)).local_path
            video = self.client.get_file(FileRequest(session_id, media.video)).local_path
        except Exception:  # the session closed, the worker went: ask again next tick
            return _skip(3)
        with self._tabs_lock:
            self._media_shown[session_id] = media.video
        return strip, video, gr.Timer(active=False)
