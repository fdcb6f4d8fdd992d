"""Torch Datasets over a prepared dataset folder (``manifest.jsonl`` + media).

``MultimodalDataset(data_dir_or_items, split, modalities, transforms=None)`` returns, for index ``i``,
``{"index": i, "id", "group", "audio", "image", "text"}`` where each requested modality is the
decoded raw form (audio: float32 tensor ``(T,)`` at the dataset's sample rate; image: PIL image in
mode "L" or "RGB"; text: str), or ``transforms[modality](raw)`` when a transform is given, and
``None`` for modalities not requested or missing on the item.

Decoding is deterministic and worker-safe: every ``__getitem__`` opens and closes its own files, so
the dataset can be used with ``DataLoader(num_workers>0)`` under fork or spawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch.utils.data

from vmfmir_cli.data.manifest import (
    DEFAULT_SAMPLE_RATE,
    MODALITIES,
    Item,
    read_dataset_info,
    read_manifest,
    split_items,
)
from vmfmir_cli.data.media import load_audio, load_image
from vmfmir_cli.errors import DataError


class MultimodalDataset(torch.utils.data.Dataset):
    """Items of one split, decoded on access.

    Args:
        data_dir_or_items: a dataset folder, or a list of :class:`Item`.
        split: "train", "val", "test" or None (all items).
        modalities: which of "audio", "image", "text" to decode.
        transforms: optional ``{modality: callable(raw) -> Any}`` applied after decoding.
        sample_rate: audio rate; default: the dataset's ``sample_rate`` (16000 for a list of items).
        require: when True (default), keep only items that have every requested modality.
    """

    def __init__(
        self,
        data_dir_or_items: str | Path | Sequence[Item],
        split: str | None = None,
        modalities: Sequence[str] = MODALITIES,
        transforms: Mapping[str, Callable[[Any], Any]] | None = None,
        *,
        sample_rate: int | None = None,
        require: bool = True,
    ) -> None:
        unknown = [m for m in modalities if m not in MODALITIES]
        if unknown:
            raise DataError(f"unknown modality {unknown[0]!r}; use audio, image or text")
        if isinstance(data_dir_or_items, (str, Path)):
            data_dir = Path(data_dir_or_items)
            items = read_manifest(data_dir)
            if sample_rate is None:
                sample_rate = int(read_dataset_info(data_dir)["sample_rate"])
        else:
            items = list(data_dir_or_items)
        self.sample_rate = int(sample_rate or DEFAULT_SAMPLE_RATE)
        self.modalities = tuple(modalities)
        self.transforms = dict(transforms or {})
        selected = split_items(items, split)
        if require:
            selected = [it for it in selected if all(it.has(m) for m in self.modalities)]
        self.items: list[Item] = selected
        self.split = split

    def __len__(self) -> int:
        return len(self.items)

    def decode(self, item: Item, modality: str) -> Any:
        """The raw decoded ``modality`` of ``item`` (before transforms), or None if it lacks it."""
        if modality == "audio":
            return None if item.audio is None else load_audio(item.audio, self.sample_rate)
        if modality == "image":
            return None if item.image is None else load_image(item.image)
        if modality == "text":
            return item.text
        raise DataError(f"unknown modality {modality!r}; use audio, image or text")

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < 0:
            index += len(self.items)
        item = self.items[index]
        out: dict[str, Any] = {"index": index, "id": item.id, "group": item.group}
        for m in MODALITIES:
            if m not in self.modalities:
                out[m] = None
                continue
            raw = self.decode(item, m)
            fn = self.transforms.get(m)
            out[m] = fn(raw) if (fn is not None and raw is not None) else raw
        return out


def collate_items(batch: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """DataLoader ``collate_fn``: a list of item dicts -> a dict of lists (raw media vary in size)."""
    keys = batch[0].keys() if batch else ("index", "id", "group", *MODALITIES)
    return {k: [b[k] for b in batch] for k in keys}


__all__ = ["MultimodalDataset", "collate_items"]
