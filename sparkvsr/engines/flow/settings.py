"""The flow engine's configuration: ``FlowSettings``, checked once and shared by its helpers, and
the base upscalers it can use."""

from __future__ import annotations

from dataclasses import dataclass

import cv2

from sparkvsr import optical_flow as of
from sparkvsr.errors import EngineError

UPSCALERS = {"bicubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}


@dataclass(frozen=True)
class FlowSettings:
    """The engine's configuration (see ``FlowEngine``); checked once, shared by its helpers."""

    upscaler: str = "bicubic"
    reach: int = 32
    refine_preset: str = "ultrafast"
    refine_finest_scale: int = 0
    refine_iterations: int = 4
    refine_patch_stride: int | None = 6
    step_preset: str = "ultrafast"
    step_finest_scale: int = 2
    agreement_sigma: float = 4.0
    agreement_window: int = 5
    back_projection: int = 2
    cut_threshold: float = 0.6
    global_fallback: bool = True
    preview_cache: int = 4
    preview_cache_bytes: int = 512 << 20

    def __post_init__(self) -> None:
        if self.upscaler not in UPSCALERS:
            raise EngineError(
                f"upscaler {self.upscaler!r} is unknown; choose one of {', '.join(UPSCALERS)}"
            )
        for name in ("refine_preset", "step_preset"):
            if getattr(self, name) not in of.DIS_PRESETS:
                raise EngineError(
                    f"{name} {getattr(self, name)!r} is unknown; choose one of "
                    f"{', '.join(of.DIS_PRESETS)}"
                )
        if self.reach < 1:
            raise EngineError(f"reach {self.reach} must be at least 1 frame")
        if self.refine_finest_scale < 0 or self.step_finest_scale < 0:
            raise EngineError("DIS finest scales must be 0 (full resolution) or more")
        if self.refine_iterations < 1:
            raise EngineError(f"refine_iterations {self.refine_iterations} must be at least 1")
        patch = of.DisFlow(self.refine_preset).patch_size
        if self.refine_patch_stride is not None and not 1 <= self.refine_patch_stride <= patch:
            raise EngineError(
                f"refine_patch_stride {self.refine_patch_stride} must be None (the preset's) "
                f"or 1 to {patch} pixels (the {self.refine_preset!r} patch size)"
            )
        if self.agreement_sigma <= 0 or self.agreement_window < 1:
            raise EngineError(
                f"agreement_sigma {self.agreement_sigma} must be > 0 and agreement_window "
                f"{self.agreement_window} at least 1"
            )
        if self.back_projection < 0:
            raise EngineError(f"back_projection {self.back_projection} must be 0 (off) or more")
        if self.cut_threshold <= 0:
            raise EngineError(
                f"cut_threshold {self.cut_threshold} must be above 0 (0.6 by default)"
            )
        if self.preview_cache < 1:
            raise EngineError(f"preview_cache {self.preview_cache} must be at least 1 frame")
        if self.preview_cache_bytes < 0:
            raise EngineError(f"preview_cache_bytes {self.preview_cache_bytes} must be 0 or more")
