"""The ``dit`` engine: SparkVSR keyframe propagation with a one-step CogVideoX1.5-I2V transformer.

What it does for one restore, as numbered steps (``DitEngine.restore``):

1. Check the request: x4 only (``output_size`` resizes after the model), chunk 8k+1, References
   the right size and at least 4 frames apart.
2. Plan temporal chunks (8k+1 frames, overlapping) and spatial tiles (overlapping, in LR pixels).
3. Per chunk and tile, get the x0 latents of the unconditioned (zero reference) and conditioned
   branches from the cache, or compute the missing ones in ONE batched transformer pass
   (s = 1: conditioned only; s = 0: unconditioned only; chunks without keyframes: one pass).
4. Mix ``x0(s) = x0_u + s_t (x0_c - x0_u)``, decode, feather-blend tiles into frames and chunks
   into the clip; yield frames as soon as no later chunk touches them. ``s_t`` is the guidance
   times the per-keyframe weights, per latent frame (``conditioning.latent_guidance``): a
   keyframe's weight is the user's (``RestoreOptions.keyframe_guidance``) or automatic from how
   well its Reference fits its frame (``references.fit.assess``), and costs no extra pass.

The model math lives in ``sparkvsr.conditioning`` (shared with the trainer). The cache makes the
guidance slider cost a VAE decode, an edited keyframe cost the conditioned passes of the chunks
containing it, and a resumed render cost nothing for chunks already done.

The package, one concept per module: ``loading`` (the pipeline folder or hub id, its checks,
the empty-prompt T5 cache), ``latent_cache`` (x0 per chunk, tile and guidance branch, spilled
to disk beyond its budget), ``chunks`` (the restore plan, a chunk's References, a tile's
model input, the temporal blend, progress inside a chunk), ``previews`` (a preview's pixels:
the fewest latent frames and the latent window it decodes) and ``engine`` (``DitEngine``: the
chunk x tile restore loop and previews).
"""

from sparkvsr.engines.dit.chunks import TILE_MULTIPLE
from sparkvsr.engines.dit.engine import DitEngine
from sparkvsr.engines.dit.latent_cache import DEFAULT_CACHE_BYTES, LatentCache
from sparkvsr.engines.dit.loading import (
    DEFAULT_MODEL,
    VAE_TILE_MULTIPLES,
    check_model_folder,
    folder_identity,
    resolve_model_folder,
)

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "DEFAULT_MODEL",
    "TILE_MULTIPLE",
    "VAE_TILE_MULTIPLES",
    "DitEngine",
    "LatentCache",
    "check_model_folder",
    "folder_identity",
    "resolve_model_folder",
]
