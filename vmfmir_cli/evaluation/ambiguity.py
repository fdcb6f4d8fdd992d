"""Does kappa track a known ambiguity? The measurements of the ``ambiguity`` section (pure tensor code).

The graded queries (:mod:`.graded`) have an ambiguity whose amount is known: a caption's level
(3 = names the piece ... 0 = says nothing) and how many items of the split it fits
(``n_compatible``), or the fraction of an excerpt / score image a view keeps (0.25, 0.5, 1). If the
concentration kappa is a real uncertainty it rises with the level and the fraction, it is lower
for a quarter of an item than for all of it, and it predicts which queries are retrieved at rank 1.

Every function here reports the *uninformative* value for a constant kappa, so a model whose kappa
carries no information cannot score well by accident: Spearman 0, AUROC 0.5, crop drop 0.5 (ties
count one half), and a flat reject curve (ties at a rejection cut are broken in expectation).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from vmfmir_cli.engine.metrics import spearman

#: the rejection shares of the error-vs-reject curve
REJECT_FRACTIONS = tuple(i / 10 for i in range(10))


def _f64(x) -> torch.Tensor:
    return torch.as_tensor(x).detach().flatten().to(torch.float64)


def rank_correlation(x, y) -> Optional[float]:
    """Spearman correlation of ``x`` and ``y``; 0.0 when either is constant, None with < 2 values."""
    x, y = _f64(x), _f64(y)
    if x.numel() != y.numel():
        raise ValueError(f"x has {x.numel()} entries but y {y.numel()}")
    if x.numel() < 2:
        return None
    if bool((x == x[0]).all()) or bool((y == y[0]).all()):
        return 0.0
    rho = spearman(x, y)
    return None if math.isnan(rho) else float(rho)


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks of ``x`` with ties sharing their average rank."""
    order = torch.argsort(x, stable=True)
    xs = x[order]
    ranks = torch.empty_like(x)
    n = x.numel()
    i = 0
    values = xs.tolist()
    pos = torch.arange(1, n + 1, dtype=torch.float64)
    while i < n:
        j = i
        while j + 1 < n and values[j + 1] == values[i]:
            j += 1
        ranks[order[i : j + 1]] = pos[i : j + 1].mean()
        i = j + 1
    return ranks


def roc_auc(scores, labels) -> Optional[float]:
    """Area under the ROC curve of ``scores`` for the binary ``labels`` (Mann-Whitney, ties = 1/2).

    None when one class is empty.
    """
    s = _f64(scores)
    y = torch.as_tensor(labels).detach().flatten().to(torch.bool)
    if s.numel() != y.numel():
        raise ValueError(f"scores has {s.numel()} entries but labels {y.numel()}")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    r = _average_ranks(s)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


_INTERVAL_CHUNK_ELEMENTS = 1 << 22


def roc_auc_interval(
    scores, labels, groups, level: float = 0.95, resamples: int = 1000, seed: int = 0
) -> Optional[tuple[float, float]]:
    """Percentile interval of :func:`roc_auc` from a bootstrap over ``groups`` (a cluster bootstrap).

    The observations of one group (e.g. one item queried at three view fractions and against two
    targets) are resampled together: they are not independent, and resampling them one by one would
    make the interval too narrow. Each resample draws as many groups as there are, with
    replacement, and weights every observation by its group's count; the weighted AUROC counts
    each (positive, negative) pair by the product of their weights, ties one half. Resamples with
    no positive or no negative are left out. None when ``roc_auc`` is None.
    """
    s = _f64(scores)
    y = torch.as_tensor(labels).detach().flatten().to(torch.bool)
    g = torch.as_tensor(groups).detach().flatten()
    if not (s.numel() == y.numel() == g.numel()):
        raise ValueError(f"scores, labels and groups have {s.numel()}, {y.numel()} and {g.numel()} entries")
    if int(y.sum()) == 0 or int((~y).sum()) == 0:
        return None
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    _, gid = torch.unique(g, return_inverse=True)
    n_groups = int(gid.max()) + 1
    gen = torch.Generator().manual_seed(int(seed))
    draws = torch.randint(n_groups, (resamples, n_groups), generator=gen)
    values, vid = torch.unique(s, return_inverse=True)  # ascending distinct scores
    vid_pos, vid_neg = vid[y], vid[~y]
    aucs = []
    chunk = max(1, _INTERVAL_CHUNK_ELEMENTS // max(s.numel(), n_groups, values.numel()))
    for start in range(0, resamples, chunk):  # (chunk, n) at a time: memory bounded for any split size
        d = draws[start : start + chunk]
        counts = torch.zeros(d.shape[0], n_groups, dtype=torch.float64).scatter_add_(
            1, d, torch.ones(d.shape, dtype=torch.float64)
        )
        w = counts[:, gid]  # each observation's weight in each resample
        w_pos, w_neg = w[:, y], w[:, ~y]
        neg_w = torch.zeros(d.shape[0], values.numel(), dtype=torch.float64).index_add_(1, vid_neg, w_neg)
        below = torch.cumsum(neg_w, dim=1) - neg_w  # negative weight strictly below each distinct score
        wins = below[:, vid_pos] + 0.5 * neg_w[:, vid_pos]
        denom = w_pos.sum(1) * w_neg.sum(1)
        ok = denom > 0
        aucs.append((w_pos * wins).sum(1)[ok] / denom[ok])
    auc = torch.cat(aucs)
    lo, hi = torch.quantile(auc, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64))
    return float(lo), float(hi)


