"""The ``flow`` engine: keyframe propagation by dense optical flow, on the CPU, with no weights.

What it does to frame ``t`` (``U`` = upscale, ``R_k`` = the Reference of keyframe ``k``):

1. Base ``U(LR_t)`` (bicubic or Lanczos).
2. Each keyframe brings its residual ``D_k = R_k - U(LR_k)``: everything the editor added (detail,
   colour, style). Only the keyframes just before (``a``) and after (``b``) ``t`` contribute, within
   ``reach`` frames and never across a scene cut.
3. Flow ``t -> k`` on the LR frames: short steps composed from the keyframe to ``t`` seed a direct
   DIS refinement between ``t`` and ``k`` at full LR resolution, so the residual is resampled once,
   with sub-pixel alignment, and drift does not add up along the chain.
4. Each contribution is weighted per pixel by a forward-backward consistency mask (occlusions), by
   how well the warped LR keyframe agrees locally with ``LR_t`` (misplaced detail costs more than
   missing detail), and by ``1 / |t - k|``; ``D~_t`` is their weighted mean (normalised per HR
   pixel, in one pass over one-channel weight maps).
5. Back-projection makes ``U(LR_t) + D~_t`` consistent with ``LR_t`` plus the LR part the editor
   changed on purpose (``area_down(R_k) - LR_k``, carried along the same way), which removes the
   low-frequency error of imperfect alignment without undoing colour edits.
6. ``Output_t(s) = U(LR_t) + s * (BP result - U(LR_t)) = U(LR_t + s * C_t) + s * D~_t``, rounded,
   where ``C_t`` is back-projection's LR correction: the upscale is linear, so the correction
   rides along with the base in one HR resize. Exactly the plain upscale at ``s = 0``; exactly
   ``R_k`` at a keyframe with ``s = 1`` (steps 2-5 are skipped there).

Speed: the LR half of a frame (reads, flows, weights: ``_Propagation.plan``) is stateful and runs
in order on a helper thread, a few frames ahead of the HR half (warps, blend, back-projection,
rounding: ``_Propagation.render`` and ``_finish``), which is pure, so two threads render frames
side by side. The HR half is memory-bound beside a video encoder: it warps 4-channel images
(OpenCV's vector path) band by band, so its intermediates stay in the cache.

Memory is bounded by ``chunk + reach`` LR frames, ``reach`` LR flow states, ``PLAN_AHEAD`` planned
frames (LR), three keyframes' residuals and each render thread's HR buffers, whatever the clip's
length. ``RestoreOptions.overlap``, ``tile`` and ``color_fix`` do not
apply here: frames are independent given their flows, and back-projection already ties colour to
the LR frame (plus the editor's intended change).

Modules: ``engine`` (``FlowEngine``: restore threads, preview caches), ``settings``
(``FlowSettings``, ``UPSCALERS``), ``propagation`` (reads, flows, keyframe tracks and residuals,
a frame's LR plan and HR render), ``finishing`` (a frame's parts to pixels for a guidance),
``resampling`` (bands, banded upscales, the back-projection filter) and ``caches`` (work buffers,
LRU). Names with a leading underscore are the package's own, shared between its modules.
"""

from sparkvsr.engines.flow.engine import FlowEngine
from sparkvsr.engines.flow.finishing import plain_upscale
from sparkvsr.engines.flow.settings import UPSCALERS, FlowSettings

__all__ = ["UPSCALERS", "FlowEngine", "FlowSettings", "plain_upscale"]
