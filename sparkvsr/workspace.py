"""The projects folder as a whole: the media its projects own, which projects exist, who owns them.

Layout of a projects root::

    _media/<sha256[:24]>/<name>    uploaded clips, content-addressed (one copy per content, kept
                                   for as long as a project names it)
    <project>/                     one folder per project (see ``sparkvsr.project``)
    <project>/owner                sha256 of the owner secret of the browser that made it

A clip sent through the studio is stored here before its project is created, so a project never
points into a browser upload's temporary folder: it reopens after a restart, a week later.
Names starting with ``_`` or ``.`` are not projects (the name rule in the worker forbids them).

Ownership: a project made by the studio records the hash of its browser's owner secret (kept in
that browser's storage); only a caller presenting the same secret may open it. Projects made
without a secret (the CLI, ``app.py --project``) have no owner file and open for anyone who can
reach the worker (the worker's token guards those callers).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sparkvsr.errors import ProjectError
from sparkvsr.media.proxy import clip_thumbnail
from sparkvsr.project import (
    CHUNK_LOG,
    CHUNKS_DIR,
    MANIFEST,
    Project,
    ProjectState,
    atomic_write,
)

MEDIA_DIR = "_media"
OWNER_FILE = "owner"
_INCOMING = ".incoming"
_BLOCK = 1 << 20


# ---------------------------------------------------------------------------------------------
# Media store


def media_root(projects_root: str | os.PathLike) -> Path:
    return Path(projects_root) / MEDIA_DIR


def store_media(projects_root: str | os.PathLike, filename: str, blocks: Iterable[bytes]) -> Path:
    """Store a clip's bytes in the content-addressed media store; return its stored path.

    The same content sent twice (under any name) is stored once: the second call returns the
    first one's file. Raises ProjectError (nothing left behind) when the disk refuses.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(filename).name).strip("-.") or "clip"
    incoming = media_root(projects_root) / _INCOMING
    try:
        incoming.mkdir(parents=True, exist_ok=True)
        temp = incoming / f"{secrets.token_hex(8)}-{safe}"
        digest = hashlib.sha256()
        with open(temp, "wb") as out:
            for block in blocks:
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
    except BaseException as e:
        with contextlib.suppress(UnboundLocalError, OSError):
            temp.unlink()
        if not isinstance(e, OSError):
            raise  # e.g. the caller's size limit: nothing is kept
        raise ProjectError(
            f"cannot store the clip {safe} beside the projects: {e.strerror or e}. Free disk "
            "space or check permissions, then upload it again."
        ) from e
    folder = media_root(projects_root) / digest.hexdigest()[:24]
    existing = next(iter(sorted(folder.glob("*"))), None) if folder.is_dir() else None
    if existing is not None:
        temp.unlink(missing_ok=True)
        return existing.absolute()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / safe
    os.replace(temp, target)
    return target.absolute()


def read_blocks(path: str | os.PathLike) -> Iterator[bytes]:
    """A file's bytes in 1 MiB blocks (what ``store_media`` takes)."""
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            yield block


def is_stored_media(projects_root: str | os.PathLike, path: str | os.PathLike) -> bool:
    root = media_root(projects_root).resolve()
    return Path(path).resolve().is_relative_to(root)


# ---------------------------------------------------------------------------------------------
# Ownership


def owner_hash(secret: str) -> str:
    return hashlib.sha256(f"sparkvsr-owner:{secret}".encode()).hexdigest()


def set_owner(folder: str | os.PathLike, secret: str) -> None:
    """Record ``secret``'s owner (an empty secret leaves the project without an owner)."""
    if secret:
        atomic_write(Path(folder) / OWNER_FILE, owner_hash(secret).encode(), what="the owner")


