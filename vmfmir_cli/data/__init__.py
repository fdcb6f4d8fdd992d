"""Datasets: the manifest contract, media decoding, torch Datasets and the ``prepare`` recipes.

* :mod:`vmfmir_cli.data.manifest`: ``Item``, ``read_manifest``, ``read_dataset_info``, ``write_dataset``,
  ``assign_splits`` (no heavy imports);
* :mod:`vmfmir_cli.data.media`: ``load_audio`` (soundfile + torchaudio resampling), ``load_image`` (Pillow);
* :mod:`vmfmir_cli.data.datasets`: ``MultimodalDataset`` (imports torch);
* :mod:`vmfmir_cli.data.recipes`: ``music21`` (the built-in benchmark) and ``manifest`` (user collections).

Nothing is imported here, so ``import vmfmir_cli.data`` stays cheap.
"""
