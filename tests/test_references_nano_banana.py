"""nano-banana-pro end to end: the real google-genai SDK against a local fake Gemini server."""

from __future__ import annotations

import logging
import socket

import numpy as np
import pytest

from sparkvsr.errors import EditorError
from sparkvsr.references import load_editor
from sparkvsr.references.base import EditRequest, Provenance, Reference
from sparkvsr.references.nano_banana import (
    NanoBananaEditor,
    compose_prompt,
    image_size_tier,
    nearest_aspect_ratio,
)
from tests.fake_gemini import (
    Expect,
    FakeGemini,
    error,
    finish,
    image,
    prompt_blocked,
    slow,
    text_only,
)

KEY = "test-key-0123456789"
MODEL = "gemini-3-pro-image-preview"
TARGET = (128, 96)  # 4:3, long side <= 1024 -> "1K"


@pytest.fixture
def env(monkeypatch):
    for variable in (
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "GOOGLE_GENAI_USE_VERTEXAI",
        "GOOGLE_GEMINI_BASE_URL",
        "GOOGLE_CLOUD_PROJECT",
    ):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    return monkeypatch


@pytest.fixture
def fake(env):
    expect = Expect(
        model=MODEL,
        api_key=KEY,
        prompt_contains=("Restore this video frame", "a red tram"),
        image_size="1K",
        aspect_ratio="4:3",
        image_shape=(24, 32),
    )
    with FakeGemini(expect) as server:
        yield server


@pytest.fixture
def lr_frame():
    rng = np.random.default_rng(4)
    return rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)


REQUEST = EditRequest(content_prompt="a red tram on a rainy street")


def make_editor(fake, tmp_path, **config):
    options = dict(
        base_url=fake.base_url,
        timeout_s=1.0,
        attempts=3,
        initial_delay_s=0.01,
        max_delay_s=0.02,
        cache_dir=tmp_path / "cache",
    )
    return NanoBananaEditor(**{**options, **config})


def edit_keyframe(references, index, editor, frame, request=REQUEST):
    """What the studio does: the keyframe's reference is replaced only by a finished result."""
    references[index] = editor.make(frame, TARGET, request)


def previous_reference():
    image_ = np.full((TARGET[1], TARGET[0], 3), 77, np.uint8)
    return Reference.create(image_, Provenance(editor="classic"))


def test_restores_through_the_real_sdk_and_fits_to_the_clip(fake, tmp_path, lr_frame):
    # The fake answers 80x48 (5:3): the editor must crop it to 4:3 (64x48) and resize to 128x96.
    fake.reply(image(80, 48))
    editor = load_editor("nano-banana-pro", **make_editor(fake, tmp_path).options.__dict__)

    reference = editor.make(lr_frame, TARGET, REQUEST)

    assert fake.problems == []
    assert len(fake.requests) == 1
    assert reference.image.shape == (96, 128, 3) and reference.image.dtype == np.uint8
    # The returned picture's red channel ramps 0..255 across its 80 columns; cropping 8 columns
    # each side means the reference's left edge starts near 8 * 255 / 79 = 26, not at 0.
    assert 18 < reference.image[:, 0, 0].mean() < 36
    assert 219 < reference.image[:, -1, 0].mean() < 237
    # The bright marker at the returned image's centre is still at the centre.
    assert reference.image[47:49, 63:65].min() > 150
    provenance = reference.provenance
    assert provenance.editor == "nano-banana-pro" and provenance.model == MODEL
    assert provenance.content_prompt == REQUEST.content_prompt
    assert any("80x48" in note for note in provenance.notes)
    body = fake.requests[0].body
    assert body["generationConfig"]["imageConfig"] == {"aspectRatio": "4:3", "imageSize": "1K"}


def test_repeating_a_request_makes_no_second_http_call(fake, tmp_path, lr_frame):
    editor = make_editor(fake, tmp_path)
    first = editor.make(lr_frame, TARGET, REQUEST)
    second = editor.make(lr_frame, TARGET, REQUEST)
    assert len(fake.requests) == 1
    assert second.content_hash == first.content_hash
    assert editor.cache.hits == 1

    # A fresh editor (a restarted studio) finds the result on disk too.
    again = make_editor(fake, tmp_path).make(lr_frame, TARGET, REQUEST)
    assert len(fake.requests) == 1 and again.content_hash == first.content_hash

    # Anything that changes the answer is a new request.
    other = EditRequest(content_prompt="a red tram on a rainy street at night")
    fake.expect.prompt_contains = ("at night",)
    editor.make(lr_frame, TARGET, other)
    assert len(fake.requests) == 2
    assert fake.problems == []


def test_sdk_base_url_variable_is_honoured(fake, tmp_path, lr_frame, env):
    env.setenv("GOOGLE_GEMINI_BASE_URL", fake.base_url)
    editor = make_editor(fake, tmp_path, base_url=None)
    editor.make(lr_frame, TARGET, REQUEST)
    assert len(fake.requests) == 1 and fake.problems == []


