"""Retrieval metrics: ranks from a score matrix, MRR, R@k, median rank, Spearman correlation.

Conventions
-----------
* Higher score = better match. Ranks are 1-based.
* Ties count against the query: rank = 1 + number of candidates that are *not* relevant and
  score >= the best relevant candidate's score. A constant scorer therefore gets the worst rank,
  never a lucky first place.
* With several relevant candidates (bool mask), the rank is that of the best-ranked relevant one;
  the other relevant candidates never push it down.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = [
    "ranks_from_scores",
    "mrr",
    "recall_at_k",
    "median_rank",
    "summarize",
    "spearman",
    "average_ranks",
]

_CHUNK_ELEMENTS = 1 << 24


def ranks_from_scores(scores: torch.Tensor, relevant: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """1-based rank of the best relevant candidate of each query.

    Args:
        scores: ``(Q, N)`` similarity scores, higher is better. NaN is not allowed.
        relevant: ``(Q,)`` integer tensor with the index of each query's relevant candidate, or a
            ``(Q, N)`` bool mask with at least one ``True`` per row (several relevant candidates).
        chunk_size: queries processed at once (default: about 16M score entries per chunk), so
            that only ``(chunk, N)`` temporaries are allocated.

    Returns:
        ``(Q,)`` int64 ranks: ``1 + #{j not relevant : scores[q, j] >= max_{r relevant} scores[q, r]}``.

    Raises:
        ValueError: on bad shapes, out-of-range indices, rows without a relevant candidate, NaN.
    """
    if not torch.is_tensor(scores) or scores.ndim != 2:
        raise ValueError(f"scores must be a (Q, N) tensor, got {getattr(scores, 'shape', type(scores).__name__)}")
    q, n = scores.shape
    if not torch.is_tensor(relevant):
        relevant = torch.as_tensor(relevant, device=scores.device)
    relevant = relevant.to(scores.device)
    if relevant.dtype == torch.bool:
        if relevant.shape != scores.shape:
            raise ValueError(f"a bool relevance mask must have the shape of scores {tuple(scores.shape)}, got {tuple(relevant.shape)}")
        empty = ~relevant.any(dim=1)
        if bool(empty.any()):
            rows = torch.nonzero(empty).flatten()[:5].tolist()
            raise ValueError(f"every query needs at least one relevant candidate; rows without one: {rows}...")
    else:
        if relevant.dtype.is_floating_point or relevant.dtype.is_complex:
            raise ValueError(f"relevant must be an integer index tensor (Q,) or a bool mask (Q, N), got {relevant.dtype}")
        if relevant.shape != (q,):
            raise ValueError(f"relevant indices must have shape ({q},), got {tuple(relevant.shape)}")
        relevant = relevant.long()
        if q and (bool((relevant < 0).any()) or bool((relevant >= n).any())):
            raise ValueError(f"relevant indices must lie in [0, {n}), got range [{int(relevant.min())}, {int(relevant.max())}]")
    if bool(torch.isnan(scores).any()):
        raise ValueError("scores contain NaN; ranks would be meaningless")
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // max(n, 1))
    ranks = torch.empty(q, dtype=torch.long, device=scores.device)
    for start in range(0, q, chunk_size):
        stop = min(q, start + chunk_size)
        s = scores[start:stop]
        if relevant.dtype == torch.bool:
            mask = relevant[start:stop]
            best = s.masked_fill(~mask, -math.inf).amax(dim=1, keepdim=True)
            ahead = ((s >= best) & ~mask).sum(dim=1)
        else:
            idx = relevant[start:stop, None]
            best = s.gather(1, idx)
            # the relevant candidate itself always satisfies s >= best; remove it from the count
            ahead = (s >= best).sum(dim=1) - 1
        ranks[start:stop] = 1 + ahead
    return ranks


def _as_ranks(ranks) -> torch.Tensor:
    r = torch.as_tensor(ranks)
    if r.ndim != 1 or r.numel() == 0:
        raise ValueError(f"ranks must be a non-empty 1-D tensor, got shape {tuple(r.shape)}")
    if bool((r < 1).any()):
        raise ValueError("ranks are 1-based and must be >= 1")
    return r.to(torch.float64)


def mrr(ranks) -> float:
    """Mean reciprocal rank: mean over queries of 1 / rank."""
    return float(_as_ranks(ranks).reciprocal().mean())


def recall_at_k(ranks, k: int) -> float:
    """R@k: fraction of queries whose rank is <= k."""
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return float((_as_ranks(ranks) <= k).to(torch.float64).mean())


def median_rank(ranks) -> float:
    """MR: median rank (mean of the two middle ranks when the number of queries is even)."""
    r = torch.sort(_as_ranks(ranks)).values
    n = r.numel()
    return float(r[n // 2]) if n % 2 else float(0.5 * (r[n // 2 - 1] + r[n // 2]))


def summarize(ranks, ks: Sequence[int] = (1, 5, 10)) -> dict:
    """``{"mrr", "r1", "r5", "r10" (one "r<k>" per k), "mr", "n_queries"}`` from 1-based ranks."""
    r = _as_ranks(ranks)
    out = {"mrr": mrr(r)}
    for k in ks:
        out[f"r{int(k)}"] = recall_at_k(r, k)
    out["mr"] = median_rank(r)
    out["n_queries"] = int(r.numel())
    return out


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks of a 1-D tensor with ties given their average rank (float64)."""
    x = torch.as_tensor(x).flatten()
    if x.dtype == torch.bool:
        x = x.to(torch.float64)
    n = x.numel()
    sorted_x, order = torch.sort(x, stable=True)
    _, counts = torch.unique_consecutive(sorted_x, return_counts=True)
    ends = torch.cumsum(counts, 0).to(torch.float64)  # 1-based position of each group's last member
    group_rank = ends - (counts.to(torch.float64) - 1) / 2
    ranks = torch.empty(n, dtype=torch.float64, device=x.device)
    ranks[order] = torch.repeat_interleave(group_rank, counts)
    return ranks


def spearman(x, y) -> float:
    """Spearman rank correlation (Pearson correlation of average ranks; ties get the mean rank).

    Returns NaN when either input is constant (as scipy.stats.spearmanr does).
    """
    x = torch.as_tensor(x).flatten()
    y = torch.as_tensor(y).flatten()
    if x.numel() != y.numel():
        raise ValueError(f"x and y must have the same number of elements, got {x.numel()} and {y.numel()}")
    if x.numel() < 2:
        raise ValueError("spearman needs at least two observations")
    if bool(torch.isnan(x.to(torch.float64)).any()) or bool(torch.isnan(y.to(torch.float64)).any()):
        raise ValueError("spearman: inputs contain NaN")
    rx = average_ranks(x)
    ry = average_ranks(y.to(x.device))
    rx = rx - rx.mean()
    ry = ry - ry.mean()
    denom = torch.sqrt((rx * rx).sum() * (ry * ry).sum())
    if float(denom) == 0.0:
        return float("nan")
    return float((rx * ry).sum() / denom)
