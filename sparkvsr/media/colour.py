"""Colour description of a video and the conversions that honour it.

A decoded YUV frame means nothing without its matrix (BT.601 / 709 / 2020) and range (limited
16-235 or full 0-255): converting with the wrong pair shifts saturated colours by up to 25 levels.
Reads use the source's tags (untagged SD is BT.601, untagged HD is BT.709, as players assume);
writes use an explicit matrix and tag matrix, range, primaries and transfer on every output, so
every player shows the same colours.

The integers are FFmpeg's (AVColorSpace, AVColorPrimaries, AVColorTransferCharacteristic,
AVColorRange), which PyAV frames and codec contexts carry.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

# AVColorSpace -> (name, the matrix swscale converts with)
MATRICES: dict[int, tuple[str, Colorspace]] = {
    1: ("bt709", Colorspace.ITU709),
    4: ("fcc", Colorspace.FCC),
    5: ("bt470bg", Colorspace.ITU601),
    6: ("smpte170m", Colorspace.ITU601),
    7: ("smpte240m", Colorspace.SMPTE240M),
    9: ("bt2020nc", Colorspace.BT2020),
    10: ("bt2020c", Colorspace.BT2020),
}
PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 9: "bt2020"}
TRANSFERS = {
    1: "bt709",
    4: "gamma22",
    5: "gamma28",
    6: "smpte170m",
    7: "smpte240m",
    8: "linear",
    13: "iec61966-2-1",
    14: "bt2020-10",
    15: "bt2020-12",
    16: "smpte2084",
    18: "arib-std-b67",
}
UNSPECIFIED = 2
TRANSFER_PQ, TRANSFER_HLG = 16, 18
HD_HEIGHT = 720  # players read untagged video this tall (or taller) as BT.709
RGB_FORMATS_PREFIX = ("rgb", "bgr", "gbr", "argb", "abgr", "0rgb", "0bgr", "gray")


@dataclass(frozen=True)
class ColourInfo:
    """How a video's samples map to colours.

    matrix / primaries / transfer: FFmpeg's integer codes (2 = unspecified); range: 1 limited,
    2 full, 0 unspecified; bit_depth: bits per luma sample; rgb: samples are RGB (no matrix).
    """

    matrix: int = UNSPECIFIED
    range: int = 0
    primaries: int = UNSPECIFIED
    transfer: int = UNSPECIFIED
    bit_depth: int = 8
    rgb: bool = False

    @property
    def hdr(self) -> str:
        """ "pq" (HDR10, SMPTE 2084), "hlg" (ARIB STD-B67) or "" for SDR."""
        return {TRANSFER_PQ: "pq", TRANSFER_HLG: "hlg"}.get(self.transfer, "")

    @property
    def full_range(self) -> bool:
        return self.range == 2

    def decode_matrix(self, height: int) -> Colorspace:
        """The matrix to read YUV with: the tagged one, else what players assume for the size."""
        if self.matrix in MATRICES:
            return MATRICES[self.matrix][1]
        return Colorspace.ITU709 if height >= HD_HEIGHT else Colorspace.ITU601

    def summary(self) -> dict:
        return {
            "matrix": MATRICES.get(self.matrix, ("unspecified",))[0] if not self.rgb else "rgb",
            "range": {1: "limited", 2: "full"}.get(self.range, "unspecified"),
            "primaries": PRIMARIES.get(self.primaries, "unspecified"),
            "transfer": TRANSFERS.get(self.transfer, "unspecified"),
            "bit_depth": self.bit_depth,
            "hdr": self.hdr or None,
        }


def colour_of(frame: av.VideoFrame) -> ColourInfo:
    """The colour description a decoded frame carries (its tags and pixel format)."""
    fmt = frame.format
    depth = max((c.bits for c in fmt.components), default=8)
    rgb = fmt.name.startswith(RGB_FORMATS_PREFIX)
    colour_range = int(frame.color_range)
    if fmt.name.startswith("yuvj"):
        colour_range = 2  # the "j" formats are full range by definition
    return ColourInfo(
        matrix=int(frame.colorspace),
        range=colour_range,
        primaries=int(frame.color_primaries),
        transfer=int(frame.color_trc),
        bit_depth=int(depth),
        rgb=rgb,
    )


def frame_to_rgb(frame: av.VideoFrame, colour: ColourInfo) -> av.VideoFrame:
    """``frame`` converted to rgb24 with the matrix and range ``colour`` says (not swscale's
    guess, which is BT.601 limited whatever the tags)."""
    if colour.rgb:
        return frame.reformat(format="rgb24")
    matrix = colour.decode_matrix(frame.height)
    return frame.reformat(
        format="rgb24",
        src_colorspace=matrix,
        dst_colorspace=matrix,
        src_color_range=ColorRange.JPEG if colour.full_range else ColorRange.MPEG,
        dst_color_range=ColorRange.JPEG,
    )


@dataclass(frozen=True)
class OutputColour:
    """What an encoder writes: pixel format, the matrix it converts RGB with, and the tags.

    Output is always limited range (what every player and browser expects of H.264/H.265).
    """

    pix_fmt: str = "yuv420p"
    matrix: int = 1
    primaries: int = 1
    transfer: int = 1

    @property
    def hdr(self) -> str:
        return ColourInfo(transfer=self.transfer).hdr

    def rgb_to_yuv(self, frame: av.VideoFrame) -> av.VideoFrame:
        """An rgb24 frame converted with this matrix into ``pix_fmt``, limited range, tagged."""
        matrix = MATRICES[self.matrix][1]
        out = frame.reformat(
            format=self.pix_fmt,
            src_colorspace=matrix,
            dst_colorspace=matrix,
            src_color_range=ColorRange.JPEG,
            dst_color_range=ColorRange.MPEG,
        )
        out.colorspace, out.color_range = self.matrix, 1
        out.color_primaries, out.color_trc = self.primaries, self.transfer
        return out

    def tag(self, context: av.VideoCodecContext) -> None:
        """Write the tags into an encoder's context (x264/x265 put them in the VUI)."""
        context.colorspace, context.color_range = self.matrix, 1
        context.color_primaries, context.color_trc = self.primaries, self.transfer


