"""Engines by name. ``ENGINES`` is the one place an engine is chosen from.

Entries name the module and class so that importing this package stays cheap: ``dit`` pulls in
torch and diffusers only when it is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

from sparkvsr.engines.base import Engine
from sparkvsr.errors import EngineError

ENGINES: dict[str, tuple[str, str]] = {
    "flow": ("sparkvsr.engines.flow", "FlowEngine"),
    "dit": ("sparkvsr.engines.dit", "DitEngine"),
}


def load_engine(name: str, **config: Any) -> Engine:
    """Build the engine called ``name`` with its own keyword configuration."""
    if name not in ENGINES:
        raise EngineError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    module_name, class_name = ENGINES[name]
    engine_class = getattr(importlib.import_module(module_name), class_name)
    return engine_class(**config)
