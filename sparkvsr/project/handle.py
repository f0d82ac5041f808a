"""The ``Project`` handle: opens or creates a project folder (holding its writer lock), reads
its state and References, and persists each change before returning; the render chunks are its
mixin in ``chunks``.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np

from sparkvsr.engines.base import RestoreOptions
from sparkvsr.errors import ClipMissing, EngineError, KeyframeError, ProjectError
from sparkvsr.keyframes import validate_keyframes
from sparkvsr.project.chunks import RenderChunks
from sparkvsr.project.files import atomic_write, decode_png, encode_png, safe_join, unlink_quietly
from sparkvsr.project.manifest import by_frame, manifest_dict, parse_manifest
from sparkvsr.project.state import (
    MANIFEST,
    REFERENCES_DIR,
    ClipSummary,
    EngineSettings,
    OutputSettings,
    ProjectState,
    ReferenceEntry,
)
from sparkvsr.project_lock import ProjectLock
from sparkvsr.references.base import Reference, image_hash


class Project(RenderChunks):
    """A project folder. Methods that change state save the manifest before they return.

    Thread-safe: a lock serialises changes, so a worker may call it from several threads.
    """

    def __init__(self, folder: Path, state: ProjectState, lock: ProjectLock | None = None):
        # Use Project.create / Project.open; this constructor trusts its arguments.
        self.folder = folder
        self._state = state
        self._lock = threading.RLock()
        self.lock = lock  # the folder's writer lock, when opened with ``lock=``

    # Opening ------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        folder: str | os.PathLike,
        clip: ClipSummary,
        *,
        engine: EngineSettings | None = None,
        options: RestoreOptions | None = None,
        output: OutputSettings | None = None,
        lock: str | None = None,
        wait: float = 0.0,
    ) -> Project:
        """Start a new project for ``clip`` in ``folder`` (created; must not hold a manifest).

        lock: hold the folder's writer lock (``sparkvsr.project_lock``) until ``close()``, naming
        this purpose ("restore (CLI)"...); wait: seconds to wait for another holder.
        """
        folder = Path(folder).absolute()
        held = ProjectLock.acquire(folder, lock, wait=wait) if lock else None
        try:
            return cls._create(folder, clip, engine, options, output, held)
        except BaseException:
            if held is not None:
                held.release()
            raise

    @classmethod
    def _create(
        cls,
        folder: Path,
        clip: ClipSummary,
        engine: EngineSettings | None,
        options: RestoreOptions | None,
        output: OutputSettings | None,
        held: ProjectLock | None,
    ) -> Project:
        if (folder / MANIFEST).exists():
            raise ProjectError(
                f"{folder} already holds a project ({MANIFEST}); open it instead of creating one"
            )
        options = options or RestoreOptions()
        state = ProjectState(
            clip=clip,
            guidance=options.guidance,
            engine=engine or EngineSettings(),
            options=replace(options, start=0, stop=None),
            output=output or OutputSettings(),
        )
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ProjectError(f"cannot create the project folder {folder}: {e}") from e
        project = cls(folder, state, held)
        project._save(state)
        return project

    @classmethod
    def open(
        cls,
        folder: str | os.PathLike,
        *,
        require_clip: bool = True,
        lock: str | None = None,
        wait: float = 0.0,
    ) -> Project:
        """Reopen a project. Raises ProjectError, touching nothing, when the manifest is missing,
        corrupt or from a newer version, or (with ``require_clip``) when the clip is gone.

        lock: hold the folder's writer lock until ``close()`` (the manifest is read under it, so
        the state is current); ProjectLocked names the holder when another one has it.
        """
        folder = Path(folder).absolute()
        if not lock:
            return cls._open(folder, require_clip, None)
        if not (folder / MANIFEST).is_file():  # no lock file in a folder that is no project
            raise ProjectError(f"{folder} is not a project: it has no {MANIFEST}")
        held = ProjectLock.acquire(folder, lock, wait=wait)
        try:
            return cls._open(folder, require_clip, held)
        except BaseException:
            held.release()
            raise

    @classmethod
    def _open(cls, folder: Path, require_clip: bool, held: ProjectLock | None) -> Project:
        manifest = folder / MANIFEST
        if not manifest.is_file():
            raise ProjectError(f"{folder} is not a project: it has no {MANIFEST}")
        try:
            text = manifest.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ProjectError(f"cannot read {manifest}: {e}") from e
        state = parse_manifest(text, manifest)
        project = cls(folder, state, held)
        if require_clip and not Path(state.clip.path).exists():
            raise ClipMissing(
                f"the clip of project {folder.name} is missing: {state.clip.path} does not "
                "exist. Move it back, or relink the project to the clip's new location (the "
                "studio offers Relink…); the project itself is intact."
            )
        return project

    @classmethod
    def is_project(cls, folder: str | os.PathLike) -> bool:
        return (Path(folder) / MANIFEST).is_file()

    def close(self) -> None:
        """Release the writer lock, if this project holds it (the folder stays as it is)."""
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Reading ------------------------------------------------------------------------------
    @property
    def state(self) -> ProjectState:
        return self._state

    @property
    def manifest_path(self) -> Path:
        return self.folder / MANIFEST

    def reference_image(self, frame: int) -> np.ndarray:
        """The saved Reference for ``frame`` as ``[H, W, 3]`` uint8 RGB (hash-checked)."""
        entry = self._state.reference(frame)
        if entry is None:
            raise KeyframeError(f"frame {frame} has no Reference in project {self.folder}")
        image = decode_png(self._read_bytes(entry.file), self.folder / entry.file)
        if image_hash(image) != entry.content_hash:
            raise ProjectError(
                f"{self.folder / entry.file} does not match its recorded hash: the file was "
                "changed outside SparkVSR. Remake the Reference for that keyframe."
            )
        return image

    def reference_images(self) -> dict[int, np.ndarray]:
        """``{frame: HR image}`` for every pinned keyframe that has a Reference."""
        return {
            r.frame: self.reference_image(r.frame)
            for r in self._state.references
            if r.frame in self._state.keyframes
        }

    def resolve(self, relative: str) -> Path:
        """The file ``relative`` inside this project folder, or ProjectError for any path that
        would leave it (absolute, ``..``, or a symlink that points outside).
        """
        return safe_join(self.folder, relative)

    # Changing -----------------------------------------------------------------------------
    def set_keyframes(self, frames: tuple[int, ...] | list[int]) -> ProjectState:
        """Replace the keyframe set (validated: inside the clip, at least 4 apart)."""
        with self._lock:
            keyframes = validate_keyframes(frames, self._state.clip.num_frames)
            return self._commit(replace(self._state, keyframes=keyframes))

    def add_keyframe(self, frame: int) -> ProjectState:
        with self._lock:
            if frame in self._state.keyframes:
                return self._state
            return self.set_keyframes((*self._state.keyframes, frame))

    def remove_keyframe(self, frame: int) -> ProjectState:
        """Unpin ``frame``. Its Reference stays on disk and comes back if it is pinned again."""
        with self._lock:
            if frame not in self._state.keyframes:
                raise KeyframeError(
                    f"frame {frame} is not a keyframe; pinned: {list(self._state.keyframes)}"
                )
            keyframes = tuple(k for k in self._state.keyframes if k != frame)
            return self._commit(replace(self._state, keyframes=keyframes))

    def set_reference(self, frame: int, reference: Reference) -> ProjectState:
        """Save ``reference`` as the Reference of keyframe ``frame`` (PNG + manifest entry)."""
        with self._lock:
            if frame not in self._state.keyframes:
                raise KeyframeError(
                    f"frame {frame} is not pinned; pin it as a keyframe before giving it a "
                    f"Reference (pinned: {list(self._state.keyframes)})"
                )
            image = np.asarray(reference.image)
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ProjectError(
                    f"reference for frame {frame} must be uint8 [H, W, 3]; got {image.dtype} "
                    f"{image.shape}"
                )
            content_hash = image_hash(image)
            # The hash in the name keeps the previous PNG valid until the manifest points away.
            relative = f"{REFERENCES_DIR}/frame_{frame:06d}_{content_hash[:12]}.png"
            (self.folder / REFERENCES_DIR).mkdir(exist_ok=True)
            atomic_write(self.folder / relative, encode_png(image))
            raw = getattr(reference, "raw", None)
            raw_relative = ""
            if raw is not None:  # the editor's image before registration (for the user to see)
                raw_relative = f"{REFERENCES_DIR}/frame_{frame:06d}_{content_hash[:12]}_raw.png"
                atomic_write(self.folder / raw_relative, encode_png(np.asarray(raw)))
            entry = ReferenceEntry(
                frame, relative, content_hash, reference.provenance, raw_file=raw_relative
            )
            others = tuple(r for r in self._state.references if r.frame != frame)
            old = self._state.reference(frame)
            state = self._commit(
                replace(self._state, references=tuple(sorted((*others, entry), key=by_frame)))
            )
            if old is not None and old.file != relative:
                unlink_quietly(self.folder / old.file)
            if old is not None and old.raw_file and old.raw_file != raw_relative:
                unlink_quietly(self.folder / old.raw_file)
            return state

    def set_guidance(self, guidance: float) -> ProjectState:
        with self._lock:
            try:
                options = replace(self._state.options, guidance=float(guidance))
            except EngineError as e:
                raise ProjectError(str(e)) from e
            return self._commit(replace(self._state, guidance=float(guidance), options=options))

    def set_options(self, options: RestoreOptions) -> ProjectState:
        """Engine options (chunking, tiling, colour fix...); guidance stays the project's."""
        with self._lock:
            options = replace(options, guidance=self._state.guidance, start=0, stop=None)
            return self._commit(replace(self._state, options=options))

    def set_engine(self, engine: EngineSettings) -> ProjectState:
        with self._lock:
            return self._commit(replace(self._state, engine=engine))

    def set_output(self, output: OutputSettings) -> ProjectState:
        with self._lock:
            return self._commit(replace(self._state, output=output))

    def relink_clip(self, clip: ClipSummary) -> ProjectState:
        """Point the project at a moved clip. It must have the same frame count and size."""
        with self._lock:
            old = self._state.clip
            if (clip.num_frames, clip.width, clip.height) != (
                old.num_frames,
                old.width,
                old.height,
            ):
                raise ProjectError(
                    f"{clip.path} has {clip.num_frames} frames of {clip.width}x{clip.height}, but "
                    f"the project's clip had {old.num_frames} of {old.width}x{old.height}; open it "
                    "as a new project instead"
                )
            return self._commit(replace(self._state, clip=clip))

    def moved_from(self, old_folder: str | os.PathLike) -> ProjectState:
        """After the folder was renamed or copied from ``old_folder``: the finished render's
        and range render's output paths follow it (other paths in the manifest are relative)."""
        with self._lock:
            old = Path(old_folder).absolute()
            moved = {}
            for name in ("render", "range_render"):
                record = getattr(self._state, name)
                if record is None or not record.output:
                    continue
                if Path(record.output).is_relative_to(old):
                    output = str(self.folder / Path(record.output).relative_to(old))
                    moved[name] = replace(record, output=output)
            if not moved:
                return self._state
            return self._commit(replace(self._state, **moved))

    def forget_chunks(self) -> ProjectState:
        """Drop the finished chunks from the manifest (their files may then be deleted); a
        complete render keeps its output and stays complete. The next render of other settings
        starts at frame 0; the same settings with its output present are still done."""
        with self._lock:
            render, ranged = self._state.render, self._state.range_render
            if render is not None and render.chunks:
                render = replace(render, chunks=()) if render.complete else None
            if ranged is not None and ranged.chunks:
                ranged = replace(ranged, chunks=()) if ranged.complete else None
            if (render, ranged) == (self._state.render, self._state.range_render):
                return self._state
            return self._commit(replace(self._state, render=render, range_render=ranged))

    # Internals ----------------------------------------------------------------------------

    def _commit(self, state: ProjectState) -> ProjectState:
        """Persist ``state``, then adopt it: a failed save leaves the old state in place."""
        self._save(state)
        self._state = state
        return state

    def _save(self, state: ProjectState) -> None:
        text = json.dumps(manifest_dict(state), indent=2, sort_keys=False) + "\n"
        if self.lock is not None and self.lock.held:
            atomic_write(self.manifest_path, text.encode("utf-8"), what="the project manifest")
            return
        # Opened without the lock: write only while no one else holds it (one writer).
        with ProjectLock.acquire(self.folder, "a save"):
            atomic_write(self.manifest_path, text.encode("utf-8"), what="the project manifest")

    def _read_bytes(self, relative: str) -> bytes:
        path = self.resolve(relative)
        try:
            return path.read_bytes()
        except OSError as e:
            raise ProjectError(f"cannot read {path}: {e}") from e
