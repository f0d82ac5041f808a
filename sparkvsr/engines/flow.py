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
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache

import cv2
import numpy as np

from sparkvsr import optical_flow as of
from sparkvsr.engines.base import (
    CancelFn,
    EngineStatus,
    KeyframeGuidance,
    Progress,
    ProgressFn,
    References,
    RestoredChunk,
    RestoreOptions,
    check_references,
    raise_if_cancelled,
)
from sparkvsr.errors import EngineError
from sparkvsr.frames import FrameSource
from sparkvsr.references import fit
from sparkvsr.references.base import image_hash
from sparkvsr.viewport import Viewport, apply_view, preview_scale, shrink

UPSCALERS = {"bicubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}
# Frames the LR half may be planned ahead of the HR half: the first frame after a keyframe
# walks the next keyframe's whole backward chain (~15 DIS refinements at 16 frames apart), and
# a few planned frames keep the HR half busy meanwhile.
PLAN_AHEAD = 4
# Threads rendering frames (the HR half) side by side: beside a running encoder the engine then
# gets its share of the two cores (the 100-frame benchmark restore, decode to encode, measured in
# interleaved pairs: 5.8-6.3 s with two, 6.6-7.1 s with one; three measured like two)
RENDERERS = 2
# LR rows per band of the HR half (see _bands)
BAND_ROWS = 16
# The global-motion fallback (see _Propagation._global_fallback) runs when more than this share
# of a frame's dense flow is rejected; pixels above FALLBACK_TRUSTED confidence fit the motion.
FALLBACK_REJECTED = 0.02
FALLBACK_TRUSTED = 0.7


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


class FlowEngine:
    """Optical-flow keyframe propagation (see the module docstring). Keyword configuration only.

    upscaler:            base upscaler, "bicubic" or "lanczos".
    reach:               how many frames a keyframe propagates to on each side.
    refine_preset / refine_finest_scale / refine_iterations: DIS settings of the direct
                         ``t -> keyframe`` refinement. Measured on Vid4 walk (x4): finishing at
                         level 0 (full LR resolution) instead of 1 is worth about +0.9 dB;
                         "ultrafast" with 8 gradient steps there is as good as "medium", and 4
                         steps cost 0.03 dB on walk (none on bikes) for 30% less DIS time.
    refine_patch_stride: pixels between DIS patches in that refinement (None = the preset's 4).
                         6 costs about 0.1 dB on walk and halves the patches (a 320x240 refine:
                         10.5 -> 5.4 ms).
    step_preset / step_finest_scale:     DIS settings of the frame-to-frame steps (seed + occlusion).
                         The level is made finer on small clips until its short side keeps 48
                         pixels (``_step_scale``): level 2 for 320x240, 1 for walk's 180x120.
                         Level 2 instead of 1 cost about 0.3 dB on walk (before this rule) and makes
                         a step 2.5 -> 0.55 ms.
    agreement_sigma:     LR intensity error (0-255) at which a contribution's weight falls to 1/e.
    agreement_window:    side of the LR window the agreement is averaged over.
    back_projection:     back-projection iterations (0 = off).
    cut_threshold:       motion-compensated error between neighbouring frames, relative to their
                         contrast, that counts as a scene cut (``optical_flow.scene_cut_score``:
                         0.1-0.3 within a shot, about 1 or more across a cut); propagation stops.
    global_fallback:     where the dense flow is rejected but a homography fitted on the trusted
                         flow explains the LR frame better, carry the detail along it (no
                         hole where repeating texture fools the flow).
    preview_cache:       frames whose guidance-independent parts ``preview`` keeps...
    preview_cache_bytes: ...within this many bytes (the newest frame is always kept).
    """

    name = "flow"
    previews_at_viewport = True

    def __init__(
        self,
        *,
        upscaler: str = "bicubic",
        reach: int = 32,
        refine_preset: str = "ultrafast",
        refine_finest_scale: int = 0,
        refine_iterations: int = 4,
        refine_patch_stride: int | None = 6,
        step_preset: str = "ultrafast",
        step_finest_scale: int = 2,
        agreement_sigma: float = 4.0,
        agreement_window: int = 5,
        back_projection: int = 2,
        cut_threshold: float = 0.6,
        global_fallback: bool = True,
        preview_cache: int = 4,
        preview_cache_bytes: int = 512 << 20,
    ):
        self.settings = FlowSettings(
            upscaler=upscaler,
            reach=reach,
            refine_preset=refine_preset,
            refine_finest_scale=refine_finest_scale,
            refine_iterations=refine_iterations,
            refine_patch_stride=refine_patch_stride,
            step_preset=step_preset,
            step_finest_scale=step_finest_scale,
            agreement_sigma=agreement_sigma,
            agreement_window=agreement_window,
            back_projection=back_projection,
            cut_threshold=cut_threshold,
            global_fallback=global_fallback,
            preview_cache=preview_cache,
            preview_cache_bytes=preview_cache_bytes,
        )
        # preview state: the guidance-independent parts of recent frames, and the propagation
        # (flows, keyframe residuals) of the clip last previewed, so scrubbing reuses its flows.
        self._preview_frames: OrderedDict[tuple, _Parts] = OrderedDict()
        self._preview_propagation: _Propagation | None = None
        self._preview_propagation_key: tuple | None = None
        self._scaled_propagations: OrderedDict[tuple, _Propagation] = OrderedDict()
        self._hashes: OrderedDict[int, tuple[np.ndarray, str]] = OrderedDict()
        self._small_references: OrderedDict[tuple, np.ndarray] = OrderedDict()

    # ---------------------------------------------------------------- Engine protocol

    def restore(
        self,
        source: FrameSource,
        references: References,
        options: RestoreOptions,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
    ) -> Iterator[RestoredChunk]:
        """Yield ``[N, H, W, 3]`` uint8 chunks of ``options.chunk`` frames from ``options.start``.

        Every frame is a function of the LR frames and References alone (not of where the run
        started), so a resumed run yields exactly the frames of an uninterrupted one.
        """
        # 1. inputs
        keys = check_references(source, references, options.scale)
        num_frames = source.num_frames
        if options.start > num_frames:
            raise EngineError(
                f"start frame {options.start} is past the clip's end ({num_frames} frames)"
            )
        # a range's frames are those of the whole clip: every keyframe reaches into it
        stop = options.end(num_frames)
        propagation = _Propagation(source, keys, options.scale, self.settings, options.chunk)
        starts = range(options.start, stop, options.chunk)
        # 2. chunk by chunk: render, hand over, forget. A helper thread plans up to PLAN_AHEAD
        #    frames ahead, in order (LR flows; OpenCV's DIS runs on one core), and RENDERERS
        #    threads render and finish frames (HR) straight into the chunk. The planner stops at
        #    each chunk's end: nothing reads the source or the References while a chunk is out.
        scratches = threading.local()  # each render thread reuses its HR buffers frame to frame

        def render_into(plan: Future, out: np.ndarray) -> None:
            scratch = getattr(scratches, "scratch", None)
            if scratch is None:
                scratch = scratches.scratch = _Scratch()
            parts = propagation.render(plan.result(), scratch)
            _finish(parts, options, self.settings.upscaler, out=out, scratch=scratch)

        def report_frame(t: int, render: Future) -> None:
            # frames finish in order: a progress bar moves frame by frame, not chunk by chunk
            render.result()
            if progress is not None:
                progress(
                    Progress(t + 1 - options.start, stop - options.start, "frames", f"frame {t}")
                )

        with (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="flow-plan") as planner,
            ThreadPoolExecutor(max_workers=RENDERERS, thread_name_prefix="flow-render") as painter,
        ):
            for first in starts:
                raise_if_cancelled(cancel)
                last = min(first + options.chunk, stop)
                width, height = options.output_size or propagation.hr_size
                # each frame is finished straight into its chunk: a chunk is never held twice
                frames = np.empty((last - first, height, width, 3), np.uint8)
                plans: deque[Future] = deque()
                renders: deque[tuple[int, Future]] = deque()
                planned = first
                for t in range(first, last):
                    while planned < min(t + PLAN_AHEAD + 1, last):
                        plans.append(
                            planner.submit(
                                propagation.plan,
                                planned,
                                references,
                                _same_version,
                                options.for_keyframe,
                            )
                        )
                        planned += 1
                    future = painter.submit(render_into, plans.popleft(), frames[t - first])
                    renders.append((t, future))
                    while len(renders) > RENDERERS:
                        report_frame(*renders.popleft())
                while renders:
                    report_frame(*renders.popleft())
                yield RestoredChunk(first, frames)

    def preview(
        self,
        source: FrameSource,
        references: References,
        frame: int,
        options: RestoreOptions,
        *,
        viewport: Viewport | None = None,
    ) -> np.ndarray:
        """Output frame ``frame`` as ``restore`` would yield it: ``[H, W, 3]`` uint8.

        Everything but the final ``U(LR + s * C) + s * D`` is cached per clip identity, frame and
        the hashes of the References that reach the frame, so moving the guidance slider costs one
        upscale and one add.

        ``viewport``: only what a viewer shows, at its size (``sparkvsr.viewport``). Zoomed out,
        the frame is propagated at the smallest integer scale that still fills the view (the
        References area-downscaled to it: at 4x of 720p in a 900-pixel viewer, scale 1, a
        sixteenth of the pixels) and shrunk; at 100 % and above only the visible region is
        finished, equal to the same region of the full frame.
        """
        keys = check_references(source, references, options.scale)
        if not 0 <= frame < source.num_frames:
            raise EngineError(
                f"frame {frame} is outside the clip: valid frames are 0 to {source.num_frames - 1}"
            )
        hr_size = (source.size[0] * options.scale, source.size[1] * options.scale)
        if viewport is not None and options.output_size not in (None, hr_size):
            full = self.preview(source, references, frame, options)  # a resized output
            return apply_view(full, viewport.view(options.output_size))
        view = None if viewport is None else viewport.view(hr_size)
        scale = options.scale if view is None else preview_scale(view, options.scale)
        parts = self._preview_parts(source, keys, references, frame, options, scale)
        if view is None:
            return _finish(parts, options, self.settings.upscaler)
        if scale == options.scale:
            return shrink(_finish_box(parts, options, self.settings.upscaler, view.box), view.size)
        small = _finish(parts, replace(options, scale=scale), self.settings.upscaler)
        box = tuple(round(v * scale / options.scale) for v in view.box)
        return shrink(small[box[1] : box[3], box[0] : box[2]], view.size)

    def _preview_parts(
        self,
        source: FrameSource,
        keys: list[int],
        references: References,
        frame: int,
        options: RestoreOptions,
        scale: int,
    ) -> _Parts:
        """Frame ``frame``'s guidance-independent parts at ``scale`` (``options.scale`` or a
        smaller preview scale, with the References area-downscaled to it), cached."""
        contributors = _neighbours(keys, frame)
        ref_hashes = {k: self._hash(references[k]) for k in contributors}
        cache_key = (
            source.identity,
            scale,
            frame,
            tuple(sorted(ref_hashes.items())),
            tuple(options.for_keyframe(k) for k in contributors),
            self.settings,
        )
        parts: _Parts | None = self._preview_frames.get(cache_key)
        if parts is None:
            propagation = self._propagation_for_preview(source, keys, replace(options, scale=scale))
            if scale != options.scale:
                size = (source.size[0] * scale, source.size[1] * scale)
                references = {
                    k: self._downscaled(references[k], ref_hashes[k], size) for k in contributors
                }
            parts = propagation.frame(
                frame, references, ref_hashes.__getitem__, options.for_keyframe
            )
            self._preview_frames[cache_key] = parts
            # Bounded by count and by bytes: at x4 of 720p one frame's parts are ~180 MB.
            while len(self._preview_frames) > self.settings.preview_cache or (
                len(self._preview_frames) > 1
                and self._preview_bytes() > self.settings.preview_cache_bytes
            ):
                self._preview_frames.popitem(last=False)
        else:
            self._preview_frames.move_to_end(cache_key)
        return parts

    def _hash(self, image: np.ndarray) -> str:
        """A Reference's content hash, remembered per array (hashing a 4x 720p image costs a
        quarter second; References are never changed in place, a new one is a new array)."""
        memo = self._hashes.get(id(image))
        if memo is None or memo[0] is not image:
            memo = (image, image_hash(np.asarray(image)))
            self._hashes[id(image)] = memo
            while len(self._hashes) > 16:
                self._hashes.popitem(last=False)
        return memo[1]

    def _downscaled(self, image: np.ndarray, content_hash: str, size: tuple[int, int]):
        key = (content_hash, size)
        small = self._small_references.get(key)
        if small is None:
            small = cv2.resize(np.asarray(image), size, interpolation=cv2.INTER_AREA)
            self._small_references[key] = small
            while len(self._small_references) > 6:
                self._small_references.popitem(last=False)
        return small

    def release_caches(self) -> None:
        """Drop the preview caches (the worker calls this when its last session closes)."""
        self._preview_frames.clear()
        self._preview_propagation = None
        self._preview_propagation_key = None
        self._scaled_propagations.clear()
        self._hashes.clear()
        self._small_references.clear()

    def _preview_bytes(self) -> int:
        return sum(_parts_bytes(parts) for parts in self._preview_frames.values())

    def status(self) -> EngineStatus:
        s = self.settings
        return EngineStatus(
            name=self.name,
            device="cpu",
            model=f"DIS optical flow ({s.refine_preset}) + {s.upscaler} upscale",
            cache_entries=len(self._preview_frames),
            cache_bytes=self._preview_bytes(),
            detail=f"reach {s.reach} frames, back-projection x{s.back_projection}",
        )

    # ---------------------------------------------------------------- helpers

    def _propagation_for_preview(
        self, source: FrameSource, keys: list[int], options: RestoreOptions
    ) -> _Propagation:
        key = (source.identity, tuple(keys), options.scale)
        if self._preview_propagation_key == key:
            return self._preview_propagation
        # one propagation per preview scale (the viewer's and full resolution), so zooming in
        # and out keeps both sets of flows
        kept = self._scaled_propagations.pop(key, None)
        if self._preview_propagation is not None:
            self._scaled_propagations[self._preview_propagation_key] = self._preview_propagation
            while len(self._scaled_propagations) > 1:
                self._scaled_propagations.popitem(last=False)
        if kept is None:
            # a small read block: a preview touches only the frames between two keyframes
            kept = _Propagation(source, keys, options.scale, self.settings, 8)
            for other_key, other in self._scaled_propagations.items():
                if other_key[:2] == key[:2]:
                    kept.share_lr_caches(other)  # the flows do not depend on the scale
        self._preview_propagation = kept
        self._preview_propagation_key = key
        return self._preview_propagation