def project_owner(folder: str | os.PathLike) -> str:
    """The recorded owner hash ("" = no owner: anyone who reaches the worker may open it)."""
    try:
        return (Path(folder) / OWNER_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def may_open(folder: str | os.PathLike, secret: str) -> bool:
    """True when a caller with ``secret`` may open the project in ``folder``.

    An empty ``secret`` is the trusted host (CLI, the studio's own command line): always True.
    """
    owner = project_owner(folder)
    if not owner or not secret:
        return True
    return hmac.compare_digest(owner, owner_hash(secret))


# ---------------------------------------------------------------------------------------------
# Listing and housekeeping


@dataclass(frozen=True)
class ProjectSummary:
    """One project as a projects list shows it.

    clip_name: the clip's file name; changed: the manifest's modification time (Unix seconds);
    disk_bytes: everything in the folder; cache_bytes: the part "clear caches" frees (finished
    chunks of the last render); outputs: finished renders (file names in the folder);
    clip_missing: the clip file is gone (the project needs a relink).
    """

    name: str
    clip_name: str
    num_frames: int
    width: int
    height: int
    keyframes: int
    references: int
    changed: float
    disk_bytes: int
    cache_bytes: int
    outputs: tuple[str, ...]
    clip_missing: bool
    thumbnail: bytes = b""  # JPEG of a frame of the clip (made with its proxy), or empty


def project_names(projects_root: str | os.PathLike) -> list[str]:
    root = Path(projects_root)
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if not p.name.startswith(("_", ".")) and (p / MANIFEST).is_file()
    )


def summarize(folder: Path) -> ProjectSummary:
    """A ``ProjectSummary`` of the project in ``folder`` (ProjectError when unreadable)."""
    project = Project.open(folder, require_clip=False)
    state = project.state
    disk = _folder_bytes(folder)
    cache = _folder_bytes(folder / CHUNKS_DIR)
    return ProjectSummary(
        name=folder.name,
        clip_name=Path(state.clip.path).name,
        num_frames=state.clip.num_frames,
        width=state.clip.width,
        height=state.clip.height,
        keyframes=len(state.keyframes),
        references=len(state.references),
        changed=(folder / MANIFEST).stat().st_mtime,
        disk_bytes=disk,
        cache_bytes=cache,
        outputs=tuple(sorted(p.name for p in folder.iterdir() if p.suffix in OUTPUT_SUFFIXES)),
        clip_missing=not Path(state.clip.path).exists(),
        thumbnail=clip_thumbnail(folder),
    )


OUTPUT_SUFFIXES = (".mp4", ".mkv", ".mov", ".zip")


def list_projects(projects_root: str | os.PathLike, secret: str = "") -> list[ProjectSummary]:
    """Projects ``secret`` may open, most recently changed first (unreadable ones skipped)."""
    root = Path(projects_root)
    summaries = []
    for name in project_names(root):
        folder = root / name
        if secret and project_owner(folder) != owner_hash(secret):
            continue  # a browser lists its own projects only
        with contextlib.suppress(ProjectError, OSError):
            summaries.append(summarize(folder))
    return sorted(summaries, key=lambda s: s.changed, reverse=True)


def is_pristine(state: ProjectState) -> bool:
    """Nothing a user made is in it: no keyframes, References or render, default guidance."""
    return (
        not state.keyframes
        and not state.references
        and state.render is None
        and state.range_render is None
    )


def find_reusable(
    projects_root: str | os.PathLike, clip_path: str, secret: str, busy: Iterable[str] = ()
) -> str:
    """A project to reopen instead of creating one for ``clip_path`` ("" = none).

    The caller's own most recently changed project of that clip, else any untouched (pristine)
    project of that clip: a visit that changes nothing must not leave a new project behind.
    Projects named in ``busy`` (open elsewhere) are skipped.
    """
    root = Path(projects_root)
    wanted = str(Path(clip_path).resolve())
    busy = set(busy)
    own: list[tuple[float, str]] = []
    pristine: list[tuple[float, str]] = []
    for name in project_names(root):
        if name in busy:
            continue
        folder = root / name
        try:
            state = Project.open(folder, require_clip=False).state
        except ProjectError:
            continue
        if state.clip.path != wanted:
            continue
        changed = (folder / MANIFEST).stat().st_mtime
        owner = project_owner(folder)
        if secret and owner == owner_hash(secret):
            own.append((changed, name))
        elif is_pristine(state) and (not owner or secret):
            pristine.append((changed, name))
    for group in (own, pristine):
        if group:
            return max(group)[1]
    return ""


