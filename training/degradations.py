"""Synthetic low-quality inputs: RealBasicVSR-style for videos, Real-ESRGAN-style for images.

Every op takes and returns frames ``[F, H, W, 3]`` float32 RGB in ``[0, 1]`` (an image is a clip
of one frame). Ops are deterministic given their arguments; the random plans draw everything from
one ``numpy.random.Generator`` seeded by the caller, so a (clip, seed) pair always gives the same
LR clip. Parameters are drawn once per clip and applied to every frame alike, so the only
temporal artefacts are the codec's, as in real footage.

Alignment: kernels are odd and centred, resizes use pixel-centre sampling (OpenCV), and the last
resize maps the clip to exactly ``HR / scale``, so LR pixel (x, y) covers HR pixels
``scale * (x, y) .. scale * (x + 1, y + 1)``: LR and HR stay aligned.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import av
import cv2
import numpy as np
from scipy import special

from training.config import (
    INTERPOLATIONS,
    RESIZE_MODES,
    BlurConfig,
    DegradationConfig,
    DegradationStageConfig,
    TrainingError,
    VideoCompressionConfig,
)

_CV2_INTERPOLATION = {
    "area": cv2.INTER_AREA,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
}
# Frames go to the encoder edge-padded to whole macroblocks: encoders reject tiny frames, and
# x264 at sizes off the 16 grid is not bit-reproducible from run to run.
_CODEC_BLOCK = 16


# ---------------------------------------------------------------------------------------------
# Kernels: float32 [k, k], non-negative where the family is, summing to 1.


def _quadratic_form(size: int, sigma_x: float, sigma_y: float, angle: float) -> np.ndarray:
    """x^T Sigma^-1 x on a centred ``size`` x ``size`` grid for a rotated Gaussian covariance."""
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    covariance = rotation @ np.diag([sigma_x**2, sigma_y**2]) @ rotation.T
    inverse = np.linalg.inv(covariance)
    half = size // 2
    ys, xs = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    points = np.stack([xs, ys], axis=-1)
    return np.einsum("...i,ij,...j->...", points, inverse, points)


def _normalise(kernel: np.ndarray) -> np.ndarray:
    return (kernel / kernel.sum()).astype(np.float32)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, angle: float = 0.0) -> np.ndarray:
    """Isotropic (sigma_x == sigma_y) or anisotropic Gaussian rotated by ``angle`` radians."""
    return _normalise(np.exp(-0.5 * _quadratic_form(size, sigma_x, sigma_y, angle)))


def generalized_gaussian_kernel(
    size: int, sigma_x: float, sigma_y: float, angle: float, beta: float
) -> np.ndarray:
    """exp(-0.5 (x^T S^-1 x)^beta): beta < 1 heavier tails, beta > 1 flatter top."""
    return _normalise(np.exp(-0.5 * _quadratic_form(size, sigma_x, sigma_y, angle) ** beta))


def plateau_kernel(
    size: int, sigma_x: float, sigma_y: float, angle: float, beta: float
) -> np.ndarray:
    """1 / (1 + (x^T S^-1 x)^beta): a flat top with slowly decaying tails."""
    return _normalise(1.0 / (1.0 + _quadratic_form(size, sigma_x, sigma_y, angle) ** beta))


def sinc_kernel(size: int, omega: float) -> np.ndarray:
    """2-D circular low-pass (jinc) with cut-off ``omega`` radians: ringing and overshoot."""
    half = size // 2
    ys, xs = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    radius = np.hypot(xs, ys)
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = omega * special.j1(omega * radius) / (2 * np.pi * radius)
    kernel[half, half] = omega**2 / (4 * np.pi)
    return _normalise(kernel)


def random_kernel(rng: np.random.Generator, config: BlurConfig) -> np.ndarray:
    """One kernel of a type drawn by ``config.kernel_probs`` with parameters in its ranges."""
    kind = config.kernels[rng.choice(len(config.kernels), p=config.kernel_probs)]
    size = int(rng.choice(config.kernel_sizes))
    if kind == "sinc":
        # Small kernels cannot represent low cut-offs without truncation artefacts.
        low = config.sinc_omega[0] if size < 13 else max(config.sinc_omega[0] * 0.6, 0.01)
        return sinc_kernel(size, float(rng.uniform(low, config.sinc_omega[1])))
    sigma_x = float(rng.uniform(*config.sigma))
    if kind.endswith("iso") and not kind.endswith("aniso"):
        sigma_y, angle = sigma_x, 0.0
    else:
        sigma_y, angle = float(rng.uniform(*config.sigma)), float(rng.uniform(-math.pi, math.pi))
    if kind in ("iso", "aniso"):
        return gaussian_kernel(size, sigma_x, sigma_y, angle)
    if kind.startswith("generalized"):
        # Real-ESRGAN draws beta below 1 or above 1 with equal chance.
        low, high = config.beta_gaussian
        beta = float(rng.uniform(low, 1.0) if rng.random() < 0.5 else rng.uniform(1.0, high))
        return generalized_gaussian_kernel(size, sigma_x, sigma_y, angle, beta)
    low, high = config.beta_plateau
    beta = float(rng.uniform(low, 1.0) if rng.random() < 0.5 and low < 1 else rng.uniform(1, high))
    return plateau_kernel(size, sigma_x, sigma_y, angle, beta)


# ---------------------------------------------------------------------------------------------
# Ops: [F, H, W, 3] float32 in [0, 1] -> same layout and range.


def _check_frames(frames: np.ndarray) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.float32:
        raise TrainingError(
            f"degradations need float32 frames shaped [F, H, W, 3] in [0, 1]; got "
            f"{frames.dtype} {tuple(frames.shape)}"
        )


def blur(frames: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve every frame with ``kernel`` (reflected borders)."""
    _check_frames(frames)
    out = np.stack([cv2.filter2D(f, -1, kernel, borderType=cv2.BORDER_REFLECT_101) for f in frames])
    return np.clip(out, 0.0, 1.0, out=out)


