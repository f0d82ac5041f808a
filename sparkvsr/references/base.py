"""The Editor contract: an editor turns one LR frame into an HR Reference.

Editors: ``nano-banana-pro`` (Google's image model through google-genai), ``pisa-sr`` (local
diffusion SR), ``upload`` (the user's own image) and ``classic`` (Lanczos). A failing editor raises
``EditorError`` in user words and never substitutes another image: the keyframe keeps whatever
Reference it had before.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Protocol

import numpy as np

DEFAULT_TASK_PROMPT = (
    "Restore this video frame to high quality: increase sharpness and clarity, remove blur, "
    "noise, film grain and compression artifacts, and recover fine detail and texture. Keep the "
    "composition, framing, colours, people, objects and text exactly as they are; do not add, "
    "remove or move anything."
)


@dataclass(frozen=True)
class EditRequest:
    """What the user asked an editor for. Editors ignore the fields that do not concern them.

    task_prompt:    what to do to the frame (restore, by default).
    content_prompt: optional description of what should be in the frame.
    seed:           for editors that sample.
    upload:         the user's own image (``upload`` editor), ``[H, W, 3]`` uint8 RGB.
    pixel_scale / semantic_scale: PiSA-SR's lambda_pix and lambda_sem.
    """

    task_prompt: str = DEFAULT_TASK_PROMPT
    content_prompt: str = ""
    seed: int | None = None
    upload: np.ndarray | None = field(default=None, compare=False, repr=False)
    pixel_scale: float = 1.0
    semantic_scale: float = 1.0


@dataclass(frozen=True)
class ReferenceFit:
    """How well a Reference fits its keyframe (``references.fit.assess``): what the user sees.

    verdict:       "fits", "shifted" (moved and corrected), "recoloured" or "different content".
    message:       one sentence for the user ("Shifted 5 px, corrected; content differs at ...").
    psnr:          dB, the area-downscaled (registered) Reference against the LR keyframe.
    shift:         the motion corrected by registration, HR pixels (largest corner displacement).
    matrix:        the registration, 2x3 row-major: keyframe HR pixel -> original image pixel.
    colour_change: mean low-frequency colour / tone change against the LR frame, 0-255 levels.
    disagreement:  share of the frame whose structure differs from the keyframe, 0-1.
    weight:        automatic per-keyframe weight, 0-1 (the user may override it).
    region:        where the structure differs most ("top left", "centre", ...) or "".
    """

    verdict: str = "fits"
    message: str = ""
    psnr: float = 0.0
    shift: float = 0.0
    matrix: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    colour_change: float = 0.0
    disagreement: float = 0.0
    weight: float = 1.0
    region: str = ""

    @classmethod
    def from_dict(cls, data: dict) -> ReferenceFit:
        """From ``dataclasses.asdict`` output (a project manifest, the HTTP wire)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "matrix" in values:
            values["matrix"] = tuple(float(v) for v in values["matrix"])
        return cls(**values)


@dataclass(frozen=True)
class Provenance:
    """Where a Reference came from, saved beside it in the project; ``fit`` says how well it
    fits its keyframe (None for References made before fitting existed)."""

    editor: str
    model: str = ""
    task_prompt: str = ""
    content_prompt: str = ""
    seed: int | None = None
    created: str = ""
    notes: tuple[str, ...] = ()
    fit: ReferenceFit | None = None

    def __post_init__(self) -> None:
        if isinstance(self.fit, dict):  # read back from JSON (project manifest, HTTP wire)
            object.__setattr__(self, "fit", ReferenceFit.from_dict(self.fit))


@dataclass(frozen=True, eq=False)
class Reference:
    """An HR image for one keyframe: ``image`` is ``[H, W, 3]`` uint8 RGB at the target size.

    ``raw``: the editor's image before registration moved it onto the keyframe's grid (same
    size), kept so the user can compare the two; None when registration left it as it was.
    """

    image: np.ndarray = field(repr=False)
    provenance: Provenance
    content_hash: str
    raw: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def create(
        cls, image: np.ndarray, provenance: Provenance, raw: np.ndarray | None = None
    ) -> Reference:
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if not provenance.created:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            provenance = Provenance(**{**provenance.__dict__, "created": stamp})
        if raw is not None:
            raw = np.ascontiguousarray(raw, dtype=np.uint8)
        return cls(image=image, provenance=provenance, content_hash=image_hash(image), raw=raw)


def image_hash(image: np.ndarray) -> str:
    """Content hash of an image (shape and pixels): equal pixels, equal hash."""
    digest = hashlib.sha256(repr(tuple(image.shape)).encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()[:32]


class Editor(Protocol):
    name: str

    def availability(self) -> str | None:
        """None when the editor can run here; otherwise why not, in user words."""
        ...

    def make(
        self, lr_frame: np.ndarray, target_size: tuple[int, int], request: EditRequest
    ) -> Reference:
        """Make a Reference for ``lr_frame`` (``[h, w, 3]`` uint8) at ``target_size`` (W, H)."""
        ...
