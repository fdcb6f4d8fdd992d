"""The vmfmir-transformers plugin on tiny, randomly initialised models built offline (no downloads)."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

pytest.importorskip("vmfmir_transformers", reason="install plugins/vmfmir-transformers (make install)")
transformers = pytest.importorskip("transformers")

from safetensors.torch import load_file  # noqa: E402

from vmfmir_cli.model import MultimodalModel, load_model, save_model  # noqa: E402
from vmfmir_cli.errors import CheckpointError, ConfigError, PluginError  # noqa: E402
from vmfmir_cli.plugins import manager  # noqa: E402

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"the a of and music score piano bach chorale melody".split()]
WORDS += list("abcdefghijklmnopqrstuvwxyz")
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """Tiny BERT, ViT, wav2vec2, AST and CLIP checkpoints with their processors, saved locally."""
    from transformers import (
        ASTConfig,
        ASTFeatureExtractor,
        ASTModel,
        BertConfig,
        BertModel,
        BertTokenizer,
        CLIPConfig,
        CLIPModel,
        ViTConfig,
        ViTModel,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
    )
    from transformers.utils import logging as hf_logging

    try:
        from transformers import ViTImageProcessorPil as ViTProcessor
    except ImportError:  # transformers < 5
        from transformers import ViTImageProcessor as ViTProcessor

    hf_logging.disable_progress_bar()
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(WORDS) + "\n")
    dirs = {name: root / name for name in ("bert", "vit", "w2v", "ast", "clip")}
    tokenizer = BertTokenizer(vocab_file=str(vocab))
    bert = BertConfig(vocab_size=len(WORDS), max_position_embeddings=64, **TINY)
    BertModel(bert, add_pooling_layer=False).save_pretrained(dirs["bert"])  # the pooler will be random
    tokenizer.save_pretrained(dirs["bert"])
    ViTModel(ViTConfig(image_size=32, patch_size=8, **TINY)).save_pretrained(dirs["vit"])
    ViTProcessor(size={"height": 32, "width": 32}).save_pretrained(dirs["vit"])
    w2v = Wav2Vec2Config(
        conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, vocab_size=10, **TINY,
    )
    Wav2Vec2Model(w2v).save_pretrained(dirs["w2v"])
    Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=True).save_pretrained(dirs["w2v"])
    ast = ASTConfig(num_mel_bins=16, max_length=64, frequency_stride=10, time_stride=10, **TINY)
    ASTModel(ast).save_pretrained(dirs["ast"])
    ASTFeatureExtractor(num_mel_bins=16, max_length=64).save_pretrained(dirs["ast"])
    clip = CLIPConfig(
        text_config=dict(vocab_size=len(WORDS), max_position_embeddings=32, bos_token_id=2, eos_token_id=3,
                         pad_token_id=0, **TINY),
        vision_config=dict(image_size=32, patch_size=8, **TINY),
        projection_dim=16,
    )
    CLIPModel(clip).save_pretrained(dirs["clip"])
    tokenizer.save_pretrained(dirs["clip"])
    ViTProcessor(size={"height": 32, "width": 32}).save_pretrained(dirs["clip"])
    hf_logging.enable_progress_bar()
    return dirs


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))


def raws(modality):
    g = torch.Generator().manual_seed(0)
    if modality == "audio":  # at 8 kHz: 0.5 s, 2.6 s (3 windows of 1 s, resampled to 16 kHz)
        return [torch.randn(4000, generator=g), torch.randn(20800, generator=g)]
    if modality == "image":
        return [Image.new("L", (200, 40), 0), Image.new("RGBA", (20, 50), (255, 0, 0, 128))]
    return ["the bach chorale", "piano melody and music of the score", ""]


CASES = {
    "bert-cls": ("text", "hf-text", "bert", {"pooling": "cls"}),
    "bert-pooler": ("text", "hf-text", "bert", {"pooling": "pooler"}),
    "clip-text": ("text", "hf-text", "clip", {"pooling": "mean"}),
    "vit-pooler": ("image", "hf-image", "vit", {"pooling": "pooler", "pad_to_square": True}),
    "clip-vision": ("image", "hf-image", "clip", {"pooling": "cls"}),
    "wav2vec2-mean": ("audio", "hf-audio", "w2v", {"sample_rate": 8000, "window_seconds": 1.0, "window_hop_seconds": 1.0}),
    "ast-mean": ("audio", "hf-audio", "ast", {"window_seconds": 0.5, "window_hop_seconds": 0.5, "sample_rate": 16000}),
}


def make(case, hf_dirs, **overrides):
    modality, encoder_id, directory, config = CASES[case]
    torch.manual_seed(len(case))
    config = {"model": str(hf_dirs[directory]), "dim": 12, **config, **overrides}
    return modality, manager.create_encoder(encoder_id, config)


def encode(model, modality):
    with torch.no_grad():
        return model.encode_raw(modality, raws(modality))


def test_plugin_registers_three_encoders():
    manager.reset_plugin_manager()
    row = next(p for p in manager.list_plugins() if p["name"] == "transformers")
    assert row["package"] == "vmfmir-transformers"
    assert {(e["id"], e["modality"]) for e in row["encoders"]} == {
        ("hf-audio", "audio"), ("hf-image", "image"), ("hf-text", "text")
    }


@pytest.mark.parametrize("case", list(CASES))
def test_round_trip_saves_only_trainable_parts(case, hf_dirs, tmp_path):
    modality, enc = make(case, hf_dirs)
    model = MultimodalModel({modality: enc}, embed_dim=8).eval()
    first = encode(model, modality)
    assert first.batch_shape == (len(raws(modality)),)
    assert torch.equal(first.loc, encode(model, modality).loc)  # deterministic
    save_model(model, tmp_path / "run")
    saved = load_file(tmp_path / "run" / "model.safetensors")
    backbone = sorted(k for k in saved if ".backbone." in k)
    expected = ["encoders.text.backbone.pooler.dense.bias", "encoders.text.backbone.pooler.dense.weight"]
    assert backbone == (expected if CASES[case][2] == "bert" else [])  # random-init weights only
    config = json.loads((tmp_path / "run" / "config.json").read_text())["model"]["encoders"][modality]
    assert config["config"]["model"] == str(hf_dirs[CASES[case][2]].resolve()) and config["config"]["backbone_sha256"]
    assert config["package"] == "vmfmir-transformers"
    torch.manual_seed(1234)
    loaded, _ = load_model(tmp_path / "run")
    second = encode(loaded, modality)
    assert torch.equal(first.loc, second.loc) and torch.equal(first.concentration, second.concentration)


def test_windows_of_long_audio_are_fused(hf_dirs):
    modality, enc = make("wav2vec2-mean", hf_dirs)
    items = [enc.preprocess(r) for r in raws("audio")]
    assert [t.shape[0] for t in items] == [1, 3]
    batch = enc.collate(items)
    assert batch["owner"].tolist() == [0, 1, 1, 1] and "attention_mask" in batch  # 0.5 s row is padded
    with torch.no_grad():
        assert enc.eval()(batch).shape == (4, 12)


def test_frozen_backbone_has_no_gradients_and_no_dropout(hf_dirs):
    _, enc = make("bert-cls", hf_dirs)
    enc.train()
    assert not enc.backbone.training and enc.proj.training
    batch = enc.collate([enc.preprocess(t) for t in raws("text")])
    enc(batch).sum().backward()
    assert enc.proj.weight.grad is not None
    assert all(p.grad is None for p in enc.backbone.parameters())
    assert enc.num_parameters(trainable_only=True) == 32 * 12 + 12


def test_unfrozen_backbone_is_trained_and_saved(hf_dirs, tmp_path):
    modality, enc = make("bert-cls", hf_dirs, freeze=False)
    enc.train()
    enc(enc.collate([enc.preprocess(t) for t in raws("text")])).sum().backward()
    assert any(p.grad is not None for p in enc.backbone.parameters())
    with torch.no_grad():
        for p in enc.backbone.parameters():
            p.add_(0.01)  # "training" changed the backbone
    model = MultimodalModel({modality: enc}, embed_dim=8).eval()
    save_model(model, tmp_path / "run")
    assert any(".backbone.encoder." in k for k in load_file(tmp_path / "run" / "model.safetensors"))
    loaded, _ = load_model(tmp_path / "run")
    assert torch.equal(encode(model, modality).loc, encode(loaded, modality).loc)


def test_a_different_backbone_is_refused(hf_dirs, tmp_path):
    import shutil

    from transformers import ViTConfig, ViTModel

    copy = tmp_path / "vit"
    shutil.copytree(hf_dirs["vit"], copy)
    _, enc = make("vit-pooler", hf_dirs, model=str(copy))
    save_model(MultimodalModel({"image": enc}, embed_dim=8), tmp_path / "run")
    torch.manual_seed(99)
    ViTModel(ViTConfig(image_size=32, patch_size=8, **TINY)).save_pretrained(copy)  # other weights, same path
    with pytest.raises(CheckpointError, match="not the one this model was trained with"):
        load_model(tmp_path / "run")


def test_missing_model_errors(tmp_path):
    with pytest.raises(ConfigError, match="set 'model'"):
        manager.create_encoder("hf-text", {})
    with pytest.raises(PluginError, match="cannot load the model of 'someone/not-cached'.*hf download someone/not-cached"):
        manager.create_encoder("hf-text", {"model": "someone/not-cached"})
    with pytest.raises(PluginError, match="cannot load the model"):
        manager.create_encoder("hf-image", {"model": str(tmp_path / "nowhere")})
    with pytest.raises(ConfigError, match="pooling must be one of"):
        manager.create_encoder("hf-image", {"model": "x", "pooling": "max"})


def test_pooler_required_for_pooler_pooling(hf_dirs):
    _, enc = make("wav2vec2-mean", hf_dirs, pooling="pooler")
    with pytest.raises(ConfigError, match="no pooler output"):
        enc.eval()(enc.collate([enc.preprocess(raws("audio")[0])]))
