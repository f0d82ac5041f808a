"""The output panel's choices and the names renders get: pure functions, no Gradio.

Scale choices map to an output size (even width and height, the clip's aspect kept): ``x2`` and
``x4`` multiply the clip, ``fit 1080p`` / ``fit 2160p`` fit it inside 1920x1080 / 3840x2160
(turned for portrait clips), ``custom`` takes a width. Codec labels map to
``OutputSettings.codec``.
"""

from __future__ import annotations

import re
from pathlib import Path

from sparkvsr.project import OUTPUT_SUFFIX, OutputSettings

SCALES = ("×2", "×4", "fit 1080p", "fit 2160p", "custom width")
_FIT = {"fit 1080p": (1920, 1080), "fit 2160p": (3840, 2160)}
CODECS = {
    "H.264": "h264",
    "H.265": "h265",
    "ProRes 422": "prores",
    "FFV1 (lossless)": "ffv1",
    "PNG sequence (zip)": "png",
}
"""Codecs the page offers (a PNG sequence downloads as one .zip of ``frame_000123.png``)."""
CODEC_LABELS = {value: label for label, value in CODECS.items()}
CRF_CODECS = ("h264", "h265")


def playable(path: str | None) -> str | None:
    """``path`` for the page's video players, or None for an output no player can show (a PNG
    sequence's zip: it is only downloaded)."""
    return None if path is None or str(path).lower().endswith(".zip") else path


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2))


def size_for(
    choice: str, custom_width: float | None, clip_size: tuple[int, int]
) -> tuple[int, int]:
    """(width, height) of the output for a scale ``choice`` on a clip of ``clip_size``."""
    width, height = clip_size
    if width < 1 or height < 1:
        raise ValueError(f"the clip size {clip_size} is not known yet")
    if choice in ("×2", "×4"):
        factor = int(choice[1:])
        return width * factor, height * factor
    if choice in _FIT:
        box_w, box_h = _FIT[choice]
        if height > width:
            box_w, box_h = box_h, box_w
        factor = min(box_w / width, box_h / height)
        return _even(width * factor), _even(height * factor)
    if choice == "custom width":
        wanted = int(custom_width or 0)
        if wanted < 16:
            raise ValueError(f"custom width {wanted} is too small: give 16 pixels or more")
        return _even(wanted), _even(wanted * height / width)
    raise ValueError(f"scale {choice!r} is unknown; choose one of {', '.join(SCALES)}")


def scale_choice(render_size: tuple[int, int], clip_size: tuple[int, int]) -> tuple[str, int]:
    """The panel's (scale choice, custom width) showing ``render_size``."""
    for choice in SCALES[:-1]:
        if size_for(choice, None, clip_size) == tuple(render_size):
            return choice, render_size[0]
    return "custom width", render_size[0]


def size_label(render_size: tuple[int, int], clip_size: tuple[int, int]) -> str:
    """``x4`` for whole multiples of the clip, else the height (``1080p``)."""
    ratio = render_size[0] / clip_size[0] if clip_size[0] else 0
    if ratio and abs(ratio - round(ratio)) < 1e-9:
        return f"x{round(ratio)}"
    return f"{render_size[1]}p"


def output_name(
    clip_path: str,
    render_size: tuple[int, int],
    clip_size: tuple[int, int],
    engine: str,
    guidance: float,
    output: OutputSettings,
) -> str:
    """The render's file name, after the clip and the settings: ``clip_x4_flow_g1.0.mp4``
    (H.264), ``clip_x2_flow_g1.0_h265-10bit.mp4``, ``clip_1080p_flow_g1.0_ffv1.mkv``... The
    download keeps it; renders of other settings sit beside it in the project folder."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(clip_path).stem).strip("-.") or "clip"
    engine_text = re.sub(r"[^A-Za-z0-9]+", "", engine) or "engine"
    name = f"{stem[:80]}_{size_label(render_size, clip_size)}_{engine_text}_g{guidance:.1f}"
    codec = output.codec + ("-10bit" if output.ten_bit else "")
    if codec != "h264":
        name += f"_{codec}"
    if output.codec in CRF_CODECS and output.crf != OutputSettings().crf:
        name += f"_crf{output.crf}"
    if not output.audio:
        name += "_mute"
    return name + (OUTPUT_SUFFIX[output.codec] or ".zip")
