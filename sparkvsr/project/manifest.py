"""The manifest (``project.json``) and the state: a versioned JSON dict from a ``ProjectState``
and back, checked on the way in (a manifest that cannot be read raises ProjectError).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path, PurePosixPath
from typing import Any

from sparkvsr.engines.base import RestoreOptions
from sparkvsr.errors import EngineError, KeyframeError, ProjectError
from sparkvsr.keyframes import validate_keyframes
from sparkvsr.project.state import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    ChunkEntry,
    ClipSummary,
    EngineSettings,
    OutputSettings,
    ProjectState,
    RangeRender,
    ReferenceEntry,
    RenderState,
)
from sparkvsr.references.base import Provenance


def manifest_dict(state: ProjectState) -> dict[str, Any]:
    """The JSON-ready manifest for ``state``."""
    options = asdict(state.options)
    options.pop("guidance")
    options.pop("start")
    options.pop("stop")
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "clip": asdict(state.clip),
        "keyframes": list(state.keyframes),
        "references": [
            {
                "frame": r.frame,
                "file": r.file,
                "content_hash": r.content_hash,
                "provenance": asdict(r.provenance),
                "raw_file": r.raw_file,
            }
            for r in state.references
        ],
        "guidance": state.guidance,
        "engine": asdict(state.engine),
        "options": options,
        "output": asdict(state.output),
        "render": None if state.render is None else asdict(state.render),
        "range_render": None if state.range_render is None else asdict(state.range_render),
    }


def parse_manifest(text: str, where: Path | str = MANIFEST) -> ProjectState:
    """Parse a manifest; ProjectError (naming the problem) for anything unreadable."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProjectError(
            f"{where} is corrupt (not valid JSON: {e}); it was left untouched. Restore it from a "
            "backup or delete the folder to start over."
        ) from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ProjectError(f"{where} is not a SparkVSR project manifest; it was left untouched")
    version = data.get("version")
    if not isinstance(version, int) or version < 1:
        raise ProjectError(f"{where} has an invalid version {version!r}; it was left untouched")
    if version > FORMAT_VERSION:
        raise ProjectError(
            f"{where} was written by a newer SparkVSR (manifest version {version}; this one reads "
            f"up to {FORMAT_VERSION}). Upgrade SparkVSR to open it; the file was left untouched."
        )
    try:
        return _state_from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError, EngineError, KeyframeError) as e:
        raise ProjectError(
            f"{where} is corrupt ({type(e).__name__}: {e}); it was left untouched. Restore it "
            "from a backup or delete the folder to start over."
        ) from e


def _state_from_dict(data: Mapping[str, Any]) -> ProjectState:
    clip_data = dict(data["clip"])
    clip_data["iframes"] = tuple(int(i) for i in clip_data.get("iframes", ()))
    clip = ClipSummary(**clip_data)
    guidance = float(data["guidance"])
    options_data = dict(data["options"])
    if options_data.get("output_size") is not None:
        options_data["output_size"] = tuple(int(v) for v in options_data["output_size"])
    options = RestoreOptions(**options_data, guidance=guidance)
    references = tuple(
        ReferenceEntry(
            frame=int(r["frame"]),
            file=_checked_relative(str(r["file"])),
            content_hash=str(r["content_hash"]),
            provenance=_provenance(r["provenance"]),
            raw_file=_checked_relative(str(r["raw_file"])) if r.get("raw_file") else "",
        )
        for r in data["references"]
    )
    render_data = data.get("render")
    render = None
    if render_data is not None:
        render = RenderState(
            fingerprint=str(render_data["fingerprint"]),
            chunks=_chunk_entries(render_data["chunks"]),
            complete=bool(render_data["complete"]),
            output=str(render_data.get("output", "")),
            notes=tuple(str(n) for n in render_data.get("notes", ())),
        )
    range_data = data.get("range_render")  # absent in manifests from before range renders
    ranged = None
    if range_data is not None:
        ranged = RangeRender(
            fingerprint=str(range_data["fingerprint"]),
            start=int(range_data["start"]),
            stop=int(range_data["stop"]),
            chunks=_chunk_entries(range_data["chunks"]),
            complete=bool(range_data["complete"]),
            output=str(range_data.get("output", "")),
            notes=tuple(str(n) for n in range_data.get("notes", ())),
        )
    return ProjectState(
        clip=clip,
        keyframes=validate_keyframes(data["keyframes"], clip.num_frames),
        references=references,
        guidance=guidance,
        engine=EngineSettings(**data["engine"]),
        options=options,
        output=OutputSettings(**data["output"]),
        render=render,
        range_render=ranged,
        version=FORMAT_VERSION,
    )


def _chunk_entries(rows: Any) -> tuple[ChunkEntry, ...]:
    return tuple(
        ChunkEntry(int(c["start"]), int(c["stop"]), _checked_relative(c["file"]), c["sha256"])
        for c in rows
    )


def _provenance(data: Mapping[str, Any]) -> Provenance:
    known = {f.name for f in fields(Provenance)}
    values = {k: v for k, v in data.items() if k in known}
    values["notes"] = tuple(values.get("notes", ()))
    return Provenance(**values)


def _checked_relative(relative: str) -> str:
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"file {relative!r} must be a path inside the project folder")
    return relative


def by_frame(entry: ReferenceEntry) -> int:
    return entry.frame
