"""Statistics of the reproduction: mean +- std over seeds, bootstrap intervals over seeds and queries.

Pure torch, no file I/O, so every number can be recomputed from the per-query ranks a study saves.

**The crossed bootstrap** (:func:`bootstrap`). Every run of every loss is evaluated on the same
test queries, so seeds and queries are crossed factors. One replicate draws ``S`` seed indices with
replacement and, for every group of queries (a direction, or the caption queries of one level),
``Q_g`` query indices with replacement, shared by all drawn seeds; or, with ``clusters`` (the
study's default: the piece of each query), ``P`` pieces with replacement, shared by every group and
seed, each bringing all its queries (the queries of one piece are not independent: its two
performances share the score image, and a hard piece is hard in every direction). A metric is computed per seed and
group on the drawn queries, averaged over the groups (so "overall" is the mean over directions, as
in the tables), then over the drawn seeds. For a *paired* difference the two losses are evaluated on
the same draws: the same seed index (seed ``s`` of A against seed ``s`` of B) and the same queries.
The interval is the percentile interval of ``replicates`` replicates (2,000 by default, seeded, so it
is deterministic). A difference is a **win** only when the interval lies entirely on the good side
of 0 (above for MRR and R@k, below for the median rank MR), a **loss** when it lies entirely on the
bad side, and **none** (no significant difference) otherwise.

:func:`seed_bootstrap` is the same over seeds alone, for numbers that exist once per run (a
Spearman correlation, an AUROC): the interval of the mean over resampled seeds, compared with a
null value (0 for a difference, 0.5 for an AUROC).
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Optional, Sequence

import torch

from vmfmir_cli.engine.metrics import median_rank, mrr, recall_at_k

#: the metrics the study compares (R@k for any k is accepted as "r<k>")
METRICS = ("mrr", "r1", "r10", "mr")
METRIC_LABELS = {"mrr": "MRR", "r1": "R@1", "r5": "R@5", "r10": "R@10", "mr": "MR"}
LOWER_IS_BETTER = frozenset({"mr"})
VERDICTS = ("win", "none", "loss")
DEFAULT_REPLICATES = 2000
DEFAULT_LEVEL = 0.95

#: ``[seed][group]`` -> 1-based ranks of the group's queries
Ranks = Sequence[Sequence[torch.Tensor]]


def _recall_k(metric: str) -> Optional[int]:
    if metric.startswith("r") and metric[1:].isdigit():
        return int(metric[1:])
    return None


def _check_metric(metric: str) -> None:
    if metric not in ("mrr", "mr") and _recall_k(metric) is None:
        raise ValueError(f"unknown metric {metric!r}; use mrr, mr or r<k> (e.g. r1, r10)")


def metric_value(ranks: torch.Tensor, metric: str) -> float:
    """MRR, R@k or MR of 1-based ranks (the definitions of :mod:`vmfmir_cli.engine.metrics`)."""
    _check_metric(metric)
    if metric == "mrr":
        return mrr(ranks)
    if metric == "mr":
        return median_rank(ranks)
    return recall_at_k(ranks, _recall_k(metric))


def _counts(idx: torch.Tensor, n: int) -> torch.Tensor:
    """``(n, B)`` float64: how often each of ``n`` queries is drawn in each replicate (from indices ``(B, n)``)."""
    counts = torch.zeros((idx.shape[0], n), dtype=torch.float64)
    counts.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
    return counts.T.contiguous()


def _replicate_values(ranks: torch.Tensor, counts: torch.Tensor, metric: str) -> torch.Tensor:
    """The metric of every replicate ``(B,)``: ranks ``(Q,)`` drawn ``counts[q, b]`` times in replicate b.

    The same numbers as computing the metric on the drawn ranks themselves, without materialising
    them: a mean is a vector-matrix product over the number drawn; the median is read off the
    cumulative counts of the sorted ranks (the mean of the two middle draws for an even number).
    A replicate that draws none of the queries is NaN.
    """
    r = torch.as_tensor(ranks).to(torch.float64)
    n = r.numel()
    total = counts.sum(dim=0)  # (B,): queries drawn per replicate (n when queries are drawn one by one)
    if metric == "mr":
        order = torch.argsort(r)
        cum = counts[order].cumsum_(dim=0)  # (Q, B): drawn queries with a rank <= the j-th smallest
        lower = (cum <= torch.div(total - 1, 2, rounding_mode="floor")).sum(dim=0).clamp_max(n - 1)
        upper = (cum <= torch.div(total, 2, rounding_mode="floor")).sum(dim=0).clamp_max(n - 1)
        sorted_r = r[order]
        out = 0.5 * (sorted_r[lower] + sorted_r[upper])
    else:
        values = r.reciprocal() if metric == "mrr" else (r <= _recall_k(metric)).to(torch.float64)
        out = values @ counts / total.clamp_min(1)
    return out.masked_fill(total == 0, float("nan"))


def verdict(low: float, high: float, null: float = 0.0, lower_is_better: bool = False) -> str:
    """``win`` / ``loss`` when the interval [low, high] excludes ``null`` on the good / bad side, else ``none``."""
    if low > null:
        return "loss" if lower_is_better else "win"
    if high < null:
        return "win" if lower_is_better else "loss"
    return "none"


def _interval(reps: torch.Tensor, level: float) -> tuple[float, float]:
    alpha = (1.0 - level) / 2.0
    q = torch.nanquantile(reps.to(torch.float64), torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64))
    return float(q[0]), float(q[1])


def _shape(ranks: Ranks, name: str) -> list[int]:
    if not ranks or not ranks[0]:
        raise ValueError(f"{name}: need at least one seed and one group of queries")
    sizes = [int(torch.as_tensor(r).numel()) for r in ranks[0]]
    for s, groups in enumerate(ranks):
        got = [int(torch.as_tensor(r).numel()) for r in groups]
        if got != sizes:
            raise ValueError(f"{name}: seed {s} has query counts {got}, seed 0 {sizes} (the same queries are needed)")
    if min(sizes) < 1:
        raise ValueError(f"{name}: a group has no query")
    return sizes


def bootstrap(
    a: Ranks,
    b: Optional[Ranks] = None,
    metric: str = "mrr",
    replicates: int = DEFAULT_REPLICATES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    clusters: Optional[Sequence[torch.Tensor]] = None,
) -> dict[str, Any]:
    """The crossed seeds x queries bootstrap of ``metric`` of A, or of A - B paired (module docstring).

    Args:
        a, b: ``[seed][group]`` 1-based ranks; B (optional) must have the same seeds, groups and query
            counts as A (seed ``s`` of A is paired with seed ``s`` of B, query ``q`` with query ``q``).
        metric: ``mrr``, ``mr`` or ``r<k>``.
        clusters: per group, the cluster id (``0 .. P-1``, e.g. the piece) of every query. Given, a
            replicate draws P clusters with replacement, once for every group and seed, and takes
            every query of each drawn cluster: queries of one piece (its two performances, its
            captions, the directions it appears in) are resampled together. None: queries are
            drawn one by one, independently per group.

    Returns:
        ``{"metric", "estimate", "low", "high", "level", "replicates", "seed", "n_seeds",
        "n_queries", "lower_is_better", "verdict"}``; the estimate is the mean over seeds of the
        mean over groups (of A - B when B is given); ``verdict`` compares the interval with 0 (only
        meaningful for a difference).
    """
    _check_metric(metric)
    sizes = _shape(a, "a")
    if b is not None:
        if len(b) != len(a) or _shape(b, "b") != sizes:
            raise ValueError("a and b must have the same seeds, groups and queries to be paired")
    if replicates < 1:
        raise ValueError(f"replicates must be at least 1, got {replicates}")
    n_seeds = len(a)

    def point(s: int) -> float:
        vals = [metric_value(r, metric) for r in a[s]]
        if b is not None:
            vals = [v - metric_value(r, metric) for v, r in zip(vals, b[s])]
        return statistics.fmean(vals)

    estimate = statistics.fmean(point(s) for s in range(n_seeds))
    gen = torch.Generator().manual_seed(int(seed))
    seed_idx = torch.randint(n_seeds, (replicates, n_seeds), generator=gen)
    if clusters is None:
        counts = [_counts(torch.randint(q, (replicates, q), generator=gen), q) for q in sizes]
    else:
        ids = [torch.as_tensor(c, dtype=torch.long) for c in clusters]
        if [int(c.numel()) for c in ids] != sizes:
            raise ValueError(f"clusters must give one id per query of each group ({sizes}), got {[c.numel() for c in ids]}")
        n_clusters = int(max(int(c.max()) for c in ids)) + 1
        drawn = _counts(torch.randint(n_clusters, (replicates, n_clusters), generator=gen), n_clusters)  # (P, B)
        counts = [drawn[c] for c in ids]
    per_seed = torch.zeros((n_seeds, replicates), dtype=torch.float64)  # mean over groups, per seed
    for s in range(n_seeds):
        for g, w in enumerate(counts):
            v = _replicate_values(a[s][g], w, metric)
            if b is not None:
                v = v - _replicate_values(b[s][g], w, metric)
            per_seed[s] += v / len(sizes)
    reps = per_seed.gather(0, seed_idx.T).mean(dim=0)  # NaN where a replicate drew none of a group's queries
    low, high = _interval(reps, level)
    lower = metric in LOWER_IS_BETTER
    return {
        "metric": metric,
        "estimate": estimate,
        "low": low,
        "high": high,
        "level": level,
        "replicates": replicates,
        "seed": seed,
        "n_seeds": n_seeds,
        "n_queries": sizes,
        "resampled": "queries" if clusters is None else "clusters",
        "lower_is_better": lower,
        "verdict": verdict(low, high, 0.0, lower),
    }


def seed_bootstrap(
    values: Sequence[Optional[float]],
    null: float = 0.0,
    replicates: int = DEFAULT_REPLICATES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    lower_is_better: bool = False,
) -> Optional[dict[str, Any]]:
    """The interval of the mean over seeds of per-seed ``values`` (resampled with replacement),
    compared with ``null``. ``None`` entries (undefined per seed) are left out; None when none is left.

    For a paired difference pass the per-seed differences (and ``null = 0``).
    """
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None
    x = torch.tensor(vals, dtype=torch.float64)
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.randint(len(vals), (replicates, len(vals)), generator=gen)
    low, high = _interval(x[idx].mean(dim=1), level)
    return {
        "estimate": float(x.mean()),
        "low": low,
        "high": high,
        "null": null,
        "level": level,
        "replicates": replicates,
        "n_seeds": len(vals),
        "verdict": verdict(low, high, null, lower_is_better),
    }


def mean_std(values: Sequence[Optional[float]]) -> dict[str, Any]:
    """``{"mean", "std", "n", "values"}`` over the defined values (sample std; 0 for one value)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return {"mean": None, "std": None, "n": 0, "values": list(values)}
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {"mean": statistics.fmean(vals), "std": std, "n": len(vals), "values": list(values)}


__all__ = [
    "DEFAULT_LEVEL",
    "DEFAULT_REPLICATES",
    "LOWER_IS_BETTER",
    "METRICS",
    "METRIC_LABELS",
    "VERDICTS",
    "bootstrap",
    "mean_std",
    "metric_value",
    "seed_bootstrap",
    "verdict",
]
