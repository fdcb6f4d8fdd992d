"""The music21 benchmark: catalog, excerpts, rendering, texts, the built dataset, resume."""

from __future__ import annotations

import json
import shutil
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from vmfmir_cli.data.manifest import read_dataset_info, read_manifest
from vmfmir_cli.data.recipes import music21_render as R
from vmfmir_cli.data.recipes import music21_text as T
from vmfmir_cli.data.recipes.music21 import Music21Options, build_music21_benchmark
from vmfmir_cli.data.recipes.music21_catalog import corpus_root, interleave, list_corpus_pieces
from vmfmir_cli.errors import DataError

FAST = ("essen", "oneills", "ryans")


@pytest.fixture(scope="module")
def refs():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list_corpus_pieces()


# ----------------------------------------------------------------------------------- catalog
def test_catalog_lists_the_tunes_inside_abc_files(refs):
    counts = Counter(r.collection.key for r in refs)
    assert len(refs) > 14000
    assert counts["essen"] > 8000 and counts["oneills"] > 1500 and counts["bach"] > 400
    assert "demos" not in counts and not any(r.corpus_path.endswith(".rntxt") for r in refs)
    assert len({r.piece_id for r in refs}) == len(refs)
    # whole multi-tune files are not listed next to their tunes
    assert not any(r.number is None and r.corpus_path.startswith("essenFolksong/") for r in refs)


def test_interleave_is_balanced_prefix_stable_and_seeded(refs):
    order = interleave(refs, seed=0)
    assert len(order) == len(refs)
    first = Counter(r.collection.key for r in order[:600])
    big = [first[k] for k in ("essen", "oneills", "ryans", "airds", "bach", "palestrina")]
    assert max(big) - min(big) <= 1  # every big collection gets its share
    assert [r.piece_id for r in interleave(refs, seed=0)[:50]] == [r.piece_id for r in order[:50]]
    assert [r.piece_id for r in interleave(refs, seed=1)[:50]] != [r.piece_id for r in order[:50]]


# ---------------------------------------------------------------------------------- rendering
def _ref(refs, piece_id):
    return next(r for r in refs if r.piece_id == piece_id)


def test_excerpt_skips_the_pickup_and_renders_both_ways(refs):
    ref = next(r for r in refs if r.collection.key == "oneills" and r.number == 415)  # starts with a pickup
    score = R.parse_piece(corpus_root() / ref.corpus_path, ref.number)
    first = list(score.parts[0].getElementsByClass("Measure"))[0]
    assert first.duration.quarterLength < first.barDuration.quarterLength  # the file has a pickup
    ex = R.make_excerpt(score, 2)
    assert ex.time_signature == "2/4" and ex.key_name == "D minor" and ex.key_source == "score"
    assert ex.quarter_length == pytest.approx(4.0)
    assert min(n[1] for n in ex.notes) == 0.0 and max(n[2] for n in ex.notes) <= 4.0

    img = R.engrave(ex, height=256)
    arr = np.asarray(img)
    assert img.mode == "L" and img.height == 256 and 100 < img.width < 2000
    assert arr[0].min() == 255 and arr[:, 0].min() == 255 and arr.min() < 64  # white margin, black ink

    y, dur = R.synthesize(ex, program=40, bpm=120, sample_rate=16000)
    assert dur == pytest.approx(2.0 + R.RELEASE_TAIL_S)  # 4 quarters at 120 bpm + tail
    assert y.dtype == np.float32 and y.shape == (round(dur * 16000),)
    assert 0.01 < np.abs(y).max() <= 1.0


def test_too_short_pieces_are_skipped(refs):
    ref = next(r for r in refs if r.collection.key == "essen")
    score = R.parse_piece(corpus_root() / ref.corpus_path, ref.number)
    with pytest.raises(R.SkipPiece) as info:
        R.make_excerpt(score, 32)
    assert info.value.reason == "too_short"


def test_musicxml_head_parses_like_the_whole_file():
    path = corpus_root() / "bach" / "bwv66.6.mxl"
    full = R.make_excerpt(R.parse_piece(path, None), 2)
    head = R.make_excerpt(R.parse_piece(path, None, max_measures=6), 2)
    assert head.notes == full.notes and head.key_name == full.key_name


