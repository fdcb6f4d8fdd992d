"""Captions of graded specificity: the music21 benchmark's captions, n_compatible, training draws."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from vmfmir_cli.data.captions import (
    Caption,
    item_captions,
    n_compatible,
    parse_captions,
    parse_level_weights,
    sample_caption,
)
from vmfmir_cli.data.manifest import Item, read_manifest, split_items
from vmfmir_cli.data.recipes.music21_captions import UNINFORMATIVE, music21_captions


def test_tiny_benchmark_has_every_level_for_every_item(tiny_dataset):
    items = read_manifest(tiny_dataset)
    assert items
    for it in items:
        levels = Counter(c.level for c in it.captions)
        assert set(levels) == {0, 1, 2, 3}, it.id
        assert it.text == it.captions[0].text and it.captions[0].level == 3  # old readers keep working
        for c in it.captions:
            if c.level == 0:
                assert c.facts == {} and c.text in UNINFORMATIVE
            else:
                assert c.facts, c
            if c.level in (0, 1, 2):  # no title below level 3
                assert it.meta["title"] not in c.text
        assert "facts" in it.meta


def test_n_compatible_grows_as_the_level_falls(tiny_dataset):
    items = read_manifest(tiny_dataset)
    for split in ("train", "all"):
        chosen = items if split == "all" else split_items(items, split)
        caps = [c for it in chosen for c in it.captions]
        counts = n_compatible(caps, chosen)
        by_level: dict[int, list[int]] = {}
        for c, n in zip(caps, counts):
            by_level.setdefault(c.level, []).append(n)
            assert n >= 1  # a caption always fits its own item
        mean = {lvl: sum(v) / len(v) for lvl, v in by_level.items()}
        assert all(n == len(chosen) for n in by_level[0])
        assert mean[3] <= mean[2] <= mean[1] < mean[0]
        assert mean[3] < 1.5


def test_level_one_uses_everyday_words_not_the_full_vocabulary():
    meta = {
        "title": "The Rose", "collection": "oneills", "collection_name": "O'Neill's Music of Ireland",
        "work": "an Irish reel", "key": "D major", "metre": "6/8", "tempo_word": "adagio", "tempo_bpm": 60,
        "instrument": {"noun": "accordion", "program": 21, "name": "Accordion"},
    }
    seen = set()
    for seed in range(30):
        caps, facts = music21_captions("full text", meta, seed, "x-v0")
        assert facts["tempo_class"] == "slow" and facts["instrument_family"] == "accordion"
        for c in caps:
            if c.level == 1:
                seen.add(c.text)
                assert "adagio" not in c.text and "The Rose" not in c.text
                assert 1 <= len(c.facts) <= 2
    assert any("calm" in t or "gentle" in t or "peaceful" in t for t in seen)
    assert any("squeezebox" in t for t in seen)
    # deterministic in (seed, item)
    assert music21_captions("t", meta, 3, "a")[0] == music21_captions("t", meta, 3, "a")[0]


def test_parse_captions_validates():
    caps = parse_captions(["calm piano", {"text": "x", "level": 2, "facts": {"k": 1}}])
    assert caps == [Caption("calm piano", None, {}), Caption("x", 2, {"k": 1})]
    with pytest.raises(ValueError, match="level"):
        parse_captions([{"text": "x", "level": 7}])
    with pytest.raises(ValueError, match="text"):
        parse_captions([{"level": 1}])
    with pytest.raises(TypeError):
        parse_captions("calm piano")


def test_item_without_captions_has_its_text():
    it = Item(id="a", group="a", split="train", text="hello")
    assert item_captions(it) == [Caption("hello", None, {})]
    assert sample_caption(it, 0, 0) == "hello"


def test_sample_caption_is_deterministic_and_follows_the_weights():
    caps = [Caption("full", 3), Caption("facts", 2), Caption("vague", 1), Caption("nothing", 0)]
    it = Item(id="x", group="x", split="train", text="full", captions=caps)
    assert sample_caption(it, 1, 5) == sample_caption(it, 1, 5)
    uniform = Counter(sample_caption(it, 0, e) for e in range(2000))
    assert set(uniform) == {"full", "facts", "vague", "nothing"}
    assert all(350 < n < 650 for n in uniform.values())
    only = Counter(sample_caption(it, 0, e, {0: 1.0, 3: 3.0}) for e in range(2000))
    assert set(only) == {"full", "nothing"} and 1350 < only["full"] < 1650
    assert sample_caption(it, 0, 0, {2: 0.0, 1: 0.0}) == "full"  # no wanted level: the main text


def test_parse_level_weights():
    assert parse_level_weights({"0": 1, "3": 2}) == {0: 1.0, 3: 2.0}
    assert parse_level_weights([1, 3]) == {1: 1.0, 3: 1.0}
    for bad in ({"5": 1}, {"x": 1}, {"1": -1}, {"1": 0}):
        with pytest.raises(ValueError):
            parse_level_weights(bad)


def test_manifest_round_trip_keeps_captions(tmp_path, tiny_dataset):
    from vmfmir_cli.data.manifest import item_to_row, row_to_item

    it = read_manifest(tiny_dataset)[0]
    row = json.loads(json.dumps(item_to_row(it, tiny_dataset)))
    back = row_to_item(row, tiny_dataset.resolve())
    assert back.captions == it.captions


def test_training_draws_one_caption_per_item_and_epoch(tiny_dataset):
    from functools import partial

    from vmfmir_cli.training.data import PreprocessedDataset
    from vmfmir_cli.training.data import epoch_caption as _epoch_caption

    items = split_items(read_manifest(tiny_dataset), "train")
    ds = PreprocessedDataset(
        items, ["text"], {"text": lambda t: t.upper()}, 16000, cache_bytes=10**9,
        text_for=partial(_epoch_caption, seed=0, weights={}),
    )
    texts = {}
    for epoch in range(12):
        ds.epoch = epoch
        texts[epoch] = [ds[i]["text"] for i in range(len(ds))]
        assert texts[epoch] == [ds[i]["text"] for i in range(len(ds))]  # the same within an epoch
    allowed = [{c.text.upper() for c in it.captions} for it in items]
    for epoch, row in texts.items():
        assert all(t in ok for t, ok in zip(row, allowed))
    assert len({tuple(r) for r in texts.values()}) > 1  # and it changes across epochs
