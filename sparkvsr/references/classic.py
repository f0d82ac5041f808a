"""``classic``: a Lanczos upscale of the LR frame. Always available, adds no detail.

Useful for tests, as a neutral Reference (with the ``flow`` engine its residual is ~zero, so the
result equals the plain upscale), and whenever no other editor is configured.
"""

from __future__ import annotations

import numpy as np

from sparkvsr.references.base import EditRequest, Provenance, Reference
from sparkvsr.references.fit import check_frame, check_target_size, fit_to_size, fitted_reference


class ClassicEditor:
    """Lanczos resize of the LR frame to the target size (centre-cropped if the aspect differs)."""

    name = "classic"

    def availability(self) -> str | None:
        return None

    def make(
        self, lr_frame: np.ndarray, target_size: tuple[int, int], request: EditRequest
    ) -> Reference:
        """``lr_frame`` ``[h, w, 3]`` uint8 -> Reference ``[H, W, 3]`` uint8 at ``target_size``."""
        lr_frame = check_frame(lr_frame)
        target_size = check_target_size(target_size)
        image, cropped = fit_to_size(lr_frame, target_size, "lanczos", tolerance=0.02)
        notes = ("the frame's aspect differs from the target; it was centre-cropped",) * cropped
        return fitted_reference(
            image,
            lr_frame,
            Provenance(editor=self.name, model="lanczos", task_prompt="upscale", notes=notes),
            align=False,  # the frame's own upscale: on its grid by construction
        )
