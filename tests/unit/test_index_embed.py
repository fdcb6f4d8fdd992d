"""Embedding the tiny music21 dataset with an (untrained) model, then querying it.

The model is built from the registry's default encoders (text tokenizer fitted on the dataset's
texts) and saved with ``save_model``: no training needed. Its kappa head is randomised so that
kappas differ between items (a fresh head gives every item the same kappa).

Self-retrieval is checked with ``kl`` and ``bhattacharyya``: both are maximal (0) exactly when the
item's distribution equals the query's. ``elk`` is not (it grows with the item's kappa in the
query's direction; see vmfmir_cli.index.search).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vmfmir_cli.data.manifest import read_manifest
from vmfmir_cli.errors import CheckpointError, ConfigError, DataError
from vmfmir_cli.index import embed_dataset, embed_items, encode_items, load_index, search
from vmfmir_cli.index import store


@pytest.fixture(scope="module")
def built(tiny_dataset, tmp_path_factory, make_untrained_run):
    root = tmp_path_factory.mktemp("embed")
    run = make_untrained_run(root / "runs" / "r0", tiny_dataset)
    report = embed_dataset(run, tiny_dataset, "all", root / "index")
    return {"root": root, "run": run, "index": root / "index", "report": report, "data": tiny_dataset}


def test_index_files_and_counts(built):
    report = built["report"]
    assert report.items == 16 and report.rows == {"audio": 16, "image": 16, "text": 16}
    # the two performances of a piece share their score image: 8 images are encoded, once each
    assert report.encoded == {"audio": 16, "image": 8, "text": 16} and report.new_items == 16
    info = json.loads((built["index"] / "index.json").read_text())
    assert info["run"] == str(built["run"].resolve()) and info["model_hash"].startswith("sha256:")
    assert info["dim"] == 64 and info["modalities"] == ["audio", "image", "text"]
    assert info["counts"] == {"items": 16, "audio": 16, "image": 16, "text": 16}
    assert info["source"] == {"data": str(built["data"].resolve()), "split": "all"} and info["vmfmir_version"]
    rows = [json.loads(line) for line in (built["index"] / "items.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [it.id for it in read_manifest(built["data"])]
    first = rows[0]
    assert set(first) >= {"id", "text", "audio", "image", "meta", "hash"} and Path(first["audio"]).is_file()
    assert first["hash"]["audio"] == store.hash_file(first["audio"])
    assert first["hash"]["text"] == store.hash_text(first["text"])
    index = load_index(built["index"])
    assert index.mu["audio"].shape == (16, 64) and index.kappa["text"].shape == (16,)
    assert torch.allclose(index.mu["image"].norm(dim=-1), torch.ones(16), atol=1e-5)
    assert index.kappa["audio"].std() > 0  # kappas differ between items
    # the per-row scoring terms are stored with the index (no float64 Bessel work per query)
    from vmfmir_cli.engine.vmf import log_normalizer, mean_resultant_length

    k64 = index.kappa["audio"].double()
    assert index.terms["audio"]["log_c"].dtype == torch.float64
    assert torch.allclose(index.terms["audio"]["log_c"], log_normalizer(k64, 64), rtol=1e-12)
    assert torch.allclose(index.terms["audio"]["a"], mean_resultant_length(k64, 64).float(), rtol=1e-6)
    same_image = [i for i, r in enumerate(rows) if r["image"] == rows[0]["image"]]
    assert len(same_image) == 2 and torch.equal(index.mu["image"][same_image[0]], index.mu["image"][same_image[1]])


def test_encode_items_is_deterministic_and_reports_progress(built):
    from vmfmir_cli.model import load_model

    model, _ = load_model(built["run"])
    items = read_manifest(built["data"])[:5]
    calls = []
    mu1, kappa1 = encode_items(model, items, "audio", batch_size=2, on_progress=lambda d, t: calls.append((d, t)))
    mu2, kappa2 = encode_items(model, items, "audio", batch_size=2)
    assert torch.equal(mu1, mu2) and torch.equal(kappa1, kappa2)
    assert mu1.dtype == kappa1.dtype == torch.float32 and mu1.shape == (5, 64)
    assert calls == [(2, 5), (4, 5), (5, 5)]
    # a different batching only changes the last bits
    mu3, kappa3 = encode_items(model, items, "audio", batch_size=5)
    assert torch.allclose(mu1, mu3, atol=1e-5) and torch.allclose(kappa1, kappa3, rtol=1e-4)
    # paths, decoded inputs and items give the same numbers
    mu_path, _ = encode_items(model, [items[0].image], "image")
    mu_item, _ = encode_items(model, [items[0]], "image")
    assert torch.equal(mu_path, mu_item)
    texts, _ = encode_items(model, [items[0].text], "text")
    assert torch.equal(texts, encode_items(model, items[:1], "text")[0])
    assert model.training is False
    empty_mu, empty_kappa = encode_items(model, [], "text")
    assert empty_mu.shape == (0, 64) and empty_kappa.shape == (0,)
    items[0].text = None
    with pytest.raises(DataError, match="has no text"):
        encode_items(model, items[:1], "text")


@pytest.mark.parametrize("modality", ["audio", "image", "text"])
@pytest.mark.parametrize("kind", ["kl", "bhattacharyya"])
def test_an_item_queried_by_itself_comes_first(built, modality, kind):
    index = load_index(built["index"])
    for row in index.items[:4]:
        query = {modality: row[modality]}
        result = search(index, target=modality, k=3, score=kind, **query)
        top = result.hits[0]
        assert getattr(top, modality) == row[modality], (row["id"], [h.id for h in result.hits])
        assert top.score == pytest.approx(0.0, abs=1e-2)
        # items sharing the query's media (a piece's score image) tie with it; every other is below
        other = next(h for h in result.hits if getattr(h, modality) != row[modality])
        assert other.score < top.score - 1e-3


def test_a_second_modality_changes_the_ranking(built):
    index = load_index(built["index"])
    rows = index.items
    image_only = search(index, image=rows[0]["image"], target="audio", k=16, score="kl")
    both = search(index, image=rows[0]["image"], text=rows[5]["text"], target="audio", k=16, score="kl")
    assert [h.id for h in image_only.hits] != [h.id for h in both.hits]
    k_img, k_txt, k_fused = both.kappa["image"], both.kappa["text"], both.kappa["fused"]
    assert abs(k_img - k_txt) - 1e-3 <= k_fused <= k_img + k_txt + 1e-3  # |k1 mu1 + k2 mu2|
    assert image_only.kappa["image"] == pytest.approx(k_img)


def test_reembedding_skips_unchanged_items(built, tmp_path):
    import soundfile as sf

    data = tmp_path / "data"
    data.mkdir()
    rows = [json.loads(line) for line in (built["data"] / "manifest.jsonl").read_text().splitlines()]
    for r in rows:  # absolute media paths: the copy shares the media files
        for m in ("audio", "image"):
            r[m] = str((built["data"] / r[m]).resolve())
    shutil.copy(built["data"] / "dataset.json", data / "dataset.json")

    def write(rows):
        (data / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    write(rows[:10])
    out = tmp_path / "index"
    first = embed_dataset(built["run"], data, "all", out)
    assert first.items == 10 and first.encoded["audio"] == 10 and sum(first.reused.values()) == 0
    again = embed_dataset(built["run"], data, "all", out)
    assert again.encoded == {"audio": 0, "image": 0, "text": 0} and again.unchanged_items == 10
    before = load_index(out)

    # grow: 4 more items (one with a new audio file), change one text, drop one item
    sr = 16000
    tone = (0.2 * np.sin(2 * np.pi * 330 * np.arange(sr) / sr)).astype(np.float32)
    sf.write(tmp_path / "new.wav", tone, sr)
    extra = [dict(r) for r in rows[10:14]]
    extra[0]["audio"] = str(tmp_path / "new.wav")
    changed = dict(rows[1], text=rows[1]["text"] + " Changed.")
    grown = [rows[0], changed] + rows[3:10] + extra
    write(grown)
    calls = []
    report = embed_dataset(built["run"], data, "all", out, on_progress=lambda d, t, m: calls.append((d, t, m)))
    assert report.new_items == 4 and report.changed_items == 1 and report.removed_items == 1
    assert report.unchanged_items == 8
    assert report.encoded["text"] == 5 and report.encoded["audio"] == 4
    assert report.reused["audio"] == 9 and report.reused["text"] == 8
    assert calls and calls[-1][0] == calls[-1][1] == sum(report.encoded.values())
    after = load_index(out)
    assert [r["id"] for r in after.items] == [r["id"] for r in grown]
    # unchanged items keep their exact numbers
    assert torch.equal(after.mu["audio"][0], before.mu["audio"][0])
    assert torch.equal(after.mu["text"][2], before.mu["text"][3])
    from vmfmir_cli.engine.vmf import log_normalizer

    for m in ("audio", "image", "text"):  # reused and fresh rows alike carry the right terms
        assert torch.allclose(after.terms[m]["log_c"], log_normalizer(after.kappa[m].double(), 64), rtol=1e-12)


def test_another_model_is_refused(built, tmp_path, make_untrained_run):
    other = make_untrained_run(tmp_path / "runs" / "other", built["data"], seed=1)
    with pytest.raises(CheckpointError, match="--rebuild"):
        embed_dataset(other, built["data"], "all", built["index"])
    index = load_index(built["index"])
    with pytest.raises(CheckpointError, match="built by another model"):
        search(index, text="a slow melody", run=other)
    out = tmp_path / "copy"
    shutil.copytree(built["index"], out)
    report = embed_dataset(other, built["data"], "test", out, rebuild=True)
    assert report.items == 2 and store.read_index_info(out)["model_hash"] != index.model_hash


def test_a_broken_index_is_rebuilt(built, tmp_path):
    out = tmp_path / "idx"
    shutil.copytree(built["index"], out)
    (out / "items.jsonl").write_text("garbage\n")
    report = embed_dataset(built["run"], built["data"], "test", out)
    assert report.notes and "unreadable" in report.notes[0] and report.items == 2
    assert load_index(out).count("audio") == 2


def test_embed_errors(built, tmp_path):
    with pytest.raises(DataError, match="unknown split"):
        embed_dataset(built["run"], built["data"], "dev", tmp_path / "x")
    with pytest.raises(DataError, match="no dataset"):
        embed_dataset(built["run"], tmp_path / "nodata", "all", tmp_path / "x")
    with pytest.raises(CheckpointError):
        embed_dataset(tmp_path / "noruns", built["data"], "all", tmp_path / "x")
    items = read_manifest(built["data"])[:2]
    items[1].id = items[0].id
    with pytest.raises(DataError, match="appears twice"):
        embed_items(items, built["run"], tmp_path / "x", source={})
    items = read_manifest(built["data"])[:1]
    items[0].audio = tmp_path / "gone.flac"
    with pytest.raises(DataError, match="gone.flac"):
        embed_items(items, built["run"], tmp_path / "x", source={})


def test_query_errors_with_a_real_index(built, tmp_path):
    index = load_index(built["index"])
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(DataError, match="cannot decode image"):
        search(index, image=bad)
    with pytest.raises(DataError, match="no such image file"):
        search(index, image=tmp_path / "missing.png")
    with pytest.raises(DataError, match="no query"):
        search(index)
    with pytest.raises(DataError, match="text query is empty"):
        search(index, text="")
    with pytest.raises(ConfigError, match="-k must be"):
        search(index, text="x", k=0)
