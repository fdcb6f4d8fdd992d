"""Encode items of one modality into their vMF parameters (mu, kappa), in batches, deterministically.

:func:`encode_items` is the one place where a collection meets a trained model; ``vmfmir embed``
(:mod:`vmfmir_cli.index.build`), ``vmfmir query`` (:mod:`vmfmir_cli.index.search`) and
``vmfmir eval`` all go through it, so an item embedded into an index and the same item given as a
query get the same numbers.

What an element of ``items`` may be, for ``modality`` m:

* a manifest :class:`~vmfmir_cli.data.manifest.Item` (or anything with an attribute ``m``): its
  ``m`` attribute is used (a media path for audio/image, the string for text);
* a path (``str`` or :class:`~pathlib.Path`) to an audio or image file;
* an already decoded input: audio as a float tensor / array ``(T,)`` at the encoder's sample rate,
  an image as a ``PIL.Image.Image``, a text as a ``str``.

Determinism: the model runs in eval mode (no dropout) under ``torch.no_grad``; decoding and
preprocessing are deterministic, so the same input gives the same numbers for the same batching
(a different batch composition may change the last bits, as CPU kernels differ by batch size).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from vmfmir_cli.data.manifest import DEFAULT_SAMPLE_RATE
from vmfmir_cli.errors import DataError

ProgressFn = Callable[[int, int], None]


def model_sample_rate(model: Any, default: int = DEFAULT_SAMPLE_RATE) -> int:
    """The sample rate the model's audio encoder expects (its config's ``sample_rate``)."""
    encoders = getattr(model, "encoders", {})
    if "audio" not in encoders:
        return int(default)
    cfg = getattr(encoders["audio"], "cfg", None) or {}
    return int(cfg.get("sample_rate") or default)


def _describe(item: Any) -> str:
    ident = getattr(item, "id", None)
    return f"item {ident!r}" if ident is not None else repr(item)[:80]


def raw_input(item: Any, modality: str, sample_rate: int) -> Any:
    """The decoded input of ``item`` for ``modality`` (see the module docstring for what an item is)."""
    from vmfmir_cli.data.media import load_audio, load_image

    value = item
    if not isinstance(item, (str, Path, bytes)) and not torch.is_tensor(item) and hasattr(item, modality):
        value = getattr(item, modality)
        if value is None:
            raise DataError(f"{_describe(item)} has no {modality}")
    if modality == "text":
        if not isinstance(value, str):
            raise DataError(f"{_describe(item)}: a text must be a string, got {type(value).__name__}")
        return value
    if isinstance(value, (str, Path)):
        path = Path(value).expanduser()
        if not path.is_file():
            raise DataError(f"{path}: no such {modality} file")
        return load_audio(path, sample_rate) if modality == "audio" else load_image(path)
    return value


def encode_items(
    model: Any,
    items: Sequence[Any],
    modality: str,
    batch_size: int = 32,
    device: Optional[str | torch.device] = None,
    on_progress: Optional[ProgressFn] = None,
    *,
    sample_rate: Optional[int] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode ``items`` in ``modality`` with ``model`` (a :class:`MultimodalModel`).

    Args:
        model: the trained model; it is put in eval mode for the call (and restored afterwards).
        items: manifest items, media paths or decoded inputs (see the module docstring).
        modality: "audio", "image" or "text"; the model must have an encoder for it.
        batch_size: items per forward pass.
        device: where the model runs (default: where its weights are); the model is moved there for
            the call and moved back afterwards.
        on_progress: called as ``on_progress(done, total)`` after every batch.
        sample_rate: audio decoding rate (default: the audio encoder's ``sample_rate``).

    Returns:
        ``(mu, kappa)`` on the CPU in float32: ``mu`` (N, embed_dim) unit rows, ``kappa`` (N,).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    encoder = model.encoder(modality)  # ConfigError when the model lacks the modality
    rate = int(sample_rate or model_sample_rate(model))
    total = len(items)
    dim = int(model.embed_dim)
    if total == 0:
        return torch.zeros(0, dim), torch.zeros(0)
    home = model.device
    device = torch.device(device) if device not in (None, "auto") else home
    mus, kappas = [], []
    was_training = model.training
    model.eval()
    if device != home:
        model.to(device)
    try:
        with torch.no_grad():
            for start in range(0, total, batch_size):
                chunk = items[start : start + batch_size]
                tensors = [encoder.preprocess(raw_input(it, modality, rate)) for it in chunk]
                batch = encoder.collate(tensors)
                mu, kappa = model.encode_params(modality, batch)
                mus.append(mu.detach().to("cpu", torch.float32))
                kappas.append(kappa.detach().to("cpu", torch.float32))
                if on_progress is not None:
                    on_progress(min(start + batch_size, total), total)
    finally:
        model.train(was_training)
        if device != home:
            model.to(home)
    return torch.cat(mus).contiguous(), torch.cat(kappas).contiguous()


__all__ = ["encode_items", "model_sample_rate", "raw_input"]
