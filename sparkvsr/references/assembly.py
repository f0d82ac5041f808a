"""References for a whole keyframe set, as batch work needs them: the user's images where given
(fitted by the ``upload`` editor), an editor's output for the other keyframes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from sparkvsr.errors import EditorError, KeyframeError
from sparkvsr.frames import FrameSource
from sparkvsr.references import load_editor
from sparkvsr.references.base import Editor, EditRequest, Reference


def references_for_keyframes(
    source: FrameSource,
    keyframes: Iterable[int],
    images: Mapping[int, Path],
    editor_name: str,
    scale: int,
    request: EditRequest = EditRequest(),  # noqa: B008 - frozen, shared safely
) -> dict[int, Reference]:
    """``{keyframe: Reference}`` with images ``[H*scale, W*scale, 3]`` uint8 and the editor's
    provenance, for every keyframe.

    ``images`` maps keyframes to image files the user made; the rest come from ``editor_name``
    with ``request``. An editor that cannot run here is refused before any work, with the reason.
    """
    from sparkvsr.media import read_image

    keyframes = list(keyframes)
    stray = sorted(set(images) - set(keyframes))
    if stray:
        raise KeyframeError(f"--ref given for frames {stray} that are not keyframes")
    width, height = source.size
    target = (width * scale, height * scale)
    editors: dict[str, Editor] = {}
    references = {}
    for index in keyframes:
        if index in images:
            name, edit = "upload", EditRequest(upload=read_image(images[index]))
        else:
            name, edit = editor_name, request
        if name not in editors:
            editors[name] = _ready_editor(name)
        lr_frame = source.read(index, index + 1)[0]
        references[index] = editors[name].make(lr_frame, target, edit)
    return references


def _ready_editor(name: str) -> Editor:
    editor = load_editor(name)
    reason = editor.availability()
    if reason is not None:
        raise EditorError(f"editor {name!r} cannot run here: {reason}")
    return editor
