"""A tiny random Stable Diffusion 2.1-style folder and a PiSA-SR weights file in the real format.

The folder has the diffusers layout the ``pisa-sr`` editor loads (``unet/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``model_index.json``). ``pisa_sr.pkl`` is built the way the
PiSA-SR trainer saves it: the six peft adapters ``default_{encoder,decoder,others}_{pix,sem}`` on
the module lists its selection rules produce, ranks under ``lora_rank_unet_{pix,sem}``, and the
UNet's LoRA tensors under ``state_dict_unet``, with random (non-zero) values.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

# PiSA-SR's rules for which UNet weights get adapters (substring patterns; biases and norms
# skipped; down blocks + conv_in -> encoder, up blocks + conv_out -> decoder, the rest -> others).
PATTERNS = (
    "to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_in", "conv_shortcut",
    "conv_out", "proj_out", "proj_in", "ff.net.2", "ff.net.0.proj",
)  # fmt: skip
PARTS = ("encoder", "decoder", "others")


# Stable Diffusion 2.1-base's real shapes (for speed benchmarks with random weights).
SD21_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=1024,
    attention_head_dim=(5, 10, 20, 20),
    use_linear_projection=True,
    norm_num_groups=32,
)
SD21_VAE = dict(
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2,
    sample_size=512,
    norm_num_groups=32,
)
SD21_TEXT = dict(
    vocab_size=49408,
    hidden_size=1024,
    intermediate_size=4096,
    num_attention_heads=16,
    num_hidden_layers=23,
    projection_dim=512,
    hidden_act="gelu",
)
TINY_UNET = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    block_out_channels=(8, 16),
    layers_per_block=1,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=16,
    attention_head_dim=(2, 4),
    use_linear_projection=True,
    norm_num_groups=4,
)
TINY_VAE = dict(
    block_out_channels=(8, 16),
    down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
    up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    layers_per_block=1,
    sample_size=256,
    norm_num_groups=4,
)
TINY_TEXT = dict(
    vocab_size=16,
    hidden_size=16,
    intermediate_size=24,
    num_attention_heads=2,
    num_hidden_layers=1,
    projection_dim=16,
)


def tiny_unet(shapes: str = "tiny"):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**(SD21_UNET if shapes == "sd21" else TINY_UNET))


def target_modules(unet) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {part: [] for part in PARTS}
    for name, _ in unet.named_parameters():
        if "bias" in name or "norm" in name:
            continue
        for pattern in PATTERNS:
            if pattern not in name:
                continue
            module = name.replace(".weight", "")
            if "down_blocks" in name or "conv_in" in name:
                groups["encoder"].append(module)
            elif "up_blocks" in name or "conv_out" in name:
                groups["decoder"].append(module)
            else:
                groups["others"].append(module)
            break
    return groups


def _tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2, "a</w>": 3, "a": 4}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77, pad_token="!"
    )


def build_tiny_sd(
    root: Path, rank: int = 4, seed: int = 0, shapes: str = "tiny"
) -> tuple[Path, Path]:
    """Write the model folder and ``pisa_sr.pkl`` under ``root``; return both paths.

    ``shapes``: "tiny" (tests) or "sd21" (SD-2.1-base's real sizes, random weights, benchmarks).
    """
    from diffusers import AutoencoderKL
    from peft import LoraConfig
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    model = root / ("random-sd-2-1-base" if shapes == "sd21" else "tiny-sd-2-1-base")
    model.mkdir(parents=True, exist_ok=True)
    _tokenizer(root / "vocab").save_pretrained(model / "tokenizer")
    text_config = CLIPTextConfig(
        **(SD21_TEXT if shapes == "sd21" else TINY_TEXT),
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
    )
    CLIPTextModel(text_config).save_pretrained(model / "text_encoder")
    AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        scaling_factor=0.18215,
        **(SD21_VAE if shapes == "sd21" else TINY_VAE),
    ).save_pretrained(model / "vae")
    unet = tiny_unet(shapes)
    unet.save_pretrained(model / "unet")
    (model / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionPipeline",
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
            }
        )
    )

    # The weights file, as PiSA-SR's trainer writes it.
    groups = target_modules(unet)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for kind in ("pix", "sem"):
            for part in PARTS:
                config = LoraConfig(
                    r=rank, init_lora_weights="gaussian", target_modules=groups[part]
                )
                unet.add_adapter(config, adapter_name=f"default_{part}_{kind}")
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if "lora" in name:
                parameter.normal_(0.0, 0.1 if shapes == "tiny" else 0.01)
    content: dict = {f"lora_rank_unet_{kind}": rank for kind in ("pix", "sem")}
    for kind in ("pix", "sem"):
        for part in PARTS:
            content[f"unet_lora_{part}_modules_{kind}"] = list(groups[part])
    content["state_dict_unet"] = {k: v for k, v in unet.state_dict().items() if "lora" in k}
    lora = root / "pisa_sr.pkl"
    torch.save(content, lora)
    return model, lora
