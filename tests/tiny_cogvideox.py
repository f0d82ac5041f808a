"""Tiny random CogVideoX1.5-I2V pipeline folders for tests (engine and trainer).

``build_tiny_pipeline(path)`` writes a folder in the real ``CogVideoXImageToVideoPipeline`` format
(model_index.json, transformer/, vae/, scheduler/, text_encoder/, tokenizer/) with the real
architecture knobs of CogVideoX1.5-5B-I2V (in_channels 32 / out 16, patch 2, patch_t 2,
ofs_embed_dim == time_embed_dim, rotary embeddings, no learned positional embedding, VAE scaling
0.7, a v-prediction DDIM scheduler with zero-terminal-SNR rescaling) but a handful of channels, so
loading and one chunk run in a second on a CPU. The T5 tokenizer is built offline with a small
unigram vocabulary: nothing is downloaded.

Components may be swapped for other ``ModelMixin`` classes (tests use per-frame / per-pixel test
models); model_index.json then names their importable module, as diffusers does for custom
components.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

TINY_TEXT_DIM = 32
TINY_VOCAB = ["<pad>", "</s>", "<unk>", "▁", "▁a", "▁the", "▁video", "▁frame", "a", "e", "o", "t"]

# The real CogVideoX1.5-5B-I2V scheduler config (diffusers field names).
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=True,
    steps_offset=0,
    prediction_type="v_prediction",
    rescale_betas_zero_snr=True,
    snr_shift_scale=1.0,
    timestep_spacing="trailing",
)


def tiny_transformer(seed: int = 0, layers: int = 2, heads: int = 2, head_dim: int = 16):
    """A CogVideoXTransformer3DModel with the 1.5-I2V layout and tiny widths."""
    from diffusers import CogVideoXTransformer3DModel

    torch.manual_seed(seed)
    return CogVideoXTransformer3DModel(
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=32,
        out_channels=16,
        time_embed_dim=16,
        ofs_embed_dim=16,  # must equal time_embed_dim (they are summed)
        text_embed_dim=TINY_TEXT_DIM,
        num_layers=layers,
        patch_size=2,
        patch_size_t=2,
        sample_width=16,
        sample_height=16,
        sample_frames=33,
        temporal_compression_ratio=4,
        max_text_seq_length=226,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=False,
        patch_bias=False,
    ).eval()


def tiny_vae(seed: int = 0):
    """An AutoencoderKLCogVideoX with the real x8 spatial / x4 temporal compression, tiny widths.

    sample 96x80 makes the default tiled-mode tile 48x40, the sizes tiling needs in diffusers 0.42.
    """
    from diffusers import AutoencoderKLCogVideoX

    torch.manual_seed(seed)
    return AutoencoderKLCogVideoX(
        block_out_channels=(8, 8, 8, 8),
        latent_channels=16,
        layers_per_block=1,
        norm_num_groups=4,
        temporal_compression_ratio=4,
        sample_height=96,
        sample_width=80,
        scaling_factor=0.7,
        invert_scale_latents=True,  # as in the 1.5 release; SparkVSR ignores it (x0.7 always)
    ).eval()


def tiny_text_encoder(seed: int = 0):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(TINY_VOCAB),
        d_model=TINY_TEXT_DIM,
        d_kv=8,
        d_ff=64,
        num_layers=1,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config).eval()


def tiny_tokenizer():
    """A T5 tokenizer over a 12-piece unigram vocabulary, built offline."""
    from transformers import T5Tokenizer

    vocab = [(piece, 0.0 if i < 3 else -float(i)) for i, piece in enumerate(TINY_VOCAB)]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=226)


def tiny_scheduler():
    from diffusers import CogVideoXDDIMScheduler

    return CogVideoXDDIMScheduler(**SCHEDULER_CONFIG)


def _library_of(component) -> list[str]:
    module = type(component).__module__
    root = module.split(".")[0]
    library = root if root in ("diffusers", "transformers") else module
    return [library, type(component).__name__]


def build_tiny_pipeline(
    path: str | Path,
    *,
    transformer=None,
    vae=None,
    seed: int = 0,
    layers: int = 2,
) -> Path:
    """Write a tiny CogVideoXImageToVideoPipeline folder at ``path`` and return it.

    ``transformer`` / ``vae`` replace the tiny CogVideoX ones (any diffusers ModelMixin with the
    same call interface); the text encoder, tokenizer and scheduler are always the tiny real ones.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    components = {
        "transformer": transformer if transformer is not None else tiny_transformer(seed, layers),
        "vae": vae if vae is not None else tiny_vae(seed + 1),
        "scheduler": tiny_scheduler(),
        "text_encoder": tiny_text_encoder(seed + 2),
        "tokenizer": tiny_tokenizer(),
    }
    import diffusers

    index = {
        "_class_name": "CogVideoXImageToVideoPipeline",
        "_diffusers_version": diffusers.__version__,
    }
    for name, component in components.items():
        component.save_pretrained(path / name)
        index[name] = _library_of(component)
    (path / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True))
    return path


if __name__ == "__main__":  # pragma: no cover - handy for trying the engine by hand
    import sys

    print(build_tiny_pipeline(sys.argv[1] if len(sys.argv) > 1 else "tiny-sparkvsr"))