def test_google_api_key_variable_works_too(fake, tmp_path, lr_frame, env):
    env.delenv("GEMINI_API_KEY")
    env.setenv("GOOGLE_API_KEY", KEY)
    make_editor(fake, tmp_path).make(lr_frame, TARGET, REQUEST)
    assert len(fake.requests) == 1 and fake.problems == []


def test_429_then_success_is_retried(fake, tmp_path, lr_frame):
    fake.reply(error(429), image())
    reference = make_editor(fake, tmp_path).make(lr_frame, TARGET, REQUEST)
    assert len(fake.requests) == 2
    assert reference.image.shape == (96, 128, 3)


@pytest.mark.parametrize(
    ("replies", "words", "requests"),
    [
        ((error(429),), ["quota exhausted", "3 attempts"], 3),
        ((error(500),), ["service failed", "500"], 3),
        ((error(404),), ["does not know the model", MODEL], 1),
        ((prompt_blocked("SAFETY"),), ["prompt blocked", "SAFETY"], 1),
        ((finish("IMAGE_SAFETY"),), ["image blocked", "IMAGE_SAFETY"], 1),
        ((finish("IMAGE_PROHIBITED_CONTENT"),), ["image blocked", "prohibited"], 1),
        ((text_only("I cannot restore faces."),), ["without an image", "cannot restore"], 1),
    ],
    ids=["429-forever", "500", "404", "prompt-blocked", "image-safety", "prohibited", "text-only"],
)
def test_failures_raise_editor_error_and_keep_the_previous_reference(
    fake, tmp_path, lr_frame, caplog, replies, words, requests
):
    caplog.set_level(logging.DEBUG)
    fake.reply(*replies)
    editor = make_editor(fake, tmp_path)
    previous = previous_reference()
    references = {40: previous}

    with pytest.raises(EditorError) as raised:
        edit_keyframe(references, 40, editor, lr_frame)

    message = str(raised.value)
    for word in words:
        assert word.lower() in message.lower(), message
    assert references == {40: previous} and references[40].content_hash == previous.content_hash
    assert len(fake.requests) == requests
    assert fake.problems == []
    assert KEY not in message and KEY not in caplog.text and KEY not in repr(editor)
    # A failure is not cached: once the service recovers, the request goes out again.
    fake.reply(image())
    editor.make(lr_frame, TARGET, REQUEST)
    assert len(fake.requests) == requests + 1


def test_a_server_slower_than_the_timeout_is_a_timeout(fake, tmp_path, lr_frame):
    fake.reply(slow(3.0))
    editor = make_editor(fake, tmp_path, timeout_s=0.4, attempts=2)
    references = {40: previous_reference()}
    with pytest.raises(EditorError, match=r"did not answer within 0\.4 s \(2 attempts\)"):
        edit_keyframe(references, 40, editor, lr_frame)
    assert len(fake.requests) == 2
    assert references[40].provenance.editor == "classic"


def test_no_key_names_the_variables_and_sends_nothing(fake, tmp_path, lr_frame, env):
    env.delenv("GEMINI_API_KEY")
    editor = make_editor(fake, tmp_path)
    assert "GEMINI_API_KEY" in editor.availability()
    with pytest.raises(EditorError) as raised:
        editor.make(lr_frame, TARGET, REQUEST)
    assert "GEMINI_API_KEY" in str(raised.value) and "GOOGLE_API_KEY" in str(raised.value)
    assert fake.requests == []


def test_a_rejected_key_is_reported_without_the_key(fake, tmp_path, lr_frame, env):
    env.setenv("GEMINI_API_KEY", "wrong-key-abcdef")
    editor = make_editor(fake, tmp_path, attempts=1)
    with pytest.raises(EditorError) as raised:
        editor.make(lr_frame, TARGET, REQUEST)
    # The fake answers a wrong key with HTTP 400 and says so; the message must not echo the key.
    assert "wrong-key-abcdef" not in str(raised.value)
    assert "HTTP 400" in str(raised.value)


def test_network_failure(env, tmp_path, lr_frame):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    editor = NanoBananaEditor(
        base_url=f"http://127.0.0.1:{port}",
        timeout_s=1.0,
        attempts=2,
        initial_delay_s=0.01,
        max_delay_s=0.02,
        cache_dir=tmp_path,
    )
    with pytest.raises(EditorError, match=r"cannot reach the Gemini API at 127\.0\.0\.1"):
        editor.make(lr_frame, TARGET, REQUEST)


def test_unknown_option_is_named():
    with pytest.raises(EditorError, match="timeout_ms"):
        NanoBananaEditor(timeout_ms=5)


def test_prompt_size_tier_and_aspect():
    prompt = compose_prompt("Restore it.", "  two  cats ")
    assert prompt.startswith("Task: Restore it.") and "two cats" in prompt
    assert "What this frame shows" not in compose_prompt("Restore it.", "   ")
    assert image_size_tier((1024, 576)) == "1K"
    assert image_size_tier((1920, 1080)) == "2K"
    assert image_size_tier((3840, 2160)) == "4K"
    assert nearest_aspect_ratio((1920, 1080)) == "16:9"
    assert nearest_aspect_ratio((704, 576)) == "5:4"
    assert nearest_aspect_ratio((480, 640)) == "3:4"