def _same_version(_: int) -> str:
    """References do not change during one restore: every keyframe has one version."""
    return ""


def _neighbours(keys: list[int], t: int) -> list[int]:
    """The keyframes that can reach frame ``t``: itself if it is one, else the ones around it."""
    i = bisect.bisect_left(keys, t)
    if i < len(keys) and keys[i] == t:
        return [t]
    return keys[max(i - 1, 0) : i] + keys[i : i + 1]


def _parts_bytes(parts: _Parts) -> int:
    arrays = (parts.lr, parts.residual, parts.correction)
    return sum(a.nbytes for a in arrays if a is not None)


@dataclass(frozen=True)
class _Parts:
    """Frame ``t`` for any guidance ``s``: ``Output(s) = U(lr + s * correction) + s * residual``.

    ``U(lr + s * C) = U(lr) + s * U(C)`` because the upscale is linear, so the back-projection
    correction rides along with the base upscale: one HR resize per frame instead of two, and no
    HR buffer that depends on ``s``.
    """

    lr: np.ndarray  # [h, w, 3] float32 in [0, 255]: LR_t
    residual: np.ndarray | None  # [H, W, 3] float32: the propagated residual (a keyframe's D_k)
    correction: np.ndarray | None  # [h, w, 3] float32: back-projection's LR correction, or None


