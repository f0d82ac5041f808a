"""``FlowEngine``: the Engine protocol (``restore``, ``preview``, ``status``) over ``_Propagation``,
with its threads for restores and its caches for previews."""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

import cv2
import numpy as np

from sparkvsr.engines.base import (
    CancelFn,
    EngineStatus,
    Progress,
    ProgressFn,
    References,
    RestoredChunk,
    RestoreOptions,
    check_references,
    raise_if_cancelled,
)
from sparkvsr.engines.flow.caches import _Scratch
from sparkvsr.engines.flow.finishing import _finish, _finish_box, _Parts, _parts_bytes
from sparkvsr.engines.flow.propagation import _neighbours, _Propagation
from sparkvsr.engines.flow.settings import FlowSettings
from sparkvsr.engines.flow.shrunk import ShrunkFrames, lr_shrink
from sparkvsr.errors import EngineError
from sparkvsr.frames import FrameSource
from sparkvsr.references.base import image_hash
from sparkvsr.viewport import Viewport, apply_view, preview_scale, shrink

# Frames the LR half may be planned ahead of the HR half: the first frame after a keyframe
# walks the next keyframe's whole backward chain (~15 DIS refinements at 16 frames apart), and
# a few planned frames keep the HR half busy meanwhile.
PLAN_AHEAD = 4
# Threads rendering frames (the HR half) side by side: beside a running encoder the engine then
# gets its share of the two cores (the 100-frame benchmark restore, decode to encode, measured in
# interleaved pairs: 5.8-6.3 s with two, 6.6-7.1 s with one; three measured like two)
RENDERERS = 2


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
        propagation = _Propagation(source, keys, options.scale, self.settings, options.chunk)
        # a range's frames are those of the whole clip: every keyframe reaches into it
        stop = options.end(num_frames)
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
        sixteenth of the pixels) and shrunk; shown at half the LR frame's size or less, it is
        propagated on the LR frames area-downscaled to what is shown (``shrunk``); at 100 % and
        above only the visible region is finished, equal to the same region of the full frame.
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
        shrunk = 1 if scale > 1 or view is None else lr_shrink(view, options.scale, source.size)
        if shrunk > 1:
            # shown at half the LR frame or smaller: propagated on the shrunk LR frames
            source = ShrunkFrames(source, shrunk)
        parts = self._preview_parts(source, keys, references, frame, options, scale)
        if view is None:
            return _finish(parts, options, self.settings.upscaler)
        if scale == options.scale and shrunk == 1:
            return shrink(_finish_box(parts, options, self.settings.upscaler, view.box), view.size)
        small = _finish(parts, replace(options, scale=scale), self.settings.upscaler)
        ratio_x = small.shape[1] / hr_size[0]
        ratio_y = small.shape[0] / hr_size[1]
        x0, y0, x1, y1 = view.box
        box = (round(x0 * ratio_x), round(y0 * ratio_y), round(x1 * ratio_x), round(y1 * ratio_y))
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
        smaller preview scale) of ``source`` (the clip or its shrunk frames), with the References
        area-downscaled to that size, cached."""
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
            size = (source.size[0] * scale, source.size[1] * scale)
            if any(references[k].shape[1::-1] != size for k in contributors):
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
