"""The dit engine itself: models resident, chunks x tiles through the cached x0 latents."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sparkvsr import conditioning as cond
from sparkvsr.color import color_fix
from sparkvsr.engines.base import (
    CancelFn,
    EngineStatus,
    ProgressFn,
    References,
    RestoredChunk,
    RestoreOptions,
    check_references,
    raise_if_cancelled,
)
from sparkvsr.engines.dit.chunks import (
    ChunkRefs,
    ChunkSteps,
    RestorePlan,
    TemporalBlender,
    tile_video,
)
from sparkvsr.engines.dit.latent_cache import DEFAULT_CACHE_BYTES, LatentCache
from sparkvsr.engines.dit.loading import (
    DEFAULT_MODEL,
    check_architecture,
    check_model_folder,
    empty_prompt_embeds,
    enable_vae_tiling,
    folder_identity,
    load_component,
    resolve_dtype,
    resolve_model_folder,
    writable_dir,
)
from sparkvsr.engines.dit.previews import preview_pixels
from sparkvsr.errors import EngineError
from sparkvsr.frames import FrameSource
from sparkvsr.references import fit
from sparkvsr.references.base import image_hash
from sparkvsr.tiling import Span, Tile
from sparkvsr.viewport import Viewport, apply_view, shrink


class DitEngine:
    """SparkVSR propagation with the released weights. Models stay resident for its lifetime.

    model:       a CogVideoXImageToVideoPipeline folder or a hub id (default the stage-2 weights).
    device:      "cuda", "cuda:1", "cpu"... (default: CUDA when available).
    dtype:       torch dtype or name (default: bfloat16 on CUDA, float32 on CPU).
    offload:     keep only the model in use on the GPU (model-level CPU offload).
    vae_tiling:  decode/encode large frames in VAE tiles (tile sizes kept at multiples of 48x40).
    cache_bytes: memory budget of the x0 latent cache; beyond it entries spill to ``cache_dir``.
    cache_dir:   folder for spilled latents (the project folder); None drops them instead.
    seed:        seed of the VAE posterior sample (re-seeded per call: equal inputs, equal output).
    fit_weights: a keyframe without a weight of the user's gets one from how well its Reference
                 fits its frame (a different picture: ~0); False = 1 for every keyframe.
    """

    name = "dit"

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        offload: bool = False,
        vae_tiling: bool = False,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        cache_dir: str | Path | None = None,
        seed: int = 0,
        fit_weights: bool = True,
    ):
        # 1. Where and how to run.
        self._init_device(device, dtype, offload, seed)
        self.fit_weights = fit_weights
        self.model_name = str(model)

        # 2. Find and check the pipeline folder.
        self.folder = resolve_model_folder(model)
        index = check_model_folder(self.folder)
        identity = folder_identity(self.folder, ("transformer", "vae", "scheduler"))

        # 3. Load the denoiser, the VAE and the noise schedule (resident from now on).
        transformer = load_component(self.folder, index, "transformer", self.dtype)
        vae = load_component(self.folder, index, "vae", self.dtype)
        scheduler = load_component(self.folder, index, "scheduler", None)

        # 4. The empty-prompt embedding: from disk, or computed once with T5 (then T5 is freed).
        self.prompt_cache_dir = writable_dir(self.folder / ".sparkvsr")
        max_length = int(getattr(transformer.config, "max_text_seq_length", 226))
        self.prompt_embeds, self.prompt_embeds_source = empty_prompt_embeds(
            self.folder, index, max_length, self.prompt_cache_dir, self.device, self.dtype
        )

        # 5. Place the models, set up caches and counters.
        self._init_models(transformer, vae, scheduler, identity, vae_tiling, cache_bytes, cache_dir)

    @classmethod
    def from_components(
        cls,
        transformer: torch.nn.Module,
        vae: torch.nn.Module,
        scheduler,
        prompt_embeds: torch.Tensor,
        *,
        identity: str,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        offload: bool = False,
        vae_tiling: bool = False,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        cache_dir: str | Path | None = None,
        seed: int = 0,
        fit_weights: bool = True,
    ) -> DitEngine:
        """An engine over models already in memory (the trainer's validation, benchmarks).

        ``identity`` must change whenever the weights change: it keys the latent cache.
        ``prompt_embeds`` is the empty-prompt T5 embedding ``[1, 226, D]``.
        """
        engine = cls.__new__(cls)
        engine._init_device(device, dtype, offload, seed)
        engine.fit_weights = fit_weights
        engine.model_name = f"in-memory:{identity}"
        engine.folder = None
        engine.prompt_cache_dir = None
        engine.prompt_embeds, engine.prompt_embeds_source = prompt_embeds.float().cpu(), "given"
        for module in (transformer, vae):
            if next(module.parameters()).dtype != engine.dtype:
                module.to(dtype=engine.dtype)
        engine._init_models(
            transformer, vae, scheduler, identity, vae_tiling, cache_bytes, cache_dir
        )
        return engine

    def _init_device(self, device, dtype, offload: bool, seed: int) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise EngineError(f"device {device} was asked for but CUDA is not available here")
        self.dtype = resolve_dtype(dtype, self.device)
        self.offload = bool(offload) and self.device.type != "cpu"
        self.seed = int(seed)

    def _init_models(
        self, transformer, vae, scheduler, identity: str, vae_tiling: bool, cache_bytes, cache_dir
    ) -> None:
        self.transformer = transformer.eval().requires_grad_(False)
        self.vae = vae.eval().requires_grad_(False)
        self.identity = identity
        self._fit_weights: dict[tuple, float] = {}  # automatic keyframe weights, by Reference
        check_architecture(self.transformer, self.vae, scheduler)
        self.alpha_bar = cond.alpha_bar(scheduler.alphas_cumprod, self.dtype)
        if vae_tiling:
            enable_vae_tiling(self.vae)
        home = self.device if not self.offload else torch.device("cpu")
        self.transformer.to(home)
        self.vae.to(home)
        self.cache = LatentCache(cache_bytes, Path(cache_dir) if cache_dir else None)
        self._reference_latents = LatentCache(256 << 20)
        self.transformer_passes = 0  # forward calls (a batch of 2 counts once)
        self.transformer_samples = 0  # batch items through the transformer
        self.vae_encodes = 0
        self.vae_decodes = 0

    # -- loading helpers -----------------------------------------------------------------------

    @contextmanager
    def _resident(self, module: torch.nn.Module):
        """With offload, move ``module`` to the GPU and the other model to the CPU."""
        if self.offload:
            for other in (self.transformer, self.vae):
                if other is not module:
                    other.to("cpu")
            module.to(self.device)
        yield module

    def _generator(self) -> torch.Generator:
        return torch.Generator("cpu").manual_seed(self.seed)

    # -- public API ------------------------------------------------------------------------------

    def status(self) -> EngineStatus:
        return EngineStatus(
            name=self.name,
            device=str(self.device),
            model=self.model_name,
            cache_entries=self.cache.entries,
            cache_bytes=self.cache.bytes,
            detail=(
                f"{str(self.dtype).replace('torch.', '')}"
                f"{', offload' if self.offload else ''}; transformer passes "
                f"{self.transformer_passes}; spilled {self.cache.spilled}"
            ),
        )

    def release_caches(self) -> None:
        """Drop the latents kept for previews and renders: x0 per chunk, tile and branch (the
        files a ``cache_dir`` holds stay there), Reference latents and automatic keyframe
        weights. The worker calls this when its last project closes; the models stay."""
        self.cache.clear()
        self._reference_latents.clear()
        self._fit_weights.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    previews_at_viewport = True  # ``preview`` takes a viewport (``sparkvsr.viewport``)

    def preview(
        self,
        source: FrameSource,
        references: References,
        frame: int,
        options: RestoreOptions,
        *,
        viewport: Viewport | None = None,
    ) -> np.ndarray:
        """Output frame ``frame`` ``[H, W, 3]`` uint8, identical to the full render's; with a
        ``viewport``, only what the viewer shows, at its size.

        It mixes the cached x0 latents of the chunks and tiles of the full plan that hold the
        frame (computing them once if missing), so after the first look moving the guidance
        slider costs a VAE decode, never a transformer pass. The decode is as small as the VAE
        allows (``previews``): the latent frames up to the frame's decode batch, and when the
        view shows part of the frame (zoomed in) only the latent window under it plus the
        decoder's receptive field (equal to the full decode's region up to the VAE's GroupNorm
        statistics, which cover the window). Zoomed out to the whole frame, the whole frame is
        decoded (the VAE has no output smaller than x8 of the latent) and shrunk to the viewer's
        size. A colour fix or an output size needs the whole frame too. One decode per chunk and
        tile holding the view: one for whole-frame tiles, two for a frame in a chunk overlap.
        """
        # 1. Check the request before any work.
        if not 0 <= frame < source.num_frames:
            raise EngineError(
                f"preview frame {frame} is outside the clip (0 to {source.num_frames - 1})"
            )
        indices = self._check_request(source, references, replace(options, start=0, stop=None))
        width, height = source.size
        hr_size = (width * cond.UPSCALE, height * cond.UPSCALE)
        resized = options.output_size is not None and tuple(options.output_size) != hr_size
        view = None if viewport is None else viewport.view(options.output_size or hr_size)

        # 2. A colour fix or a resize works on the whole frame: finish it, then cut the view.
        if view is not None and (resized or options.color_fix != "none"):
            return apply_view(self.preview(source, references, frame, options), view)

        # 3. The pixels of the view's box, blended over chunks and tiles as the render blends.
        box = (0, 0, *hr_size) if view is None else view.box
        plan = self._plan(source, references, indices, options)
        pixels = preview_pixels(self, source, references, plan, frame, box)
        if view is None:
            return self._finish(pixels[None], source.read(frame, frame + 1), options)[0]
        return shrink(cond.unit_to_uint8(pixels[None])[0], view.size)

    def restore(
        self,
        source: FrameSource,
        references: References,
        options: RestoreOptions,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
    ) -> Iterator[RestoredChunk]:
        """Yield restored frames ``[N, 4H, 4W, 3]`` uint8 (or ``output_size``) in order from
        ``options.start``; see the module docstring for the steps."""
        # 1. Check the request before any work.
        indices = self._check_request(source, references, options)

        # 2. Plans: temporal chunks and spatial tiles with feather weights, keyframe weights.
        plan = self._plan(source, references, indices, options)
        chunks = plan.chunks
        # a range keeps the whole clip's chunk plan (its frames equal the full restore's): the
        # chunks from the one holding ``start`` to the one holding ``stop - 1``
        stop = options.end(source.num_frames)
        first = next(i for i, span in enumerate(chunks) if span.stop > options.start)
        last = max(i for i, span in enumerate(chunks) if span.start < stop)

        # 3-4. Chunk by chunk: latents (cached or computed), decode, blend, yield finished frames.
        blender = TemporalBlender(origin=chunks[first].start)
        total = stop - options.start
        reported = 0  # output frames finished so far (progress)
        for number, span in enumerate(chunks[first : last + 1], start=first):
            raise_if_cancelled(cancel)
            done_until = chunks[number + 1].start if number + 1 < len(chunks) else span.stop
            num_latent = cond.latent_frame_count(cond.padded_frame_count(span.length))
            steps = ChunkSteps(
                progress,
                reported,
                max(reported, min(done_until, stop) - options.start),
                total,
                len(plan.tiles) * (2 + self._decode_slices(num_latent)),
                f"chunk {number + 1 - first}/{last + 1 - first}",
            )
            reported = steps.end
            lr = source.read(span.start, span.stop)
            frames = self._render_chunk(
                source,
                lr,
                span,
                plan,
                references,
                cancel,
                steps if progress is not None else None,  # no decoder hook without a listener
            )
            weight = torch.from_numpy(plan.chunk_weights[number]).to(frames.device)
            blender.add(span.start, frames * weight[:, None, None, None])
            start, finished = blender.pop(done_until)
            keep = max(options.start, start)
            until = min(done_until, stop)
            if keep >= until:
                continue
            finished = finished[keep - start : until - start]
            lr_part = lr[keep - span.start : until - span.start]
            yield RestoredChunk(keep, self._finish(finished, lr_part, options))

    # -- steps -----------------------------------------------------------------------------------

    def _plan(
        self,
        source: FrameSource,
        references: References,
        indices: list[int],
        options: RestoreOptions,
    ) -> RestorePlan:
        hashes = {i: image_hash(np.asarray(references[i])) for i in indices}
        weights = self._keyframe_weights(source, references, indices, hashes, options)
        return RestorePlan.build(source.num_frames, source.size, options, hashes, weights)

    def _check_request(
        self, source: FrameSource, references: References, options: RestoreOptions
    ) -> list[int]:
        if options.scale != cond.UPSCALE:
            raise EngineError(
                f"the dit model is trained for x{cond.UPSCALE} only (got scale {options.scale}); "
                "set an output size to resize its x4 output instead"
            )
        if options.chunk % cond.FRAME_MULTIPLE != 1:
            raise EngineError(
                f"chunk {options.chunk} must be 8k+1 frames for the dit engine (e.g. 17, 25, 33, 49)"
            )
        if options.start >= source.num_frames:
            raise EngineError(
                f"start frame {options.start} is past the clip's end ({source.num_frames} frames)"
            )
        return check_references(source, references, cond.UPSCALE)

    def _keyframe_weights(
        self,
        source: FrameSource,
        references: References,
        indices: list[int],
        hashes: dict[int, str],
        options: RestoreOptions,
    ) -> dict[int, float]:
        """Each keyframe's weight: the user's, or automatic from its Reference's fit (cached
        per clip, frame and Reference: an LR-size comparison, read once)."""
        weights = {}
        for index in indices:
            chosen = options.for_keyframe(index).weight
            if chosen is not None or not self.fit_weights:
                weights[index] = 1.0 if chosen is None else float(chosen)
                continue
            key = (source.identity, index, hashes[index])
            weight = self._fit_weights.get(key)
            if weight is None:
                lr_frame = source.read(index, index + 1)[0]
                weight = fit.assess(np.asarray(references[index]), lr_frame).fit.weight
                self._fit_weights[key] = weight
                while len(self._fit_weights) > 256:
                    self._fit_weights.pop(next(iter(self._fit_weights)))
            weights[index] = weight
        return weights

    def _render_chunk(
        self,
        source: FrameSource,
        lr: np.ndarray,
        span: Span,
        plan: RestorePlan,
        references: References,
        cancel: CancelFn | None,
        steps: ChunkSteps | None = None,
    ) -> torch.Tensor:
        """One chunk's frames ``[F, 4H, 4W, 3]`` float32 in [0, 1] on the engine's device,
        tiles feather-blended (blending stays on the device: no full-size CPU passes), each
        latent frame at its guidance (``RestorePlan.scales``). ``steps``: told after each
        tile's encode and transformer pass and each temporal slice the VAE decodes."""
        refs, scales, tiles = plan.refs(span), plan.scales(span), plan.tiles
        height, width = lr.shape[1:3]
        padded_h, padded_w = cond.padded_lr_size(height, width)
        num_padded = cond.padded_frame_count(span.length)
        canvas = None
        unit = None  # the padded LR chunk, built only when a latent is missing
        for tile, weight in zip(tiles, plan.tile_weights):
            raise_if_cancelled(cancel)
            x0_u, x0_c = self._cached_latents(source, span, tile, refs, scales)
            need_u, need_c = cond.guidance_branches(scales)
            computed = (need_u and x0_u is None) or (need_c and x0_c is None)
            if computed:
                if unit is None:
                    unit = cond.frames_to_unit(lr).to(self.device)
                    unit = cond.pad_spatial(cond.pad_frames(unit, num_padded), padded_h, padded_w)
                x0_u, x0_c = self._compute_latents(
                    source, unit, span, tile, refs, references, scales, x0_u, x0_c, steps
                )
                if steps is not None:
                    steps.step("transformer pass")
            elif steps is not None:
                steps.step("latents from the cache", count=2)  # no encode, no transformer pass
            # cached latents live on the CPU, fresh ones on the device: mix on the device
            x0 = cond.rfg_combine(
                x0_u.to(self.device, torch.float32) if x0_u is not None else None,
                x0_c.to(self.device, torch.float32) if x0_c is not None else None,
                scales,
            )
            pixels = self._decode(x0, steps)  # [F', th*4, tw*4, 3]
            if len(tiles) == 1:
                canvas = pixels
                break
            if canvas is None:
                canvas = pixels.new_zeros((num_padded, padded_h * 4, padded_w * 4, 3))
            rows, cols = tile.rows.scaled(4), tile.cols.scaled(4)
            weight = torch.from_numpy(weight).to(pixels.device)
            canvas[:, rows.start : rows.stop, cols.start : cols.stop] += (
                pixels * weight[None, :, :, None]
            )
        return canvas[: span.length, : height * 4, : width * 4]

    def _keys(self, source: FrameSource, span: Span, tile: Tile, refs: ChunkRefs):
        base = (self.identity, str(self.dtype), self.seed, source.identity, span, tile)
        key_u = ("x0_u", *base)
        key_c = key_u if refs.empty else ("x0_c", *base, refs.frames)
        return key_u, key_c

    def _cached_latents(self, source, span, tile, refs, scales: tuple[float, ...]):
        key_u, key_c = self._keys(source, span, tile, refs)
        need_u, need_c = cond.guidance_branches(scales)
        x0_u = self.cache.get(key_u) if need_u or refs.empty else None
        x0_c = self.cache.get(key_c) if need_c else None
        return x0_u, x0_c

    def _compute_latents(
        self,
        source: FrameSource,
        unit: torch.Tensor,
        span: Span,
        tile: Tile,
        refs: ChunkRefs,
        references: References,
        scales: tuple[float, ...],
        x0_u: torch.Tensor | None,
        x0_c: torch.Tensor | None,
        steps: ChunkSteps | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Run the transformer once for whichever of the two branches is missing (``steps`` is
        told when the VAE has encoded the inputs, before the transformer runs)."""
        key_u, key_c = self._keys(source, span, tile, refs)
        need_u, need_c = cond.guidance_branches(scales)
        with torch.inference_mode():
            lr_latent = self._encode(tile_video(unit, tile))
            branches: list[str] = []
            if refs.empty:
                branches = ["u"]  # zero reference: both branches are the same prediction
            else:
                if need_u and x0_u is None:
                    branches.append("u")
                if need_c and x0_c is None:
                    branches.append("c")
            reference_latents = [
                torch.zeros_like(lr_latent)
                if b == "u"
                else self._reference_latent(lr_latent, tile, refs, references, span.start)
                for b in branches
            ]
            if steps is not None:
                steps.step("encoded")
            with self._resident(self.transformer):
                outputs = cond.predict_x0(
                    self.transformer,
                    lr_latent,
                    reference_latents,
                    self.prompt_embeds,
                    self.alpha_bar,
                )
            self.transformer_passes += 1
            self.transformer_samples += len(branches)
        for branch, x0 in zip(branches, outputs):
            if branch == "u":
                self.cache.put(key_u, x0)
                x0_u = x0
                if refs.empty:
                    x0_c = x0
            else:
                self.cache.put(key_c, x0)
                x0_c = x0
        return x0_u, x0_c

    def _encode(self, video: torch.Tensor) -> torch.Tensor:
        with self._resident(self.vae):
            latent = cond.encode_latents(
                self.vae, video.to(self.device, self.dtype), generator=self._generator()
            )
        self.vae_encodes += 1
        return latent

    def _reference_latent(
        self,
        lr_latent: torch.Tensor,
        tile: Tile,
        refs: ChunkRefs,
        references: References,
        origin: int,
    ) -> torch.Tensor:
        """The chunk's reference latent; each Reference is VAE-encoded once per tile."""
        latents = {}
        for local, content in refs.frames:
            key = ("ref", self.identity, str(self.dtype), self.seed, content, tile)
            latent = self._reference_latents.get(key)
            if latent is None:
                image = np.asarray(references[origin + local])
                height, width = image.shape[:2]
                padded_h, padded_w = cond.padded_lr_size(height // 4, width // 4)
                video = cond.prepare_reference(image, padded_h * 4, padded_w * 4)
                rows, cols = tile.rows.scaled(4), tile.cols.scaled(4)
                crop = video[..., rows.start : rows.stop, cols.start : cols.stop]
                latent = self._encode(crop)
                self._reference_latents.put(key, latent)
            latents[local] = latent.to(lr_latent.device, lr_latent.dtype)
        return cond.build_reference_latent(lr_latent, latents)

    def _decode(self, x0: torch.Tensor, steps: ChunkSteps | None = None) -> torch.Tensor:
        """x0 ``[1, 16, F_lat, h, w]`` -> frames ``[F, 8h, 8w, 3]`` float32 in [0, 1] (device).

        ``steps`` is told after each temporal slice the VAE decodes (``_decode_slices`` of
        them: the CogVideoX decoder runs once per slice), or once at the end."""
        slices = self._decode_slices(x0.shape[2])
        hook = None
        if steps is not None and slices > 1:
            counter = iter(range(1, slices + 1))

            def sliced(*_):
                steps.step(f"decoding {next(counter, slices)}/{slices}")

            hook = self.vae.decoder.register_forward_hook(sliced)
        try:
            with torch.inference_mode(), self._resident(self.vae):
                video = cond.decode_latents(self.vae, x0.to(self.device, self.dtype))
        finally:
            if hook is not None:
                hook.remove()
        if steps is not None and slices == 1:
            steps.step("decoded")
        self.vae_decodes += 1
        return cond.signed_to_unit(video)[0].permute(1, 2, 3, 0).contiguous()

    def _decode_slices(self, num_latent: int) -> int:
        """How many temporal slices the VAE decodes ``num_latent`` frames in: the CogVideoX
        decoder runs once per ``num_latent_frames_batch_size`` frames (1 for other VAEs and in
        tiled mode, whose slices run per VAE tile)."""
        batch = getattr(self.vae, "num_latent_frames_batch_size", None)
        if not batch or not hasattr(self.vae, "decoder") or getattr(self.vae, "use_tiling", False):
            return 1
        return max(num_latent // batch, 1)

    def _finish(self, frames: torch.Tensor, lr: np.ndarray, options: RestoreOptions) -> np.ndarray:
        """Colour fix against the bilinear-upscaled LR, resize to output_size, round to uint8."""
        video = frames
        if options.color_fix != "none":
            upscaled = cond.upscale_bilinear(cond.frames_to_unit(lr))[0].permute(1, 2, 3, 0)
            fixed = color_fix(frames.cpu().numpy(), upscaled.numpy(), options.color_fix)
            video = torch.from_numpy(fixed).to(frames.device)
        if options.output_size is not None and tuple(options.output_size) != (
            video.shape[2],
            video.shape[1],
        ):
            width, height = options.output_size
            nchw = video.permute(0, 3, 1, 2)
            nchw = F.interpolate(
                nchw, size=(height, width), mode="bicubic", antialias=True, align_corners=False
            )
            video = nchw.permute(0, 2, 3, 1).clamp(0, 1)
        return cond.unit_to_uint8(video)

    # -- for tests and the trainer's checks ------------------------------------------------------

    def chunk_latents(
        self, source: FrameSource, references: References, start: int, stop: int, guidance: float
    ) -> torch.Tensor:
        """x0(s) ``[1, 16, F_lat, h, w]`` of frames ``[start, stop)`` as one chunk, whole frame."""
        indices = check_references(source, references, cond.UPSCALE)
        span = Span(start, stop)
        hashes = {i: image_hash(np.asarray(references[i])) for i in indices}
        refs = ChunkRefs(tuple((i - start, hashes[i]) for i in indices if start <= i < stop))
        width, height = source.size
        padded_h, padded_w = cond.padded_lr_size(height, width)
        tile = Tile(Span(0, padded_h), Span(0, padded_w))
        scales = (float(guidance),) * cond.latent_frame_count(cond.padded_frame_count(span.length))
        x0_u, x0_c = self._cached_latents(source, span, tile, refs, scales)
        need_u, need_c = cond.guidance_branches(scales)
        if (need_u and x0_u is None) or (need_c and x0_c is None):
            unit = cond.pad_spatial(
                cond.pad_frames(
                    cond.frames_to_unit(source.read(start, stop)),
                    cond.padded_frame_count(span.length),
                ),
                padded_h,
                padded_w,
            )
            x0_u, x0_c = self._compute_latents(
                source, unit, span, tile, refs, references, scales, x0_u, x0_c
            )
        return cond.rfg_combine(
            x0_u.to(self.device) if x0_u is not None else None,
            x0_c.to(self.device) if x0_c is not None else None,
            guidance,
        )