SDR_BT709 = OutputColour()


def output_colour(source: ColourInfo, codec: str) -> tuple[OutputColour, list[str]]:
    """The output colour for a source: keep its matrix/primaries/transfer when tagged (BT.709
    when not), 10-bit when the source has more than 8 bits, HDR transfer kept. Returns the choice
    and the notes a user should read (HDR kept, bit depth)."""
    notes: list[str] = []
    matrix = source.matrix if source.matrix in MATRICES and not source.rgb else 1
    if matrix == 10:
        matrix = 9  # constant-luminance BT.2020 is unsupported by encoders: the nc matrix
    defaults = {1: (1, 1), 5: (5, 6), 6: (6, 6), 9: (9, 14), 7: (7, 7), 4: (4, 6)}
    primaries, transfer = defaults.get(matrix, (1, 1))
    if source.primaries in PRIMARIES:
        primaries = source.primaries
    if source.transfer in TRANSFERS:
        transfer = source.transfer
    deep = source.bit_depth > 8 and not source.rgb
    pix_fmt = "yuv420p10le" if deep or source.hdr else "yuv420p"
    if source.hdr:
        notes.append(
            f"HDR source ({'PQ / HDR10' if source.hdr == 'pq' else 'HLG'}, "
            f"{PRIMARIES.get(primaries, 'unspecified')} primaries): the output keeps HDR "
            f"(transfer {TRANSFERS[transfer]}, 10-bit {codec}); it is not converted to SDR, so "
            "SDR-only players show it washed out"
        )
    elif deep:
        notes.append(
            f"{source.bit_depth}-bit source: written as 10-bit {codec} (yuv420p10le); the engines "
            "work in 8-bit RGB, so the extra precision carries no new detail"
        )
    return OutputColour(pix_fmt, matrix, primaries, transfer), notes


