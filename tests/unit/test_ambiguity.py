"""The ambiguity section: hand-made embeddings whose kappa is the level, and constant kappa."""

from __future__ import annotations

import itertools

import pytest
import torch

from vmfmir_cli.data.captions import Caption
from vmfmir_cli.data.manifest import Item
from vmfmir_cli.evaluation.ambiguity import (
    crop_kappa_drop,
    level_table,
    rank_correlation,
    reject_curve,
    roc_auc,
    roc_auc_interval,
)
from vmfmir_cli.evaluation.graded import (
    GradedEmbeddings,
    ambiguity_report,
    caption_queries,
    caption_ranks,
    fusion_ranks,
)
from vmfmir_cli.evaluation.retrieval import ModalityEmbeddings

N, D = 4, 8


def _items():
    items = []
    for i in range(N):
        caps = [Caption(f"full {i}", 3, {"id": i}), Caption(f"facts {i}", 2, {"id": i}),
                Caption(f"vague {i % 2}", 1, {"half": i % 2}), Caption("anything", 0, {})]
        items.append(
            Item(id=f"p{i}", group=f"p{i}", split="test", audio=f"/a/{i}.flac", image=f"/i/{i}.png",
                 text=f"full {i}", meta={"id": i, "half": i % 2}, captions=caps)
        )
    return items


def _e(i):
    v = torch.zeros(D, dtype=torch.float64)
    v[i % D] = 1.0
    return v


def _graded(items, constant: bool):
    """Full audio/image embeddings at e_i; text: level-3 captions point at their item, others do not;
    kappa = level + 1 for captions, 10 f for views (or 5 everywhere with ``constant``)."""
    keys_a = [str(it.audio) for it in items]
    keys_i = [str(it.image) for it in items]
    mu = torch.stack([_e(i) for i in range(N)])
    full = {
        "audio": ModalityEmbeddings(keys_a, mu, torch.full((N,), 5.0 if constant else 10.0, dtype=torch.float64)),
        "image": ModalityEmbeddings(keys_i, mu, torch.full((N,), 5.0 if constant else 10.0, dtype=torch.float64)),
    }
    graded = GradedEmbeddings()
    for m, keys in (("audio", keys_a), ("image", keys_i)):
        graded.views[m] = {1.0: full[m]}
        for f in (0.25, 0.5):
            # a partial view of item i points at item i + 1 (a miss) unless f >= 0.5
            vmu = torch.stack([_e(i if f >= 0.5 else i + 1) for i in range(N)])
            k = torch.full((N,), 5.0 if constant else 10.0 * f, dtype=torch.float64)
            graded.views[m][f] = ModalityEmbeddings(list(keys), vmu, k)
    q = caption_queries(items)
    texts = list(dict.fromkeys(q.texts))
    tmu, tk = [], []
    for t in texts:
        level = 3 if t.startswith("full") else 2 if t.startswith("facts") else 1 if t.startswith("vague") else 0
        i = int(t.split()[-1]) if level >= 2 else 0
        tmu.append(_e(i if level == 3 else D - 1))  # D - 1: orthogonal to every item, a miss
        tk.append(5.0 if constant else level + 1.0)
    q.embeddings = ModalityEmbeddings(texts, torch.stack(tmu), torch.tensor(tk, dtype=torch.float64))
    graded.captions = q
    full["text"] = ModalityEmbeddings([it.text for it in items], mu, torch.full((N,), 4.0, dtype=torch.float64))
    return full, graded


