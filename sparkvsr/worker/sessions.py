"""What the worker holds per open session, and the small rules about sessions and projects."""

from __future__ import annotations

import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sparkvsr import media
from sparkvsr.errors import KeyframeError, ProjectError
from sparkvsr.project import Project, ProjectState
from sparkvsr.worker.jobs import RenderJob
from sparkvsr.worker.previews import PreviewSlot
from sparkvsr.worker.requests import KeyframesResponse, PreviewRequest

PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(eq=False)
class OpenProject:
    """A project open in this worker: its Project (holding the folder's writer lock, so no
    other process writes it), its Reference images, and its render job. Kept while a session
    has it open or its render runs; released (lock and memory) when neither is left.
    """

    name: str
    project: Project
    references: dict[int, np.ndarray]
    sessions: set[str] = field(default_factory=set)
    job: RenderJob | None = None  # the running render, or the last one
    lock: threading.Lock = field(default_factory=threading.Lock)  # references and job

    @property
    def rendering(self) -> bool:
        return self.job is not None and self.job.running


@dataclass(eq=False)
class Session:
    """What the worker holds for one open session (mutable)."""

    id: str
    shared: OpenProject
    scrub_clip: media.Clip  # read by request threads, under ``lock``
    engine_clip: media.Clip  # read only on the engine thread (which also closes it)
    lock: threading.Lock = field(default_factory=threading.Lock)
    preview: PreviewSlot | None = None
    last_preview: float = float("-inf")
    # the neighbours of the last computed preview, made while the engine is idle (stepping
    # through frames then finds the next one ready)
    warm: list[PreviewRequest] = field(default_factory=list)
    last_used: float = field(default_factory=time.monotonic)
    closed: bool = False

    @property
    def name(self) -> str:
        return self.shared.name

    @property
    def project(self) -> Project:
        return self.shared.project

    @property
    def references(self) -> dict[int, np.ndarray]:
        return self.shared.references


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
