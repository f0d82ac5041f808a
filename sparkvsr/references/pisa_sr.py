"""``pisa-sr``: PiSA-SR (Sun et al., CVPR 2025) restores the keyframe locally, in this process.

Facts the released weights (``pisa_sr.pkl``) depend on:
- Base: Stable Diffusion 2.1-base (diffusers folder: ``unet/``, ``vae/``, ``text_encoder/``,
  ``tokenizer/``), local folder or hub id. Only the UNet carries adapters; VAE and text encoder are
  the base model's, untouched.
- ``pisa_sr.pkl`` is a ``torch.save``d dict: ``lora_rank_unet_pix`` / ``lora_rank_unet_sem``
  (ints, 4 in the release), ``unet_lora_{encoder,decoder,others}_modules_{pix,sem}`` (lists of UNet
  module names) and ``state_dict_unet`` (the UNet's peft LoRA tensors, named like
  ``<module>.lora_A.default_encoder_pix.weight``). Six adapters:
  ``default_{encoder,decoder,others}_{pix,sem}``. LoRA alpha is not stored: it was peft's
  ``LoraConfig`` default (8), so the scale is 8 / rank.
- One UNet step at timestep 1 with the empty prompt's CLIP embedding, on the VAE latent of the
  bicubic-upscaled LR frame; x0 = z − ε (not the DDPM formula: that is how it was trained).
- The pixel adapters alone give ε_pix; pixel + semantic adapters give ε_full. Guidance:
  ε = λ_pix·ε_pix + λ_sem·(ε_full − ε_pix), so λ = (1, 1) is the plain full model.
- Colour fixed with AdaIN against the upscaled input; 512 px is the training resolution (smaller
  frames are processed at 512 px on the short side), larger latents are tiled.

Ours: the pixel adapters are merged into the UNet weights once (both passes use them), the semantic
ones stay switchable; both predictions are cached per frame, so moving λ costs one VAE decode.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, fields, replace
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from sparkvsr.color import FIXES, color_fix
from sparkvsr.errors import EditorError
from sparkvsr.references.base import EditRequest, Provenance, Reference, image_hash
from sparkvsr.references.fit import check_frame, check_target_size, fitted_reference, resize
from sparkvsr.tiling import tile_plan, tile_weights

DEFAULT_MODEL = "stabilityai/stable-diffusion-2-1-base"
MODEL_VARIABLE = "SPARKVSR_PISA_MODEL"
LORA_VARIABLE = "SPARKVSR_PISA_LORA"
LORA_FILE = "pisa_sr.pkl"
PARTS = ("encoder", "decoder", "others")
PIXEL_ADAPTERS = tuple(f"default_{part}_pix" for part in PARTS)
SEMANTIC_ADAPTERS = tuple(f"default_{part}_sem" for part in PARTS)
TIMESTEP = 1


@dataclass(frozen=True)
class PisaSROptions:
    """Where the weights are and how frames are processed.

    model:        SD-2.1-base diffusers folder or hub id (default ``$SPARKVSR_PISA_MODEL``).
    lora:         ``pisa_sr.pkl`` (default ``$SPARKVSR_PISA_LORA``, else next to or inside
                  ``model``).
    lora_alpha:   peft's LoraConfig default at training time; the file does not store it.
    device:       "auto" (CUDA if present, else CPU), "cpu", "cuda", "cuda:1"...
    dtype:        "auto" (float16 on CUDA, float32 on CPU), "float16", "bfloat16", "float32".
    tile_latent:  latent tile side (8 px per latent cell: 64 = 512 px); larger latents are tiled
                  with ``tile_overlap`` cells of feathered overlap.
    min_side:     frames whose target's short side is smaller are processed at this short side
                  (the model's training size) and resized to the target afterwards.
    color_fix:    "adain" (as PiSA-SR), "wavelet" or "none".
    cached_frames: how many frames keep their predictions for free λ changes.
    """

    model: str = ""
    lora: str = ""
    lora_alpha: float = 8.0
    device: str = "auto"
    dtype: str = "auto"
    tile_latent: int = 64
    tile_overlap: int = 16
    min_side: int = 512
    color_fix: str = "adain"
    cached_frames: int = 8


@dataclass(frozen=True, eq=False)
class PisaSRLora:
    """The checked contents of ``pisa_sr.pkl``: per adapter, its rank and target modules."""

    ranks: tuple[tuple[str, int], ...]
    target_modules: tuple[tuple[str, tuple[str, ...]], ...]
    state: dict[str, Any]


@dataclass(frozen=True, eq=False)
class PisaSRPrediction:
    """Both noise predictions for one frame at one processing size.

    latent, eps_pix, eps_full: ``[1, 4, h, w]`` float32 torch tensors (VAE latent of the padded,
    upscaled frame times the VAE scaling factor; h, w = padded size / VAE factor).
    source: ``[H, W, 3]`` float32 in [0, 1], the upscaled frame (colour reference), unpadded.
    """

    latent: Any
    eps_pix: Any
    eps_full: Any
    source: np.ndarray

    def noise(self, pixel_scale: float, semantic_scale: float) -> Any:
        """ε = λ_pix·ε_pix + λ_sem·(ε_full − ε_pix) (a new float32 tensor)."""
        return pixel_scale * self.eps_pix + semantic_scale * (self.eps_full - self.eps_pix)


def load_lora_file(path: Path) -> PisaSRLora:
    """Read and check ``pisa_sr.pkl`` (tensors and plain containers only: weights_only=True)."""
    import pickle

    import torch

    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise EditorError(f"PiSA-SR weights file {str(path)!r} does not exist") from e
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        raise EditorError(
            f"{str(path)!r} is not a PiSA-SR weights file that can be loaded safely "
            f"(torch.load weights_only=True failed: {type(e).__name__}); use the released "
            f"{LORA_FILE}"
        ) from e
    if not isinstance(content, dict):
        raise EditorError(f"{str(path)!r} holds a {type(content).__name__}, not a PiSA-SR dict")
    required = [f"lora_rank_unet_{kind}" for kind in ("pix", "sem")]
    required += [f"unet_lora_{part}_modules_{kind}" for kind in ("pix", "sem") for part in PARTS]
    required += ["state_dict_unet"]
    missing = [key for key in required if key not in content]
    if missing:
        raise EditorError(
            f"{str(path)!r} lacks {', '.join(missing)}; it is not a PiSA-SR {LORA_FILE} "
            f"(expected keys: {', '.join(required)})"
        )
    ranks, targets = [], []
    for kind in ("pix", "sem"):
        rank = content[f"lora_rank_unet_{kind}"]
        if not isinstance(rank, int) or rank < 1:
            raise EditorError(f"{str(path)!r}: lora_rank_unet_{kind} is {rank!r}, not a rank")
        for part in PARTS:
            modules = content[f"unet_lora_{part}_modules_{kind}"]
            if not isinstance(modules, list | tuple) or not all(
                isinstance(m, str) for m in modules
            ):
                raise EditorError(
                    f"{str(path)!r}: unet_lora_{part}_modules_{kind} is not a list of names"
                )
            ranks.append((f"default_{part}_{kind}", rank))
            targets.append((f"default_{part}_{kind}", tuple(modules)))
    state = content["state_dict_unet"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise EditorError(f"{str(path)!r}: state_dict_unet is not a dict of tensors")
    return PisaSRLora(ranks=tuple(ranks), target_modules=tuple(targets), state=state)


def _resolve_device(device: str) -> Any:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as e:
        raise EditorError(f"device {device!r} is not valid; use auto, cpu or cuda[:N]") from e
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise EditorError(f"device {device!r} asked for, but no CUDA device is available here")
    return resolved


def _resolve_dtype(name: str, device: Any) -> Any:
    import torch

    choices = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if name not in choices:
        raise EditorError(f"dtype {name!r} is unknown; choose auto, {', '.join(choices)}")
    return choices[name]


class PisaSREditor:
    """PiSA-SR in process; configure with ``PisaSROptions`` field names as keywords.

    Models load on first use (or ``load()``) and stay resident. ``unet`` is public so callers
    (and tests) can hook it; ``predictions`` counts frames whose UNet passes ran.
    """

    name = "pisa-sr"

    def __init__(self, options: PisaSROptions | None = None, **config: Any):
        valid = {f.name for f in fields(PisaSROptions)}
        unknown = sorted(set(config) - valid)
        if unknown:
            raise EditorError(
                f"unknown pisa-sr option(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
            )
        options = replace(options or PisaSROptions(), **{k: v for k, v in config.items()})
        if options.color_fix not in FIXES:
            raise EditorError(
                f"color_fix {options.color_fix!r} is unknown; choose one of {', '.join(FIXES)}"
            )
        if options.tile_latent < 8 or not 0 <= options.tile_overlap < options.tile_latent:
            raise EditorError(
                f"tile_latent {options.tile_latent} / tile_overlap {options.tile_overlap}: need "
                "tile_latent >= 8 and 0 <= tile_overlap < tile_latent"
            )
        model = options.model or os.environ.get(MODEL_VARIABLE) or DEFAULT_MODEL
        self.options = replace(options, model=str(model), lora=str(options.lora or ""))
        self.unet: Any = None
        self.vae: Any = None
        self.predictions = 0
        self._prompt_embedding: Any = None
        self._device: Any = None
        self._dtype: Any = None
        self._cache: OrderedDict[tuple[str, tuple[int, int]], PisaSRPrediction] = OrderedDict()
        self._lock = threading.RLock()

    # -- configuration ------------------------------------------------------------------------

    def lora_path(self) -> Path | None:
        """The weights file this editor will use, or None when none is found."""
        if self.options.lora:
            return Path(self.options.lora).expanduser()
        if os.environ.get(LORA_VARIABLE):
            return Path(os.environ[LORA_VARIABLE]).expanduser()
        model = Path(self.options.model).expanduser()
        for candidate in (model / LORA_FILE, model.parent / LORA_FILE):
            if model.is_dir() and candidate.is_file():
                return candidate
        return None

    def _local_model(self) -> bool:
        """A folder (existing, or written as a path) rather than a hub id like ``owner/name``."""
        model = self.options.model
        return Path(model).expanduser().exists() or model.startswith((".", "/", "~"))

    def availability(self) -> str | None:
        # find_spec, not import: asking must stay cheap (the studio asks every editor at start).
        missing = [m for m in ("diffusers", "transformers", "peft") if not find_spec(m)]
        if missing:
            return (
                f"pisa-sr needs diffusers, transformers and peft: pip install {' '.join(missing)}"
            )
        lora = self.lora_path()
        if lora is None or not lora.is_file():
            where = f" ({str(lora)!r} does not exist)" if lora else ""
            return (
                f"pisa-sr needs the PiSA-SR weights {LORA_FILE}{where}: pass lora=PATH, set "
                f"{LORA_VARIABLE}, or put it next to the SD-2.1-base folder"
            )
        model = Path(self.options.model).expanduser()
        if self._local_model():
            missing = [
                s for s in ("unet", "vae", "text_encoder", "tokenizer") if not (model / s).is_dir()
            ]
            if missing:
                return (
                    f"{str(model)!r} is not a Stable Diffusion 2.1-base folder (missing "
                    f"{', '.join(missing)}/); pass model=FOLDER or set {MODEL_VARIABLE}"
                )
        return None

    # -- loading ------------------------------------------------------------------------------

    def load(self) -> None:
        """Load UNet (+ LoRA), VAE and the empty-prompt embedding once; idempotent."""
        with self._lock:
            if self.unet is not None:
                return
            problem = self.availability()
            if problem:
                raise EditorError(problem)

            device = _resolve_device(self.options.device)
            dtype = _resolve_dtype(self.options.dtype, device)
            lora = load_lora_file(self.lora_path())  # type: ignore[arg-type]
            unet, vae, embedding = self._load_models(lora, device, dtype)
            self._device, self._dtype = device, dtype
            self.unet, self.vae, self._prompt_embedding = unet, vae, embedding

    def _from_pretrained(self, model_class: Any, subfolder: str, **kwargs: Any) -> Any:
        source = self.options.model
        local = self._local_model()
        try:
            location = str(Path(source).expanduser()) if local else source
            return model_class.from_pretrained(location, subfolder=subfolder, **kwargs)
        except (OSError, ValueError) as e:
            kind = "folder" if local else "hub id (needs internet or the local hub cache)"
            raise EditorError(
                f"cannot load {subfolder}/ of the SD-2.1-base model {source!r} ({kind}): "
                f"{str(e).splitlines()[0][:200]}"
            ) from e

    def _load_models(self, lora: PisaSRLora, device: Any, dtype: Any) -> tuple[Any, Any, Any]:
        import torch
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        # 1. The empty prompt's embedding: computed once, then the text encoder is let go.
        tokenizer = self._from_pretrained(CLIPTokenizer, "tokenizer")
        text_encoder = self._from_pretrained(CLIPTextModel, "text_encoder")
        length = tokenizer.model_max_length
        if not 0 < length <= 4096:
            length = text_encoder.config.max_position_embeddings
        tokens = tokenizer(
            "", max_length=length, padding="max_length", truncation=True, return_tensors="pt"
        ).input_ids
        with torch.no_grad():
            embedding = text_encoder(tokens)[0].to(device, dtype)
        del text_encoder

        # 2. UNet with the six adapters, pixel ones merged into the weights.
        # (Loaded in its final dtype: casting a diffusers model with .to(dtype) afterwards is
        # discouraged. peft keeps the semantic adapters in float32 and casts inputs to them.)
        unet = self._from_pretrained(UNet2DConditionModel, "unet", torch_dtype=dtype)
        self._attach_lora(unet, lora)
        unet.to(device).eval().requires_grad_(False)

        # 3. VAE; tiled beyond its native size so large frames fit in memory.
        vae = self._from_pretrained(AutoencoderKL, "vae", torch_dtype=dtype)
        vae.enable_tiling()
        vae.to(device).eval().requires_grad_(False)
        return unet, vae, embedding

    def _attach_lora(self, unet: Any, lora: PisaSRLora) -> None:
        import torch
        from peft import LoraConfig
        from peft.tuners.lora import LoraLayer

        ranks = dict(lora.ranks)
        with warnings.catch_warnings():
            # peft warns that several adapters share one model: that is the design here.
            warnings.simplefilter("ignore", UserWarning)
            for adapter, modules in lora.target_modules:
                config = LoraConfig(
                    r=ranks[adapter],
                    lora_alpha=self.options.lora_alpha,
                    target_modules=list(modules),
                )
                try:
                    unet.add_adapter(config, adapter_name=adapter)
                except ValueError as e:
                    raise EditorError(
                        f"the PiSA-SR adapter {adapter} targets modules this UNet does not have "
                        f"({str(e).splitlines()[0][:160]}); is the model SD-2.1-base?"
                    ) from e

        # Copy the tensors, strictly: a partial load would silently give a different model.
        parameters = {n: p for n, p in unet.named_parameters() if "lora_" in n}
        missing = sorted(set(parameters) - set(lora.state))
        unexpected = sorted(set(lora.state) - set(parameters))
        if missing or unexpected:
            raise EditorError(
                f"the PiSA-SR weights do not match the UNet: {len(missing)} missing (e.g. "
                f"{missing[:1]}), {len(unexpected)} unexpected (e.g. {unexpected[:1]})"
            )
        with torch.no_grad():
            for name, parameter in parameters.items():
                tensor = lora.state[name]
                if tensor.shape != parameter.shape:
                    raise EditorError(
                        f"the PiSA-SR tensor {name} is {tuple(tensor.shape)}, the UNet expects "
                        f"{tuple(parameter.shape)}"
                    )
                parameter.copy_(tensor)

            # Both passes use the pixel adapters: fold them into the base weights once.
            for module in unet.modules():
                if isinstance(module, LoraLayer):
                    for adapter in PIXEL_ADAPTERS:
                        if adapter in module.lora_A:
                            base = module.get_base_layer()
                            base.weight += module.get_delta_weight(adapter).to(base.weight.dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            unet.delete_adapters(list(PIXEL_ADAPTERS))
            unet.set_adapters(list(SEMANTIC_ADAPTERS))

    # -- the edit -----------------------------------------------------------------------------

    def _processing_size(self, target_size: tuple[int, int]) -> tuple[int, int]:
        width, height = target_size
        short = min(width, height)
        if short >= self.options.min_side:
            return width, height
        scale = self.options.min_side / short
        return round(width * scale), round(height * scale)

    def _factors(self) -> tuple[int, int]:
        """(pixels per latent cell, latent cells the UNet needs its sides to be a multiple of)."""
        vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        unet_factor = 2 ** (len(self.unet.config.block_out_channels) - 1)
        return vae_factor, unet_factor

    def _unet_noise(self, latent: Any, semantic: bool) -> Any:
        """ε for ``latent`` ``[1, 4, h, w]`` (float32 result), tiled when larger than a tile."""
        import torch

        if semantic:
            self.unet.enable_adapters()
        else:
            self.unet.disable_adapters()
        _, unet_factor = self._factors()
        height, width = latent.shape[-2:]
        tiles = tile_plan(
            height, width, self.options.tile_latent, self.options.tile_overlap, unet_factor
        )
        timestep = torch.tensor([TIMESTEP], device=self._device)
        model_input = latent.to(self._dtype)

        def run(part: Any) -> Any:
            return self.unet(
                part, timestep, encoder_hidden_states=self._prompt_embedding
            ).sample.float()

        if len(tiles) == 1:
            return run(model_input)
        noise = torch.zeros_like(latent, dtype=torch.float32)
        for tile, weight in zip(tiles, tile_weights(tiles)):
            rows = slice(tile.rows.start, tile.rows.stop)
            cols = slice(tile.cols.start, tile.cols.stop)
            feather = torch.from_numpy(weight).to(self._device)
            noise[..., rows, cols] += run(model_input[..., rows, cols]) * feather
        return noise

    def predict(self, lr_frame: np.ndarray, target_size: tuple[int, int]) -> PisaSRPrediction:
        """Both noise predictions for ``lr_frame`` (``[h, w, 3]`` uint8) at ``target_size`` (W, H).

        Cached per (frame, size): asking again, with any λ, runs no UNet pass.
        """
        import torch
        import torch.nn.functional as F

        lr_frame = check_frame(lr_frame)
        target_size = check_target_size(target_size)
        key = (image_hash(lr_frame), target_size)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            self.load()

            # 1. Upscale (bicubic) to the processing size; pad so VAE and UNet sizes divide.
            width, height = self._processing_size(target_size)
            upscaled = resize(lr_frame, (width, height), "bicubic")
            vae_factor, unet_factor = self._factors()
            multiple = vae_factor * unet_factor
            pad_h, pad_w = -height % multiple, -width % multiple
            pixels = torch.tensor(upscaled, device=self._device).permute(2, 0, 1)[None]
            pixels = pixels.to(self._dtype) / 127.5 - 1.0
            pixels = F.pad(pixels, (0, pad_w, 0, pad_h), mode="replicate")

            with torch.inference_mode():
                # 2. Latent. The posterior's mean, not a sample: the same frame must give the
                #    same prediction, or cached λ changes would not match a fresh run.
                scaling = self.vae.config.scaling_factor
                latent = self.vae.encode(pixels).latent_dist.mode().float() * scaling

                # 3. The two UNet passes.
                eps_pix = self._unet_noise(latent, semantic=False)
                eps_full = self._unet_noise(latent, semantic=True)

            prediction = PisaSRPrediction(
                latent=latent,
                eps_pix=eps_pix,
                eps_full=eps_full,
                source=upscaled.astype(np.float32) / 255.0,
            )
            self.predictions += 1
            self._cache[key] = prediction
            while len(self._cache) > max(1, self.options.cached_frames):
                self._cache.popitem(last=False)
            return prediction

    def render(
        self,
        prediction: PisaSRPrediction,
        target_size: tuple[int, int],
        pixel_scale: float = 1.0,
        semantic_scale: float = 1.0,
    ) -> np.ndarray:
        """The restored ``[H, W, 3]`` uint8 image at ``target_size`` for these λ: one VAE decode."""
        import torch

        with self._lock, torch.inference_mode():
            self.load()
            # 1. x0 = z − ε at t = 1, decoded.
            x0 = prediction.latent - prediction.noise(pixel_scale, semantic_scale)
            scaling = self.vae.config.scaling_factor
            decoded = self.vae.decode((x0 / scaling).to(self._dtype)).sample
            height, width = prediction.source.shape[:2]
            image = (decoded[0, :, :height, :width].float().clamp(-1, 1) + 1) / 2
            image = image.permute(1, 2, 0).cpu().numpy()

        # 2. Colour back to the input's, then to the target size.
        image = color_fix(image, prediction.source, self.options.color_fix)
        image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
        return resize(image, target_size, "bicubic")

    def make(
        self, lr_frame: np.ndarray, target_size: tuple[int, int], request: EditRequest
    ) -> Reference:
        """PiSA-SR of ``lr_frame`` (``[h, w, 3]`` uint8): Reference ``[H, W, 3]`` at ``target_size``.

        ``request.pixel_scale`` / ``semantic_scale`` are λ_pix / λ_sem (1, 1 = default model).
        """
        pixel_scale, semantic_scale = float(request.pixel_scale), float(request.semantic_scale)
        if not (0.0 <= pixel_scale <= 3.0 and 0.0 <= semantic_scale <= 3.0):
            raise EditorError(
                f"pixel_scale {pixel_scale} / semantic_scale {semantic_scale}: each must be "
                "between 0 and 3 (1, 1 is PiSA-SR's default)"
            )
        target_size = check_target_size(target_size)
        prediction = self.predict(lr_frame, target_size)
        image = self.render(prediction, target_size, pixel_scale, semantic_scale)
        return fitted_reference(
            image,
            lr_frame,
            Provenance(
                editor=self.name,
                model=f"PiSA-SR on {self.options.model}",
                task_prompt="",
                content_prompt="",
                notes=(f"lambda_pix={pixel_scale:g}, lambda_sem={semantic_scale:g}",),
            ),
        )