def clear_caches(folder: str | os.PathLike) -> int:
    """Remove the finished chunks of an unfinished or finished render (outputs, References and
    the manifest stay); returns the bytes freed. A later render starts from frame 0."""
    folder = Path(folder)
    freed = _folder_bytes(folder / CHUNKS_DIR)
    project = Project.open(folder, require_clip=False)
    project.forget_chunks()
    shutil.rmtree(folder / CHUNKS_DIR, ignore_errors=True)
    with contextlib.suppress(OSError):
        (folder / CHUNK_LOG).unlink()
    return freed


def _folder_bytes(folder: Path) -> int:
    total = 0
    if not folder.exists():
        return 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file():
                total += path.stat().st_size
    return total


def rename_project(projects_root: str | os.PathLike, name: str, new_name: str) -> Path:
    """Move project ``name`` to ``new_name`` (which must not exist); its finished renders
    keep pointing at their files. Returns the new folder."""
    root = Path(projects_root)
    source, target = root / name, root / new_name
    _check_free(target, new_name)
    try:
        os.rename(source, target)
    except OSError as e:
        raise ProjectError(f"cannot rename {name} to {new_name}: {e.strerror or e}") from e
    Project.open(target, require_clip=False).moved_from(source)
    return target


def duplicate_project(projects_root: str | os.PathLike, name: str, new_name: str) -> Path:
    """Copy project ``name`` to ``new_name`` without its caches (finished chunks): keyframes,
    References, settings, finished renders and the owner come along."""
    root = Path(projects_root)
    source, target = root / name, root / new_name
    _check_free(target, new_name)
    try:
        shutil.copytree(source, target, ignore=shutil.ignore_patterns(CHUNKS_DIR, CHUNK_LOG))
    except OSError as e:
        shutil.rmtree(target, ignore_errors=True)
        raise ProjectError(f"cannot copy {name} to {new_name}: {e.strerror or e}") from e
    copy = Project.open(target, require_clip=False)
    copy.moved_from(source)
    copy.forget_chunks()
    return target


def delete_project(projects_root: str | os.PathLike, name: str) -> int:
    """Delete project ``name`` and the stored media no other project uses; bytes freed."""
    root = Path(projects_root)
    folder = root / name
    freed = _folder_bytes(folder)
    shutil.rmtree(folder, ignore_errors=True)
    if folder.exists():
        raise ProjectError(f"{name} could not be deleted completely; check its permissions")
    return freed + collect_media(root)


def collect_media(projects_root: str | os.PathLike) -> int:
    """Remove stored clips no project names any more; returns the bytes freed."""
    root = Path(projects_root)
    store = media_root(root)
    if not store.is_dir():
        return 0
    used = set()
    for name in project_names(root):
        with contextlib.suppress(ProjectError):
            used.add(str(Path(Project.open(root / name, require_clip=False).state.clip.path)))
    freed = 0
    for folder in store.iterdir():
        if folder.name == _INCOMING or not folder.is_dir():
            continue
        files = list(folder.iterdir())
        if any(str(f.absolute()) in used or str(f.resolve()) in used for f in files):
            continue
        freed += _folder_bytes(folder)
        shutil.rmtree(folder, ignore_errors=True)
    return freed


def _check_free(target: Path, name: str) -> None:
    if target.exists():
        raise ProjectError(f"a project named {name!r} exists already; choose another name")
