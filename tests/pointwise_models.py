"""Test models with known locality, saved and loaded like real components (diffusers ModelMixin).

- ``FramePackVAE``: x8 spatial / x4 temporal like the CogVideoX VAE, but with no mixing: a latent
  pixel holds the 8x8 average colour of up to four frames, each frame in its own channel group
  (latent frame 0 holds frame 0 alone, latent frame j frames 4j-3..4j). Decoding undoes it.
- ``PointwiseTransformer``: the CogVideoX call interface; the same small nonlinear map applied to
  every frame's channel group at every latent pixel.

Together they make the whole engine per-frame (so chunking must not change the output) and
per-8x8-block (so tiling on the 16-pixel grid must not change it either).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

GROUPS, GROUP = 4, 3  # four frames x RGB per latent frame (12 of 16 channels)


class _Posterior:
    def __init__(self, mean: torch.Tensor):
        self.mean = mean

    def sample(self, generator=None) -> torch.Tensor:  # deterministic by design
        return self.mean


class FramePackVAE(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        latent_channels: int = 16,
        scaling_factor: float = 0.7,
        sample_height: int = 96,
        sample_width: int = 80,
    ):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(()))

    def encode(self, x: torch.Tensor):
        b, c, f, h, w = x.shape
        pooled = F.avg_pool2d(x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w), 8)
        pooled = pooled.reshape(b, f, c, h // 8, w // 8)
        slots = (f - 1) // 4 + 1
        latent = x.new_zeros(b, self.config.latent_channels, slots, h // 8, w // 8)
        latent[:, :GROUP, 0] = pooled[:, 0]
        for frame in range(1, f):
            slot, group = (frame - 1) // 4 + 1, (frame - 1) % 4
            latent[:, group * GROUP : (group + 1) * GROUP, slot] = pooled[:, frame]
        return SimpleNamespace(latent_dist=_Posterior(latent))

    def decode(self, z: torch.Tensor):
        b, _, slots, h, w = z.shape
        frames = [z[:, :GROUP, 0]]
        for slot in range(1, slots):
            frames += [z[:, g * GROUP : (g + 1) * GROUP, slot] for g in range(GROUPS)]
        video = torch.stack(frames, dim=2) * self.gain
        up = F.interpolate(video.flatten(1, 2), scale_factor=8, mode="nearest")
        return SimpleNamespace(sample=up.reshape(b, GROUP, len(frames), h * 8, w * 8))


class PointwiseTransformer(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        in_channels: int = 32,
        out_channels: int = 16,
        patch_size: int = 2,
        patch_size_t: int = 2,
        attention_head_dim: int = 16,
        sample_height: int = 16,
        sample_width: int = 16,
        max_text_seq_length: int = 226,
        use_rotary_positional_embeddings: bool = False,
        ofs_embed_dim: int | None = None,
    ):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.lr_map = torch.nn.Parameter(torch.randn(GROUP, GROUP, generator=generator))
        self.ref_map = torch.nn.Parameter(torch.randn(GROUP, GROUP, generator=generator))
        self.bias = torch.nn.Parameter(torch.randn(GROUP, generator=generator) * 0.1)

    def forward(
        self,
        hidden_states,
        encoder_hidden_states,
        timestep,
        ofs=None,
        image_rotary_emb=None,
        return_dict=True,
    ):
        lr, ref = hidden_states[:, :, :16], hidden_states[:, :, 16:]
        out = torch.zeros_like(lr)
        for g in range(GROUPS):
            part = slice(g * GROUP, (g + 1) * GROUP)
            x = torch.einsum("bfchw,cd->bfdhw", lr[:, :, part], self.lr_map)
            x = x + torch.einsum("bfchw,cd->bfdhw", ref[:, :, part], self.ref_map)
            out[:, :, part] = torch.tanh(x + self.bias[None, None, :, None, None]) * 0.5
        return (out,) if not return_dict else SimpleNamespace(sample=out)
