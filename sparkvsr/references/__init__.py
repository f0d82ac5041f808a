"""Editors by name. ``EDITORS`` is the one place an editor is chosen from (module, class); an
editor's heavy dependencies load only when it is built."""

from __future__ import annotations

import importlib
from typing import Any

from sparkvsr.errors import EditorError
from sparkvsr.references.base import Editor

EDITORS: dict[str, tuple[str, str]] = {
    "nano-banana-pro": ("sparkvsr.references.nano_banana", "NanoBananaEditor"),
    "pisa-sr": ("sparkvsr.references.pisa_sr", "PisaSREditor"),
    "upload": ("sparkvsr.references.upload", "UploadEditor"),
    "classic": ("sparkvsr.references.classic", "ClassicEditor"),
}


def load_editor(name: str, **config: Any) -> Editor:
    """Build the editor called ``name`` with its own keyword configuration."""
    if name not in EDITORS:
        raise EditorError(f"unknown editor {name!r}; choose one of {', '.join(EDITORS)}")
    module_name, class_name = EDITORS[name]
    editor_class = getattr(importlib.import_module(module_name), class_name)
    return editor_class(**config)
