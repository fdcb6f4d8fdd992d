"""benchmarks/level_oracle.py: the view oracle from the per-view R@1 equals the AUROC of the level."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import level_oracle
from vmfmir_cli.evaluation.ambiguity import roc_auc


def test_level_auroc_equals_the_mann_whitney_auroc_of_the_tied_levels():
    gen = torch.Generator().manual_seed(0)
    levels = torch.tensor([0.25] * 300 + [0.5] * 300 + [1.0] * 300, dtype=torch.float64)
    rates = {0.25: 0.02, 0.5: 0.05, 1.0: 0.12}
    hits = torch.rand(900, generator=gen, dtype=torch.float64) < torch.tensor([rates[float(x)] for x in levels])
    rows = [(300, float(hits[levels == f].double().mean())) for f in (0.25, 0.5, 1.0)]
    assert level_oracle.level_auroc(rows) == pytest.approx(roc_auc(levels, hits))
    # the worked numbers of the README: R@1 of 2 / 4 / 8% give 0.650, 2 / 2.83 / 4% give 0.578
    assert level_oracle.level_auroc([(800, 0.02), (800, 0.04), (800, 0.08)]) == pytest.approx(0.650, abs=0.002)
    assert level_oracle.level_auroc([(800, 0.02), (800, 0.0283), (800, 0.04)]) == pytest.approx(0.578, abs=0.002)
    assert level_oracle.level_auroc([(10, 0.0), (10, 0.0)]) is None


def test_the_oracle_of_an_eval_document_is_its_r_auroc_level(tiny_dataset, tmp_path, make_untrained_run, one_thread, capsys):
    from vmfmir_cli.evaluation.evaluate import EvalOptions, evaluate_loaded, load_and_encode

    run = make_untrained_run(tmp_path / "run", tiny_dataset)
    options = EvalOptions(run=str(run), data=str(tiny_dataset), split="all", ambiguity=True)
    doc = evaluate_loaded(load_and_encode(options), options, score="expected_cosine").to_json()
    saved = tmp_path / "ambiguity-x.json"
    saved.write_text(json.dumps({"evals": {"x-proposed-s0": doc}}))
    (row,) = level_oracle.main([str(saved)])
    for m in ("audio", "image", "text"):
        assert row[m]["oracle"] == pytest.approx(doc["ambiguity"][m]["r_auroc_level"])
        assert row[m]["kappa"] == doc["ambiguity"][m]["r_auroc"]
    level_oracle.main([str(saved), "--markdown"])
    assert "| x-proposed-s0 |" in capsys.readouterr().out
