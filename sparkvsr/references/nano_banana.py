"""``nano-banana-pro``: Google's Gemini 3 Pro Image model restores the keyframe, through google-genai.

Facts this relies on (google-genai 3.x):
- ``HttpOptions.timeout`` is in milliseconds; retries happen only when ``retry_options`` is set.
- A timeout surfaces as an httpx ``TimeoutException`` (not ``APIError``); HTTP errors as
  ``errors.APIError`` with ``.code`` and ``.status``.
- A safety block is not an exception: the response has ``prompt_feedback.block_reason`` (the request
  was refused) or a candidate whose ``finish_reason`` is ``IMAGE_SAFETY`` and friends (the picture
  was made and withheld), and no image parts.
- Without an explicit ``base_url`` the SDK reads ``GOOGLE_GEMINI_BASE_URL`` (``GOOGLE_VERTEX_BASE_URL``
  for Vertex AI), so a proxy or a fake server needs no code.
- Thinking image models may return interim "thought" images; the answer is the last non-thought one.

The API key comes from ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY`` (or Vertex AI through the SDK's own
``GOOGLE_GENAI_USE_VERTEXAI`` / ``GOOGLE_CLOUD_PROJECT`` / ``GOOGLE_CLOUD_LOCATION``). It is never put
in a message or a log line. Results are cached on disk, so asking again costs no request.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass, fields, replace
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image, UnidentifiedImageError

from sparkvsr.errors import EditorError
from sparkvsr.references.base import (
    DEFAULT_TASK_PROMPT,
    EditRequest,
    Provenance,
    Reference,
    image_hash,
)
from sparkvsr.references.cache import ImageCache, cache_key, default_cache_dir
from sparkvsr.references.fit import (
    check_frame,
    check_target_size,
    fit_to_size,
    fitted_reference,
)

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "gemini-3-pro-image-preview"
API_KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
RETRY_STATUS_CODES = (408, 429, 500, 502, 503, 504)
# Aspect ratios the image models accept in ImageConfig.aspect_ratio.
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
# finish_reason values meaning "an image was made and withheld" (vs the prompt being refused).
IMAGE_BLOCK_REASONS = {
    "IMAGE_SAFETY": "it was judged unsafe",
    "IMAGE_PROHIBITED_CONTENT": "it contained prohibited content",
    "IMAGE_RECITATION": "it resembled existing protected material too closely",
    "IMAGE_OTHER": "of an unspecified image policy",
    "SAFETY": "it was judged unsafe",
    "PROHIBITED_CONTENT": "it contained prohibited content",
    "BLOCKLIST": "it contained blocklisted terms",
    "SPII": "it contained sensitive personal information",
    "RECITATION": "it resembled existing protected material too closely",
}


@dataclass(frozen=True)
class NanoBananaOptions:
    """How the editor talks to Gemini.

    timeout_s:  per attempt, seconds (sent to the SDK in milliseconds).
    attempts:   tries per request including the first; retried on 408/429/5xx, timeouts and
                connection failures with exponential backoff from ``initial_delay_s`` up to
                ``max_delay_s``.
    base_url:   endpoint override (a proxy or a local fake); None lets the SDK read
                ``GOOGLE_GEMINI_BASE_URL`` or use Google's.
    cache_dir:  where results are kept; None = ``default_cache_dir() / "nano-banana"``.
    """

    model: str = DEFAULT_MODEL
    timeout_s: float = 120.0
    attempts: int = 4
    initial_delay_s: float = 2.0
    max_delay_s: float = 30.0
    base_url: str | None = None
    api_version: str = "v1beta"
    cache_dir: Path | None = None
    use_cache: bool = True


def compose_prompt(task_prompt: str, content_prompt: str = "") -> str:
    """The text sent with the frame: the task, then (if given) what the frame shows."""
    task = " ".join(task_prompt.split()) or DEFAULT_TASK_PROMPT
    content = " ".join(content_prompt.split())
    prompt = f"Task: {task}"
    if content:
        prompt += (
            f"\n\nWhat this frame shows (use it to restore details faithfully; do not add "
            f"anything that is not described or visible): {content}"
        )
    return prompt + "\n\nReturn only the restored image, same framing as the input."


def image_size_tier(target_size: tuple[int, int]) -> str:
    """Gemini's output size tier for a target (W, H): the smallest tier covering its long side."""
    long_side = max(target_size)
    if long_side <= 1024:
        return "1K"
    if long_side <= 2048:
        return "2K"
    return "4K"


