"""The projects panel: this browser's projects as a table, and what the panel's buttons do.

Pure helpers (rows of the table, sizes, times) and ``ProjectsPanel``, whose handlers talk only
to the worker client. A project open in a tab is refused by the worker for rename, duplicate,
delete and clearing its caches: the tab must open another project first.
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
from PIL import Image

from sparkvsr.errors import SparkVSRError
from sparkvsr.worker import (
    ProjectActionRequest,
    ProjectsRequest,
    WorkerClient,
)
from sparkvsr.workspace import ProjectSummary
from ui.messages import error_html, notice_html
from ui.state import StudioState

COLUMNS = ["Project", "Clip", "Frames", "Keyframes", "Changed", "Disk", "Caches", "Renders"]
ACTIONS = {
    "rename": "renamed",
    "duplicate": "duplicated",
    "delete": "deleted",
    "clear_caches": "cleared of caches",
}


def size_text(count: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} B"


def changed_text(seconds: float, now: float | None = None) -> str:
    """``3 min ago`` / ``2 h ago`` / the date, from a Unix time."""
    age = (now if now is not None else time.time()) - seconds
    if age < 60:
        return "just now"
    if age < 3600:
        return f"{age // 60:.0f} min ago"
    if age < 86400:
        return f"{age // 3600:.0f} h ago"
    return time.strftime("%Y-%m-%d", time.localtime(seconds))


def rows(projects: tuple[ProjectSummary, ...], now: float | None = None) -> list[list[Any]]:
    """The table's rows (``COLUMNS``), one per project."""
    return [
        [
            p.name,
            p.clip_name + (" (missing: relink)" if p.clip_missing else ""),
            p.num_frames,
            p.keyframes,
            changed_text(p.changed, now),
            size_text(p.disk_bytes),
            size_text(p.cache_bytes),
            ", ".join(p.outputs) or "-",
        ]
        for p in projects
    ]


def gallery(projects: tuple[ProjectSummary, ...]) -> list[tuple[np.ndarray, str]]:
    """The panel's pictures: (a frame of the clip ``[H, W, 3]`` uint8, the project name) for each
    project whose thumbnail exists (it is made with the clip's proxy, in the background)."""
    items = []
    for p in projects:
        if not p.thumbnail:
            continue
        try:
            with Image.open(io.BytesIO(p.thumbnail)) as image:
                items.append((np.asarray(image.convert("RGB")), p.name))
        except OSError:
            continue  # a damaged thumbnail is left out; the table still lists the project
    return items


def gallery_name(value: Any) -> str:
    """The project name of a clicked picture (Gradio's select value: a dict with its caption)."""
    if isinstance(value, dict):
        return str(value.get("caption") or "")
    return ""


class PanelError(SparkVSRError):
    """A projects-panel action the page refuses before asking the worker."""


class ProjectsPanel:
    """Handlers of the projects panel (one per page, shared by its browser sessions)."""

    def __init__(self, client: WorkerClient):
        self.client = client

    def refresh(self, owner: str | None) -> tuple[Any, Any]:
        """``#projects-refresh`` (and opening the panel). Outputs: the table, the pictures."""
        try:
            listed = self.client.projects(ProjectsRequest(owner or "")).projects
        except Exception as e:
            return [[f"cannot list projects: {e}", "", 0, 0, "", "", "", ""]], []
        return rows(listed), gallery(listed)

    def act(
        self, action: str, state: StudioState | None, name: str, new_name: str, owner: str | None
    ) -> tuple[Any, Any, str]:
        """Rename / duplicate / delete / clear caches of project ``name``.
        Outputs: the table, the pictures, the panel's message."""
        name, new_name = (name or "").strip(), (new_name or "").strip()
        try:
            if not name:
                raise PanelError("choose a project in the table first")
            if action in ("rename", "duplicate") and not new_name:
                raise PanelError(f"type the new name to {action} {name} to")
            if state is not None and state.project == name and action != "duplicate":
                raise PanelError(
                    f"{name} is open in this tab: open another project first, then "
                    f"{action.replace('_', ' ')} it"
                )
            request = ProjectActionRequest(name, action, new_name, owner or "")
            response = self.client.project_action(request)
        except Exception as e:
            return *self.refresh(owner), error_html(e, f"{action.replace('_', ' ')} {name}")
        done = f"{name} {ACTIONS[action]}"
        if response.project and response.project != name:
            done += f" as {response.project}"
        if response.freed:
            done += f"; {size_text(response.freed)} freed"
        return *self.refresh(owner), notice_html(done)


def selected_name(table: Any, index: Any) -> str:
    """The project name of the table row at ``index`` (a (row, column) pair)."""
    row = index[0] if isinstance(index, list | tuple) else index
    try:
        values = table.values.tolist() if hasattr(table, "values") else table
        return str(values[int(row)][0])
    except (IndexError, TypeError, ValueError):
        return ""
