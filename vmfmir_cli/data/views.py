"""Graded views: a fraction ``f`` of an item's audio or score image, made on the fly from its media.

* audio: the samples ``[offset, offset + f T)`` of the excerpt, ``offset = start (1 - f) T``
  (``start = 0``: the first ``f`` of it, as in evaluation);
* image: the columns ``[offset, offset + f W)`` of the score image, the same way (``start = 0``:
  its left ``f``, the first bars);
* text has no view: its graded form is the caption level (:mod:`vmfmir_cli.data.captions`).

``f = 1`` returns the input itself. Evaluation uses :data:`VIEW_FRACTIONS` with ``start = 0``;
training augmentation draws ``f`` and ``start`` (see :mod:`vmfmir_cli.data.augment`). A view keeps at
least one sample / one column. Views act on decoded media (a float tensor ``(T,)`` or a PIL image),
before the encoder's ``preprocess``, so every encoder, built-in or plugin, sees them the same way.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: the view fractions of the evaluation (full view last)
VIEW_FRACTIONS = (0.25, 0.5, 1.0)
VIEW_MODALITIES = ("audio", "image")


def _span(length: int, fraction: float, start: float) -> tuple[int, int]:
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"a view fraction must be in (0, 1], got {fraction}")
    if not 0.0 <= start <= 1.0:
        raise ValueError(f"a view start must be in [0, 1], got {start}")
    keep = max(1, min(length, int(math.ceil(fraction * length - 1e-9))))
    first = int(round(start * (length - keep)))
    return first, first + keep


def audio_view(wave: "torch.Tensor", fraction: float, start: float = 0.0) -> "torch.Tensor":
    """The fraction ``fraction`` of ``wave`` (``(T,)`` or ``(C, T)``) beginning at ``start`` (0..1) of the rest."""
    if fraction == 1.0:
        return wave
    length = int(wave.shape[-1])
    a, b = _span(length, fraction, start)
    return wave[..., a:b]


def image_view(image: Any, fraction: float, start: float = 0.0) -> Any:
    """The columns of a PIL ``image`` covering ``fraction`` of its width, beginning at ``start``."""
    if fraction == 1.0:
        return image
    width, height = image.size
    a, b = _span(int(width), fraction, start)
    return image.crop((a, 0, b, height))


def view(raw: Any, modality: str, fraction: float, start: float = 0.0) -> Any:
    """The view of decoded media ``raw`` of ``modality`` (text is returned as it is)."""
    if modality == "audio":
        import torch

        return audio_view(torch.as_tensor(raw), fraction, start)
    if modality == "image":
        return image_view(raw, fraction, start)
    if modality == "text":
        return raw
    raise ValueError(f"unknown modality {modality!r}; use audio, image or text")


__all__ = ["VIEW_FRACTIONS", "VIEW_MODALITIES", "audio_view", "image_view", "view"]