# -------------------------------------------------------------------------------------- texts
def test_key_names_and_titles():
    from music21 import key

    assert R.key_name(key.Key("E-")) == "E-flat major"
    assert R.key_name(key.Key("f#")) == "F-sharp minor"
    assert T.clean_title("SHERIFF MULDOON'S -- JIG") == "Sheriff Muldoon's"
    assert T.clean_title("Die Erscheinung in der Brautnacht (55a), S. 176") == "Die Erscheinung in der Brautnacht"
    assert T.parse_origin("Europa, Mitteleuropa, Deutschland, Hessen") == ("Germany", "Hesse")
    assert T.place_phrase(*T.parse_origin("Europa, Mitteleuropa, Deutschland, Niederlande")) == "Germany and the Netherlands"
    assert T.tune_type("double jig", None) == "double jig" and T.tune_type(None, "LADY X'S -- REEL.") == "reel"
    assert T.tempo_word(132) == "allegro" and T.tempo_word(60) == "adagio"


def test_descriptions_name_the_metadata_and_vary(refs):
    ref = next(r for r in refs if r.collection.key == "oneills" and r.number == 415)
    facts = T.piece_facts(ref, {"R": "air"}, "D minor", "2/4", 1)
    perfs = T.choose_performances(ref.piece_id, "dance_tune", facts.palette, 4, seed=0, marked_bpm=80.0)
    assert perfs[0].bpm == 80 and perfs[0].tempo_word == "andante"
    assert len({p.instrument.program for p in perfs}) == 4  # variants differ in instrument
    texts = [T.describe(facts, p, seed=0, item_id=f"x-v{p.variant}") for p in perfs]
    for text, perf in zip(texts, perfs):
        for needle in ("The Loughrea Lasses", "D minor", "O'Neill", str(perf.bpm), perf.tempo_word, perf.instrument.noun):
            assert needle.lower() in text.lower(), (needle, text)
    phrasings = {T.describe(facts, perfs[0], seed=s, item_id="x").split("'")[0] for s in range(30)}
    assert len(phrasings) >= 4  # several sentence shapes, not one template
    assert T.describe(facts, perfs[0], seed=0, item_id="x") == T.describe(facts, perfs[0], seed=0, item_id="x")


# ------------------------------------------------------------------------------ built dataset
def test_tiny_dataset_contract(tiny_dataset):
    info = read_dataset_info(tiny_dataset)
    items = read_manifest(tiny_dataset)
    assert info["name"] == "music21-benchmark" and info["sample_rate"] == 16000
    assert info["counts"]["total"]["items"] == len(items) == 16
    assert info["options"]["variants"] == 2 and info["options"]["bars"] == 2
    assert {it.meta["variant"] for it in items} == {0, 1}
    for it in items:
        x, sr = sf.read(it.audio, dtype="float32")
        assert sr == 16000 and x.ndim == 1
        assert len(x) == it.meta["num_samples"] == round(it.meta["duration_s"] * 16000)
        beats = it.meta["bars"] * {"2/4": 2, "3/4": 3, "4/4": 4, "6/8": 2, "2/2": 2, "3/8": 1, "9/8": 3}.get(
            it.meta["metre"], 0
        )
        if beats:
            assert it.meta["duration_s"] == pytest.approx(beats * 60 / it.meta["tempo_bpm"] + R.RELEASE_TAIL_S, abs=0.02)
        assert np.abs(x).max() > 0.01
        with Image.open(it.image) as img:
            assert img.mode == "L" and img.height == 256 and img.getpixel((0, 0)) == 255
        assert it.text and len(it.text) > 40
        assert it.meta["instrument"]["name"] and it.meta["tempo_word"] and it.meta["key"] in it.text
        assert it.audio.parent.name == "audio" and it.image.parent.name == "image"
    assert len({it.text for it in items}) == len(items)
    by_piece = {}
    for it in items:
        by_piece.setdefault(it.group, []).append(it)
    for group in by_piece.values():  # variants share the image and the split, differ in performance
        assert len({v.image for v in group}) == 1 and len({v.split for v in group}) == 1
        assert len({(v.meta["instrument"]["program"], v.meta["tempo_bpm"]) for v in group}) == len(group)
    splits = {}
    for it in items:
        splits.setdefault(it.split, set()).add(it.group)
    assert splits["train"].isdisjoint(splits["val"]) and splits["train"].isdisjoint(splits["test"])
    assert splits["val"].isdisjoint(splits["test"])
    assert {k: len(v) for k, v in splits.items()} == {"train": 6, "val": 1, "test": 1}
    rows = [json.loads(line) for line in (tiny_dataset / "manifest.jsonl").read_text().splitlines()]
    assert all(not Path(r["audio"]).is_absolute() for r in rows)


