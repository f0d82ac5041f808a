"""Propagation of one clip at one scale: LR reads, frame-to-frame steps and keyframe tracks, the
prepared keyframes (residuals, intended LR offsets, trust), the LR plan of a frame and its HR
render (see the package docstring for the method)."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from sparkvsr import optical_flow as of
from sparkvsr.engines.base import (
    KeyframeGuidance,
    References,
)
from sparkvsr.engines.flow.caches import _Lru, _Scratch
from sparkvsr.engines.flow.finishing import _Parts
from sparkvsr.engines.flow.resampling import (
    _bands,
    _down_up_kernel,
    _padded,
    _unpadded,
    _upscale_rows,
)
from sparkvsr.engines.flow.settings import UPSCALERS, FlowSettings
from sparkvsr.errors import EngineError
from sparkvsr.frames import FrameSource
from sparkvsr.references import fit

# The global-motion fallback (see _Propagation._global_fallback) runs when more than this share
# of a frame's dense flow is rejected; pixels above FALLBACK_TRUSTED confidence fit the motion.
FALLBACK_REJECTED = 0.02
FALLBACK_TRUSTED = 0.7
# Contributions' LR weights are scaled by WEIGHT_SCALE before blendLinear, whose fixed regulariser
# (BLEND_REGULARISER) then weighs like 1e-6 on unscaled weights (unscaled, it pulls weak
# contributions towards 0: -0.12 dB on Vid4 walk). A lone contribution of weight w shows
# w / (w + BLEND_REGULARISER) of its keyframe's detail: nearly all of it down to a confidence
# of ~1e-6 (an LR error of ~15 levels), none below.
WEIGHT_SCALE = 10.0
BLEND_REGULARISER = 1e-5
# A keyframe shows its whole Reference; in the frames after and before it, where the LR frames
# disagree with it (motion blur, a deforming body) but the flow is consistent, its detail fades
# out over this many frames instead of vanishing at the first one (a pop at every keyframe:
# Vid4 walk's moving crowd, E_warp of the pairs touching a keyframe 1.16x the others' -> 1.03x).
CONTINUITY_FRAMES = 4
# Bytes of frame-to-frame flows and of LR frames one propagation keeps (see _Propagation)
STEP_CACHE_BYTES = 192 << 20
FRAME_CACHE_BYTES = 320 << 20


def _neighbours(keys: list[int], t: int) -> list[int]:
    """The keyframes that can reach frame ``t``: itself if it is one, else the ones around it."""
    i = bisect.bisect_left(keys, t)
    if i < len(keys) and keys[i] == t:
        return [t]
    return keys[max(i - 1, 0) : i] + keys[i : i + 1]


def _continuity_floor(distance: int) -> float:
    """The least confidence of a consistent flow ``distance`` frames from its keyframe, so that
    as a lone contribution it shows ``1 - distance / CONTINUITY_FRAMES`` of the keyframe's detail
    (the confidence is 1 at the keyframe itself, where its Reference is shown exactly); 0 from
    ``CONTINUITY_FRAMES`` frames on."""
    share = 1.0 - distance / CONTINUITY_FRAMES
    if share <= 0.0:
        return 0.0
    # a lone contribution's weight w = confidence * WEIGHT_SCALE / distance shows
    # w / (w + BLEND_REGULARISER) of the detail (see render)
    return BLEND_REGULARISER * distance / WEIGHT_SCALE * share / (1.0 - share)


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
        # LR frames within a byte budget too (76 frames of 720p are 210 MB, of 4K 1.9 GB): a
        # frame dropped early is read again
        self._frames = _Lru(2 * reach + self.read_block + 4, max_bytes=FRAME_CACHE_BYTES)
        self._grays = _Lru(reach + self.read_block + 4, max_bytes=FRAME_CACHE_BYTES // 3)
        self._floats = _Lru(capacity=4)  # frame t and the keyframes it is aligned to
        # a keyframe's backward chain is walked ahead of the forward one: keep its steps for it,
        # within a byte budget (at 720p, 70 flows are 520 MB; a step missed later is recomputed
        # at its coarse DIS level, ~5 ms)
        self._steps = _Lru(capacity=2 * reach + 6, max_bytes=STEP_CACHE_BYTES)
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
        # 1. the contributions that reach t, with their per-pixel LR weights (confidence times
        #    WEIGHT_SCALE / distance). Each keyframe's own trust (its weight times where its
        #    Reference shows the frame's content, carried along the flow) scales its share, so a
        #    better keyframe takes over where another one's Reference differs.
        reached = []
        for k in contributors:
            state = self._state(k, t)
            if state is not None:
                keyframe = self._keyframe(k, references, ref_version, guidance)
                if keyframe.trust is not None and not keyframe.trust.any():
                    continue  # switched off (weight 0) or contradicted everywhere: no part
                weight = state.confidence * np.float32(WEIGHT_SCALE / abs(t - k))
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
        #    (the error after the last step is never used: n steps filter n - 1 times)
        error = plan.target - down
        correction = error.copy()
        for _ in range(self.settings.back_projection - 1):
            error -= self._down_up(error)
            correction += error
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
        # continuous across the keyframe: where the flow is consistent, detail fades out over
        # a few frames, never all at once (occlusions, where it is not, stay empty)
        floor = _continuity_floor(abs(n - k))
        if floor > 0.0:
            confidence = np.maximum(confidence, np.float32(floor) * mask)
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
        if cv2.countNonZero(trusted.view(np.uint8)) > (1.0 - FALLBACK_REJECTED) * trusted.size:
            return to_key, confidence
        matrix = of.fit_homography(to_key, trusted)
        if matrix is None:
            return to_key, confidence
        # judged on luma (a third of the work of the colour agreement, and as telling here),
        # the keyframe resampled along the homography directly; the masks in OpenCV's uint8
        # (numpy's masked copy of a 320x240 flow: 0.8 ms, a third of the whole fallback)
        aligned = of.warp_homography(self._gray_float(k), matrix)
        explained = of.agreement(
            aligned,
            self._gray_float(n),
            self.settings.agreement_sigma,
            self.settings.agreement_window,
        )
        better = cv2.compare(explained, confidence, cv2.CMP_GT)
        if not cv2.countNonZero(better):
            return to_key, confidence
        height, width = better.shape
        cv2.copyTo(of.motion_flow(matrix, height, width), better, to_key)  # to_key is this step's
        return to_key, cv2.max(confidence, explained)

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
            if frame is None:  # the block outgrew the cache's bytes: frame t alone
                frame = np.ascontiguousarray(self.source.read(t, t + 1)[0])
                self._frames.put(t, frame)
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