def _finish(
    parts: _Parts,
    options: RestoreOptions,
    upscaler: str,
    out: np.ndarray | None = None,
    scratch: _Scratch | None = None,
) -> np.ndarray:
    """``U(lr + s * C) + s * D`` rounded (half to even) and clipped to uint8 ``[H, W, 3]``, then
    resized to ``options.output_size``; written into ``out`` (that final size) when given.

    At ``s = 0`` this is ``U(lr)`` rounded, the plain upscale; at a keyframe with ``s = 1`` it is
    ``U(lr) + (R - U(lr))``, the same float sum that rebuilds ``R`` exactly. The rounding equals
    ``np.rint`` then ``np.clip``.
    """
    s = float(options.guidance)
    residual = parts.residual
    lr = parts.lr
    if residual is None or s == 0:
        s, residual = 0.0, None
    elif parts.correction is not None:
        lr = cv2.scaleAdd(parts.correction, s, lr)
    height, width = lr.shape[0] * options.scale, lr.shape[1] * options.scale
    base = cv2.resize(
        lr,
        (width, height),
        dst=None if scratch is None else scratch.array("base", (height, width, 3)),
        interpolation=UPSCALERS[upscaler],
    )
    resized = options.output_size is not None and options.output_size != (width, height)
    dst = None if resized else out
    if residual is None:
        frame = cv2.addWeighted(base, 1.0, base, 0.0, 0.0, dst=dst, dtype=cv2.CV_8U)
    elif s == 1:
        frame = cv2.add(base, residual, dst=dst, dtype=cv2.CV_8U)  # 2x addWeighted's speed
    else:
        frame = cv2.addWeighted(base, 1.0, residual, s, 0.0, dst=dst, dtype=cv2.CV_8U)
    if resized:
        shrink = options.output_size[0] < width
        frame = cv2.resize(
            frame,
            options.output_size,
            dst=out,
            interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC,
        )
    return frame


