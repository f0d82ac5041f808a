"""References for a whole keyframe set, as batch work needs them: the user's images where given
(fitted by the ``upload`` editor), an editor's output for the other keyframes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from sparkvsr.errors import KeyframeError
from sparkvsr.frames import FrameSource
from sparkvsr.references import load_editor
from sparkvsr.references.base import EditRequest


def references_for_keyframes(
    source: FrameSource,
    keyframes: Iterable[int],
    images: Mapping[int, Path],
    editor_name: str,
    scale: int,
) -> dict[int, np.ndarray]:
    """``{keyframe: HR image [H*scale, W*scale, 3] uint8}`` for every keyframe.

    ``images`` maps keyframes to image files the user made; the rest come from ``editor_name``.
    """
    from sparkvsr.media import read_image

    keyframes = list(keyframes)
    stray = sorted(set(images) - set(keyframes))
    if stray:
        raise KeyframeError(f"--ref given for frames {stray} that are not keyframes")
    width, height = source.size
    target = (width * scale, height * scale)
    editors = {}
    references = {}
    for index in keyframes:
        lr_frame = source.read(index, index + 1)[0]
        if index in images:
            name, request = "upload", EditRequest(upload=read_image(images[index]))
        else:
            name, request = editor_name, EditRequest()
        if name not in editors:
            editors[name] = load_editor(name)
        references[index] = editors[name].make(lr_frame, target, request).image
    return references
