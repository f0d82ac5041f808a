"""What a dit preview decodes: the fewest latent frames and the smallest latent window.

A preview shows one output frame, often only a zoomed region of it (``sparkvsr.viewport``). Its
x0 latents are cached per chunk and guidance branch, so a preview costs a mix of the two branches
and a VAE decode (``preview_pixels``); pure helpers keep that decode as small as the VAE allows:

- **Time**: the CogVideoX VAE decodes latent frames causally, in batches of
  ``num_latent_frames_batch_size`` (2; the first batch also takes the odd one), with a
  convolution cache between batches and GroupNorm statistics over each batch. Decoding only the
  batches up to the one holding the frame gives exactly the frames of a full decode (measured:
  bit-identical on the tiny model); fewer latent frames (a batch cut short) would not.
- **Space**: the decoder is convolutional, so a region needs only the latent pixels under it
  plus its receptive field (``decoder_margin``: 21 latent pixels for the released VAE, from its
  config). Its GroupNorm layers normalise over the whole decoded window, though, so a window
  decode is not bit-identical to the same region of a full decode: ``tests/test_dit_engine.py``
  measures the difference on the tiny model. Zoomed out, the whole frame is in view and is
  decoded in full (the VAE only decodes at x8 of the latent), then shrunk to the viewer's size.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from sparkvsr import conditioning as cond
from sparkvsr.engines.base import References
from sparkvsr.engines.dit.chunks import RestorePlan
from sparkvsr.frames import FrameSource
from sparkvsr.tiling import Span, Tile

if TYPE_CHECKING:
    from sparkvsr.engines.dit.engine import DitEngine


def latent_index(local_frame: int) -> int:
    """The latent frame a chunk's (padded) frame decodes from: frame 0 alone, then 4 per latent."""
    return 0 if local_frame == 0 else (local_frame - 1) // cond.TEMPORAL_COMPRESSION + 1


