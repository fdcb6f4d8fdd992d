"""benchmarks/pretrained.py: the out-of-vocabulary query set and the per-query metrics (no training).

The end-to-end call of the script on a trained run is in tests/cli/test_pretrained_cli.py.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import pretrained as bench  # noqa: E402
from vmfmir_cli.data.recipes import music21_captions, music21_catalog, music21_text  # noqa: E402
from vmfmir_cli.data.recipes.music21_captions import INSTRUMENT_FAMILY, TEMPO_CLASS, item_fact_values  # noqa: E402

QUERIES = bench.load_queries()


def _strings(obj, depth=0):
    """Every string literal reachable from a module-level value or a function's code."""
    if depth > 6:
        return
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(k, depth + 1)
            yield from _strings(v, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            yield from _strings(v, depth + 1)
    elif isinstance(obj, types.CodeType):
        for const in obj.co_consts:
            yield from _strings(const, depth + 1)
    elif inspect.isfunction(obj):
        yield from _strings(obj.__code__, depth + 1)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _strings(getattr(obj, f.name), depth + 1)


def template_vocabulary() -> set[str]:
    """The words the music21 recipe can put into a caption (titles and places aside)."""
    vocab: set[str] = set()
    for module in (music21_text, music21_captions, music21_catalog):
        for value in vars(module).values():
            if getattr(value, "__module__", module.__name__) != module.__name__ and callable(value):
                continue  # imported helpers
            for text in _strings(value):
                vocab |= bench.words(text)
    return vocab


def test_the_query_set_is_a_small_hand_written_set():
    assert 15 <= len(QUERIES) <= 30
    assert len({q["query"] for q in QUERIES}) == len(QUERIES)
    assert sum(bool(q.get("control")) for q in QUERIES) < len(QUERIES) / 3


def test_oov_words_are_outside_the_caption_vocabulary(tiny_dataset):
    vocab = template_vocabulary() | bench.caption_vocabulary(bench_items(tiny_dataset))
    assert {"calm", "piano", "fiddle", "squeezebox", "hymn", "lullaby", "waltz", "metre"} <= vocab  # the harvest works
    for q in QUERIES:
        oov = q.get("oov_words", [])
        assert all(w in bench.words(q["query"]) for w in oov), q
        assert not set(oov) & vocab, (q["query"], set(oov) & vocab)
        if not q.get("control"):
            assert oov, q["query"]
        else:
            parts = {p for w in bench.words(q["query"]) for p in w.split("-")}  # "minor-key" is made of two
            assert parts <= vocab, (q["query"], parts - vocab)


def bench_items(data):
    from vmfmir_cli.data.manifest import read_manifest

    return read_manifest(data)


def test_every_predicate_names_facts_the_recipe_writes():
    facts = set(item_fact_values({}))
    values = {
        "instrument_family": set(INSTRUMENT_FAMILY.values()),
        "instrument": set(INSTRUMENT_FAMILY),
        "tempo_class": set(TEMPO_CLASS.values()),
        "mode": {"major", "minor"},
        "style": set(music21_catalog.STYLES),
        "collection": {c.key for c in music21_catalog.COLLECTIONS.values()},
    }
    for q in QUERIES:
        for name, allowed in q["match"].items():
            assert name in facts, (q["query"], name)
            if name == "metre":
                assert all(re.fullmatch(r"\d+/\d+", v) for v in allowed)
            else:
                assert set(allowed) <= values[name], (q["query"], name, set(allowed) - values[name])


def test_matches_and_what_applies_to_score_images():
    facts = {"tempo_class": "slow", "instrument_family": "fiddle", "mode": "minor"}
    assert bench.matches(facts, {"tempo_class": ["slow"], "instrument_family": ["fiddle", "strings"]})
    assert not bench.matches(facts, {"tempo_class": ["fast"]})
    assert not bench.matches(facts, {"metre": ["3/4"]})  # a fact the item lacks never matches
    assert bench.applies({"match": {"tempo_class": ["slow"]}}, "audio")
    assert not bench.applies({"match": {"tempo_class": ["slow"]}}, "image")
    assert bench.applies({"match": {"mode": ["minor"]}}, "image")


def test_query_metrics():
    perfect = bench.query_metrics([0.9, 0.8, 0.1, 0.0], [True, True, False, False], k=2)
    assert perfect["p_at_k"] == 1.0 and perfect["first_rr"] == 1.0 and perfect["auroc"] == 1.0
    assert perfect["base_rate"] == 0.5 and perfect["n_matching"] == 2
    worst = bench.query_metrics([0.9, 0.8, 0.1, 0.0], [False, False, True, True], k=2)
    assert worst["p_at_k"] == 0.0 and worst["first_rank"] == 3 and worst["auroc"] == 0.0
    tied = bench.query_metrics([0.5, 0.5, 0.5], [False, True, False], k=1)
    assert tied["auroc"] == 0.5 and tied["first_rank"] == 3  # ties count against the matching item
    assert bench.query_metrics([1.0, 2.0], [True, True])["auroc"] is None
    summary = bench.summarise([perfect, worst, bench.query_metrics([1.0], [False])])
    assert summary["queries"] == 2 and summary["skipped"] == 1
    assert summary["auroc"] == 0.5 and summary["mrr"] == pytest.approx((1 + 1 / 3) / 2)


def test_markdown_report():
    row = {"query": "violin", "control": False, "applies": True, "n_matching": 3, "auroc": 0.75, "p_at_k": 0.2}
    skipped = {"query": "sleepy violin", "control": False, "applies": False}
    summary = bench.summarise([{**row, "first_rr": 0.5, "base_rate": 0.1}])
    run = {"encoders": {"audio": "pitch-cnn", "text": "wordllama-text"}, "score": "elk", "oov": summary,
           "control": bench.summarise([]), "per_query": [row, skipped]}
    result = {"target": "image", "split": "test", "data": "d", "n_queries": 2, "n_control": 0, "k": 10,
              "queries_file": "oov_queries.json", "labels": ["pre"], "runs": [run],
              "oov_words_in_train_captions": {"violin": []}}
    text = bench.markdown(result)
    assert "| pre | pitch-cnn / wordllama-text | elk | 0.200 | 0.100 | 0.500 | 0.750 | - | - | - |" in text
    assert "| violin | 3 | 0.75 / 0.20 |" in text and "| sleepy violin | - | n/a |" in text
    assert text.rstrip().endswith("none.")


def test_step_benchmark_quick_writes_json(tmp_path):
    """benchmarks/pretrained_step.py --quick end to end (no timing asserts)."""
    import json
    import os
    import subprocess

    pytest.importorskip("vmfmir_pretrained", reason="install plugins/vmfmir-pretrained (make install)")
    out = tmp_path / "step.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "pretrained_step.py"), "--quick", "--threads", "1", "--out", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["benchmark"] == "pretrained_step" and data["quick"] is True and data["batch"] == 8
    pre, base = data["models"]["pretrained"], data["models"]["built-in"]
    assert {m: e["id"] for m, e in pre["encoders"].items()} == {"audio": "pitch-cnn", "image": "score-cnn",
                                                                 "text": "wordllama-text"}
    assert base["encoders"]["audio"]["id"] == "mel-cnn" and base["encoders"]["audio"]["frozen_parameters"] == 0
    assert pre["encoders"]["text"]["frozen_parameters"] == 32000 * 256
    assert pre["step_s"] > 0 and base["step_s"] > 0 and "pretrained / built-in step" in proc.stdout
    assert pre["encoders"]["audio"]["cached_ms_per_item"] > 0  # pitch-cnn has a feature cache ...
    assert base["encoders"]["audio"]["cached_ms_per_item"] is None  # ... mel-cnn does not


def test_warm_features_fills_the_cache_that_training_reads(tiny_dataset, tmp_path, monkeypatch):
    """benchmarks/warm_features.py: a first pass computes every item, a second only reads."""
    pytest.importorskip("vmfmir_pretrained", reason="install plugins/vmfmir-pretrained (make install)")
    from benchmarks import warm_features
    from vmfmir_cli.encoders.feature_cache import ENV

    monkeypatch.setenv(ENV, str(tmp_path / "cache"))
    first = warm_features.main(["--data", str(tiny_dataset), "--shard", "0", "--shards", "2"])
    assert first["encoder"] == "pitch-cnn" and first["items"] > 0 and first["computed"] == first["items"]
    again = warm_features.main(["--data", str(tiny_dataset), "--shard", "0", "--shards", "2"])
    assert (again["computed"], again["read"]) == (0, first["items"])
    other = warm_features.main(["--data", str(tiny_dataset), "--shard", "1", "--shards", "2"])
    assert other["computed"] == other["items"]  # the other half was not touched
