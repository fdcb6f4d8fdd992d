"""vmfmir-transformers: vmfmir encoders that wrap pretrained Hugging Face ``transformers`` models.

Encoders (select them with ``--audio-encoder hf-audio`` etc. and set ``model`` in the encoder config):

* ``hf-audio``: AutoModel + AutoFeatureExtractor (AST, wav2vec2 / HuBERT, Whisper encoder, MERT with
  ``trust_remote_code``); long audio is cut into fixed windows that the core fuses.
* ``hf-image``: AutoModel + AutoImageProcessor (ViT, CLIP vision tower, ConvNeXt, DINOv2, ...).
* ``hf-text``: AutoModel + AutoTokenizer (BERT-style, RoBERTa, CLIP text tower, ...).

Config keys shared by the three: ``model`` (local directory or hub id), ``pooling`` ("mean", "cls"
or "pooler"), ``freeze`` (keep the backbone fixed; default true), ``dim`` (size of the trainable
projection), ``allow_download`` (default false: only local files / the local HF cache are used),
``revision``, ``trust_remote_code`` (default false).

A saved vmfmir model stores only the projection (plus any backbone weights that the checkpoint
lacked and were initialised at random) and the backbone reference in its config; a frozen
backbone's weights are fingerprinted so that loading against a different checkpoint is an error.
"""

from __future__ import annotations

from vmfmir_cli.plugins.hookspecs import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_encoders(register):
    from vmfmir_transformers.encoders import HFAudioEncoder, HFImageEncoder, HFTextEncoder

    register(HFAudioEncoder, aliases=("transformers-audio",))
    register(HFImageEncoder, aliases=("transformers-image",))
    register(HFTextEncoder, aliases=("transformers-text",))


__all__ = ["__version__", "register_encoders"]
