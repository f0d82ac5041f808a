"""What the studio's buttons and sliders do. Every callback talks only to a worker client.

Each method is one event handler. Its outputs are listed in its docstring, in the order the
layout wires them; the last output is always the ``#error`` panel. On a failure a handler
returns ``gr.skip()`` for everything but the error panel, so the page keeps what it showed and
nothing the user made is touched (the worker keeps the project on disk either way).

Modules, one concept each: ``base`` (config, shared bookkeeping and helpers), ``sessions``
(opening clips and projects), ``keyframes`` (pins, auto-pick, gallery and edit panel),
``preview`` (scrubbing, guidance previews, the viewer), ``outputs`` (output panel, estimate,
the result), ``rendering`` (render jobs and their progress); ``studio`` joins them.
"""

from ui.callbacks.base import NoClip, StudioConfig
from ui.callbacks.keyframes import (
    AUTO_MODES,
    REFERENCE_VIEW,
    editor_choices,
    editor_reasons,
    pick_keyframes,
    pin_label,
    provenance_markdown,
)
from ui.callbacks.outputs import estimate_markdown, output_note, result_html
from ui.callbacks.preview import preview_label
from ui.callbacks.ranges import RANGE_TAB
from ui.callbacks.rendering import (
    DOWNLOAD_LABEL,
    STAGES,
    cancelled_note,
    clock_text,
    error_progress,
    pace_text,
    progress_html,
)
from ui.callbacks.sessions import OPEN_OUTPUTS, engine_status_markdown
from ui.callbacks.studio import Studio

__all__ = [
    "AUTO_MODES",
    "DOWNLOAD_LABEL",
    "OPEN_OUTPUTS",
    "RANGE_TAB",
    "REFERENCE_VIEW",
    "STAGES",
    "NoClip",
    "Studio",
    "StudioConfig",
    "cancelled_note",
    "clock_text",
    "editor_choices",
    "editor_reasons",
    "engine_status_markdown",
    "error_progress",
    "estimate_markdown",
    "output_note",
    "pace_text",
    "pick_keyframes",
    "pin_label",
    "preview_label",
    "progress_html",
    "provenance_markdown",
    "result_html",
]
