"""pisa-sr on a tiny random SD-2.1-style model and a pisa_sr.pkl in the real format."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from sparkvsr.errors import EditorError
from sparkvsr.references import load_editor
from sparkvsr.references.base import EditRequest
from sparkvsr.references.pisa_sr import PisaSREditor
from tests.tiny_sd import PARTS, build_tiny_sd

TARGET = (64, 48)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models gain nothing from threads; on a shared, busy CPU, intra-op threads spinning
    # against each other made each UNet pass ~100x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, one_thread):
    return build_tiny_sd(tmp_path_factory.mktemp("pisa"))


@pytest.fixture(scope="module")
def editor(tiny):
    model, lora = tiny
    editor = load_editor("pisa-sr", model=str(model), lora=str(lora), device="cpu", min_side=0)
    editor.load()
    return editor


@pytest.fixture
def lr_frame():
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)


class PassCounter:
    """Counts UNet forward passes through a hook on the editor's resident UNet."""

    def __init__(self, unet):
        self.count = 0
        self._handle = unet.register_forward_hook(self._hook)

    def _hook(self, *args):
        self.count += 1

    def close(self):
        self._handle.remove()


def merged_reference_unet(model, lora_path, adapters):
    """An independent build: SD UNet + the named adapters from the pkl, all merged (peft)."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig
    from peft.tuners.lora import LoraLayer

    content = torch.load(lora_path, weights_only=True)
    unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for kind in ("pix", "sem"):
            for part in PARTS:
                modules = content[f"unet_lora_{part}_modules_{kind}"]
                config = LoraConfig(r=content[f"lora_rank_unet_{kind}"], target_modules=modules)
                unet.add_adapter(config, adapter_name=f"default_{part}_{kind}")
    state = content["state_dict_unet"]
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if "lora" in name:
                parameter.copy_(state[name])
    for module in unet.modules():
        if isinstance(module, LoraLayer):
            module.merge(adapter_names=[a for a in adapters if a in module.lora_A])
    return unet.eval()


def empty_prompt_embedding(model):
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(model, subfolder="tokenizer")
    encoder = CLIPTextModel.from_pretrained(model, subfolder="text_encoder")
    ids = tokenizer("", max_length=77, padding="max_length", return_tensors="pt").input_ids
    with torch.no_grad():
        return encoder(ids)[0]


def test_default_lambdas_equal_one_pass_of_the_fully_merged_model(tiny, editor, lr_frame):
    model, lora = tiny
    prediction = editor.predict(lr_frame, TARGET)
    latent = prediction.latent
    assert latent.shape == (1, 4, 24, 32)  # 64x48 px, tiny VAE factor 2

    embedding = empty_prompt_embedding(model)
    every = [f"default_{part}_{kind}" for kind in ("pix", "sem") for part in PARTS]
    timestep = torch.tensor([1])
    with torch.no_grad():
        full = merged_reference_unet(model, lora, every)
        eps_full = full(latent, timestep, encoder_hidden_states=embedding).sample
        pix = merged_reference_unet(model, lora, every[:3])
        eps_pix = pix(latent, timestep, encoder_hidden_states=embedding).sample
        base = merged_reference_unet(model, lora, [])
        eps_base = base(latent, timestep, encoder_hidden_states=embedding).sample

    torch.testing.assert_close(prediction.noise(1.0, 1.0), eps_full, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(prediction.eps_pix, eps_pix, atol=1e-5, rtol=1e-4)
    # The adapters matter: without them the prediction is clearly different.
    assert (eps_full - eps_base).abs().mean() > 100 * 1e-5
    assert (eps_full - eps_pix).abs().mean() > 100 * 1e-5


def test_changing_lambda_costs_no_unet_pass(editor, lr_frame):
    counter = PassCounter(editor.unet)
    try:
        first = editor.make(lr_frame[::-1].copy(), TARGET, EditRequest())
        assert counter.count == 2  # one pass without, one with the semantic adapters
        assert first.image.shape == (48, 64, 3) and first.image.dtype == np.uint8

        sharper = editor.make(lr_frame[::-1].copy(), TARGET, EditRequest(semantic_scale=0.0))
        softer = editor.make(
            lr_frame[::-1].copy(), TARGET, EditRequest(pixel_scale=0.5, semantic_scale=1.5)
        )
        again = editor.make(lr_frame[::-1].copy(), TARGET, EditRequest())
        assert counter.count == 2
        assert sharper.content_hash != first.content_hash != softer.content_hash
        assert again.content_hash == first.content_hash
        assert "lambda_pix=0.5, lambda_sem=1.5" in softer.provenance.notes
    finally:
        counter.close()


def test_large_frames_are_tiled_in_latent_space(tiny):
    model, lora = tiny
    editor = PisaSREditor(
        model=str(model), lora=str(lora), device="cpu", min_side=0, tile_latent=16, tile_overlap=4
    )
    frame = np.random.default_rng(1).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    editor.load()
    counter = PassCounter(editor.unet)
    # Latent 24x32, tiles of 16 cells every 12: rows start at 0, 8; columns at 0, 12, 16.
    reference = editor.make(frame, TARGET, EditRequest())
    counter.close()
    assert reference.image.shape == (48, 64, 3)
    assert counter.count == 2 * 2 * 3
    prediction = editor.predict(frame, TARGET)
    assert torch.isfinite(prediction.eps_full).all()


def test_small_targets_run_at_the_models_size_and_come_back_at_the_target(tiny, lr_frame):
    model, lora = tiny
    editor = PisaSREditor(model=str(model), lora=str(lora), device="cpu", min_side=72)
    prediction = editor.predict(lr_frame, TARGET)
    assert prediction.source.shape == (72, 96, 3)
    assert editor.make(lr_frame, TARGET, EditRequest()).image.shape == (48, 64, 3)


def test_lora_next_to_the_model_folder_is_found(tiny):
    model, lora = tiny
    editor = PisaSREditor(model=str(model))
    assert editor.lora_path() == lora and editor.availability() is None


def test_missing_or_foreign_weights_are_explained(tiny, tmp_path, lr_frame, monkeypatch):
    model, _ = tiny
    monkeypatch.delenv("SPARKVSR_PISA_LORA", raising=False)
    missing = PisaSREditor(model=str(model), lora=str(tmp_path / "nope.pkl"))
    assert "SPARKVSR_PISA_LORA" in missing.availability()
    with pytest.raises(EditorError, match=r"nope\.pkl"):
        missing.make(lr_frame, TARGET, EditRequest())

    partial = tmp_path / "partial.pkl"
    torch.save({"lora_rank_unet_pix": 4, "state_dict_unet": {}}, partial)
    with pytest.raises(EditorError, match="lacks lora_rank_unet_sem"):
        PisaSREditor(model=str(model), lora=str(partial), device="cpu").load()

    # Arbitrary pickled objects are refused (weights_only=True), not executed.
    unsafe = tmp_path / "unsafe.pkl"
    torch.save({"thing": PassCounter}, unsafe)
    with pytest.raises(EditorError, match="loaded safely"):
        PisaSREditor(model=str(model), lora=str(unsafe), device="cpu").load()


def test_a_folder_that_is_not_sd_is_named(tmp_path, tiny):
    _, lora = tiny
    editor = PisaSREditor(model=str(tmp_path), lora=str(lora))
    assert "unet" in editor.availability() and str(tmp_path) in editor.availability()


def test_bad_options_and_lambdas(tiny, editor, lr_frame):
    with pytest.raises(EditorError, match="tile_sizes"):
        PisaSREditor(tile_sizes=3)
    with pytest.raises(EditorError, match="color_fix 'sepia'"):
        PisaSREditor(color_fix="sepia")
    with pytest.raises(EditorError, match="between 0 and 3"):
        editor.make(lr_frame, TARGET, EditRequest(semantic_scale=7.0))


def test_half_precision_path_matches_float32(tiny, editor, lr_frame):
    # What runs on CUDA (fp16 weights, float32 adapters' inputs cast by peft), checked on CPU.
    model, lora = tiny
    half = PisaSREditor(model=str(model), lora=str(lora), device="cpu", dtype="float16", min_side=0)
    reference = half.make(lr_frame, TARGET, EditRequest())
    assert half.unet.dtype == torch.float16 and reference.image.shape == (48, 64, 3)
    full = editor.predict(lr_frame, TARGET).eps_full
    scale = full.abs().mean()
    assert (half.predict(lr_frame, TARGET).eps_full - full).abs().max() < 0.2 * scale


@pytest.mark.gpu
def test_cuda_runs_in_float16(tiny, lr_frame):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    model, lora = tiny
    editor = PisaSREditor(model=str(model), lora=str(lora), min_side=0)
    reference = editor.make(lr_frame, TARGET, EditRequest())
    assert editor.unet.dtype == torch.float16 and editor.unet.device.type == "cuda"
    assert reference.image.shape == (48, 64, 3)
