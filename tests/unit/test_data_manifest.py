"""The dataset contract: manifest rows, dataset.json, split assignment."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

from vmfmir_cli.data.manifest import (
    SPLITS,
    Item,
    assign_splits,
    count_items,
    read_dataset_info,
    read_manifest,
    split_items,
    write_dataset,
)
from vmfmir_cli.errors import DataError


def test_assign_splits_is_deterministic_and_follows_fractions():
    groups = [f"g{i}" for i in range(1000)]
    a = assign_splits(groups, seed=0)
    assert a == assign_splits(list(reversed(groups)), seed=0)
    counts = {s: sum(1 for v in a.values() if v == s) for s in SPLITS}
    assert counts == {"train": 800, "val": 100, "test": 100}
    b = assign_splits(groups, seed=1)
    assert a != b
    assert sum(a[g] != b[g] for g in groups) > 100


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 10, 11])
def test_assign_splits_small_collections(n):
    a = assign_splits([f"g{i}" for i in range(n)], seed=3)
    assert len(a) == n
    values = list(a.values())
    if n >= 3:
        assert values.count("val") >= 1 and values.count("test") >= 1
        assert values.count("train") >= n - 2 - round(0.2 * n)
    else:
        assert values.count("train") >= 1


def _items(tmp_path: Path) -> list[Item]:
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "a.flac").write_bytes(b"x")
    return [
        Item("a", "g1", "train", audio=tmp_path / "audio" / "a.flac", text="hello", meta={"k": 1}),
        Item("b", "g1", "train", image=None, text="world"),
        Item("c", "g2", "test", text="third"),
    ]


def test_write_and_read_roundtrip(tmp_path):
    items = _items(tmp_path)
    info = write_dataset(
        tmp_path, items, name="demo", sample_rate=22050, source="test", options={"x": 1},
        packages=("pillow", "no-such-distribution-vmfmir"),
    )
    assert info["counts"]["train"]["items"] == 2 and info["counts"]["test"]["groups"] == 1
    assert info["counts"]["total"]["audio"] == 1
    rows = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert rows[0]["audio"] == "audio/a.flac"  # relative to the dataset folder
    assert set(rows[0]) == {"id", "group", "split", "audio", "image", "text", "meta"}
    back = read_manifest(tmp_path)
    assert back[0].audio == (tmp_path / "audio" / "a.flac").resolve()
    assert back[0].audio.is_absolute() and back[0].meta == {"k": 1}
    assert [it.id for it in back] == ["a", "b", "c"]
    info2 = read_dataset_info(tmp_path)
    assert info2["sample_rate"] == 22050 and info2["name"] == "demo" and info2["options"] == {"x": 1}
    assert "vmfmir_version" in info2
    # the versions the media were made with: the core packages plus the recipe's, once each
    packages = info2["environment"]["packages"]
    assert packages["numpy"] == importlib.metadata.version("numpy") and packages["no-such-distribution-vmfmir"] is None
    assert list(packages).count("pillow") == 1 and packages["pillow"] == importlib.metadata.version("pillow")
    with pytest.raises(TypeError, match="not the string"):  # "pillow" is not seven package names
        write_dataset(tmp_path / "x", items, name="demo", sample_rate=22050, source="test", options={}, packages="pillow")
    assert [it.id for it in split_items(back, "train")] == ["a", "b"]
    assert count_items(back)["val"]["items"] == 0


def test_missing_dataset_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="vmfmir prepare"):
        read_manifest(tmp_path / "nowhere")
    with pytest.raises(DataError, match="vmfmir prepare"):
        read_dataset_info(tmp_path)


def test_bad_row_names_file_and_line(tmp_path):
    (tmp_path / "manifest.jsonl").write_text(
        '{"id": "a", "group": "a", "split": "train", "text": "x"}\n{"id": "b", "split": "holdout"}\n'
    )
    with pytest.raises(DataError, match=r"manifest.jsonl:2: invalid manifest row"):
        read_manifest(tmp_path)


def test_unknown_split_and_duplicates(tmp_path):
    with pytest.raises(DataError, match="unknown split"):
        split_items([], "dev")
    with pytest.raises(DataError, match="duplicate item id"):
        write_dataset(tmp_path, [Item("a", "a", "train", text="x")] * 2, name="d", sample_rate=1, source="t", options={})
