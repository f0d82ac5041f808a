"""Wire form: dataclasses <-> JSON, arrays as PNG (uint8 images) or npy bytes, never JSON lists."""

from __future__ import annotations

import base64
import io
import types
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np


def to_wire(value: Any) -> Any:
    """A JSON-ready form of a request/response (dataclasses, arrays, bytes, tuples, paths)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_wire(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, np.ndarray):
        return _array_to_wire(value)
    if isinstance(value, bytes):
        return {"bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, tuple | list):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def from_wire(kind: Any, data: Any) -> Any:
    """Rebuild a value of type ``kind`` from its wire form (the inverse of ``to_wire``)."""
    if data is None:
        return None
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        return from_wire(options[0], data) if len(options) == 1 else data
    if kind is np.ndarray:
        return _array_from_wire(data)
    if kind is bytes:
        return base64.b64decode(data["bytes"])
    if origin is tuple:
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_wire(args[0], v) for v in data)
        return tuple(from_wire(a, v) for a, v in zip(args, data))
    if origin is dict:
        return dict(data)
    if isinstance(kind, type) and is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        values = {
            f.name: from_wire(hints[f.name], data[f.name]) for f in fields(kind) if f.name in data
        }
        return kind(**values)
    if kind is Path:
        return Path(data)
    if kind is float:
        return float(data)
    return data


def _array_to_wire(array: np.ndarray) -> dict[str, str]:
    if array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
        return {"png": base64.b64encode(buffer.getvalue()).decode("ascii")}
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return {"npy": base64.b64encode(buffer.getvalue()).decode("ascii")}


def _array_from_wire(data: dict[str, str]) -> np.ndarray:
    if "png" in data:
        from PIL import Image

        with Image.open(io.BytesIO(base64.b64decode(data["png"]))) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    return np.load(io.BytesIO(base64.b64decode(data["npy"])), allow_pickle=False)
