"""benchmarks/kappa_probe.py: the ridge probe, its cross-validation, and the eval's pooling."""

from __future__ import annotations

import pytest
import torch

from benchmarks import kappa_probe


def test_ridge_recovers_a_linear_signal_and_shrinks_noise():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(600, 10, generator=gen, dtype=torch.float64) * 3 + 1
    w = torch.randn(10, generator=gen, dtype=torch.float64)
    groups = torch.arange(600) // 3  # three rows per "media", like the views of one query
    y = x @ w + 0.01 * torch.randn(600, generator=gen, dtype=torch.float64)
    alpha = kappa_probe.choose_alpha(x, y, groups)
    assert alpha <= 1.0
    pred = kappa_probe.Ridge(alpha).fit(x[:400], y[:400]).predict(x[400:])
    assert torch.corrcoef(torch.stack([pred, y[400:]]))[0, 1] > 0.999
    noise = torch.randn(600, generator=gen, dtype=torch.float64)
    assert kappa_probe.choose_alpha(x, noise, groups) >= 100.0  # nothing to learn: shrink


def test_kappa_and_queries_pool_like_the_eval(tiny_dataset, tmp_path, make_untrained_run, one_thread):
    from vmfmir_cli.evaluation.evaluate import EvalOptions, evaluate_loaded, load_and_encode

    run = make_untrained_run(tmp_path / "run", tiny_dataset)
    result = kappa_probe.measure(str(run), str(tiny_dataset), fit_split="all", score_split="all")
    options = EvalOptions(run=str(run), data=str(tiny_dataset), split="all", ambiguity=True)
    audio = evaluate_loaded(load_and_encode(options), options, score="expected_cosine").to_json()["ambiguity"]["audio"]
    assert result["n_queries"]["all"] == sum(row["n_queries"] for row in audio["views"])
    assert result["hits"]["all"] == round(sum(row["r1"] * row["n_queries"] for row in audio["views"]))
    assert result["auroc"]["kappa"] == pytest.approx(audio["r_auroc"])
    assert result["auroc"]["fraction"] == pytest.approx(audio["r_auroc_level"])
    for key in ("fraction", "probe_kappa_fraction", "probe_mu", "margin", "top_score"):
        assert 0.0 <= result["auroc"][key] <= 1.0
    assert set(result["alpha"].values()) <= set(kappa_probe.ALPHAS)
    within = result["within_collection"]
    assert set(within) == {"image", "text"}  # the tiny benchmark's captions state a collection
    for row in within.values():
        assert 0 < row["n_queries"] <= result["n_queries"]["all"]
        for key in ("base_rate", "r1_in_collection_random"):  # a counted query has a match in its collection
            assert 0.0 < row[key] <= 1.0
        assert 0.0 <= row["top10_same_collection"] <= 1.0 and 0.0 <= row["r1_in_collection"] <= 1.0


def test_sample_items_is_seeded_ordered_and_all_when_asked_for_more():
    items = list(range(50))
    pick = kappa_probe.sample_items(10)(items)
    assert len(pick) == 10 and pick == sorted(pick) and len(set(pick)) == 10
    assert pick == kappa_probe.sample_items(10)(items)  # the same draw every time
    assert pick != kappa_probe.sample_items(10, seed=1)(items)
    assert kappa_probe.sample_items(None)(items) == items
    assert kappa_probe.sample_items(80)(items) == items


def test_score_items_scores_a_sample_of_the_split(tiny_dataset, tmp_path, make_untrained_run, one_thread):
    from vmfmir_cli.evaluation.evaluate import EvalOptions, load_and_encode
    from vmfmir_cli.evaluation.graded import view_queries

    run = make_untrained_run(tmp_path / "run", tiny_dataset)
    options = EvalOptions(run=str(run), data=str(tiny_dataset), split="all", ambiguity=True)
    full = load_and_encode(options)
    n = len(full.items) // 2
    half = load_and_encode(options, select=kappa_probe.sample_items(n))
    assert [it.id for it in half.items] == [it.id for it in kappa_probe.sample_items(n)(full.items)]
    result = kappa_probe.measure(str(run), str(tiny_dataset), fit_split="all", score_split="all", score_items=n)
    assert result["score_items"] == n
    pooled = view_queries(half.items, half.embeddings, half.graded.views["audio"], "audio", "expected_cosine")
    expected = sum(len(vq.keys) for vq in pooled)
    assert 0 < expected < sum(len(vq.keys) for vq in view_queries(
        full.items, full.embeddings, full.graded.views["audio"], "audio", "expected_cosine"))
    assert result["n_queries"]["all"] == expected