def _finish_box(
    parts: _Parts, options: RestoreOptions, upscaler: str, box: tuple[int, int, int, int]
) -> np.ndarray:
    """``_finish`` for the output pixels in ``box`` (x0, y0, x1, y1) only: the parts are cut
    to the LR rows and columns the box needs plus the upscaler's reach, so the result equals
    the same box of the whole finished frame."""
    scale = options.scale
    height, width = parts.lr.shape[:2]
    margin = 4  # Lanczos reaches 4 LR pixels, bicubic 2
    lx0, ly0 = max(0, box[0] // scale - margin), max(0, box[1] // scale - margin)
    lx1 = min(width, -(-box[2] // scale) + margin)
    ly1 = min(height, -(-box[3] // scale) + margin)

    def cut(lr_image: np.ndarray | None, factor: int) -> np.ndarray | None:
        if lr_image is None:
            return None
        return lr_image[ly0 * factor : ly1 * factor, lx0 * factor : lx1 * factor]

    part = _Parts(cut(parts.lr, 1), cut(parts.residual, scale), cut(parts.correction, 1))
    frame = _finish(part, replace(options, output_size=None), upscaler)
    x0, y0 = box[0] - lx0 * scale, box[1] - ly0 * scale
    return np.ascontiguousarray(frame[y0 : y0 + box[3] - box[1], x0 : x0 + box[2] - box[0]])


def _unpadded(image: np.ndarray) -> np.ndarray:
    """``[H, W, 4]`` -> ``[H, W, 3]``: drop ``_padded``'s 4th channel."""
    return cv2.cvtColor(image, cv2.COLOR_RGBA2RGB)


def _padded(image: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` float32 -> ``[H, W, 4]``: the HR half works on 4-channel images.

    OpenCV 5's remap has vector paths for 1 and 4 channels, not 3 (a 1280x960 float remap:
    6.5 ms with 3 channels, 4.2 ms with 4); the rest (area downscale, adds) is faster with 3,
    so the warps and their blend work on 4 and drop the 4th at once. It is padding, never
    read (1.0 here).
    """
    return cv2.cvtColor(image, cv2.COLOR_RGB2RGBA)


@dataclass(frozen=True)
class _Contribution:
    """One keyframe's part in frame ``t``: its prepared Reference, flow and LR weight."""

    keyframe: _Keyframe
    to_key: np.ndarray  # [h, w, 2] flow t -> keyframe
    weight: np.ndarray  # [h, w] float32 >= 0


@dataclass(frozen=True)
class _Plan:
    """The LR half of frame ``t``; ``_Propagation.render`` turns it into ``_Parts``."""

    lr: np.ndarray  # [h, w, 3] float32: LR_t
    contributions: tuple[_Contribution, ...]  # empty at a keyframe or where nothing reaches
    target: np.ndarray | None  # [h, w, 3] float32: LR_t + offset - down(up(LR_t)), with them
    residual: np.ndarray | None  # [H, W, 4] float32: a keyframe's own D_k, without them


@dataclass(frozen=True)
class _Keyframe:
    """A Reference prepared for propagation (LR size ``h x w``, HR size ``H x W``)."""

    index: int
    lr: np.ndarray  # [h, w, 3] float32 in [0, 255]
    gray: np.ndarray  # [h, w] uint8
    residual: np.ndarray  # [H, W, 4] float32: R_k - U(LR_k), 4th channel padding (see _padded)
    # [h, w, 3] float32: the LR part the editor changed on purpose, area_down(R_k) - LR_k less
    # what is not intended (see _Propagation._intended), times trust
    lr_offset: np.ndarray
    # [h, w] float32 >= 0: the keyframe's weight times where its Reference shows the frame's
    # content; None where it is 1 everywhere
    trust: np.ndarray | None = None


@dataclass(frozen=True)
class _TrackState:
    """Where frame ``t`` meets one keyframe ``k`` (LR resolution)."""

    to_key: np.ndarray  # [h, w, 2] refined flow t -> k
    confidence: np.ndarray  # [h, w] float32 in [0, 1]


class _Track:
    """The chain of states from keyframe ``key`` towards ``direction`` (+1 later, -1 earlier)."""

    def __init__(self, key: int, direction: int):
        self.key = key
        self.direction = direction
        self.states: dict[int, _TrackState] = {}
        self.reached = key  # the furthest frame computed so far
        self.tip_from_key: np.ndarray | None = None  # composed flow key -> reached, [h, w, 2]
        self.blocked = False  # a scene cut ended the chain


class _Propagation:
    """Flows, tracks and keyframes of one clip at one scale, with every cache bounded.

    ``frame(t)`` depends only on the LR frames and References, never on what was asked before:
    each cache holds values that are pure functions of their keys.
    """

    def __init__(
        self,
        source: FrameSource,
        keys: list[int],
        scale: int,
        settings: FlowSettings,
        read_block: int,
    ):
        self.source = source
        self.keys = keys
        self.scale = scale
        self.settings = settings
        width, height = source.size
        self.lr_size = (width, height)
        self.hr_size = (width * scale, height * scale)
        self.read_block = max(1, min(read_block, 64))
        self.refine = of.DisFlow(
            settings.refine_preset,
            settings.refine_finest_scale,
            settings.refine_iterations,
            patch_stride=settings.refine_patch_stride,
        )
        self.step = of.DisFlow(
            settings.step_preset, _step_scale(settings.step_finest_scale, min(width, height))
        )
        reach = settings.reach
        self._frames = _Lru(capacity=2 * reach + self.read_block + 4)
        self._grays = _Lru(capacity=reach + self.read_block + 4)
        self._floats = _Lru(capacity=4)  # frame t and the keyframes it is aligned to
        # a keyframe's backward chain is walked ahead of the forward one: keep its steps for it
        self._steps = _Lru(capacity=2 * reach + 6)
        self._cuts = _Lru(capacity=2 * reach + 6)
        self._keyframes = _Lru(capacity=3)
        self._down_up_kernel = _down_up_kernel(UPSCALERS[settings.upscaler], scale)
        self._tracks = _Lru(capacity=2)

    def share_lr_caches(self, other: _Propagation) -> None:
        """Use ``other``'s LR caches (frames, flows, tracks, cuts): they are functions of the
        LR frames alone, so propagations of one clip at two scales compute each flow once.
        Only for propagations used from one thread."""
        if (other.source.identity, other.keys) != (self.source.identity, self.keys):
            raise EngineError("LR caches are shared only between propagations of one clip")
        self._frames, self._grays, self._floats = other._frames, other._grays, other._floats
        self._steps, self._cuts, self._tracks = other._steps, other._cuts, other._tracks

    # -- the product

    def frame(
        self,
        t: int,
        references: References,
        ref_version: Callable[[int], str],
        guidance: Callable[[int], KeyframeGuidance],
    ) -> _Parts:
        """Frame ``t``'s guidance-independent parts (see ``_Parts``): ``render(plan(t))``."""
        return self.render(self.plan(t, references, ref_version, guidance))

    def plan(
        self,
        t: int,
        references: References,
        ref_version: Callable[[int], str],
        guidance: Callable[[int], KeyframeGuidance],
    ) -> _Plan:
        """The LR half of frame ``t``: flows, weights and the editor's LR offset (see ``_Plan``).

        Everything stateful (reads, caches, tracks) happens here, in order; ``render`` is pure,
        so ``restore`` runs it for one frame while this runs for the next.
        ``ref_version(k)`` tags keyframe ``k``'s Reference (its content hash in previews), so a
        cached keyframe is rebuilt when its Reference changes. ``guidance(k)`` is keyframe ``k``'s
        weight and colour switch (``RestoreOptions.for_keyframe``).
        """
        lr = self._lr(t)
        contributors = _neighbours(self.keys, t)
        if contributors == [t]:
            keyframe = self._keyframe(t, references, ref_version, guidance)
            return _Plan(lr, (), None, keyframe.residual)
        # 1. the contributions that reach t, with their per-pixel LR weights, scaled by 10:
        #    blendLinear's fixed 1e-5 regulariser then weighs like 1e-6 on unscaled weights
        #    (unscaled, it pulls weak contributions towards 0: -0.12 dB on Vid4 walk)
        #    Each keyframe's own trust (its weight times where its Reference shows the frame's
        #    content, carried along the flow) scales its share, so a better keyframe takes over
        #    where another one's Reference differs.
        reached = []
        for k in contributors:
            state = self._state(k, t)
            if state is not None:
                keyframe = self._keyframe(k, references, ref_version, guidance)
                if keyframe.trust is not None and not keyframe.trust.any():
                    continue  # switched off (weight 0) or contradicted everywhere: no part
                weight = state.confidence * np.float32(10.0 / abs(t - k))
                if keyframe.trust is not None:
                    weight = weight * of.warp(keyframe.trust, state.to_key)
                reached.append(_Contribution(keyframe, state.to_key, weight))
        if not reached:
            return _Plan(lr, (), None, None)
        # 2. the weighted mean of the editor's LR offsets, carried along the same flows and
        #    blended like the HR residuals
        shifted = [of.warp(c.keyframe.lr_offset, c.to_key) for c in reached]
        offset = cv2.blendLinear(shifted[0], shifted[-1], reached[0].weight, reached[-1].weight)
        target = lr + offset - self._down_up(lr)
        return _Plan(lr, tuple(reached), target, None)

    def render(self, plan: _Plan, scratch: _Scratch | None = None) -> _Parts:
        """The HR half of a frame (pure: reads only ``plan`` and fixed settings).

        With ``scratch``, the parts' HR residual lives in it: valid until the next call with the
        same scratch (``restore`` finishes each frame at once). Without, the parts own it (the
        preview cache keeps them).
        """
        if not plan.contributions:
            residual = None if plan.residual is None else _unpadded(plan.residual)
            return _Parts(plan.lr, residual, None)
        fresh = scratch is None
        scratch = _Scratch() if scratch is None else scratch
        width, height = self.hr_size
        lr_width, lr_height = self.lr_size
        scale = self.scale
        # the parts own their residual unless a scratch was given (then it is reused)
        residual = (
            np.empty((height, width, 3), np.float32)
            if fresh
            else scratch.array("residual", (height, width, 3))
        )
        down = np.empty((lr_height, lr_width, 3), np.float32)
        # 3. the warped residuals (HR), band by band so every intermediate stays in the cache:
        #    sampling positions bilinearly upscaled from the LR grid, bilinear warps (as sharp
        #    after back-projection on Vid4 as bicubic, and 2x cheaper), and one blendLinear
        #    pass that weights, adds and normalises (by the weights' sum + 1e-5) from
        #    one-channel weight maps; a lone contribution is blended with itself:
        #    D * w / (w + 5e-6), all of it where trusted, none where not. Each band's area
        #    downscale feeds back-projection. Samples from outside the keyframe read 0 (no
        #    detail is known there): OpenCV's constant border is 25% faster than replicating
        #    (6.5 -> 4.8 ms a 1280x960 warp) and Vid4 walk and bikes score the same to 0.01 dB.
        positions = [of.hr_positions(c.to_key, scale) for c in plan.contributions]
        for first, last in _bands(lr_height):
            band = (last - first) * scale
            warped, weights = [], []
            for i, c in enumerate(plan.contributions):
                warped.append(
                    cv2.remap(
                        c.keyframe.residual,
                        _upscale_rows(
                            positions[i], first, last, scale, cv2.INTER_LINEAR, scratch, f"at{i}"
                        ),
                        None,
                        cv2.INTER_LINEAR,
                        dst=scratch.array(f"warped{i}", (band, width, 4)),
                        borderMode=cv2.BORDER_CONSTANT,
                    )
                )
                weights.append(
                    _upscale_rows(
                        c.weight, first, last, scale, cv2.INTER_LINEAR, scratch, f"weight{i}"
                    )
                )
            blended = cv2.blendLinear(
                warped[0],
                warped[-1],
                weights[0],
                weights[-1],
                dst=scratch.array("blended", (band, width, 4)),
            )
            rows = cv2.cvtColor(
                blended, cv2.COLOR_RGBA2RGB, dst=residual[first * scale : last * scale]
            )
            cv2.resize(
                rows, (lr_width, last - first), dst=down[first:last], interpolation=cv2.INTER_AREA
            )
        # 4. back-projection towards LR_t + the intended offset, solved on the LR grid: a step
        #    X += up(e) changes the LR error e = target - down(X) by -A e, where A = down(up(.))
        #    is a fixed small filter; so n steps add up(e_0 + ... + e_{n-1}), which _finish
        #    upscales together with LR_t (one HR pass for both).
        if not self.settings.back_projection:
            return _Parts(plan.lr, residual, None)
        error = plan.target - down
        correction = np.zeros_like(error)
        for _ in range(self.settings.back_projection):
            correction += error
            error -= self._down_up(error)
        return _Parts(plan.lr, residual, correction)

    # -- tracks

    def _state(self, k: int, t: int) -> _TrackState | None:
        """The state of keyframe ``k``'s chain at frame ``t``, or None where it does not reach."""
        if abs(t - k) > self.settings.reach:
            return None
        direction = 1 if t > k else -1
        track = self._tracks.get((k, direction))
        if track is None or (direction == 1 and t < track.reached):
            track = _Track(k, direction)
            self._tracks.put((k, direction), track)
        if direction == -1 and t < track.reached:
            self._prefetch(t, track.reached + 1)  # one read for the walk back from the keyframe
        while (t - track.reached) * direction > 0 and not track.blocked:
            n = track.reached + direction
            if self._is_cut(max(n, track.reached)):
                track.blocked = True
                break
            state, track.tip_from_key = self._advance(k, track, n)
            if direction == 1:
                # a forward chain is walked in order: only its newest state is needed again
                track.states.clear()
            track.states[n] = state
            track.reached = n
        return track.states.get(t)

    def _advance(self, k: int, track: _Track, n: int) -> tuple[_TrackState, np.ndarray]:
        """Extend keyframe ``k``'s chain to frame ``n`` from its tip ``track.reached``.

        Returns the new state and the composed flow ``k -> n``.
        """
        m = track.reached
        step_nm = self._step(n, m)
        step_mn = self._step(m, n)
        if m == k:
            seed, from_key = step_nm, step_mn
        else:
            seed = of.compose(step_nm, track.states[m].to_key)
            from_key = of.compose(track.tip_from_key, step_mn)
        to_key = self.refine(self._gray(n), self._gray(k), seed)
        mask = of.forward_backward_mask(to_key, from_key, soft=True)
        aligned = of.warp(self._lr(k), to_key)
        confidence = of.agreement(
            aligned, self._lr(n), self.settings.agreement_sigma, self.settings.agreement_window
        )
        confidence = confidence * mask
        if self.settings.global_fallback:
            to_key, confidence = self._global_fallback(k, n, to_key, confidence)
        return _TrackState(to_key, confidence), from_key

    def _global_fallback(
        self, k: int, n: int, to_key: np.ndarray, confidence: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Where the dense flow ``n -> k`` is rejected but the global motion explains frame ``n``
        better, use the global motion (a homography fitted with RANSAC on the trusted flow).

        Repeating texture (window stripes) fails the forward-backward check in both directions
        and would leave a hole for many frames; the camera's motion still carries detail
        there. Judged like the dense flow, by how well the LR keyframe it aligns agrees with
        frame ``n``; skipped when nearly everything is trusted already.
        """
        trusted = confidence > FALLBACK_TRUSTED
        if trusted.mean() > 1.0 - FALLBACK_REJECTED:
            return to_key, confidence
        motion = of.homography_flow(to_key, trusted)
        if motion is None:
            return to_key, confidence
        # judged on luma: a third of the work of the colour agreement, and as telling here
        aligned = of.warp(self._gray_float(k), motion)
        explained = of.agreement(
            aligned,
            self._gray_float(n),
            self.settings.agreement_sigma,
            self.settings.agreement_window,
        )
        better = explained > confidence
        if not better.any():
            return to_key, confidence
        np.copyto(to_key, motion, where=better[..., None])  # to_key is this step's own
        return to_key, np.maximum(confidence, explained)

    def _is_cut(self, later: int) -> bool:
        """Whether a scene cut separates frame ``later - 1`` from frame ``later``."""
        cached = self._cuts.get(later)
        if cached is None:
            score = of.scene_cut_score(
                self._lr_u8(later - 1), self._lr_u8(later), self._step(later, later - 1)
            )
            cached = score > self.settings.cut_threshold
            self._cuts.put(later, cached)
        return cached

    # -- cached pieces

    def _step(self, i: int, j: int) -> np.ndarray:
        flow = self._steps.get((i, j))
        if flow is None:
            flow = self.step(self._gray(i), self._gray(j))
            self._steps.put((i, j), flow)
        return flow

    def _keyframe(
        self,
        k: int,
        references: References,
        ref_version: Callable[[int], str],
        guidance: Callable[[int], KeyframeGuidance],
    ) -> _Keyframe:
        chosen = guidance(k)
        cache_key = (k, ref_version(k), chosen)
        keyframe = self._keyframes.get(cache_key)
        if keyframe is None:
            reference = np.asarray(references[k])  # uint8 (check_references)
            if not chosen.keep_colors:  # the editor's global grade is not propagated
                reference = fit.ungraded(reference, self._lr_u8(k))
            lr = self._lr(k)
            # R - U(LR) from uint8 R into the upscale's own buffer: fresh HR arrays cost page
            # faults (~10 ms for 20 MB on our VMs), so the build makes as few as it can
            residual = self._upscale(_padded(lr))
            cv2.subtract(
                cv2.cvtColor(reference, cv2.COLOR_RGB2RGBA),
                residual,
                dst=residual,
                dtype=cv2.CV_32F,
            )
            # area_down(R) - LR_k = area_down(D_k) + area_down(U(LR_k)) - LR_k, the second
            # term on the LR grid: no float copy of R at HR
            lr_offset = self._downscale(residual)[..., :3] + self._down_up(lr) - lr
            trust = self._intended(reference, k, chosen, residual, lr_offset)
            keyframe = _Keyframe(
                index=k,
                lr=lr,
                gray=self._gray(k),
                residual=residual,
                lr_offset=lr_offset,
                trust=trust,
            )
            self._keyframes.put(cache_key, keyframe)
        return keyframe

    def _intended(
        self,
        reference: np.ndarray,
        k: int,
        chosen: KeyframeGuidance,
        residual: np.ndarray,
        lr_offset: np.ndarray,
    ) -> np.ndarray | None:
        """Keep only the editor's intended change in keyframe ``k``'s residual and LR offset
        (both edited in place) and return its trust map, or None where it is 1 everywhere.

        Intended: the Reference's detail, and its low-frequency colour / tone change only when
        the user keeps its colours. Never intended: structure that differs from the frame
        (``fit.assess``'s confidence falls to 0 there). The trust map ``[h, w]`` (LR) is the
        keyframe's weight (the user's, or automatic from the fit) times that confidence; the
        residual and the offset are scaled by it, so the keyframe itself shows the same.
        """
        lr = self._lr_u8(k)
        maps = fit.assess(reference, lr, down=lr_offset + self._lr(k))
        weight = maps.fit.weight if chosen.weight is None else chosen.weight
        # a colour change below fit.COLOUR_NEGLIGIBLE is rounding (an upscaler's Reference):
        # left alone, so a Reference that fits is reproduced exactly at its keyframe
        if not chosen.keep_colors and maps.fit.colour_change >= fit.COLOUR_NEGLIGIBLE:
            lr_offset -= maps.colour
            # the HR residual loses the same colour change, upscaled like the base
            residual[..., :3] -= self._upscale(maps.colour)
        trust = maps.confidence * np.float32(weight)
        if np.all(trust == 1.0):
            return None
        lr_offset *= trust[..., None]
        hr_trust = cv2.resize(trust, self.hr_size, interpolation=cv2.INTER_LINEAR)
        residual *= hr_trust[..., None]
        return trust

    def _lr_u8(self, t: int) -> np.ndarray:
        frame = self._frames.get(t)
        if frame is None:
            self._prefetch(t, min(t + self.read_block, self.source.num_frames))
            frame = self._frames.get(t)
        return frame

    def _prefetch(self, start: int, stop: int) -> None:
        """Read the frames of ``[start, stop)`` not in the cache, in one read."""
        missing = [i for i in range(start, stop) if self._frames.get(i) is None]
        if missing:
            block = self.source.read(missing[0], missing[-1] + 1)
            for offset, item in enumerate(block):
                self._frames.put(missing[0] + offset, np.ascontiguousarray(item))

    def _lr(self, t: int) -> np.ndarray:
        frame = self._floats.get(t)
        if frame is None:
            frame = self._lr_u8(t).astype(np.float32)
            frame.setflags(write=False)  # shared by plans, keyframes and cached previews
            self._floats.put(t, frame)
        return frame

    def _gray_float(self, t: int) -> np.ndarray:
        """Frame ``t``'s luma ``[h, w]`` float32 in [0, 255] (the fallback's agreement)."""
        return self._gray(t).astype(np.float32)

    def _gray(self, t: int) -> np.ndarray:
        gray = self._grays.get(t)
        if gray is None:
            gray = of.to_gray(self._lr_u8(t))
            self._grays.put(t, gray)
        return gray

    def _upscale(self, image: np.ndarray) -> np.ndarray:
        interpolation = UPSCALERS[self.settings.upscaler]
        return cv2.resize(image, self.hr_size, interpolation=interpolation)

    def _down_up(self, image: np.ndarray) -> np.ndarray:
        """``downscale(upscale(image))`` for an LR image, as the filter it is (no HR pass)."""
        return cv2.filter2D(image, -1, self._down_up_kernel, borderType=cv2.BORDER_REPLICATE)

    def _downscale(self, image: np.ndarray) -> np.ndarray:
        return cv2.resize(image, self.lr_size, interpolation=cv2.INTER_AREA)


def _step_scale(finest_scale: int, short_side: int, min_side: int = 48) -> int:
    """The DIS level the frame-to-frame steps finish at: ``finest_scale``, made finer until that
    level's short side has ``min_side`` LR pixels (a dozen rows of 8-pixel patches). Level 2 of
    a 320x240 clip is 80x60; on a 160x68 one it would be 40x17, too few patches to follow motion.
    """
    while finest_scale > 0 and short_side >> finest_scale < min_side:
        finest_scale -= 1
    return finest_scale


# LR rows each side that an integer upscale's taps reach (bilinear 2 taps, bicubic 4, Lanczos 8)
_TAP_REACH = {cv2.INTER_LINEAR: 1, cv2.INTER_CUBIC: 2, cv2.INTER_LANCZOS4: 4}


def _bands(lr_rows: int, band: int | None = None) -> list[tuple[int, int]]:
    """LR row ranges ``[first, last)`` covering ``lr_rows`` rows, ``band`` rows each (the last
    may be shorter). The HR half works band by band: at 16 LR rows x4 of a 1280-wide frame, a
    band's buffers (~6 MB) stay in the cache instead of streaming 15-20 MB arrays through
    memory several times per frame. Beside a running encoder, 16 and 32 rows measured alike,
    8 a little slower, 4 slower (more calls).
    """
    band = BAND_ROWS if band is None else band
    return [(first, min(first + band, lr_rows)) for first in range(0, lr_rows, band)]


def _upscale_rows(
    image: np.ndarray,
    first: int,
    last: int,
    scale: int,
    interpolation: int,
    scratch: _Scratch,
    name: str,
) -> np.ndarray:
    """Rows ``[first * scale, last * scale)`` of ``cv2.resize(image, x scale)``, from LR rows
    ``[first, last)`` plus the few around them the taps reach: ``[(last - first) * scale, W, C]``.

    Equal to the same rows of the whole-frame resize: an integer upscale applies the same taps
    to every row, and the frame's own top and bottom rows are the edges either way. The result
    is a view into ``scratch``'s buffer ``name``.
    """
    # one row more than the taps reach: from a source of fewer rows than taps (a 1-row band at
    # the frame's edge), OpenCV's bicubic differs from the whole frame's by ~1e-7
    reach = _TAP_REACH[interpolation] + 1
    top, bottom = max(first - reach, 0), min(last + reach, image.shape[0])
    height, width = (bottom - top) * scale, image.shape[1] * scale
    channels = image.shape[2:]
    up = cv2.resize(
        image[top:bottom],
        (width, height),
        dst=scratch.array(name, (height, width, *channels)),
        interpolation=interpolation,
    )
    skip = (first - top) * scale
    return up[skip : skip + (last - first) * scale]


@lru_cache(maxsize=8)
def _down_up_kernel(interpolation: int, scale: int) -> np.ndarray:
    """The 2-D filter equal to area-``downscale(upscale(.))`` on the LR grid: odd square float32.

    Both resizes are separable and shift-invariant for an integer scale, and OpenCV's bicubic
    and Lanczos upscales replicate borders, so filtering with this kernel and replicated borders
    matches the two resizes to float precision. Measured by sending an impulse through them.
    """
    radius = 6  # Lanczos-4 reaches 4 LR pixels and the area average one more
    size = 2 * radius + 1
    impulse = np.zeros((size, size), np.float32)
    impulse[radius, radius] = 1.0
    up = cv2.resize(impulse, (size * scale, size * scale), interpolation=interpolation)
    kernel = cv2.resize(up, (size, size), interpolation=cv2.INTER_AREA)
    # crop to the support (5x5 for bicubic x4): OpenCV filters kernels above 11x11 by DFT,
    # 25x slower here
    rows, cols = np.nonzero(np.abs(kernel) > 1e-7)
    reach = max(abs(rows - radius).max(), abs(cols - radius).max())
    kernel = np.ascontiguousarray(
        kernel[radius - reach : radius + reach + 1, radius - reach : radius + reach + 1]
    )
    kernel.setflags(write=False)
    return kernel


class _Scratch:
    """Float32 work buffers by name, reused from frame to frame by one thread.

    A fresh 15 MB HR array for every step of every frame makes the kernel fault in and zero new
    pages: restoring the 100-frame 1280x960 benchmark clip took 20-30k page faults, 2-4k with
    these buffers reused.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def array(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """The float32 buffer ``name`` with ``shape`` (contents undefined)."""
        array = self._arrays.get(name)
        if array is None or array.shape != shape:
            array = self._arrays[name] = np.empty(shape, np.float32)
        return array


class _Lru:
    """A dict that forgets its least recently used entries beyond ``capacity``."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: OrderedDict = OrderedDict()

    def get(self, key):
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key, value) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def plain_upscale(frame: np.ndarray, scale: int, upscaler: str = "bicubic") -> np.ndarray:
    """The engine's base image as uint8: what ``restore`` yields for every frame at s = 0.

    ``frame`` ``[h, w, 3]`` uint8 -> ``[h * scale, w * scale, 3]`` uint8 (float resize, rounded).
    """
    height, width = frame.shape[:2]
    up = cv2.resize(
        frame.astype(np.float32), (width * scale, height * scale), interpolation=UPSCALERS[upscaler]
    )
    return np.clip(np.rint(up), 0, 255).astype(np.uint8)
