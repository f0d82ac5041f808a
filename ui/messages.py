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


def error_html(error: BaseException, action: str = "", *, work_at_stake: bool = False) -> str:
    """The ``#error`` panel for ``error`` raised while doing ``action`` (e.g. "pinning frame 3").

    ``work_at_stake``: the action could have cost the user work (a render, a reference): the
    panel then says that what is saved was kept. The panel stays until dismissed (its close
    button) or replaced by the next action's result.
    """
    if isinstance(error, SparkVSRError):
        message = str(error) or type(error).__name__
    else:
        # A bug, not a user mistake: say what failed in one line, keep the traceback in the log.
        log.error("studio callback failed while %s", action or "working", exc_info=error)
        message = f"an unexpected {type(error).__name__} occurred: {error}"
    lines = [f'<p class="err-msg">{escape(message)}</p>']
    if isinstance(error, KeyframeError) and "apart" in message:
        lines.append(f'<p class="err-why">{escape(KEYFRAME_RULE)}</p>')
    if work_at_stake and not isinstance(error, Cancelled):
        lines.append(f'<p class="err-safe">{escape(SAFE_NOTE)}</p>')
    where = f" while {escape(action)}" if action else ""
    return (
        f'<div class="err-box" role="alert">{CLOSE_BUTTON}<strong>'
        f"{escape(error_title(error))}</strong>"
        f'<span class="err-where">{where}</span>{"".join(lines)}</div>'
    )


def notice_html(text: str) -> str:
    """A non-error note in the same panel (e.g. "render cancelled, 2 chunks kept")."""
    return f'<div class="note-box" role="status">{CLOSE_BUTTON}{escape(text)}</div>'


CLOSE_BUTTON = '<button class="msg-close" type="button" aria-label="Dismiss">×</button>'
"""Every message box has one; the page's script removes the box it sits in."""

PLAIN_UPSCALE_NO_REFERENCES = (
    "No pinned keyframe has a reference: this will look like a plain upscale. Pin keyframes "
    "and make their references for real detail."
)
PLAIN_UPSCALE_CLASSIC = (
    "Every reference is a classic upscale: this will look like a plain upscale. Make "
    "references with nano-banana-pro, pisa-sr or your own image for real detail."
)


def render_hint(used_editors: tuple[str, ...]) -> str:
    """What to expect from a render whose References come from ``used_editors`` ("" = fine)."""
    if not used_editors:
        return PLAIN_UPSCALE_NO_REFERENCES
    if all(editor == "classic" for editor in used_editors):
        return PLAIN_UPSCALE_CLASSIC
    return ""


DISMISS_JS = """
() => {
  if (window.__sparkvsrDismiss) return;
  window.__sparkvsrDismiss = true;
  document.addEventListener("click", (event) => {
    const close = event.target && event.target.closest && event.target.closest(".msg-close");
    if (!close) return;
    const box = close.closest(".err-box, .note-box");
    if (box) box.remove();
  });
}
"""
"""Page script: a message box's close button removes that box (nothing else changes)."""
