"""SparkVSR Studio: the Gradio page over a worker client.

``build_studio(client, config)`` returns the page (a ``Studio``: blocks + what ``launch`` needs);
``Studio.launch(...)`` serves it. The UI never touches engines, editors or project files itself:
every action is a call on the worker client (in-process or HTTP).

Modules: ``layout`` (components), ``wiring`` (which event runs which handler), ``callbacks``
(event handlers, a package split by concept), ``state`` (the per-browser-session dataclass),
``timeline`` (timeline strip and frame label), ``fit`` (a Reference's fit in words), ``images``
(images the page shows), ``messages`` (readable errors), ``keyboard`` (arrow-key scrubbing),
``viewer`` (viewer size, zoom and pan: previews at the size they are seen), ``shortcuts``
(typed numbers, timeline clicks and keys move the same sliders; the help popover).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from sparkvsr.worker import WorkerClient
from ui.callbacks import Studio, StudioConfig
from ui.images import ViewImages
from ui.keyboard import SCRUB_KEYS_JS
from ui.layout import build_blocks
from ui.messages import DISMISS_JS
from ui.shortcuts import SHORTCUTS_JS
from ui.viewer import VIEWER_SIZE_JS

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CSS_FILE = ASSETS / "studio.css"
LOGO_FILE = ASSETS / "logo.svg"

__all__ = ["StudioApp", "StudioConfig", "build_studio"]


@dataclass
class StudioApp:
    """A built studio page and what serving it needs (Gradio 6: css/js/theme go to launch)."""

    blocks: gr.Blocks
    studio: Studio
    allowed_paths: tuple[str, ...]

    def launch(self, **kwargs: Any) -> Any:
        """``Blocks.launch`` with the studio's css, keyboard script, theme and allowed paths.

        Keyword arguments go to Gradio (``server_name``, ``server_port``, ``share``,
        ``prevent_thread_lock``...); ``allowed_paths`` given here are added to the studio's.
        """
        allowed = [*self.allowed_paths, *kwargs.pop("allowed_paths", [])]
        return self.blocks.queue(default_concurrency_limit=None).launch(
            css=CSS_FILE.read_text() if CSS_FILE.exists() else None,
            js=(
                f"() => {{ ({SCRUB_KEYS_JS})(); ({DISMISS_JS})(); ({VIEWER_SIZE_JS})(); "
                f"({SHORTCUTS_JS})(); }}"
            ),
            theme=gr.themes.Soft(primary_hue="orange", neutral_hue="slate"),
            allowed_paths=allowed,
            footer_links=[],
            **kwargs,
        )

    def close(self) -> None:
        """Stop serving and remove the page's image folder (the projects stay)."""
        self.blocks.close()
        shutil.rmtree(self.studio.images.folder, ignore_errors=True)


def build_studio(
    client: WorkerClient,
    config: StudioConfig | None = None,
    *,
    allowed_paths: tuple[str | Path, ...] = (),
    images_folder: str | Path | None = None,
) -> StudioApp:
    """The studio page over ``client``. ``allowed_paths``: folders whose files the page may
    serve (the worker's projects folder, for an in-process worker; an HTTP client downloads
    into a temp folder, which Gradio allows).
    """
    images = ViewImages(images_folder)
    studio = Studio(client, config or StudioConfig(), images)
    logo = LOGO_FILE.read_text() if LOGO_FILE.exists() else ""
    blocks = build_blocks(studio, logo_svg=logo)
    allowed = (str(images.folder), *(str(Path(p).absolute()) for p in allowed_paths))
    return StudioApp(blocks, studio, allowed)
