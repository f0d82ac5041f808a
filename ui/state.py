"""What the studio remembers for one browser session.

A ``StudioState`` lives in a ``gr.State``: one per browser tab, never shared. It names the
worker session (the worker holds the real project) and mirrors what the page shows about the
clip and its keyframes, so callbacks can answer without asking the worker again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sparkvsr.project import ClipSummary
from sparkvsr.worker import KeyframesResponse, SessionInfo


@dataclass(frozen=True)
class StudioState:
    """One browser session's view of its worker session.

    session_id:     the worker session (unguessable; the key to the project).
    project:        the project's name on the worker (reopen it later by this name).
    clip:           the clip as probed by the worker (frame count, fps, size, I-frames).
    keyframes:      pinned frames, sorted; ``with_reference``: those that have a Reference.
    output_size:    (width, height) of restored frames and References.
    selected:       the keyframe open in the edit panel, or None.
    """

    session_id: str
    project: str
    clip: ClipSummary
    keyframes: tuple[int, ...] = ()
    with_reference: tuple[int, ...] = ()
    output_size: tuple[int, int] = (0, 0)
    selected: int | None = None

    @classmethod
    def from_session(cls, info: SessionInfo) -> StudioState:
        return cls(
            session_id=info.session_id,
            project=info.project,
            clip=info.clip,
            keyframes=tuple(info.keyframes),
            with_reference=tuple(r.frame for r in info.references if r.frame in info.keyframes),
            output_size=tuple(info.output_size),
        )

    @property
    def last_frame(self) -> int:
        return max(0, self.clip.num_frames - 1)

    def with_keyframes(self, response: KeyframesResponse) -> StudioState:
        """The state after the worker answered a pin/unpin: the selection stays if still pinned."""
        selected = self.selected if self.selected in response.keyframes else None
        return replace(
            self,
            keyframes=tuple(response.keyframes),
            with_reference=tuple(response.with_reference),
            selected=selected,
        )

    def with_reference_made(self, frame: int) -> StudioState:
        refs = tuple(sorted({*self.with_reference, frame}))
        return replace(self, with_reference=refs)

    def select(self, frame: int | None) -> StudioState:
        return replace(self, selected=frame)
