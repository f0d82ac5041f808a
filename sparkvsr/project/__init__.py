"""The Project: everything a user did on one clip, in a folder, autosaved after every change.

Layout of a project folder::

    project.json                 the manifest (versioned JSON, rewritten atomically)
    references/frame_000040.png  one lossless PNG per Reference (provenance + hash in the manifest);
                                 ``..._raw.png`` beside it: the editor's image before registration
                                 moved it (only when it did), for the user's before/after
    chunks/000000-000009.npz     finished output chunks of the last render (lossless PNG frames)
    chunks/range-000040-000046-<fingerprint>.npz   chunks a range render made (same format)
    chunks.log                   one line per chunk ever saved: "start stop fingerprint" (audit)
    output.mp4                   the assembled render (default name; see OutputSettings)
    proxy/                       the clip's player video and filmstrip (``media.proxy``)

Rules the folder keeps:

- Every change rewrites the manifest atomically (temp file, fsync, rename, fsync the folder), so a
  crash or ``kill -9`` leaves either the old or the new manifest, never a torn one.
- A manifest that cannot be read (corrupt, or written by a newer version) raises ``ProjectError``
  and is never overwritten: opening fails before any save can happen.
- A failed write (disk full, permissions) raises ``ProjectError`` and leaves the previous state,
  in memory and on disk, unchanged.
- Finished chunks carry the render-settings fingerprint they were made with; a render with other
  settings discards them instead of resuming stale frames.
- A range render (a preview of frames ``start <= i < stop``) keeps its chunks in its own record;
  the full render of the same fingerprint adopts them instead of rendering those frames again,
  and a range reads whatever frames of its settings are finished already (``frame_pieces``).

State is a tree of frozen dataclasses (``ProjectState``); a ``Project`` is the handle that changes
it and persists each change.

Modules: ``state`` (the frozen dataclasses, file names), ``handle`` (``Project``: open, read,
change, save), ``chunks`` (its render and range chunks, ``cover``, ``frame_gaps``), ``manifest``
(JSON <-> state), ``files`` (safe paths, atomic writes, PNGs, chunk files).
"""

from sparkvsr.project.chunks import RenderChunks, cover, frame_gaps
from sparkvsr.project.files import atomic_write, safe_join
from sparkvsr.project.handle import Project
from sparkvsr.project.manifest import manifest_dict, parse_manifest
from sparkvsr.project.state import (
    CHUNK_LOG,
    CHUNKS_DIR,
    DEFAULT_OUTPUT,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    OUTPUT_CODECS,
    OUTPUT_PRESETS,
    OUTPUT_SUFFIX,
    REFERENCES_DIR,
    ChunkEntry,
    ClipSummary,
    EngineSettings,
    OutputSettings,
    ProjectState,
    RangeRender,
    ReferenceEntry,
    RenderState,
    file_identity,
)

__all__ = [
    "CHUNKS_DIR",
    "CHUNK_LOG",
    "DEFAULT_OUTPUT",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "OUTPUT_CODECS",
    "OUTPUT_PRESETS",
    "OUTPUT_SUFFIX",
    "REFERENCES_DIR",
    "ChunkEntry",
    "ClipSummary",
    "EngineSettings",
    "OutputSettings",
    "Project",
    "ProjectState",
    "RangeRender",
    "ReferenceEntry",
    "RenderChunks",
    "RenderState",
    "atomic_write",
    "cover",
    "file_identity",
    "frame_gaps",
    "manifest_dict",
    "parse_manifest",
    "safe_join",
]