def test_kappa_equal_to_the_level_gives_the_hand_computed_values():
    items = _items()
    full, graded = _graded(items, constant=False)
    rep = ambiguity_report(items, full, graded, "cosine")
    text = rep["text"]
    assert text["spearman_kappa_level"] == pytest.approx(1.0)
    # levels 3 and 2 fit 1 item, level 1 fits 2, level 0 all 4; kappa = level + 1
    from scipy.stats import spearmanr

    expect = spearmanr([4, 3, 2, 1] * N, [0, 0, -torch.log(torch.tensor(2.0)).item(), -torch.log(torch.tensor(4.0)).item()] * N)
    assert text["spearman_kappa_compatible"] == pytest.approx(expect.statistic)
    assert [r["level"] for r in text["levels"]] == [0, 1, 2, 3]
    assert [r["n_compatible_median"] for r in text["levels"]] == [4, 2, 1, 1]
    assert [r["kappa_mean"] for r in text["levels"]] == [1.0, 2.0, 3.0, 4.0]
    # exactly the level-3 captions are retrieved at rank 1 (for both targets); they have the highest
    # kappa, so kappa separates hits from misses perfectly
    assert [r["r1"] for r in text["levels"]] == [0.0, 0.0, 0.0, 1.0]
    assert text["r_auroc"] == pytest.approx(1.0)
    assert text["r_auroc_level"] == pytest.approx(1.0)  # the level alone separates them too
    curve = text["reject_curve"]
    n = 4 * N * 2  # 16 captions x 2 targets
    assert curve[0] == {"reject": 0.0, "n_kept": n, "r1": 0.25}
    assert curve[5]["n_kept"] == n // 2 and curve[5]["r1"] == pytest.approx(0.5)  # levels 2 and 3 left
    assert curve[8]["r1"] == pytest.approx(1.0)
    for m in ("audio", "image"):
        sec = rep[m]
        assert sec["spearman_kappa_level"] == pytest.approx(1.0)
        assert sec["crop_kappa_drop"] == 1.0
        assert [r["r1"] for r in sec["views"]] == [0.0, 1.0, 1.0]
        # hits: f = 0.5 (kappa 5) and f = 1 (kappa 10); misses: f = 0.25 (kappa 2.5)
        assert sec["r_auroc"] == pytest.approx(1.0) and sec["r_auroc_ci95"] == pytest.approx([1.0, 1.0])
        assert sec["r_auroc_level"] == pytest.approx(1.0)
    fusion = rep["fusion"]["levels"]
    assert [r["level"] for r in fusion] == [0, 1, 2, 3]
    assert fusion[3]["product_of_experts"]["r1"] == 1.0 and fusion[3]["image_only"]["r1"] == 1.0


def test_constant_kappa_reports_the_uninformative_values():
    items = _items()
    full, graded = _graded(items, constant=True)
    rep = ambiguity_report(items, full, graded, "cosine")
    for m in ("text", "audio", "image"):
        sec = rep[m]
        assert sec["spearman_kappa_level"] == 0.0
        assert sec["r_auroc"] == 0.5 and sec["r_auroc_ci95"] == [0.5, 0.5]
        r1s = {round(p["r1"], 12) for p in sec["reject_curve"]}
        assert len(r1s) == 1  # flat
    assert rep["text"]["spearman_kappa_compatible"] == 0.0
    assert rep["audio"]["crop_kappa_drop"] == 0.5


def test_deterministic_runs_get_no_kappa_numbers():
    items = _items()
    full, graded = _graded(items, constant=False)
    rep = ambiguity_report(items, full, graded, "cosine", use_kappa=False)
    with_kappa = ambiguity_report(items, full, graded, "cosine")
    assert rep["kappa_used"] is False
    for m in ("text", "audio", "image"):
        assert rep[m]["spearman_kappa_level"] is None and rep[m]["r_auroc"] is None
        # the level's own R-AUROC needs no kappa: the same ranks give the same number
        assert rep[m]["r_auroc_level"] == pytest.approx(1.0) == with_kappa[m]["r_auroc_level"]
        assert "mrr" in (rep[m].get("levels") or rep[m]["views"])[0]
        assert "kappa_mean" not in (rep[m].get("levels") or rep[m]["views"])[0]
    assert rep["fusion"]["levels"]


def test_per_query_caption_and_fusion_ranks_are_what_the_section_summarises():
    items = _items()
    full, graded = _graded(items, constant=False)
    q = graded.captions
    rep = ambiguity_report(items, full, graded, "cosine")
    per_target = caption_ranks(items, full, q, "cosine")
    assert [t for t, _, _ in per_target] == rep["text"]["targets"] == ["audio", "image"]
    for _, sel, ranks in per_target:
        assert sel.tolist() == list(range(len(q.texts))) and ranks.shape == (len(q.texts),)
        # the level-3 caption of item i is retrieved first (its own item), every other caption is not
        assert [int(r == 1) for r in ranks] == [int(q.levels[j] == 3) for j in sel.tolist()]
    fused = fusion_ranks(items, full, q, "cosine")
    assert fused["queries"].tolist() == list(range(len(q.texts))) and fused["levels"].tolist() == q.levels
    for row in rep["fusion"]["levels"]:
        sel = fused["levels"] == row["level"]
        for kind in ("product_of_experts", "mean_direction", "image_only"):
            assert row[kind]["mrr"] == pytest.approx(float(fused[kind][sel].double().reciprocal().mean()))


