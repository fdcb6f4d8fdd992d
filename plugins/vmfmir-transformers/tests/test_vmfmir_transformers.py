"""Smoke tests of the plugin package on its own; the full offline round trips of tiny BERT, ViT, CLIP,
wav2vec2 and AST models live in vmfmir's suite: tests/unit/test_transformers_plugin.py."""

from __future__ import annotations

import vmfmir_transformers
from vmfmir_transformers.encoders import HFAudioEncoder, HFImageEncoder, HFTextEncoder


def test_hook_registers_one_encoder_per_modality():
    registered = []
    vmfmir_transformers.register_encoders(register=lambda cls, aliases=(): registered.append(cls))
    assert registered == [HFAudioEncoder, HFImageEncoder, HFTextEncoder]
    assert [c.modality for c in registered] == ["audio", "image", "text"]
    assert [c.encoder_id for c in registered] == ["hf-audio", "hf-image", "hf-text"]


def test_config_keys_are_documented():
    for cls in (HFAudioEncoder, HFImageEncoder, HFTextEncoder):
        for key in ("model", "pooling", "freeze", "dim", "allow_download"):
            assert key in cls.default_config
            assert f"``{key}``" in vmfmir_transformers.__doc__
