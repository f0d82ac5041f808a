"""Keyframes and their references: pin / unpin, auto-pick, the keyframe gallery and the edit
panel (editor choice, making one or all references, the reference and its provenance).
"""

from dataclasses import replace
from html import escape
from typing import Any

import gradio as gr
import numpy as np

from sparkvsr.errors import KeyframeError
from sparkvsr.keyframes import KeyframeSelection, select_keyframes
from sparkvsr.references.base import DEFAULT_TASK_PROMPT
from sparkvsr.worker import (
    FileRequest,
    FrameRequest,
    KeyframeRequest,
    ReferenceRequest,
    StatusRequest,
    WorkerStatus,
)
from ui.callbacks.base import (
    StudioBase,
    _clamp,
    _failed,
    _require,
    _skip,
)
from ui.fit import fit_html, no_reference_html
from ui.images import upscale_for_compare
from ui.messages import error_html
from ui.state import StudioState
from ui.timeline import frame_label, keyframe_caption

# UI labels of the auto-pick modes -> sparkvsr.keyframes modes.
_AUTO_MODE = {"I-frames": "iframes", "uniform": "uniform", "random": "random"}
AUTO_MODES = tuple(_AUTO_MODE)
THUMB_WIDTH = 320
REFERENCE_VIEW = ("reference_compare", "provenance", "reference_fit", "registration", "viewer_fit")
"""Outputs showing a keyframe's Reference (names of the layout's components), in order."""


class KeyframeHandlers(StudioBase):
    """Pinning keyframes and making their references."""

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
        Outputs: state, edit panel, panel title, ``REFERENCE_VIEW``, scrubber, frame view,
        frame index, timeline, pin button, upload box, error. The upload box is
        emptied: an image dropped for one keyframe never becomes another one's reference."""
        try:
            state = _require(state)
            index = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
            frame = state.keyframes[int(index)]
            state = state.select(frame)
            view = self._reference_view(state, frame)
            path = self._frame_path(state, frame)
        except Exception as e:
            return _failed(14, e, "opening the keyframe")
        return (
            state,
            gr.Column(visible=True),
            f"### Keyframe {frame}",
            *view,
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
        Outputs: state, ``REFERENCE_VIEW``, gallery, timeline, error."""
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
            view = self._reference_view(state, frame)
            gallery = self._gallery(state)
        except Exception as e:
            return _failed(8, e, f"making a reference with {editor}", work_at_stake=True)
        return (state, *view, gallery, self._timeline(state, frame), "")

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
            return _failed(8, e, "making references")
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
            view = (
                self._reference_view(state, shown)
                if state.selected is not None
                else _skip(len(REFERENCE_VIEW))
            )
            gallery = self._gallery(state)
        except Exception as e:
            return (state, *_skip(7), error_html(e, "showing the references"))
        return (state, *view, gallery, self._timeline(state, shown), error)

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

    def _reference_view(self, state: StudioState, frame: int) -> tuple[Any, ...]:
        """What the page shows of keyframe ``frame``'s Reference (``REFERENCE_VIEW``): the input
        vs Reference slider, the provenance, the fit (badge, numbers, warning) for the edit
        panel, the registration's before/after (the editor's image vs the registered one) and
        the fit again for the viewer's Reference tab."""
        if frame not in state.with_reference:
            with self._tabs_lock:  # the tab no longer shows any keyframe's Reference
                self._reference_shown.pop(state.session_id, None)
            missing = "No reference yet: choose an editor and press **Make reference**."
            return None, missing, "", None, no_reference_html(frame)
        reference = self.client.reference(KeyframeRequest(state.session_id, frame))
        lr = self.client.frame(FrameRequest(state.session_id, frame)).image
        size = (reference.image.shape[1], reference.image.shape[0])
        after = self.images.full(state.session_id, "ref-after", reference.image)
        pair = (
            self.images.full(state.session_id, "ref-before", upscale_for_compare(lr, size)),
            after,
        )
        fit = fit_html(getattr(reference.provenance, "fit", None), frame)
        with self._tabs_lock:
            self._reference_shown[state.session_id] = frame
        return (
            pair,
            provenance_markdown(reference.provenance, reference.content_hash),
            fit,
            self._registration(state, reference, after),
            fit,
        )

    def _registration(self, state: StudioState, reference: Any, registered: str) -> Any:
        """The before/after of a Reference's registration: the editor's image (a project file,
        kept when registration moved it) vs the registered one the engines use."""
        raw_file = getattr(reference, "raw_file", "")
        if raw_file:
            raw = self.client.get_file(FileRequest(state.session_id, raw_file)).local_path
            label = f"Keyframe {reference.frame}: the editor's image vs registered (used)"
        else:
            raw = registered
            label = f"Keyframe {reference.frame}: registration left the editor's image as it was"
        return gr.ImageSlider(value=(raw, registered), label=label)

    def reference_in_viewer(self, state: StudioState | None, frame: float) -> tuple[Any, ...]:
        """The viewer's Reference tab after the playhead moved: the Reference of the keyframe
        under the playhead, when the tab is shown and it is not the one already there.
        Outputs: registration slider, viewer fit."""
        if state is None or self.viewers.get(state.session_id).mode != "reference":
            return _skip(2)
        return self._reference_tab(state, _clamp(frame, state), force=False)

    def show_reference_tab(self, state: StudioState | None, frame: float) -> tuple[Any, ...]:
        """The viewer's Reference tab was opened: the Reference of the keyframe under the
        playhead, else of the keyframe selected in the gallery. Outputs: registration slider,
        viewer fit."""
        if state is None:
            return _skip(2)
        self.viewers.update(state.session_id, mode="reference")
        return self._reference_tab(state, _clamp(frame, state), force=True)

    def _reference_tab(self, state: StudioState, frame: int, force: bool) -> tuple[Any, ...]:
        key = frame if frame in state.with_reference else None
        if key is None and force:
            key = state.selected if state.selected in state.with_reference else None
        with self._tabs_lock:
            shown = self._reference_shown.get(state.session_id)
        if key is None:
            return (None, no_reference_html(frame)) if force else _skip(2)
        if key == shown and not force:
            return _skip(2)
        try:
            view = self._reference_view(state, key)
        except Exception as e:  # the tab is a view: say why in it, never an error panel
            return None, f'<div class="fit-warning" role="alert">{escape(str(e))}</div>'
        return view[3], view[4]


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
