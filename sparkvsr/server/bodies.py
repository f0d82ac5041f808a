"""Strict request models: every JSON body is checked against one (types not coerced, ranges
checked, an uploaded image's size read from its header) and turned into the worker's request
dataclass; a 422 names the bad field.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sparkvsr.engines.base import COLOR_FIXES
from sparkvsr.errors import EditorError
from sparkvsr.project import OUTPUT_CODECS, OUTPUT_PRESETS
from sparkvsr.viewport import MAX_SIDE as VIEWPORT_MAX_SIDE
from sparkvsr.viewport import MAX_ZOOM as VIEWPORT_MAX_ZOOM
from sparkvsr.worker import (
    FrameRequest,
    KeyframeRequest,
    OpenClipRequest,
    PreviewRequest,
    ProjectActionRequest,
    ProjectsRequest,
    ReferenceRequest,
    RenderRequest,
    SessionRequest,
    SettingsRequest,
    StatusRequest,
    Worker,
    from_wire,
)
from sparkvsr.worker.limits import GUIDANCE_RANGE, SETTING_RANGES, RequestError, check_image_pixels
from sparkvsr.worker.requests import PROJECT_ACTIONS


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


SessionId = Annotated[str, Field(min_length=1, max_length=128)]
FrameIndex = Annotated[int, Field(ge=0, le=100_000_000)]
Guidance = Annotated[float, Field(ge=GUIDANCE_RANGE[0], le=GUIDANCE_RANGE[1], allow_inf_nan=False)]
Scale = Annotated[float, Field(ge=0.0, le=10.0, allow_inf_nan=False)]
Prompt = Annotated[str, Field(max_length=8000)]


def _setting(name: str) -> Any:
    low, high = SETTING_RANGES[name]
    return Annotated[int, Field(ge=low, le=high)] | None


class OpenClipBody(_Strict):
    clip_path: Annotated[str, Field(max_length=4096)] = ""
    project: Annotated[str, Field(max_length=100)] = ""
    take_over: bool = False
    owner: Annotated[str, Field(max_length=200)] = ""
    reuse: bool = False


class SessionBody(_Strict):
    session_id: SessionId


class SettingsBody(_Strict):
    session_id: SessionId
    guidance: Guidance | None = None
    chunk: _setting("chunk") = None
    overlap: _setting("overlap") = None
    tile: _setting("tile") = None
    tile_overlap: _setting("tile_overlap") = None
    color_fix: Literal[COLOR_FIXES] | None = None  # type: ignore[valid-type]
    crf: _setting("crf") = None
    output_size: tuple[Annotated[int, Field(ge=0, le=16384)], ...] | None = None
    codec: Literal[OUTPUT_CODECS] | None = None  # type: ignore[valid-type]
    preset: Literal[OUTPUT_PRESETS] | None = None  # type: ignore[valid-type]
    audio: bool | None = None
    ten_bit: bool | None = None


class FrameBody(_Strict):
    session_id: SessionId
    index: FrameIndex


class KeyframeBody(_Strict):
    session_id: SessionId
    frame: FrameIndex


class ImageBody(_Strict):
    png: Annotated[str, Field(max_length=1 << 30)]


class ReferenceBody(_Strict):
    session_id: SessionId
    frame: FrameIndex
    editor: Annotated[str, Field(min_length=1, max_length=64)] = "classic"
    task_prompt: Prompt | None = None
    content_prompt: Prompt = ""
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    upload: ImageBody | None = None
    pixel_scale: Scale = 1.0
    semantic_scale: Scale = 1.0


class ViewportBody(_Strict):
    width: Annotated[int, Field(ge=1, le=VIEWPORT_MAX_SIDE)]
    height: Annotated[int, Field(ge=1, le=VIEWPORT_MAX_SIDE)]
    zoom: Annotated[float, Field(ge=0.0, le=VIEWPORT_MAX_ZOOM, allow_inf_nan=False)] = 0.0
    # a JSON array (strict mode takes no list for a tuple); the worker's Viewport makes it one
    center: Annotated[
        list[Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]],
        Field(min_length=2, max_length=2),
    ] = [0.5, 0.5]


class PreviewBody(_Strict):
    session_id: SessionId
    frame: FrameIndex
    guidance: Guidance
    viewport: ViewportBody | None = None


class RenderBody(_Strict):
    session_id: SessionId
    guidance: Guidance | None = None
    output: Annotated[str, Field(max_length=255)] = ""
    # a range render's [start, stop) (a JSON array; the worker checks it against the clip)
    frames: Annotated[list[FrameIndex], Field(min_length=2, max_length=2)] | None = None


class StatusBody(_Strict):
    session_id: Annotated[str, Field(max_length=128)] = ""
    editors: bool = False


class ProjectsBody(_Strict):
    owner: Annotated[str, Field(max_length=200)] = ""


class ProjectActionBody(_Strict):
    project: Annotated[str, Field(max_length=100)]
    action: Literal[PROJECT_ACTIONS]  # type: ignore[valid-type]
    new_name: Annotated[str, Field(max_length=100)] = ""
    owner: Annotated[str, Field(max_length=200)] = ""


@dataclass(frozen=True)
class _Endpoint:
    """A plain worker method: its body model, its request type, and whether it is a control
    call (answered from its own thread pool, never behind engine work)."""

    model: type[_Strict]
    request: type
    control: bool = False


ENDPOINTS: dict[str, _Endpoint] = {
    "open_clip": _Endpoint(OpenClipBody, OpenClipRequest),
    "close_session": _Endpoint(SessionBody, SessionRequest, control=True),
    "update_settings": _Endpoint(SettingsBody, SettingsRequest),
    "frame": _Endpoint(FrameBody, FrameRequest),
    "set_keyframe": _Endpoint(KeyframeBody, KeyframeRequest),
    "remove_keyframe": _Endpoint(KeyframeBody, KeyframeRequest),
    "make_reference": _Endpoint(ReferenceBody, ReferenceRequest),
    "reference": _Endpoint(KeyframeBody, KeyframeRequest),
    "preview": _Endpoint(PreviewBody, PreviewRequest),
    "cancel": _Endpoint(SessionBody, SessionRequest, control=True),
    "status": _Endpoint(StatusBody, StatusRequest, control=True),
    "projects": _Endpoint(ProjectsBody, ProjectsRequest, control=True),
    "project_action": _Endpoint(ProjectActionBody, ProjectActionRequest),
    "render_job": _Endpoint(SessionBody, SessionRequest, control=True),
    "clip_media": _Endpoint(SessionBody, SessionRequest, control=True),
}


def parse_body(name: str, body: bytes, worker: Worker | None = None) -> Any:
    """The request dataclass for method ``name`` from a raw JSON body.

    Raises RequestError (422) naming the first bad field, TooLarge (413) for an image whose
    header announces more pixels than the session allows (checked before decoding it).
    """
    endpoint = ENDPOINTS[name] if name in ENDPOINTS else STREAMING[name]
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(f"the body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise RequestError(f"the body must be a JSON object, not {type(data).__name__}")
    try:
        checked = endpoint.model.model_validate(data)
    except ValidationError as e:
        raise RequestError(_describe(e)) from None
    values = checked.model_dump()
    upload = None
    if isinstance(checked, ReferenceBody):
        values.pop("upload")
        if checked.task_prompt is None:  # absent: the editor's default prompt
            values.pop("task_prompt")
        if checked.upload is not None:
            upload = _decode_upload(checked.upload.png, checked.session_id, worker)
    request = from_wire(endpoint.request, values)
    return replace(request, upload=upload) if upload is not None else request


def _decode_upload(encoded: str, session_id: str, worker: Worker | None) -> Any:
    """Decode an uploaded image after checking, from its header, that it is not too large."""
    from sparkvsr.references.upload import decode_upload

    limit = worker.upload_pixel_limit(session_id) if worker is not None else 64_000_000
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError(f"field 'upload.png': not base64 ({e})") from None
    try:
        return decode_upload(data, lambda width, height: check_image_pixels(width, height, limit))
    except EditorError as e:
        raise RequestError(f"field 'upload.png': {e}") from None


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:3]:
        where = ".".join(str(p) for p in item["loc"]) or "body"
        given = item.get("input")
        shown = repr(given)[:60] if not isinstance(given, dict) else "an object"
        parts.append(f"field '{where}': {item['msg']} (got {shown})")
    return "; ".join(parts)


STREAMING: dict[str, _Endpoint] = {
    "render": _Endpoint(RenderBody, RenderRequest),
    "attach": _Endpoint(SessionBody, SessionRequest),
}