def _opts(out: Path, **kw) -> Music21Options:
    base = dict(out=out, pieces=3, variants=1, bars=1, seed=5, workers=1, collections=FAST)
    base.update(kw)
    return Music21Options(**base)


def test_resume_after_interruption(tmp_path):
    out = tmp_path / "data"
    calls = []

    def interrupt(done, total):
        calls.append(done)
        if done >= 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_music21_benchmark(_opts(out), on_progress=interrupt)
    assert not (out / "manifest.jsonl").exists()  # no half-written dataset
    records = list((out / ".state" / "music21" / "pieces").glob("*.json"))
    assert len(records) == 1
    first = json.loads(records[0].read_text())
    image = out / first["items"][0]["image"]
    stamp = image.stat().st_mtime_ns

    summary = build_music21_benchmark(_opts(out))
    assert summary.pieces_reused == 1 and summary.pieces_kept == 3 and summary.items == 3
    assert image.stat().st_mtime_ns == stamp  # the finished piece was not rendered again
    assert len(read_manifest(out)) == 3
    assert not list(out.rglob("*.tmp"))  # atomic writes leave no temporary files

    again = build_music21_benchmark(_opts(out))  # a finished build is all reused
    assert again.pieces_reused == 3 and [it.id for it in read_manifest(out)] == [it.id for it in read_manifest(out)]

    with pytest.raises(DataError, match=r"other options \(bars=1\)"):
        build_music21_benchmark(_opts(out, bars=2))


def test_broken_pieces_are_skipped_counted_and_replaced(tmp_path, monkeypatch):
    real = R.parse_piece
    broken = {}

    def flaky(path, number, max_measures=None):
        if not broken:
            broken["path"] = (str(path), number)
        if broken["path"] == (str(path), number):
            raise ValueError("a parser bug")
        return real(path, number, max_measures)

    monkeypatch.setattr(R, "parse_piece", flaky)
    summary = build_music21_benchmark(_opts(tmp_path / "d", pieces=2))
    assert summary.pieces_kept == 2 and summary.pieces_skipped == 1
    assert summary.skipped_by_reason == {"error": 1}
    assert sum(c["skipped"] for c in summary.collections.values()) == 1
    info = read_dataset_info(tmp_path / "d")
    assert info["pieces"] == {"kept": 2, "skipped": 1, "tried": 3}


def test_a_broken_installation_stops_the_build_instead_of_skipping_every_piece(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("Could not load this library: libtorchaudio.so")

    monkeypatch.setattr(R, "synthesize", broken)
    with pytest.raises(DataError, match="cannot run in this environment.*make install"):
        build_music21_benchmark(_opts(tmp_path / "d", pieces=2))
    # nothing was recorded as skipped: a rerun after fixing the install renders these pieces
    assert not list((tmp_path / "d").rglob("pieces/*.json"))


def test_unknown_collection_and_bad_options(tmp_path):
    with pytest.raises(DataError, match="unknown collection 'nope'; choose from: .*essen"):
        build_music21_benchmark(_opts(tmp_path / "x", collections=("nope",)))
    with pytest.raises(DataError, match="--variants"):
        build_music21_benchmark(_opts(tmp_path / "x", variants=0))


def test_refuses_a_folder_holding_another_dataset(tmp_path, tiny_dataset):
    other = tmp_path / "user"
    shutil.copytree(tiny_dataset, other, ignore=shutil.ignore_patterns(".state"))
    with pytest.raises(DataError, match="did not build"):
        build_music21_benchmark(_opts(other))
