"""Loading the dit engine's models: a pipeline folder or hub id, checked, and the empty-prompt cache.

The folder is a diffusers ``CogVideoXImageToVideoPipeline`` folder (model_index.json,
transformer/, vae/, scheduler/, text_encoder/, tokenizer/). T5 runs once per model to embed the
empty prompt; the embedding is cached on disk beside the weights and T5 is freed again.
"""

from __future__ import annotations

import gc
import hashlib
import importlib
import json
import os
from pathlib import Path

import torch

from sparkvsr import conditioning as cond
from sparkvsr.errors import EngineError

DEFAULT_MODEL = "JiongzeYu/SparkVSR"
COMPONENTS = ("transformer", "vae", "scheduler", "text_encoder", "tokenizer")
REQUIRED_FILES = (
    "model_index.json",
    "transformer/config.json",
    "vae/config.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
)
VAE_TILE_MULTIPLES = (48, 40)  # diffusers 0.42 tiled decode returns wrong sizes otherwise


def resolve_model_folder(model: str | Path) -> Path:
    """A local pipeline folder, or a hub id fetched into the Hugging Face cache."""
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise EngineError(f"model {model} is a file; pass a diffusers pipeline folder")
        return path
    text = str(model)
    looks_like_hub_id = text.count("/") == 1 and not text.startswith((".", "/", "~"))
    if not looks_like_hub_id:
        raise EngineError(
            f"model folder {model} does not exist; pass a CogVideoXImageToVideoPipeline folder "
            f"or a hub id such as {DEFAULT_MODEL}"
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=text))
    except Exception as e:
        raise EngineError(
            f"could not fetch model {text} from the Hugging Face hub ({type(e).__name__}: {e}). "
            "Without internet, download it elsewhere (`hf download "
            f"{text} --local-dir DIR`) and pass --model DIR"
        ) from e


def check_model_folder(folder: Path) -> dict[str, list[str]]:
    """Return model_index.json's component table, or raise naming every missing file."""
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    for component in ("transformer", "vae", "text_encoder"):
        sub = folder / component
        if sub.is_dir() and not any(sub.glob("*.safetensors")) and not any(sub.glob("*.bin")):
            missing.append(f"{component}/*.safetensors (weights)")
    if not (folder / "tokenizer").is_dir():
        missing.append("tokenizer/")
    if missing:
        raise EngineError(
            f"model folder {folder} is missing {', '.join(missing)}; it must be a diffusers "
            "CogVideoXImageToVideoPipeline folder (model_index.json, transformer/, vae/, "
            "scheduler/, text_encoder/, tokenizer/)"
        )
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError) as e:
        raise EngineError(f"{folder / 'model_index.json'} is not valid JSON: {e}") from e
    absent = [c for c in COMPONENTS if not isinstance(index.get(c), list) or len(index[c]) != 2]
    if absent:
        raise EngineError(
            f"{folder / 'model_index.json'} does not name a [library, class] for "
            f"{', '.join(absent)}"
        )
    return index


def component_class(index: dict, name: str):
    library, class_name = index[name]
    try:
        return getattr(importlib.import_module(library), class_name)
    except (ImportError, AttributeError) as e:
        raise EngineError(
            f"model_index.json names {library}.{class_name} for {name}, which cannot be imported"
        ) from e


def load_component(folder: Path, index: dict, name: str, dtype: torch.dtype | None):
    cls = component_class(index, name)
    try:
        if index[name][0] == "transformers":
            kwargs = {} if dtype is None else {"dtype": dtype}
            return cls.from_pretrained(folder / name, **kwargs)
        kwargs = {} if dtype is None else {"torch_dtype": dtype}
        return cls.from_pretrained(folder, subfolder=name, **kwargs)
    except EngineError:
        raise
    except Exception as e:
        raise EngineError(f"cannot load {name} from {folder / name}: {e}") from e


