"""benchmarks/reproduce.py without training: settings TOML, score selection on val, aggregation, report."""

from __future__ import annotations

import importlib.util
import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rep():
    spec = importlib.util.spec_from_file_location("vmfmir_reproduce", ROOT / "benchmarks" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["vmfmir_reproduce"] = module
    spec.loader.exec_module(module)
    return module


KINDS = ("elk", "kl", "bhattacharyya", "expected_cosine", "cosine")
DIRS = ("audio->image", "image->audio")


def doc(mrr: float, r1: float = 0.5, mr: float = 2.0) -> dict:
    m = {"mrr": mrr, "r1": r1, "r5": 1.0, "r10": 1.0, "mr": mr, "n_queries": 10}
    unc = {"audio": {"spearman": 0.1, "kappa_deciles": [{"r1": 0.0}, {"r1": 1.0}]}}
    return {"directions": {d: dict(m) for d in DIRS}, "uncertainty": unc}


def fake_study():
    runs, val, test = {}, {}, {}
    for seed in (0, 1):
        for loss, base in (("proposed", 0.5), ("baseline", 0.4), ("infonce", 0.3)):
            name = f"{loss}-seed{seed}"
            runs[name] = {"name": name, "loss": loss, "seed": seed, "seconds": 1.0}
            # on val, kl is best for the probabilistic runs; elk is best on test (must not matter)
            val[name] = {k: doc(base + (0.1 if k == "kl" else 0.0)) for k in KINDS}
            test[name] = {k: doc(base + seed * 0.1 + (0.3 if k == "elk" else 0.0), mr=3.0 - seed) for k in KINDS}
    return runs, val, test


def test_settings_toml_is_what_vmfmir_train_reads(rep, tmp_path):
    from vmfmir_cli.training.config import load_config

    path = tmp_path / "reproduce.toml"
    path.write_text(rep.to_toml(rep.SETTINGS))
    cfg = load_config(path, overrides={"loss": "baseline", "seed": 2})
    for key, value in rep.SETTINGS.items():
        if key != "encoders":
            assert getattr(cfg, key) == value, key
    assert cfg.encoders["audio"]["channels"] == rep.SETTINGS["encoders"]["audio"]["channels"]
    assert cfg.loss == "baseline" and cfg.seed == 2
    quick = rep.merge_settings(rep.SETTINGS, rep.QUICK_SETTINGS)
    assert quick["encoders"]["audio"]["id"] == "mel-cnn" and quick["dim"] == rep.QUICK_SETTINGS["dim"]
    assert rep.SETTINGS["dim"] != quick["dim"]  # merge does not touch the shared settings


def test_score_is_selected_on_val_and_test_is_aggregated(rep):
    runs, val, test = fake_study()
    score, table = rep.select_score(val, runs)
    assert score == "kl"  # best on val, although elk is best on test
    assert table["kl"]["per_loss"]["proposed"] == pytest.approx(0.6)
    score_of = {"proposed": score, "baseline": score, "infonce": "cosine"}
    agg = rep.aggregate(test, runs, score_of)
    prop = agg["proposed"]["directions"]["audio->image"]["mrr"]
    assert prop["values"] == pytest.approx([0.5, 0.6]) and prop["mean"] == pytest.approx(0.55)
    assert prop["std"] == pytest.approx(statistics.stdev([0.5, 0.6]))
    assert agg["infonce"]["score"] == "cosine"
    assert agg["proposed"]["directions"]["mean"]["mr"]["values"] == [3.0, 2.0]
    paired = rep.paired_comparison(test, runs, score)
    row = paired["directions"]["audio->image"]["mrr"]
    assert row["mean"] == pytest.approx(0.1) and row["seeds_a_better"] == 2
    assert paired["directions_a_better"]["mrr"] == 2 and paired["directions_a_better"]["mr"] == 0  # MR tied


def test_markdown_report(rep):
    runs, val, test = fake_study()
    score, table = rep.select_score(val, runs)
    agg = rep.aggregate(test, runs, {"proposed": score, "baseline": score, "infonce": "cosine"})
    report = {
        "command": "python benchmarks/reproduce.py",
        "seconds": 120.0,
        "setup": {
            "pieces": 4, "epochs": 1, "seeds": [0, 1], "items": {"train": 4, "val": 2, "test": 2},
            "config_file": "runs/reproduce/reproduce.toml", "settings": rep.SETTINGS,
            "machine": {"cpu_count": 2, "torch_threads": 2, "load_average_at_start": [0.1, 0.1, 0.1]},
        },
        "score": score,
        "score_selection": table,
        "runs": runs,
        "test": agg,
        "paired": rep.paired_comparison(test, runs, score),
    }
    md = rep.markdown(report)
    assert "| audio->image | MRR | 0.550 ± 0.071 | 0.450 ± 0.071 | 0.350 ± 0.071 | +0.100 ± 0.000 (2/2) |" in md
    assert "| kl (chosen) |" in md and "Proposed beats Baseline" in md
    assert "`python benchmarks/reproduce.py` — 2.0 min" in md