def decode_prefix(num_latent: int, index: int, batch: int | None) -> int:
    """How many leading latent frames of ``num_latent`` to decode so that latent frame ``index``
    comes out exactly as in a decode of all of them.

    ``batch``: the VAE's latent frames per decode step (``num_latent_frames_batch_size``; the
    first step also takes the ``num_latent % batch`` extra frames), or None for a VAE whose
    temporal behaviour is unknown: then all frames are decoded.
    """
    if batch is None or batch < 1 or num_latent <= batch:
        return num_latent
    first = batch + num_latent % batch
    if index < first:
        return first
    return min(num_latent, first + batch * ((index - first) // batch + 1))


def decoder_margin(vae) -> int | None:
    """Latent pixels of context a window decode needs on each side: the spatial receptive field
    of a CogVideoX VAE decoder, from its config (21 for the released VAE). None for a VAE that
    is not a CogVideoX one: its windows cannot be known, so whole tiles are decoded."""
    config = getattr(vae, "config", None)
    if type(vae).__name__ != "AutoencoderKLCogVideoX" or config is None:
        return None
    return receptive_radius(len(config.block_out_channels), config.layers_per_block)


def receptive_radius(levels: int, layers_per_block: int) -> int:
    """Spatial receptive radius, in latent pixels, of a CogVideoX decoder with ``levels`` blocks
    of ``layers_per_block + 1`` resnets: 3x3 convolutions (conv_in, two per resnet, the mid
    block's two resnets, each upsampler's, conv_out), each level at twice the resolution of the
    one before, so a convolution there reaches half as far in latent pixels. GroupNorm and the
    spatial norm's 1x1 convolutions add no reach."""
    resnet_convs = 2 * (layers_per_block + 1)
    radius = 0.0
    for level in range(levels):
        convs = resnet_convs + (1 + 4 if level == 0 else 1)  # conv_in + mid block / upsampler
        if level == levels - 1:
            convs += 1  # conv_out
        radius += convs / 2**level
    return math.ceil(radius)


def window(tile: Tile, box: tuple[int, int, int, int], margin: int | None) -> tuple[Tile, Tile]:
    """The part of ``tile`` (LR pixels of the padded frame) to decode for output ``box``
    (x0, y0, x1, y1 at x4), and where inside it the box lies.

    Returns ``(latent, crop)``: ``latent`` in latent pixels relative to the tile (the box's
    latents plus ``margin``, clipped to the tile; the whole tile when ``margin`` is None) and
    ``crop`` in output pixels relative to that window's decode: the box cut to the tile.
    """
    down = cond.SPATIAL_COMPRESSION // cond.UPSCALE  # LR pixels per latent pixel
    tile_rows = Span(tile.rows.start // down, tile.rows.stop // down)
    tile_cols = Span(tile.cols.start // down, tile.cols.stop // down)
    x0, y0, x1, y1 = box
    px = cond.SPATIAL_COMPRESSION  # output pixels per latent pixel
    # the box inside the tile, in output pixels of the padded frame
    top, bottom = max(y0, tile_rows.start * px), min(y1, tile_rows.stop * px)
    left, right = max(x0, tile_cols.start * px), min(x1, tile_cols.stop * px)
    if margin is None:
        rows, cols = Span(0, tile_rows.length), Span(0, tile_cols.length)
    else:
        rows = Span(
            max(tile_rows.start, top // px - margin) - tile_rows.start,
            min(tile_rows.stop, -(-bottom // px) + margin) - tile_rows.start,
        )
        cols = Span(
            max(tile_cols.start, left // px - margin) - tile_cols.start,
            min(tile_cols.stop, -(-right // px) + margin) - tile_cols.start,
        )
    origin_y = (tile_rows.start + rows.start) * px
    origin_x = (tile_cols.start + cols.start) * px
    crop = Tile(Span(top - origin_y, bottom - origin_y), Span(left - origin_x, right - origin_x))
    return Tile(rows, cols), crop


def overlaps(tile: Tile, box: tuple[int, int, int, int]) -> bool:
    """Whether ``tile`` (LR pixels) covers any of output ``box`` (x4 pixels)."""
    x0, y0, x1, y1 = box
    rows, cols = tile.rows.scaled(cond.UPSCALE), tile.cols.scaled(cond.UPSCALE)
    return rows.start < y1 and y0 < rows.stop and cols.start < x1 and x0 < cols.stop


def preview_pixels(
    engine: DitEngine,
    source: FrameSource,
    references: References,
    plan: RestorePlan,
    frame: int,
    box: tuple[int, int, int, int],
) -> torch.Tensor:
    """Frame ``frame``'s pixels inside output ``box`` (x0, y0, x1, y1) ``[h, w, 3]`` float32
    in [0, 1] on ``engine``'s device, blended over the chunks and tiles of ``plan`` that hold
    them in the order and with the weights of ``engine.restore``; x0 latents from ``engine``'s
    cache (computed once when missing), decoded as little as the VAE allows."""
    width, height = source.size
    padded_h, padded_w = cond.padded_lr_size(height, width)
    tiles = plan.tiles
    margin = decoder_margin(engine.vae)
    batch = getattr(engine.vae, "num_latent_frames_batch_size", None)
    box_x0, box_y0, box_x1, box_y1 = box
    blended = None
    for number, span in enumerate(plan.chunks):
        if not span.start <= frame < span.stop:
            continue
        refs, scales = plan.refs(span), plan.scales(span)
        num_padded = cond.padded_frame_count(span.length)
        num_latent = len(scales)
        need_u, need_c = cond.guidance_branches(scales)
        local = frame - span.start
        keep = decode_prefix(num_latent, latent_index(local), batch)
        unit = None  # the padded LR chunk, read only when a latent is missing
        canvas = None
        for tile, weight in zip(tiles, plan.tile_weights):
            if not overlaps(tile, box):
                continue
            x0_u, x0_c = engine._cached_latents(source, span, tile, refs, scales)
            if (need_u and x0_u is None) or (need_c and x0_c is None):
                if unit is None:
                    unit = cond.frames_to_unit(source.read(span.start, span.stop))
                    unit = cond.pad_spatial(
                        cond.pad_frames(unit.to(engine.device), num_padded), padded_h, padded_w
                    )
                x0_u, x0_c = engine._compute_latents(
                    source, unit, span, tile, refs, references, scales, x0_u, x0_c
                )
            latent, crop = window(tile, box, margin)

            def cut(x: torch.Tensor | None, latent: Tile = latent) -> torch.Tensor | None:
                if x is None:
                    return None
                part = x[..., latent.rows.start : latent.rows.stop, :]
                part = part[..., latent.cols.start : latent.cols.stop]
                return part.to(engine.device, torch.float32)

            # mix all latent frames (as the render does, bit for bit), decode the prefix
            x0 = cond.rfg_combine(cut(x0_u), cut(x0_c), scales)[:, :, :keep]
            pixels = engine._decode(x0)[
                local, crop.rows.start : crop.rows.stop, crop.cols.start : crop.cols.stop
            ]
            if len(tiles) == 1:
                canvas = pixels
                break
            if canvas is None:
                canvas = pixels.new_zeros((box_y1 - box_y0, box_x1 - box_x0, 3))
            rows, cols = tile.rows.scaled(cond.UPSCALE), tile.cols.scaled(cond.UPSCALE)
            top, left = max(box_y0, rows.start), max(box_x0, cols.start)
            h, w = pixels.shape[:2]
            part = weight[top - rows.start : top - rows.start + h]
            part = torch.from_numpy(part[:, left - cols.start : left - cols.start + w])
            canvas[top - box_y0 : top - box_y0 + h, left - box_x0 : left - box_x0 + w] += (
                pixels * part.to(pixels.device)[:, :, None]
            )
        chunk_weight = torch.from_numpy(plan.chunk_weights[number][local : local + 1])
        weighted = canvas * chunk_weight.to(canvas.device)  # as the render weighs it
        blended = weighted if blended is None else blended + weighted
    return blended
