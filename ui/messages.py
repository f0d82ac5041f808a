"""Errors as the page shows them: a title, the library's message, and what to do next.

Library errors (``sparkvsr.errors``) already carry messages meant for the user; this module
adds a heading per kind and, for the keyframe rule, the reason the rule exists. Anything else
is a bug: the page says so in one line (no traceback) and the traceback goes to the log.
"""

from __future__ import annotations

import logging
from html import escape

from sparkvsr.errors import (
    Cancelled,
    EditorError,
    EngineError,
    KeyframeError,
    MediaError,
    ProjectError,
    SparkVSRError,
)
from sparkvsr.keyframes import MIN_GAP

log = logging.getLogger("sparkvsr.ui")

TITLES: tuple[tuple[type[SparkVSRError], str], ...] = (
    (MediaError, "This file cannot be used"),
    (KeyframeError, "Keyframe rule"),
    (EditorError, "The editor could not make a reference"),
    (EngineError, "The engine cannot run this"),
    (ProjectError, "Project"),
    (Cancelled, "Cancelled"),
)

KEYFRAME_RULE = (
    f"Keyframes must be at least {MIN_GAP} frames apart: the model stores one keyframe per "
    f"{MIN_GAP}-frame slot, so two closer keyframes would overwrite each other."
)

SAFE_NOTE = "Your keyframes and references are saved in the project; nothing was lost."


def error_title(error: BaseException) -> str:
    for kind, title in TITLES:
        if isinstance(error, kind):
            return title
    return "Something went wrong" if not isinstance(error, SparkVSRError) else "Error"


def error_html(error: BaseException, action: str = "") -> str:
    """The ``#error`` panel for ``error`` raised while doing ``action`` (e.g. "pinning frame 3")."""
    if isinstance(error, SparkVSRError):
        message = str(error) or type(error).__name__
    else:
        # A bug, not a user mistake: say what failed in one line, keep the traceback in the log.
        log.error("studio callback failed while %s", action or "working", exc_info=error)
        message = f"an unexpected {type(error).__name__} occurred: {error}"
    lines = [f'<p class="err-msg">{escape(message)}</p>']
    if isinstance(error, KeyframeError) and "apart" in message:
        lines.append(f'<p class="err-why">{escape(KEYFRAME_RULE)}</p>')
    if not isinstance(error, Cancelled):
        lines.append(f'<p class="err-safe">{escape(SAFE_NOTE)}</p>')
    where = f" while {escape(action)}" if action else ""
    return (
        f'<div class="err-box" role="alert"><strong>{escape(error_title(error))}</strong>'
        f'<span class="err-where">{where}</span>{"".join(lines)}</div>'
    )


def notice_html(text: str) -> str:
    """A non-error note in the same panel (e.g. "render cancelled, 2 chunks kept")."""
    return f'<div class="note-box" role="status">{escape(text)}</div>'