def nearest_aspect_ratio(target_size: tuple[int, int]) -> str:
    """The supported aspect ratio string closest (in log ratio) to the target (W, H)."""
    aspect = np.log(target_size[0] / target_size[1])

    def distance(ratio: str) -> float:
        width, height = (int(v) for v in ratio.split(":"))
        return abs(np.log(width / height) - aspect)

    return min(ASPECT_RATIOS, key=distance)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes"}


def _find_api_key() -> str | None:
    for variable in API_KEY_VARIABLES:
        value = os.environ.get(variable, "").strip()
        if value:
            return value
    return None


def _exception_types(name: str) -> tuple[type[BaseException], ...]:
    """``httpx.<name>`` and its twin in httpx2 (the SDK may use either client)."""
    found: list[type[BaseException]] = []
    for module_name in ("httpx", "httpx2"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        if hasattr(module, name):
            found.append(getattr(module, name))
    return tuple(found)


class NanoBananaEditor:
    """Keyframe restoration by Gemini (``gemini-3-pro-image-preview`` by default).

    Configure with keywords matching ``NanoBananaOptions`` fields (``model=``, ``timeout_s=``,
    ``base_url=``...) or pass ``options=``; ``api_key=`` overrides the environment.
    """

    name = "nano-banana-pro"

    def __init__(
        self, options: NanoBananaOptions | None = None, *, api_key: str | None = None, **config: Any
    ):
        valid = {f.name for f in fields(NanoBananaOptions)}
        unknown = sorted(set(config) - valid)
        if unknown:
            raise EditorError(
                f"unknown nano-banana-pro option(s) {', '.join(unknown)}; valid: "
                f"{', '.join(sorted(valid))}"
            )
        options = replace(options or NanoBananaOptions(), **config)
        if options.timeout_s <= 0 or options.attempts < 1:
            raise EditorError(
                f"timeout_s must be > 0 and attempts >= 1; got {options.timeout_s} and "
                f"{options.attempts}"
            )
        self.options = options
        self._api_key = api_key.strip() if api_key else None
        self._client: Any = None
        cache_root = options.cache_dir or default_cache_dir() / "nano-banana"
        self.cache = ImageCache(Path(cache_root))

    def __repr__(self) -> str:  # the key must never show up, even in a debugger or a log
        return f"NanoBananaEditor({self.options!r})"

    # -- configuration -----------------------------------------------------------------------

    def _key(self) -> str | None:
        return self._api_key or _find_api_key()

    def _uses_vertex(self) -> bool:
        return not self._api_key and _env_flag("GOOGLE_GENAI_USE_VERTEXAI")

    def availability(self) -> str | None:
        if find_spec("google") is None or find_spec("google.genai") is None:
            return "the google-genai package is not installed: pip install google-genai"
        if self._uses_vertex():
            if os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GOOGLE_API_KEY"):
                return None
            return (
                "GOOGLE_GENAI_USE_VERTEXAI is set but GOOGLE_CLOUD_PROJECT (and "
                "GOOGLE_CLOUD_LOCATION) are not: set them, or unset GOOGLE_GENAI_USE_VERTEXAI "
                "and set GEMINI_API_KEY"
            )
        if self._key():
            return None
        return (
            "Nano-Banana-Pro needs a Gemini API key: set GEMINI_API_KEY (or GOOGLE_API_KEY) in "
            "the environment (get one at https://aistudio.google.com/apikey), or use Vertex AI "
            "with GOOGLE_GENAI_USE_VERTEXAI=true, GOOGLE_CLOUD_PROJECT and GOOGLE_CLOUD_LOCATION"
        )

    def _http_options(self, vertex: bool) -> Any:
        from google.genai import types

        options = self.options
        return types.HttpOptions(
            # Vertex AI has its own API version (v1beta1); pin ours for the Gemini API only.
            api_version=None if vertex else options.api_version,
            base_url=options.base_url,
            timeout=max(1, round(options.timeout_s * 1000)),
            retry_options=types.HttpRetryOptions(
                attempts=options.attempts,
                initial_delay=options.initial_delay_s,
                max_delay=options.max_delay_s,
                exp_base=2.0,
                jitter=min(1.0, options.initial_delay_s),
                http_status_codes=list(RETRY_STATUS_CODES),
            ),
        )

    def _get_client(self) -> Any:
        if self._client is not None:
            return self._client
        problem = self.availability()
        if problem:
            raise EditorError(problem)
        from google import genai

        vertex = self._uses_vertex()
        try:
            if vertex:
                client = genai.Client(vertexai=True, http_options=self._http_options(True))
            else:
                client = genai.Client(api_key=self._key(), http_options=self._http_options(False))
        except Exception as e:  # the SDK raises ValueError and google.auth errors here
            raise EditorError(f"cannot set up the Gemini client: {self._scrub(str(e))}") from e
        self._client = client
        return client

    def _scrub(self, text: str) -> str:
        """``text`` with any API key we know replaced, so it is safe to show or log."""
        for key in {self._key(), *(os.environ.get(v) for v in API_KEY_VARIABLES)}:
            if key and len(key) >= 4:
                text = text.replace(key, "***")
        return text

    def _endpoint(self) -> str:
        url = self.options.base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or ""
        return urlsplit(url).netloc or "generativelanguage.googleapis.com"

    # -- the edit ------------------------------------------------------------------------------

    def make(
        self, lr_frame: np.ndarray, target_size: tuple[int, int], request: EditRequest
    ) -> Reference:
        """Ask Gemini to restore ``lr_frame`` (``[h, w, 3]`` uint8); Reference at ``target_size``.

        Raises EditorError (in user words) on any failure; nothing is returned then, so the
        caller's previous Reference for this keyframe stays as it was.
        """
        # 1. Inputs.
        lr_frame = check_frame(lr_frame)
        target_size = check_target_size(target_size)
        model = self.options.model
        provenance = Provenance(
            editor=self.name,
            model=model,
            task_prompt=request.task_prompt,
            content_prompt=request.content_prompt,
            seed=request.seed,
        )

        # 2. Cache: the same frame, prompts, model and size give the same answer for free.
        key = cache_key(
            editor=self.name,
            frame=image_hash(lr_frame),
            task=request.task_prompt,
            content=request.content_prompt,
            model=model,
            size=list(target_size),
            seed=request.seed,
        )
        if self.options.use_cache:
            cached = self.cache.get(key)
            if cached is not None:
                notes = ("reused the cached result of an identical earlier request",)
                return fitted_reference(cached, lr_frame, replace(provenance, notes=notes))

        # 3. Ask Gemini; every failure becomes an EditorError in user words.
        response = self._generate(lr_frame, target_size, request)

        # 4. Read the answer: an image, or the reason there is none.
        returned = self._image_from(response)

        # 5. Fit to the clip: centre-crop to its aspect, bicubic to the target size.
        fitted, cropped = fit_to_size(returned, target_size, "bicubic")
        height, width = returned.shape[:2]
        notes = (f"Gemini returned {width}x{height}",)
        if cropped:
            notes += ("centre-cropped to the clip's aspect ratio",)

        # 6. Keep it, so asking again costs nothing. A full disk must not lose a paid result.
        if self.options.use_cache:
            try:
                self.cache.put(key, fitted)
            except OSError as e:
                logger.warning("could not cache the Gemini result in %s: %s", self.cache.root, e)
        return fitted_reference(fitted, lr_frame, replace(provenance, notes=notes))

    def _generate(
        self, lr_frame: np.ndarray, target_size: tuple[int, int], request: EditRequest
    ) -> Any:
        from google.genai import errors, types

        client = self._get_client()
        buffer = io.BytesIO()
        Image.fromarray(lr_frame).save(buffer, format="PNG")
        config = types.GenerateContentConfig(
            # TEXT too, so that a refusal comes with the model's explanation.
            response_modalities=["TEXT", "IMAGE"],
            image_config=types.ImageConfig(
                aspect_ratio=nearest_aspect_ratio(target_size),
                image_size=image_size_tier(target_size),
            ),
            seed=request.seed,
        )
        contents = [
            types.Part.from_bytes(data=buffer.getvalue(), mime_type="image/png"),
            compose_prompt(request.task_prompt, request.content_prompt),
        ]
        logger.info(
            "nano-banana-pro: %s, %s, %s tier, frame %dx%d",
            self.options.model,
            config.image_config.aspect_ratio,
            config.image_config.image_size,
            lr_frame.shape[1],
            lr_frame.shape[0],
        )
        timeouts = _exception_types("TimeoutException")
        transport = _exception_types("TransportError")
        attempts = self.options.attempts
        tries = f"{attempts} attempt{'s' * (attempts > 1)}"
        try:
            return client.models.generate_content(
                model=self.options.model, contents=contents, config=config
            )
        except errors.APIError as e:
            raise EditorError(self._api_error_message(e, tries)) from e
        except timeouts as e:
            raise EditorError(
                f"Gemini did not answer within {self.options.timeout_s:g} s ({tries}); the "
                "service may be busy: try again later, or raise the timeout"
            ) from e
        except (*transport, OSError) as e:
            raise EditorError(
                f"cannot reach the Gemini API at {self._endpoint()} ({type(e).__name__}, "
                f"{tries}): check the network connection or proxy"
            ) from e
        except errors.UnknownApiResponseError as e:
            raise EditorError(
                "Gemini answered with something that is not a valid response; try again later"
            ) from e

    def _api_error_message(self, error: Any, tries: str) -> str:
        code = int(getattr(error, "code", 0) or 0)
        status = getattr(error, "status", None) or ""
        detail = self._scrub(str(getattr(error, "message", "") or "")).strip()
        detail = f": {detail[:300]}" if detail else ""
        if code == 429:
            return (
                f"Gemini quota exhausted: the API answered 429 {status} to all {tries}; wait "
                "a minute and try again, or check your plan and billing at "
                "https://aistudio.google.com"
            )
        if code >= 500:
            return (
                f"the Gemini service failed (HTTP {code} {status}) on all {tries}; try again later"
            )
        if (
            code in (401, 403)
            or "API_KEY" in str(getattr(error, "details", ""))
            or ("API key" in detail)
        ):
            variables = " or ".join(API_KEY_VARIABLES)
            return (
                f"Gemini rejected the API key (HTTP {code} {status}); check the key in "
                f"{variables}{detail}"
            )
        if code == 404:
            return (
                f"Gemini does not know the model {self.options.model!r} (HTTP 404); check the "
                f"model name (default {DEFAULT_MODEL!r}){detail}"
            )
        return f"Gemini refused the request (HTTP {code} {status}){detail}"

    def _image_from(self, response: Any) -> np.ndarray:
        """The last non-thought image in ``response`` as ``[H, W, 3]`` uint8, or EditorError."""
        feedback = getattr(response, "prompt_feedback", None)
        block = getattr(feedback, "block_reason", None)
        if block:
            reason = getattr(block, "value", block)
            extra = getattr(feedback, "block_reason_message", None) or ""
            raise EditorError(
                f"Gemini blocked the request before making an image (prompt blocked: {reason}"
                f"{'; ' + extra if extra else ''}); reword the task or content prompt"
            )
        candidates = getattr(response, "candidates", None) or []
        if not candidates:
            raise EditorError("Gemini returned no result and gave no reason; try again")
        candidate = candidates[0]
        parts = getattr(getattr(candidate, "content", None), "parts", None) or []
        images = [
            part.inline_data
            for part in parts
            if getattr(part, "inline_data", None) is not None
            and (part.inline_data.mime_type or "").startswith("image/")
            and part.inline_data.data
            and not getattr(part, "thought", False)
        ]
        finish = getattr(candidate, "finish_reason", None)
        finish = str(getattr(finish, "value", finish) or "")
        if not images and finish in IMAGE_BLOCK_REASONS:
            raise EditorError(
                f"Gemini made an image but withheld it because {IMAGE_BLOCK_REASONS[finish]} "
                f"(image blocked: finish reason {finish}); try a different frame or prompt"
            )
        if not images:
            text = " ".join(
                part.text.strip() for part in parts if getattr(part, "text", None)
            ).strip()
            said = f': "{text[:200]}"' if text else ""
            reason = f" (finish reason {finish})" if finish and finish != "STOP" else ""
            raise EditorError(
                f"Gemini answered without an image{reason}{said}; try again or reword the prompt"
            )
        try:
            with Image.open(io.BytesIO(images[-1].data)) as image:
                return np.asarray(image.convert("RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise EditorError(
                f"Gemini returned an image ({images[-1].mime_type}) that cannot be decoded"
            ) from e