# --- HDR to SDR ------------------------------------------------------------------------------

SDR_WHITE_NITS = 203.0  # ITU-R BT.2408: HDR reference white maps to SDR 100%
HDR_PEAK_NITS = 1000.0  # HLG's nominal display peak (its OOTF)
TONEMAP_KNEE = 0.8  # of SDR white: below it light is kept, above it rolls off
# Linear BT.2020 RGB -> linear BT.709 RGB (ITU-R BT.2087).
BT2020_TO_BT709 = np.array(
    [[1.6605, -0.5876, -0.0728], [-0.1246, 1.1329, -0.0083], [-0.0182, -0.1006, 1.1187]],
    np.float32,
)


def hdr_to_nits(signal: np.ndarray, kind: str) -> np.ndarray:
    """Non-linear HDR RGB ``[..., 3]`` in [0, 1] -> display light in nits (PQ: SMPTE ST 2084
    EOTF; HLG: ARIB STD-B67 inverse OETF and the BT.2100 OOTF at a 1000-nit display)."""
    e = np.clip(signal, 0.0, 1.0)
    if kind == "pq":
        m1, m2 = 2610 / 16384, 2523 / 4096 * 128
        c1, c2, c3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
        p = np.power(e, 1 / m2)
        return 10000.0 * np.power(np.maximum(p - c1, 0) / (c2 - c3 * p), 1 / m1)
    a, b, c = 0.17883277, 0.28466892, 0.55991073
    scene = np.where(e <= 0.5, e * e / 3, (np.exp((e - c) / a) + b) / 12)
    luma = scene @ np.array([0.2627, 0.6780, 0.0593], np.float32)
    return HDR_PEAK_NITS * scene * np.power(np.maximum(luma, 1e-6), 0.2)[..., None]


def tonemap_to_sdr(signal: np.ndarray, kind: str) -> np.ndarray:
    """HDR (``kind`` "pq" or "hlg", BT.2020) RGB ``[H, W, 3]`` float in [0, 1] -> SDR BT.709
    RGB ``[H, W, 3]`` uint8 for a gamma-2.4 display: light up to 80% of reference white (203
    nits = SDR 100%) is kept as it is, brighter light rolls off smoothly towards 100% (slope 1
    at the knee, so no visible seam), applied to the brightest channel so hues are kept; BT.2020
    colours are mapped into BT.709."""
    light = hdr_to_nits(signal.astype(np.float32), kind) / SDR_WHITE_NITS
    light = np.maximum(light @ BT2020_TO_BT709.T, 0)
    peak = np.maximum(light.max(axis=-1, keepdims=True), 1e-6)
    knee = TONEMAP_KNEE
    rolled = knee + (1 - knee) * (1 - np.exp(-(peak - knee) / (1 - knee)))
    mapped = np.where(peak <= knee, peak, rolled)
    sdr = np.clip(light * (mapped / peak), 0, 1)
    return np.round(np.power(sdr, 1 / 2.4) * 255).astype(np.uint8)


def hdr_to_rgb(frame: av.VideoFrame, colour: ColourInfo) -> np.ndarray:
    """A decoded HDR frame tone-mapped to SDR BT.709 ``[H, W, 3]`` uint8 (16-bit on the way)."""
    deep = frame.reformat(
        format="rgb48le",
        src_colorspace=colour.decode_matrix(frame.height),
        dst_colorspace=colour.decode_matrix(frame.height),
        src_color_range=ColorRange.JPEG if colour.full_range else ColorRange.MPEG,
        dst_color_range=ColorRange.JPEG,
    ).to_ndarray()
    return tonemap_to_sdr(deep.astype(np.float32) / 65535.0, colour.hdr)