def crop_kappa_drop(kappa_crop, kappa_full) -> Optional[float]:
    """Share of items whose cropped view has a lower kappa than their full view (ties = 1/2)."""
    a, b = _f64(kappa_crop), _f64(kappa_full)
    if a.numel() != b.numel():
        raise ValueError(f"{a.numel()} cropped kappas but {b.numel()} full ones")
    if a.numel() == 0:
        return None
    return float(((a < b).to(torch.float64) + 0.5 * (a == b).to(torch.float64)).mean())


def reject_curve(kappa, hits, fractions: Sequence[float] = REJECT_FRACTIONS) -> list[dict]:
    """R@1 (mean of ``hits``) of the queries left after rejecting the least confident share.

    Rejecting a share ``p`` of ``n`` queries drops the ``round(p n)`` lowest kappas; queries tied
    at the cut are dropped in expectation (each kept with the same probability), so a constant
    kappa gives a flat curve. Returns ``[{"reject": p, "n_kept", "r1"}, ...]``.
    """
    k, h = _f64(kappa), _f64(hits)
    if k.numel() != h.numel():
        raise ValueError(f"kappa has {k.numel()} entries but hits {h.numel()}")
    n = k.numel()
    out = []
    if n == 0:
        return out
    order = torch.argsort(k, stable=True)
    ks, hs = k[order], h[order]
    for p in fractions:
        drop = min(n - 1, int(round(p * n)))
        keep = n - drop
        if drop == 0:
            r1 = float(hs.mean())
        else:
            cut = ks[drop - 1]
            above = ks > cut
            tied = ks == cut
            n_above = int(above.sum())
            n_tied_kept = keep - n_above
            tied_rate = float(hs[tied].mean()) if bool(tied.any()) else 0.0
            r1 = (float(hs[above].sum()) + n_tied_kept * tied_rate) / keep
        out.append({"reject": float(p), "n_kept": int(keep), "r1": r1})
    return out


def level_table(levels, kappa, ranks, key: str = "level", integer: bool = True) -> list[dict]:
    """Per distinct level (ascending): ``{key: level, "n_queries", "mrr", "r1", "kappa_mean",
    "kappa_median", "r_auroc"}`` (the kappa entries only when ``kappa`` is given; ``r_auroc`` is
    :func:`roc_auc` of kappa for rank 1 among the queries of that level only, so that it measures
    what kappa knows about the items beyond the level itself). ``integer``: levels are ints."""
    lv, r = _f64(levels), _f64(ranks)
    k = None if kappa is None else _f64(kappa)
    rows = []
    for value in sorted(set(lv.tolist())):
        sel = lv == value
        rr = r[sel]
        row = {
            key: int(value) if integer else float(value),
            "n_queries": int(sel.sum()),
            "mrr": float(rr.reciprocal().mean()),
            "r1": float((rr <= 1).to(torch.float64).mean()),
        }
        if k is not None:
            kk = k[sel]
            row["kappa_mean"] = float(kk.mean())
            row["kappa_median"] = float(kk.median())
            row["r_auroc"] = roc_auc(kk, rr <= 1)
        rows.append(row)
    return rows


__all__ = [
    "REJECT_FRACTIONS",
    "crop_kappa_drop",
    "level_table",
    "rank_correlation",
    "reject_curve",
    "roc_auc",
]