def resize(frames: np.ndarray, size: tuple[int, int], interpolation: str) -> np.ndarray:
    """Resize every frame to ``size`` = (width, height) with area / bilinear / bicubic."""
    _check_frames(frames)
    if interpolation not in _CV2_INTERPOLATION:
        raise TrainingError(f"interpolation {interpolation!r} unknown; use one of {INTERPOLATIONS}")
    width, height = size
    if width < 1 or height < 1:
        raise TrainingError(f"cannot resize to {size}: width and height must be positive")
    flag = _CV2_INTERPOLATION[interpolation]
    out = np.stack([cv2.resize(f, (width, height), interpolation=flag) for f in frames])
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def add_gaussian_noise(
    frames: np.ndarray, sigma: float, gray: bool, rng: np.random.Generator
) -> np.ndarray:
    """Add zero-mean Gaussian noise of ``sigma`` in 0..255 units (one channel when ``gray``)."""
    _check_frames(frames)
    shape = (*frames.shape[:3], 1) if gray else frames.shape
    noise = rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma / 255.0)
    return np.clip(frames + noise, 0.0, 1.0).astype(np.float32, copy=False)


def add_poisson_noise(
    frames: np.ndarray, scale: float, gray: bool, rng: np.random.Generator
) -> np.ndarray:
    """Add shot noise at 8-bit photon counts, scaled by ``scale`` (grey: from luma only)."""
    _check_frames(frames)
    source = frames.mean(axis=-1, keepdims=True) if gray else frames
    counts = rng.poisson(source.astype(np.float64) * 255.0)
    noise = (counts / 255.0 - source).astype(np.float32) * np.float32(scale)
    return np.clip(frames + noise, 0.0, 1.0).astype(np.float32, copy=False)


