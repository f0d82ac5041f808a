"""The studio's event handlers as one object: each group of handlers is a concept of its own
module, and ``Studio`` puts them together over the shared ``StudioBase``."""

from ui.callbacks.clip_media import ClipMediaHandlers
from ui.callbacks.keyframes import KeyframeHandlers
from ui.callbacks.outputs import OutputHandlers
from ui.callbacks.preview import PreviewHandlers
from ui.callbacks.ranges import RangeHandlers
from ui.callbacks.rendering import RenderHandlers
from ui.callbacks.sessions import SessionHandlers


class Studio(
    SessionHandlers,
    KeyframeHandlers,
    PreviewHandlers,
    OutputHandlers,
    RenderHandlers,
    RangeHandlers,
    ClipMediaHandlers,
):
    """The event handlers of one studio page (shared by all browser sessions; per-session data
    lives in each session's ``StudioState``). ``ui.layout`` wires them to the components."""
