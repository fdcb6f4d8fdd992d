"""Retrieval metrics: hand-computed ranks (ties, several relevant items), summaries, Spearman."""

import math

import numpy as np
import pytest
import scipy.stats
import torch

from vmfmir_cli.engine.metrics import (
    average_ranks,
    median_rank,
    mrr,
    ranks_from_scores,
    recall_at_k,
    spearman,
    summarize,
)


def test_ranks_with_index_targets_and_ties_against_the_query():
    scores = torch.tensor(
        [
            [0.9, 0.1, 0.5, 0.3],  # true 0: best -> 1
            [0.2, 0.8, 0.8, 0.1],  # true 1, tied with 2 -> ties count against: 2
            [0.4, 0.4, 0.4, 0.4],  # constant scorer -> worst rank 4
            [0.0, 0.7, 0.6, 0.9],  # true 2 below 1 and 3 -> 3
        ]
    )
    ranks = ranks_from_scores(scores, torch.tensor([0, 1, 3, 2]))
    assert ranks.tolist() == [1, 2, 4, 3]
    assert ranks.dtype == torch.long


def test_ranks_with_several_relevant_items():
    scores = torch.tensor(
        [
            [0.9, 0.95, 0.1, 0.5],  # relevant {0, 2}: best relevant 0.9, one other above -> 2
            [0.3, 0.3, 0.3, 0.0],  # relevant {0, 1}, tie with non-relevant 2 -> 2
            [0.5, 0.6, 0.7, 0.8],  # relevant {1, 2, 3}: other relevant items never push down -> 1
            [0.5, 0.6, 0.7, 0.8],  # relevant {0}: all three others ahead -> 4
        ]
    )
    mask = torch.tensor(
        [
            [True, False, True, False],
            [True, True, False, False],
            [False, True, True, True],
            [True, False, False, False],
        ]
    )
    assert ranks_from_scores(scores, mask).tolist() == [2, 2, 1, 4]
    # a one-hot mask agrees with index targets
    idx = torch.tensor([1, 0, 3, 2])
    onehot = torch.nn.functional.one_hot(idx, 4).bool()
    assert torch.equal(ranks_from_scores(scores, onehot), ranks_from_scores(scores, idx))


def test_chunked_matches_unchunked_and_bruteforce():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 20, (53, 200), generator=gen).float()  # many ties
    idx = torch.randint(0, 200, (53,), generator=gen)
    ranks = ranks_from_scores(scores, idx)
    assert torch.equal(ranks, ranks_from_scores(scores, idx, chunk_size=7))
    brute = [1 + sum(1 for j in range(200) if j != idx[q] and scores[q, j] >= scores[q, idx[q]]) for q in range(53)]
    assert ranks.tolist() == brute
    mask = torch.rand(53, 200, generator=gen) < 0.05
    mask[torch.arange(53), idx] = True
    assert torch.equal(ranks_from_scores(scores, mask), ranks_from_scores(scores, mask, chunk_size=5))


def test_rank_input_validation():
    scores = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="at least one relevant"):
        ranks_from_scores(scores, torch.tensor([[True, False, False], [False, False, False]]))
    with pytest.raises(ValueError, match=r"lie in \[0, 3\)"):
        ranks_from_scores(scores, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="shape"):
        ranks_from_scores(scores, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="NaN"):
        ranks_from_scores(torch.tensor([[0.0, float("nan")]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="integer"):
        ranks_from_scores(scores, torch.tensor([0.0, 1.0]))


def test_summary_metrics_by_hand():
    ranks = torch.tensor([1, 2, 3, 10, 11, 1])
    assert mrr(ranks) == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 10 + 1 / 11 + 1) / 6)
    assert recall_at_k(ranks, 1) == pytest.approx(2 / 6)
    assert recall_at_k(ranks, 5) == pytest.approx(4 / 6)
    assert recall_at_k(ranks, 10) == pytest.approx(5 / 6)
    assert median_rank(ranks) == 2.5
    assert median_rank(torch.tensor([4, 1, 9])) == 4.0
    summary = summarize(ranks)
    assert set(summary) == {"mrr", "r1", "r5", "r10", "mr", "n_queries"}
    assert summary["n_queries"] == 6 and summary["mr"] == 2.5
    assert set(summarize(ranks, ks=(1, 50))) == {"mrr", "r1", "r50", "mr", "n_queries"}
    with pytest.raises(ValueError):
        recall_at_k(ranks, 0)
    with pytest.raises(ValueError):
        mrr(torch.tensor([0, 1]))


def test_spearman_against_scipy_with_ties():
    rng = np.random.default_rng(0)
    for trial in range(10):
        n = int(rng.integers(3, 300))
        x = rng.integers(0, 6, n) if trial % 2 else rng.normal(size=n)
        y = rng.integers(0, 4, n).astype(float) + (0 if trial % 3 else rng.normal(size=n))
        ref = scipy.stats.spearmanr(x, y).statistic
        assert spearman(torch.tensor(x), torch.tensor(y)) == pytest.approx(ref, abs=1e-12)
    np.testing.assert_allclose(average_ranks(torch.tensor([3.0, 1.0, 3.0, 2.0, 3.0])).numpy(), scipy.stats.rankdata([3, 1, 3, 2, 3]))
    assert math.isnan(spearman(torch.ones(5), torch.arange(5.0)))
    assert spearman(torch.arange(10.0), torch.arange(10.0).exp()) == pytest.approx(1.0)
