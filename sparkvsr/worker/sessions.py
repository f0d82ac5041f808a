"""What the worker holds per open session, and the small rules about sessions and projects."""

from __future__ import annotations

import re
import secrets
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sparkvsr import media
from sparkvsr.errors import KeyframeError, ProjectError
from sparkvsr.project import Project, ProjectState
from sparkvsr.render import RenderProgress
from sparkvsr.worker.jobs import RenderJob
from sparkvsr.worker.requests import KeyframesResponse, PreviewRequest

PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(eq=False)
class PreviewSlot:
    """The one queued preview of a session and everyone waiting for it."""

    request: PreviewRequest
    waiters: list[tuple[Future, PreviewRequest]]


@dataclass(eq=False)
class Session:
    """What the worker holds for one open session (mutable; guarded by ``lock``)."""

    id: str
    name: str
    project: Project
    scrub_clip: media.Clip  # read by request threads, under ``lock``
    engine_clip: media.Clip  # read only on the engine thread
    references: dict[int, np.ndarray]
    lock: threading.Lock = field(default_factory=threading.Lock)
    preview: PreviewSlot | None = None
    last_preview: float = float("-inf")
    render: RenderJob | None = None
    last_render: RenderProgress | None = None  # the last progress of the last render


def new_project_name(clip_path: str) -> str:
    if not clip_path:
        raise ProjectError("give a clip path or the name of an existing project")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(clip_path).stem).strip("-.") or "clip"
    return f"{stem[:60]}-{secrets.token_hex(4)}"


def check_index(index: int, session: Session) -> int:
    total = session.project.state.clip.num_frames
    if not 0 <= index < total:
        raise KeyframeError(f"frame {index} is outside the clip: valid frames are 0 to {total - 1}")
    return index


def keyframes_response(state: ProjectState) -> KeyframesResponse:
    with_reference = tuple(k for k in state.keyframes if state.reference(k) is not None)
    return KeyframesResponse(state.keyframes, with_reference)


def output_size(state: ProjectState) -> tuple[int, int]:
    """(width, height) References are made at: the engine's scale times the LR size."""
    scale = state.options.scale
    return state.clip.width * scale, state.clip.height * scale