def jpeg(frames: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode every frame as JPEG at ``quality`` (1..100)."""
    _check_frames(frames)
    out = []
    for frame in frames:
        bgr = cv2.cvtColor(_to_uint8(frame), cv2.COLOR_RGB2BGR)
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise TrainingError(f"JPEG encoding failed at quality {quality}")
        out.append(cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    return np.stack(out).astype(np.float32) / 255.0


def compress_video(frames: np.ndarray, codec: str, bitrate: float) -> np.ndarray:
    """Encode the clip in memory with PyAV (``codec`` at ``bitrate`` bits/s) and decode it back.

    Frames are edge-padded to whole 16-pixel macroblocks and cropped back, so the output has the input's shape. Single-threaded so the result is reproducible.
    """
    _check_frames(frames)
    count, height, width = frames.shape[:3]
    pad_h = -height % _CODEC_BLOCK
    pad_w = -width % _CODEC_BLOCK
    padded = np.pad(_to_uint8(frames), ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    buffer = io.BytesIO()
    try:
        with av.open(buffer, mode="w", format="matroska") as container:
            stream = container.add_stream(codec, rate=25, options=_encoder_options(codec))
            stream.width, stream.height = width + pad_w, height + pad_h
            stream.pix_fmt = "yuv420p"
            stream.bit_rate = int(bitrate)
            for index, image in enumerate(padded):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = index
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        buffer.seek(0)
        with av.open(buffer, mode="r") as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except (av.FFmpegError, ValueError) as e:
        raise TrainingError(
            f"in-memory {codec} compression at {bitrate:.0f} b/s failed: {e}"
        ) from e
    if not decoded:
        raise TrainingError(f"in-memory {codec} compression returned no frames")
    # Encoders may drop a trailing frame at very low bitrates; repeat the last to keep alignment.
    decoded = (decoded + [decoded[-1]] * count)[:count]
    out = np.stack(decoded)[:, :height, :width]
    return out.astype(np.float32) / 255.0


def _encoder_options(codec: str) -> dict[str, str]:
    """Options that make an encoder bit-exact from run to run (so degradations are seeded).

    One thread; for x264 also no MB-tree, whose statistics differ between identical runs.
    """
    options = {"threads": "1"}
    if codec in ("libx264", "h264"):
        options["x264-params"] = "mbtree=0"
    return options


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(frames * 255.0), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Random plans


@dataclass(frozen=True)
class _Size:
    width: int
    height: int


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def _random_stage(
    frames: np.ndarray, config: DegradationStageConfig, rng: np.random.Generator
) -> np.ndarray:
    """blur -> resize -> noise -> JPEG, each drawn from the stage's ranges."""
    if rng.random() < config.blur.prob:
        frames = blur(frames, random_kernel(rng, config.blur))
    mode = RESIZE_MODES[rng.choice(3, p=config.resize.mode_probs)]
    low, high = config.resize.scale
    factor = {
        "up": lambda: rng.uniform(1.0, max(high, 1.0)),
        "down": lambda: rng.uniform(low, min(1.0, high)),
        "keep": lambda: 1.0,
    }[mode]()
    interpolation = config.resize.interpolations[
        rng.choice(len(config.resize.interpolations), p=config.resize.interpolation_probs)
    ]
    height, width = frames.shape[1:3]
    # Even sizes keep a codec's chroma subsampling from shifting the picture.
    frames = resize(frames, (_even(width * factor), _even(height * factor)), interpolation)
    gray = rng.random() < config.noise.gray_prob
    if rng.random() < config.noise.gaussian_prob:
        frames = add_gaussian_noise(frames, rng.uniform(*config.noise.gaussian_sigma), gray, rng)
    else:
        frames = add_poisson_noise(frames, rng.uniform(*config.noise.poisson_scale), gray, rng)
    if rng.random() < config.jpeg.prob:
        frames = jpeg(frames, int(rng.integers(config.jpeg.quality[0], config.jpeg.quality[1] + 1)))
    return frames


def _random_compression(
    frames: np.ndarray, config: VideoCompressionConfig, rng: np.random.Generator
) -> np.ndarray:
    if rng.random() >= config.prob:
        return frames
    codec = config.codecs[rng.choice(len(config.codecs), p=config.codec_probs)]
    return compress_video(frames, codec, float(rng.uniform(*config.bitrate)))


def _final_resize(
    frames: np.ndarray, target: _Size, config: DegradationConfig, rng: np.random.Generator
) -> np.ndarray:
    interpolation = INTERPOLATIONS[rng.integers(len(INTERPOLATIONS))]
    frames = resize(frames, (target.width, target.height), interpolation)
    if rng.random() < config.final_sinc_prob:
        size = int(rng.choice(config.final_kernel_sizes))
        frames = blur(frames, sinc_kernel(size, float(rng.uniform(*config.final_sinc_omega))))
    return frames


def _check_scale(frames: np.ndarray, scale: int) -> _Size:
    _check_frames(frames)
    height, width = frames.shape[1:3]
    if scale < 1 or height % scale or width % scale:
        raise TrainingError(
            f"HR size {width}x{height} must be divisible by the scale {scale} so LR stays aligned"
        )
    return _Size(width // scale, height // scale)


def degrade_video(hr: np.ndarray, scale: int, config: DegradationConfig, seed: int) -> np.ndarray:
    """RealBasicVSR-style LR clip for HR ``[F, H, W, 3]`` float32 in [0, 1].

    Returns ``[F, H / scale, W / scale, 3]`` float32 in [0, 1], the same for the same seed.
    """
    target = _check_scale(hr, scale)
    rng = np.random.default_rng(seed)
    frames = _random_stage(hr, config.first, rng)
    frames = _random_compression(frames, config.video_compression, rng)
    frames = _random_stage(frames, config.second, rng)
    if rng.random() < 0.5:
        frames = _random_compression(frames, config.video_compression, rng)
        frames = _final_resize(frames, target, config, rng)
    else:
        frames = _final_resize(frames, target, config, rng)
        frames = _random_compression(frames, config.video_compression, rng)
    return frames


def degrade_image(hr: np.ndarray, scale: int, config: DegradationConfig, seed: int) -> np.ndarray:
    """Real-ESRGAN-style LR image(s) for HR ``[F, H, W, 3]`` float32 in [0, 1] (F = 1 usually).

    Two orders of blur/resize/noise/JPEG, then [JPEG, resize + sinc] in random order. Returns
    ``[F, H / scale, W / scale, 3]`` float32 in [0, 1], the same for the same seed.
    """
    target = _check_scale(hr, scale)
    rng = np.random.default_rng(seed)
    frames = _random_stage(hr, config.first, rng)
    frames = _random_stage(frames, config.second, rng)
    quality = int(rng.integers(config.second.jpeg.quality[0], config.second.jpeg.quality[1] + 1))
    if rng.random() < 0.5:
        frames = _final_resize(frames, target, config, rng)
        frames = jpeg(frames, quality)
    else:
        frames = jpeg(frames, quality)
        frames = _final_resize(frames, target, config, rng)
    return frames