def folder_identity(folder: Path, components: tuple[str, ...]) -> str:
    """Cheap identity of model files: names, sizes and mtimes (changes when weights change)."""
    digest = hashlib.sha256(str(folder.resolve()).encode())
    for component in components:
        for path in sorted((folder / component).glob("*")):
            if path.is_file():
                stat = path.stat()
                digest.update(f"{component}/{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def check_tokenizer_dependencies(folder: Path) -> None:
    """Refuse early, naming the fix, when the tokenizer cannot be read here.

    The CogVideoX releases ship the T5 tokenizer as ``spiece.model`` only (no tokenizer.json);
    transformers 5 converts it with protobuf, and without protobuf its error asks for tiktoken,
    which would not help.
    """
    if (folder / "tokenizer.json").is_file() or not (folder / "spiece.model").is_file():
        return
    try:
        import google.protobuf  # noqa: F401
    except ImportError as e:
        raise EngineError(
            f"the tokenizer in {folder} is a sentencepiece model (spiece.model) and reading it "
            "needs the protobuf package: pip install protobuf (it is only needed once: the "
            "empty-prompt embedding is then cached on disk)"
        ) from e


def writable_dir(preferred: Path) -> Path:
    for candidate in (preferred, Path.home() / ".cache" / "sparkvsr"):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            probe = candidate / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
            return candidate
        except OSError:
            continue
    raise EngineError(f"no writable folder for the prompt cache (tried {preferred} and ~/.cache)")


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
        "fp32": torch.float32,
        "float32": torch.float32,
    }
    if dtype not in names:
        raise EngineError(f"dtype {dtype!r} is unknown; choose one of {', '.join(names)}")
    return names[dtype]


def check_architecture(transformer, vae, scheduler) -> None:
    """Refuse models the SparkVSR math does not fit, naming what differs."""
    config = transformer.config
    latent = getattr(vae.config, "latent_channels", 16)
    if config.in_channels != 2 * latent or config.out_channels != latent:
        raise EngineError(
            f"transformer has in/out channels {config.in_channels}/{config.out_channels}; "
            f"SparkVSR needs {2 * latent}/{latent} ([LR ; reference] latents)"
        )
    if getattr(config, "patch_size_t", None) != 2:
        # CogVideoX 1.0 (no temporal patch) needs another RoPE grid and frame layout.
        raise EngineError(
            f"transformer has patch_size_t={getattr(config, 'patch_size_t', None)}; SparkVSR "
            "is a CogVideoX1.5 fine-tune with patch_size_t 2. Point --model at a SparkVSR "
            "pipeline folder."
        )
    if getattr(scheduler.config, "prediction_type", "v_prediction") != "v_prediction":
        raise EngineError(
            f"scheduler predicts {scheduler.config.prediction_type!r}; SparkVSR weights are "
            "v-prediction"
        )


def enable_vae_tiling(vae) -> None:
    """The VAE's tiled mode, with tile sizes it decodes correctly (multiples of 48 x 40)."""
    if not hasattr(vae, "enable_tiling"):
        raise EngineError(f"the VAE {type(vae).__name__} has no tiled mode")
    config = vae.config
    height, width = config.sample_height // 2, config.sample_width // 2
    mh, mw = VAE_TILE_MULTIPLES
    height = max(mh, mh * round(height / mh))
    width = max(mw, mw * round(width / mw))
    vae.enable_tiling(tile_sample_min_height=height, tile_sample_min_width=width)


def empty_prompt_embeds(
    folder: Path,
    index: dict,
    length: int,
    cache_dir: Path,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, str]:
    """The empty-prompt T5 embedding ``[1, length, D]`` and where it came from ("disk" or
    "computed"): read from ``cache_dir``, or computed once with T5 (then freed) and saved."""
    key = folder_identity(folder, ("text_encoder", "tokenizer"))
    path = cache_dir / f"empty-prompt-{key}-{length}.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=True), "disk"
        except Exception:
            path.unlink(missing_ok=True)  # torn write: recompute below
    check_tokenizer_dependencies(folder / "tokenizer")
    tokenizer = load_component(folder, index, "tokenizer", None)
    text_encoder = load_component(folder, index, "text_encoder", dtype)
    try:
        embeds = cond.empty_prompt_embedding(tokenizer, text_encoder.to(device), length)
    finally:
        del text_encoder
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    torch.save(embeds, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)
    return embeds, "computed"
