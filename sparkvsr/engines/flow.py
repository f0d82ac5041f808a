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
   missing detail), and by ``1 / |t - k|``; ``D~_t`` is their weighted mean.
5. Back-projection makes ``U(LR_t) + D~_t`` consistent with ``LR_t`` plus the LR part the editor
   changed on purpose (``area_down(R_k) - LR_k``, carried along the same way), which removes the
   low-frequency error of imperfect alignment without undoing colour edits.
6. ``Output_t(s) = U(LR_t) + s * (BP result - U(LR_t))``, rounded. Exactly the plain upscale at
   ``s = 0``; exactly ``R_k`` at a keyframe with ``s = 1`` (steps 2-5 are skipped there).

Memory is bounded by ``chunk + reach`` LR frames, ``reach`` LR flow states and two keyframes'
residuals, whatever the clip's length. ``RestoreOptions.overlap``, ``tile`` and ``color_fix`` do not
apply here: frames are independent given their flows, and back-projection already ties colour to
the LR frame (plus the editor's intended change).
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from sparkvsr import optical_flow as of
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
from sparkvsr.errors import EngineError
from sparkvsr.frames import FrameSource
from sparkvsr.references.base import image_hash

UPSCALERS = {"bicubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}


@dataclass(frozen=True)
class FlowSettings:
    """The engine's configuration (see ``FlowEngine``); checked once, shared by its helpers."""

    upscaler: str = "bicubic"
    reach: int = 32
    refine_preset: str = "ultrafast"
    refine_finest_scale: int = 0
    refine_iterations: int = 8
    step_preset: str = "ultrafast"
    step_finest_scale: int = 1
    agreement_sigma: float = 4.0
    agreement_window: int = 5
    back_projection: int = 2
    cut_threshold: float = 0.6
    preview_cache: int = 4

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


class FlowEngine:
    """Optical-flow keyframe propagation (see the module docstring). Keyword configuration only.

    upscaler:            base upscaler, "bicubic" or "lanczos".
    reach:               how many frames a keyframe propagates to on each side.
    refine_preset / refine_finest_scale / refine_iterations: DIS settings of the direct
                         ``t -> keyframe`` refinement. Measured on Vid4 walk (x4): finishing at
                         level 0 (full LR resolution) instead of 1 is worth about +0.9 dB;
                         "ultrafast" with 8 gradient steps there is as good as "medium".
    step_preset / step_finest_scale:     DIS settings of the frame-to-frame steps (seed + occlusion).
    agreement_sigma:     LR intensity error (0-255) at which a contribution's weight falls to 1/e.
    agreement_window:    side of the LR window the agreement is averaged over.
    back_projection:     back-projection iterations (0 = off).
    cut_threshold:       motion-compensated error between neighbouring frames, relative to their
                         contrast, that counts as a scene cut (``optical_flow.scene_cut_score``:
                         0.1-0.3 within a shot, about 1 or more across a cut); propagation stops.
    preview_cache:       frames whose guidance-independent parts ``preview`` keeps.
    """

    name = "flow"

    def __init__(
        self,
        *,
        upscaler: str = "bicubic",
        reach: int = 32,
        refine_preset: str = "ultrafast",
        refine_finest_scale: int = 0,
        refine_iterations: int = 8,
        step_preset: str = "ultrafast",
        step_finest_scale: int = 1,
        agreement_sigma: float = 4.0,
        agreement_window: int = 5,
        back_projection: int = 2,
        cut_threshold: float = 0.6,
        preview_cache: int = 4,
    ):
        self.settings = FlowSettings(
            upscaler=upscaler,
            reach=reach,
            refine_preset=refine_preset,
            refine_finest_scale=refine_finest_scale,
            refine_iterations=refine_iterations,
            step_preset=step_preset,
            step_finest_scale=step_finest_scale,
            agreement_sigma=agreement_sigma,
            agreement_window=agreement_window,
            back_projection=back_projection,
            cut_threshold=cut_threshold,
            preview_cache=preview_cache,
        )
        # preview state: the guidance-independent parts of recent frames, and the propagation
        # (flows, keyframe residuals) of the clip last previewed, so scrubbing reuses its flows.
        self._preview_frames: OrderedDict[tuple, tuple[np.ndarray, np.ndarray | None]] = (
            OrderedDict()
        )
        self._preview_propagation: _Propagation | None = None
        self._preview_propagation_key: tuple | None = None

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
        starts = range(options.start, num_frames, options.chunk)
        # 2. chunk by chunk: render, hand over, forget
        for done, first in enumerate(starts):
            raise_if_cancelled(cancel)
            last = min(first + options.chunk, num_frames)
            frames = None
            for t in range(first, last):
                frame = _finish(*propagation.frame(t, references, _same_version), options)
                if frames is None:  # filled in place: a chunk is never held twice
                    frames = np.empty((last - first, *frame.shape), np.uint8)
                frames[t - first] = frame
            if progress is not None:
                progress(Progress(done + 1, len(starts), "chunks", f"frames {first}-{last - 1}"))
            yield RestoredChunk(first, frames)

    def preview(
        self, source: FrameSource, references: References, frame: int, options: RestoreOptions
    ) -> np.ndarray:
        """Output frame ``frame`` as ``restore`` would yield it: ``[H, W, 3]`` uint8.

        Everything but the final ``U + s * D`` is cached per clip identity, frame and the hashes
        of the References that reach the frame, so moving the guidance slider costs an add and a
        clip.
        """
        keys = check_references(source, references, options.scale)
        if not 0 <= frame < source.num_frames:
            raise EngineError(
                f"frame {frame} is outside the clip: valid frames are 0 to {source.num_frames - 1}"
            )
        contributors = _neighbours(keys, frame)
        ref_hashes = {k: image_hash(np.asarray(references[k])) for k in contributors}
        cache_key = (
            source.identity,
            options.scale,
            frame,
            tuple(sorted(ref_hashes.items())),
            self.settings,
        )
        parts = self._preview_frames.get(cache_key)
        if parts is None:
            propagation = self._propagation_for_preview(source, keys, options)
            parts = propagation.frame(frame, references, ref_hashes.__getitem__)
            self._preview_frames[cache_key] = parts
            while len(self._preview_frames) > self.settings.preview_cache:
                self._preview_frames.popitem(last=False)
        else:
            self._preview_frames.move_to_end(cache_key)
        return _finish(*parts, options)

    def status(self) -> EngineStatus:
        cached = [a for parts in self._preview_frames.values() for a in parts if a is not None]
        s = self.settings
        return EngineStatus(
            name=self.name,
            device="cpu",
            model=f"DIS optical flow ({s.refine_preset}) + {s.upscaler} upscale",
            cache_entries=len(self._preview_frames),
            cache_bytes=int(sum(a.nbytes for a in cached)),
            detail=f"reach {s.reach} frames, back-projection x{s.back_projection}",
        )

    # ---------------------------------------------------------------- helpers

    def _propagation_for_preview(
        self, source: FrameSource, keys: list[int], options: RestoreOptions
    ) -> _Propagation:
        key = (source.identity, tuple(keys), options.scale)
        if self._preview_propagation is None or self._preview_propagation_key != key:
            # a small read block: a preview touches only the frames between two keyframes
            self._preview_propagation = _Propagation(source, keys, options.scale, self.settings, 8)
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


def _finish(base: np.ndarray, residual: np.ndarray | None, options: RestoreOptions) -> np.ndarray:
    """``U + s * D`` rounded (half to even) and clipped to uint8 ``[H, W, 3]``, then resized to
    ``options.output_size``. One OpenCV pass; the rounding equals ``np.rint`` then ``np.clip``.
    """
    s = float(options.guidance)
    if residual is None or s == 0:
        residual, s = base, 0.0
    frame = cv2.addWeighted(base, 1.0, residual, s, 0.0, dtype=cv2.CV_8U)
    if options.output_size is not None and options.output_size != (frame.shape[1], frame.shape[0]):
        shrink = options.output_size[0] < frame.shape[1]
        frame = cv2.resize(
            frame, options.output_size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
        )
    return frame


@dataclass(frozen=True)
class _Keyframe:
    """A Reference prepared for propagation (LR size ``h x w``, HR size ``H x W``)."""

    index: int
    lr: np.ndarray  # [h, w, 3] float32 in [0, 255]
    gray: np.ndarray  # [h, w] uint8
    residual: np.ndarray  # [H, W, 3] float32: R_k - U(LR_k)
    lr_offset: (
        np.ndarray
    )  # [h, w, 3] float32: area_down(R_k) - LR_k, the LR part the editor changed


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
            settings.refine_preset, settings.refine_finest_scale, settings.refine_iterations
        )
        self.step = of.DisFlow(settings.step_preset, settings.step_finest_scale)
        reach = settings.reach
        self._frames = _Lru(capacity=2 * reach + self.read_block + 4)
        self._grays = _Lru(capacity=reach + self.read_block + 4)
        # a keyframe's backward chain is walked ahead of the forward one: keep its steps for it
        self._steps = _Lru(capacity=2 * reach + 6)
        self._cuts = _Lru(capacity=2 * reach + 6)
        self._keyframes = _Lru(capacity=3)
        self._down_up_kernel = _down_up_kernel(UPSCALERS[settings.upscaler], scale)
        self._tracks = _Lru(capacity=2)

    # -- the product

    def frame(
        self, t: int, references: References, ref_version: Callable[[int], str]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(U(LR_t), D_t)``: the base ``[H, W, 3]`` float32 and the s = 1 residual (or None).

        ``ref_version(k)`` tags keyframe ``k``'s Reference (its content hash in previews), so a
        cached keyframe is rebuilt when its Reference changes.
        """
        base = self._upscale(self._lr(t))
        contributors = _neighbours(self.keys, t)
        if contributors == [t]:
            keyframe = self._keyframe(t, references, ref_version)
            return base, keyframe.residual
        return base, self._propagated_residual(t, base, contributors, references, ref_version)

    def _propagated_residual(
        self,
        t: int,
        base: np.ndarray,
        contributors: list[int],
        references: References,
        ref_version: Callable[[int], str],
    ) -> np.ndarray | None:
        # 1. the contributions that reach t, with their per-pixel LR weights
        reached = []
        for k in contributors:
            state = self._state(k, t)
            if state is not None:
                weight = state.confidence * np.float32(1.0 / abs(t - k))
                reached.append((self._keyframe(k, references, ref_version), state, weight))
        if not reached:
            return None
        # 2. weighted mean of the warped residuals (HR) and of the editor's LR offsets
        total = sum(weight for _, _, weight in reached) + np.float32(1e-6)
        residual: np.ndarray | None = None
        offset = np.zeros_like(reached[0][0].lr_offset)
        for keyframe, state, weight in reached:
            share = cv2.merge([weight / total] * 3)  # [h, w, 3]: cv2 multiplies like channels
            # bilinear, not bicubic: as sharp after back-projection on Vid4 and 2x cheaper
            warped = of.warp_upscaled(keyframe.residual, state.to_key, self.scale)
            if residual is None:
                residual = cv2.multiply(warped, self._upscale_linear(share), dst=warped)
            else:
                cv2.accumulateProduct(warped, self._upscale_linear(share), residual)
            offset += share * of.warp(keyframe.lr_offset, state.to_key)
        # 3. back-projection towards LR_t + the intended offset, solved on the LR grid: a step
        #    X += up(e) changes the LR error e = target - down(X) by -A e, where A = down(up(.))
        #    is a fixed small filter; so n steps add up(e_0 + ... + e_{n-1}) in one HR pass.
        lr = self._lr(t)
        error = lr + offset - self._down_up(lr) - self._downscale(residual)
        correction = np.zeros_like(error)
        for _ in range(self.settings.back_projection):
            correction += error
            error -= self._down_up(error)
        if self.settings.back_projection:
            cv2.add(residual, self._upscale(correction), dst=residual)
        return residual

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
        mask = of.forward_backward_mask(to_key, from_key)
        aligned = of.warp(self._lr(k), to_key)
        confidence = of.agreement(
            aligned, self._lr(n), self.settings.agreement_sigma, self.settings.agreement_window
        )
        return _TrackState(to_key, confidence * mask), from_key

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
        self, k: int, references: References, ref_version: Callable[[int], str]
    ) -> _Keyframe:
        cache_key = (k, ref_version(k))
        keyframe = self._keyframes.get(cache_key)
        if keyframe is None:
            reference = np.asarray(references[k]).astype(np.float32)
            lr = self._lr(k)
            keyframe = _Keyframe(
                index=k,
                lr=lr,
                gray=self._gray(k),
                residual=reference - self._upscale(lr),
                lr_offset=self._downscale(reference) - lr,
            )
            self._keyframes.put(cache_key, keyframe)
        return keyframe

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
        return self._lr_u8(t).astype(np.float32)

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

    def _upscale_linear(self, image: np.ndarray) -> np.ndarray:
        return cv2.resize(image, self.hr_size, interpolation=cv2.INTER_LINEAR)

    def _downscale(self, image: np.ndarray) -> np.ndarray:
        return cv2.resize(image, self.lr_size, interpolation=cv2.INTER_AREA)


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
