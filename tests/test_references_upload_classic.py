"""The upload and classic editors, and the fitting and caching they share."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from sparkvsr.errors import EditorError
from sparkvsr.references import EDITORS, load_editor
from sparkvsr.references.base import EditRequest
from sparkvsr.references.cache import ImageCache, cache_key
from sparkvsr.references.fit import aspect_error, center_crop_to_aspect, fit_to_size
from sparkvsr.references.upload import decode_upload

TARGET = (160, 120)  # 4:3


@pytest.fixture
def lr_frame():
    return np.random.default_rng(2).integers(0, 256, (30, 40, 3), dtype=np.uint8)


def striped(width, height, stripe):
    """Grey picture with red ``stripe``-wide bands at the left and right edges."""
    picture = np.full((height, width, 3), 128, np.uint8)
    picture[:, :stripe] = picture[:, width - stripe :] = (255, 0, 0)
    return picture


def test_every_editor_is_listed():
    assert set(EDITORS) == {"nano-banana-pro", "pisa-sr", "upload", "classic"}
    with pytest.raises(EditorError, match="classic"):
        load_editor("photoshop")


# -- classic -------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [(160, 120), (40, 30), (161, 121), (1280, 960)])
def test_classic_gives_exactly_the_target_size(lr_frame, target):
    reference = load_editor("classic").make(lr_frame, target, EditRequest())
    assert reference.image.shape == (target[1], target[0], 3)
    assert reference.image.dtype == np.uint8
    assert reference.provenance.editor == "classic"


def test_classic_keeps_the_picture(lr_frame):
    editor = load_editor("classic")
    assert editor.availability() is None
    same = editor.make(lr_frame, (40, 30), EditRequest())
    np.testing.assert_array_equal(same.image, lr_frame)
    flat = editor.make(np.full((30, 40, 3), 90, np.uint8), TARGET, EditRequest())
    assert np.abs(flat.image.astype(int) - 90).max() <= 1
    # A 4x upscale, shrunk back, is close to where it started (Lanczos, not nearest or noise).
    up = editor.make(lr_frame, TARGET, EditRequest()).image
    down = np.asarray(Image.fromarray(up).resize((40, 30), Image.Resampling.BOX))
    assert np.abs(down.astype(int) - lr_frame).mean() < 20


@pytest.mark.parametrize("bad", [(0, 120), (160, -1), (99999, 10), ("wide", 3)])
def test_bad_target_sizes_are_named(lr_frame, bad):
    with pytest.raises(EditorError, match="target size"):
        load_editor("classic").make(lr_frame, bad, EditRequest())


def test_a_frame_that_is_not_rgb_uint8_is_refused():
    with pytest.raises(EditorError, match=r"\[H, W, 3\] uint8"):
        load_editor("classic").make(np.zeros((30, 40), np.float32), TARGET, EditRequest())


# -- upload --------------------------------------------------------------------------------------


def test_upload_with_the_clips_aspect_is_only_resized(lr_frame):
    mine = striped(320, 240, 8)
    reference = load_editor("upload").make(lr_frame, TARGET, EditRequest(upload=mine))
    assert reference.image.shape == (120, 160, 3)
    assert reference.provenance.notes == ()
    assert reference.image[:, 0, 0].min() > 200  # the red edge survived: nothing was cropped


def test_upload_within_two_percent_is_not_cropped(lr_frame):
    mine = striped(325, 240, 8)  # 1.6% wider than 4:3
    reference = load_editor("upload").make(lr_frame, TARGET, EditRequest(upload=mine))
    assert reference.provenance.notes == ()
    assert reference.image[:, 0, 0].min() > 200


def test_upload_with_another_aspect_is_centre_cropped_and_the_user_told(lr_frame):
    mine = striped(400, 240, 30)  # 5:3: a 4:3 centre crop drops 40 px each side, stripes too
    reference = load_editor("upload").make(lr_frame, TARGET, EditRequest(upload=mine))
    assert reference.image.shape == (120, 160, 3)
    assert np.abs(reference.image.astype(int) - 128).max() <= 2  # only the grey centre is left
    (note,) = reference.provenance.notes
    assert "centre-cropped" in note and "400x240" in note and "25%" in note


def test_small_gray_and_rgba_uploads_are_converted_and_noted(lr_frame):
    editor = load_editor("upload")
    gray = editor.make(lr_frame, TARGET, EditRequest(upload=np.full((60, 80), 50, np.uint8)))
    assert gray.image.shape == (120, 160, 3)
    assert any("grayscale" in n for n in gray.provenance.notes)
    assert any("smaller than the target" in n for n in gray.provenance.notes)
    rgba = editor.make(lr_frame, TARGET, EditRequest(upload=np.zeros((240, 320, 4), np.uint8)))
    assert any("alpha" in n for n in rgba.provenance.notes)
    deep = np.full((240, 320, 3), 65535, np.uint16)
    assert editor.make(lr_frame, TARGET, EditRequest(upload=deep)).image.min() == 255


@pytest.mark.parametrize(
    ("upload", "words"),
    [
        (None, "choose a file"),
        (np.zeros((8, 8, 3), np.uint8), "between 16"),
        (np.zeros((40, 40, 3), np.float64), "pixel type float64"),
        (np.zeros((40, 40, 2), np.uint8), "channels"),
    ],
)
def test_unusable_uploads_are_refused(lr_frame, upload, words):
    with pytest.raises(EditorError, match=words):
        load_editor("upload").make(lr_frame, TARGET, EditRequest(upload=upload))


def test_uploaded_bytes_decode_or_say_why():
    buffer = io.BytesIO()
    Image.fromarray(striped(64, 48, 4)).save(buffer, format="JPEG")
    assert decode_upload(buffer.getvalue()).shape == (48, 64, 3)
    with pytest.raises(EditorError, match="not an image"):
        decode_upload(b"this is a text file")


# -- fitting and cache ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(1, 300),
    height=st.integers(1, 300),
    target_w=st.integers(1, 400),
    target_h=st.integers(1, 400),
)
def test_centre_crop_has_the_target_aspect_to_the_pixel(width, height, target_w, target_h):
    picture = np.zeros((height, width, 3), np.uint8)
    crop = center_crop_to_aspect(picture, target_w / target_h)
    crop_h, crop_w = crop.shape[:2]
    assert 1 <= crop_w <= width and 1 <= crop_h <= height
    assert crop_w == width or crop_h == height  # the largest such crop
    # Rounding to whole pixels is the only error left.
    assert abs(crop_w / crop_h - target_w / target_h) <= (target_w / target_h) / crop_h + 1 / crop_h


def test_fit_reports_crops_only_when_they_happen():
    picture = striped(200, 100, 10)
    fitted, cropped = fit_to_size(picture, (100, 50))
    assert not cropped and fitted.shape == (50, 100, 3)
    fitted, cropped = fit_to_size(picture, (50, 50))
    assert cropped and fitted[:, 0, 0].max() == 128
    assert aspect_error((200, 100), (100, 50)) == 0.0


def test_cache_round_trip_and_broken_entries_are_misses(tmp_path):
    cache = ImageCache(tmp_path)
    key = cache_key(frame="abc", size=[4, 3])
    assert cache.get(key) is None and cache.misses == 1
    picture = striped(40, 30, 3)
    cache.put(key, picture)
    np.testing.assert_array_equal(cache.get(key), picture)
    assert cache.hits == 1
    next(tmp_path.rglob("*.png")).write_bytes(b"half a png")
    assert cache.get(key) is None
    assert cache_key(a=1, b=2) == cache_key(b=2, a=1) != cache_key(a=1, b=3)


def test_decode_upload_refuses_from_the_header_before_decoding_a_pixel():
    """A small file announcing a huge image is refused by its size check (the server's 413)
    without the pixels ever being decoded; a normal one still decodes."""
    import io

    from PIL import Image

    from sparkvsr.references.upload import decode_upload

    buffer = io.BytesIO()
    Image.new("RGB", (13_000, 13_000)).save(buffer, "PNG")  # 169 Mpx in a few hundred KB
    seen = []

    def refuse(width, height):
        seen.append((width, height))
        raise OverflowError("too many pixels")

    with pytest.raises(OverflowError):
        decode_upload(buffer.getvalue(), refuse)
    assert seen == [(13_000, 13_000)]
    small = io.BytesIO()
    Image.new("RGB", (20, 10), (200, 10, 10)).save(small, "PNG")
    image = decode_upload(small.getvalue(), lambda w, h: seen.append((w, h)))
    assert image.shape == (10, 20, 3) and tuple(image[0, 0]) == (200, 10, 10)
    assert seen[-1] == (20, 10)
