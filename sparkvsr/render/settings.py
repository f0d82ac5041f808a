"""A render's settings as numbers: the fingerprint of everything that changes its frames, the
output and working size, the chunk length within a byte budget (in the engine's chunk form),
and the writer's options for the project's output settings.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, replace
from pathlib import Path

from sparkvsr import media
from sparkvsr.engines.base import Engine, RestoreOptions
from sparkvsr.errors import MediaError, ProjectError
from sparkvsr.project import OUTPUT_SUFFIX, OutputSettings, ProjectState, file_identity

# x264's macroblock-tree rate control is not repeatable on some content (measured: identical
# frames encoded five times gave five different streams), and then a resumed render would not
# equal an uninterrupted one. Without it the encode is a pure function of the frames.
DETERMINISTIC_X264 = "mbtree=0"
RENDER_CHUNK_BYTES = 128 << 20
"""Output frames one render chunk may hold (at 4x of 720p: 3 frames instead of 33)."""
CHUNK_FORM = {"dit": 8}
"""Engines whose chunks must be ``form * k + 1`` frames (the dit model's latent frames)."""


def _options_key(options: RestoreOptions) -> dict:
    """The options as the fingerprint hashes them: without ``stop`` (a range render has the
    same settings as the full one; projects made before ranges keep their fingerprints)."""
    values = asdict(options)
    values.pop("stop")
    return values


def render_fingerprint(state: ProjectState, engine: Engine) -> str:
    """A hash of everything that changes output frames: the clip file, engine and model,
    restore options, guidance, and each used Reference's content hash.
    """
    used = [(r.frame, r.content_hash) for r in state.references if r.frame in set(state.keyframes)]
    settings = {
        # the clip file as it is now: an edited or replaced clip invalidates finished chunks
        "clip": [
            file_identity(state.clip.path),
            state.clip.num_frames,
            state.clip.width,
            state.clip.height,
        ],
        "engine": [getattr(engine, "name", type(engine).__name__), _engine_model(engine)],
        "options": _options_key(state.restore_options()),
        "references": used,
    }
    # How frames are read changes them; listed only when not the default, so the fingerprints
    # of projects made before these settings existed stay the same.
    # The encoding ones change the final clip (not the chunks), so a change re-renders.
    out = state.output
    read = {
        "deinterlace": out.deinterlace,
        "tonemap": out.tonemap,
        "codec": out.codec,
        "square_pixels": out.square_pixels,
    }
    if read != {"deinterlace": True, "tonemap": False, "codec": "h264", "square_pixels": False}:
        settings["read"] = read
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def bounded_options(
    engine: Engine, clip: media.Clip, options: RestoreOptions, chunk_bytes: int
) -> RestoreOptions:
    """``options`` with the chunk shortened to ``chunk_bytes`` of output frames: the same for a
    range and the full render, so the dit engine's chunk plan (and its frames) are the same."""
    return render_chunk(
        getattr(engine, "name", ""), options, output_size(clip.info, options), chunk_bytes
    )


def render_chunk(
    engine_name: str,
    options: RestoreOptions,
    frame_size: tuple[int, int],
    chunk_bytes: int = RENDER_CHUNK_BYTES,
) -> RestoreOptions:
    """``options`` with the chunk a render on engine ``engine_name`` uses for output frames of
    ``frame_size`` (width, height): shortened to ``chunk_bytes`` of frames, in the engine's chunk
    form (``CHUNK_FORM``: 8k+1 for dit). The render and the studio's estimate both ask here."""
    width, height = frame_size
    return chunk_within(options, width * height * 3, chunk_bytes, CHUNK_FORM.get(engine_name, 1))


def _engine_model(engine: Engine) -> str:
    try:
        return engine.status().model
    except Exception:  # a status failure must not block a render; the name still counts
        return ""


def output_size(info: media.ClipInfo, options: RestoreOptions) -> tuple[int, int]:
    """The size of the frames the engine hands over: ``output_size``, else scale x the clip."""
    return options.output_size or (info.width * options.scale, info.height * options.scale)


def working_scale(engine: str, options: RestoreOptions, size: tuple[int, int]) -> int:
    """The scale an engine should work at for ``options``: with an ``output_size`` below
    ``scale`` x the clip ``size`` (width, height), the smallest integer scale that still
    reaches it, so memory and time follow the output size. The ``dit`` model is trained for
    its scale and keeps it."""
    if options.output_size is None or engine == "dit":
        return options.scale
    need = max(options.output_size[0] / size[0], options.output_size[1] / size[1])
    return max(1, min(options.scale, math.ceil(need - 1e-9)))


def chunk_within(
    options: RestoreOptions, frame_bytes: int, budget: int, form: int = 1
) -> RestoreOptions:
    """``options`` with the chunk shortened so one chunk of ``frame_bytes`` frames fits in
    ``budget`` bytes, never below 1 frame. ``form``: chunks must be ``form * k + 1`` frames
    (8 for the dit model; at least ``form + 1``). Frames of the flow engine do not depend on
    the chunk."""
    most = max(1, budget // max(1, frame_bytes))
    if options.chunk <= most:
        return options
    chunk = most
    if form > 1:
        chunk = max(form + 1, (most - 1) // form * form + 1)
    if chunk >= options.chunk:
        return options
    return replace(options, chunk=chunk, overlap=min(options.overlap, chunk - 1))


def checked_codec(settings: OutputSettings) -> tuple[str, bool]:
    """(codec, lossless) as ``media.check_output`` judges the output of ``settings``: its level
    limits and bytes per pixel."""
    if settings.codec == "ffv1":
        return "h264", True
    if settings.codec == "png":
        return "png", False
    return (settings.codec if settings.codec in media.CODECS else "h264"), False


def writer_options(settings: OutputSettings, out_path: Path) -> dict:
    """``VideoWriter.like`` keyword options for a project's output settings (the codec must
    match the output's suffix: ``OUTPUT_SUFFIX``; a project's PNG sequence is one .zip file,
    written by ``media.PngSequenceZip``, which takes no options)."""
    if settings.codec == "png":
        if out_path.suffix.lower() != ".zip":
            raise ProjectError(
                f"output {out_path.name} does not fit a PNG sequence: name it *.zip (the frames "
                "are packed in one file)"
            )
        return {}
    suffix = OUTPUT_SUFFIX[settings.codec]
    # H.264 and H.265 go into any of the writer's containers (.mp4, .mov, .m4v, .mkv).
    fitting = media.VIDEO_SUFFIXES if settings.codec in ("h264", "h265") else (suffix,)
    if suffix and out_path.suffix.lower() not in fitting:
        raise ProjectError(
            f"output {out_path.name} does not fit codec {settings.codec}: name it *{suffix}"
        )
    if settings.codec == "ffv1":
        return {"lossless": True}
    if settings.codec not in media.CODECS:
        raise MediaError(
            f"{settings.codec} output is not supported by this build's writer; choose one of "
            f"{', '.join(media.CODECS)} or ffv1"
        )
    deterministic = DETERMINISTIC_X264 if settings.codec == "h264" else ""
    return {
        "codec": settings.codec,
        "crf": settings.crf,
        "preset": settings.preset,
        "x264_params": deterministic,
    }