def test_roc_auc_matches_pair_counting():
    g = torch.Generator().manual_seed(0)
    s = torch.randint(0, 5, (40,), generator=g).double()
    y = torch.rand(40, generator=g) < 0.4
    pos, neg = s[y].tolist(), s[~y].tolist()
    expect = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg)) / (len(pos) * len(neg))
    assert roc_auc(s, y) == pytest.approx(expect)
    assert roc_auc(s, torch.ones(40, dtype=torch.bool)) is None


def test_level_table_r_auroc_is_within_each_level():
    levels = [1, 1, 1, 1, 2, 2, 2, 2, 3, 3]
    kappa = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 9.0]
    ranks = [5, 1, 3, 1, 1, 2, 2, 9, 1, 1]
    rows = level_table(levels, kappa, ranks)
    # level 1: hits at kappa 2 and 4, misses at 1 and 3: 3 of the 4 (hit, miss) pairs are ordered
    # level 2: the one hit has the lowest kappa; level 3: no miss, so no AUROC
    assert [r["r_auroc"] for r in rows] == [pytest.approx(0.75), 0.0, None]
    assert roc_auc(kappa, [r <= 1 for r in ranks]) != pytest.approx(0.75)  # the pooled one differs
    assert "r_auroc" not in level_table(levels, None, ranks)[0]


def test_roc_auc_interval_is_a_bootstrap_over_groups():
    g = torch.Generator().manual_seed(1)
    n = 60
    s = torch.randint(0, 8, (n,), generator=g).double()  # ties on purpose
    y = torch.rand(n, generator=g) < 0.3 + 0.05 * s
    groups = torch.arange(n) // 3  # 20 groups of 3 observations
    lo, hi = roc_auc_interval(s, y, groups, resamples=200, seed=5)
    # the same resamples by brute force: repeat each observation by its group's draw count
    draws = torch.randint(20, (200, 20), generator=torch.Generator().manual_seed(5))
    aucs = []
    for row in draws:
        idx = torch.cat([torch.nonzero(groups == int(k)).flatten() for k in row])
        a = roc_auc(s[idx], y[idx])
        if a is not None:
            aucs.append(a)
    expect = torch.quantile(torch.tensor(aucs, dtype=torch.float64), torch.tensor([0.025, 0.975], dtype=torch.float64))
    assert (lo, hi) == pytest.approx(expect.tolist())
    assert lo < roc_auc(s, y) < hi
    # copies of an observation in one group change nothing; as independent groups they narrow the interval
    rep = torch.arange(n).repeat_interleave(6)
    same = roc_auc_interval(s[rep], y[rep], rep, resamples=200, seed=5)
    assert same == pytest.approx(roc_auc_interval(s, y, torch.arange(n), resamples=200, seed=5))
    narrow = roc_auc_interval(s[rep], y[rep], torch.arange(6 * n), resamples=200, seed=5)
    assert narrow[1] - narrow[0] < 0.7 * (same[1] - same[0])
    assert roc_auc_interval(s, torch.zeros(n, dtype=torch.bool), groups) is None


def test_reject_curve_and_crop_drop_by_hand():
    kappa = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    hits = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    curve = reject_curve(kappa, hits)
    assert [p["n_kept"] for p in curve] == [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]
    assert [p["r1"] for p in curve] == pytest.approx([0.5, 5 / 9, 5 / 8, 5 / 7, 5 / 6, 1, 1, 1, 1, 1])
    ties = reject_curve(torch.tensor([1.0, 1.0, 2.0, 2.0]), torch.tensor([1, 0, 1, 1]), fractions=(0.25, 0.5))
    # drop one of the two tied lowest in expectation: kept 2 (both hit) + one of {1, 0} = 2.5 / 3
    assert ties[0]["r1"] == pytest.approx(2.5 / 3) and ties[1]["r1"] == 1.0
    assert crop_kappa_drop([1.0, 5.0, 3.0, 2.0], [2.0, 4.0, 3.0, 9.0]) == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert rank_correlation([1, 1, 1], [1, 2, 3]) == 0.0


def test_kappa_at_bounds_reads_the_run_bounds():
    from vmfmir_cli.evaluation.evaluate import kappa_at_bounds

    config = {"model": {"kappa_min": 1.0, "kappa_max": 1000.0}}
    kappas = {"text": torch.tensor([1.0, 1.04, 5.0, 960.0]), "audio": torch.tensor([2000.0, 500.0])}
    assert kappa_at_bounds(config, kappas) == {"text": 0.75, "audio": 0.5}
    assert kappa_at_bounds({}, kappas) is None
