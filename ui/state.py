"""What the studio remembers for one browser session.

A ``StudioState`` lives in a ``gr.State``: one per browser tab, never shared. It names the
worker session (the worker holds the real project) and mirrors what the page shows about the
clip and its keyframes, so callbacks can answer without asking the worker again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sparkvsr.project import ClipSummary, OutputSettings
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
    editors:        (keyframe, editor) of each saved Reference (the render hint reads them).
    render_size:    (width, height) of the rendered clip (the output panel's scale).
    output:         how the rendered clip is encoded (codec, quality, audio).
    owner:          this browser's owner secret (kept in its storage; the worker checks it).
    in_point / out_point: the timeline's in and out marks (frames, both included), or None;
                    a reopened project starts with those of its last range render.
    """

    session_id: str
    project: str
    clip: ClipSummary
    keyframes: tuple[int, ...] = ()
    with_reference: tuple[int, ...] = ()
    output_size: tuple[int, int] = (0, 0)
    selected: int | None = None
    editors: tuple[tuple[int, str], ...] = ()
    owner: str = ""
    render_size: tuple[int, int] = (0, 0)
    output: OutputSettings = field(default_factory=OutputSettings)
    in_point: int | None = None
    out_point: int | None = None

    @classmethod
    def from_session(cls, info: SessionInfo, owner: str = "") -> StudioState:
        return cls(
            session_id=info.session_id,
            project=info.project,
            clip=info.clip,
            keyframes=tuple(info.keyframes),
            with_reference=tuple(r.frame for r in info.references if r.frame in info.keyframes),
            output_size=tuple(info.output_size),
            editors=tuple((r.frame, r.provenance.editor) for r in info.references),
            owner=owner,
            render_size=tuple(info.options.output_size or info.output_size),
            output=info.output,
            in_point=info.range_frames[0] if info.range_frames else None,
            out_point=info.range_frames[1] - 1 if info.range_frames else None,
        )

    def with_settings(self, info: SessionInfo) -> StudioState:
        """The state after the worker answered a settings change."""
        size = tuple(info.options.output_size or info.output_size)
        return replace(self, render_size=size, output=info.output)

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

    def with_reference_made(self, frame: int, editor: str = "") -> StudioState:
        refs = tuple(sorted({*self.with_reference, frame}))
        editors = tuple(sorted({**dict(self.editors), frame: editor}.items()))
        return replace(self, with_reference=refs, editors=editors)

    def used_editors(self) -> tuple[str, ...]:
        """The editors of the References a render would use (pinned keyframes only)."""
        made = dict(self.editors)
        return tuple(made.get(k, "") for k in self.keyframes if k in self.with_reference)

    def with_marks(self, in_point: int | None, out_point: int | None) -> StudioState:
        return replace(self, in_point=in_point, out_point=out_point)

    def select(self, frame: int | None) -> StudioState:
        return replace(self, selected=frame)
