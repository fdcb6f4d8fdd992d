"""MultimodalDataset over a prepared folder: decoding, transforms, splits, DataLoader workers."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from vmfmir_cli.data.datasets import MultimodalDataset, collate_items
from vmfmir_cli.data.manifest import read_dataset_info, read_manifest
from vmfmir_cli.errors import DataError


def test_items_decode_to_the_raw_forms(tiny_dataset):
    ds = MultimodalDataset(tiny_dataset, "train", ("audio", "image", "text"))
    assert len(ds) == 12 and ds.sample_rate == read_dataset_info(tiny_dataset)["sample_rate"] == 16000
    item = ds[0]
    assert set(item) == {"index", "id", "group", "audio", "image", "text"} and item["index"] == 0
    meta = ds.items[0].meta
    assert isinstance(item["audio"], torch.Tensor) and item["audio"].dtype == torch.float32
    assert item["audio"].ndim == 1 and item["audio"].shape[0] == meta["num_samples"]
    assert isinstance(item["image"], Image.Image) and item["image"].mode == "L" and item["image"].height == 256
    assert isinstance(item["text"], str) and item["text"]
    assert ds[-1]["id"] == ds.items[-1].id


def test_modalities_transforms_and_splits(tiny_dataset):
    ds = MultimodalDataset(tiny_dataset, "val", ["text"], transforms={"text": str.upper})
    assert len(ds) == 2
    item = ds[1]
    assert item["audio"] is None and item["image"] is None and item["text"] == item["text"].upper()
    everything = MultimodalDataset(tiny_dataset, None, ["text"])
    assert len(everything) == 16
    ids = {s: {it.id for it in MultimodalDataset(tiny_dataset, s, ["text"]).items} for s in ("train", "val", "test")}
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])


def test_decoding_is_deterministic(tiny_dataset):
    ds = MultimodalDataset(tiny_dataset, "test", ("audio", "image"))
    a, b = ds[0], ds[0]
    assert torch.equal(a["audio"], b["audio"]) and a["image"].tobytes() == b["image"].tobytes()


def test_dataloader_with_workers(tiny_dataset):
    ds = MultimodalDataset(tiny_dataset, "train", ("audio", "text"), transforms={"audio": lambda x: x.shape[0]})
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_items)
    seen = []
    for batch in loader:
        assert set(batch) == {"index", "id", "group", "audio", "image", "text"}
        seen.extend(batch["id"])
        assert all(isinstance(n, int) and n > 0 for n in batch["audio"])
    assert seen == [it.id for it in ds.items]


def test_from_items_and_errors(tiny_dataset):
    items = read_manifest(tiny_dataset)
    ds = MultimodalDataset(items[:3], None, ("audio",), sample_rate=8000)
    assert ds[0]["audio"].shape[0] == pytest.approx(items[0].meta["num_samples"] / 2, abs=1)
    with pytest.raises(DataError, match="unknown modality"):
        MultimodalDataset(items, None, ("video",))
    with pytest.raises(DataError, match="unknown split"):
        MultimodalDataset(items, "holdout", ("text",))
