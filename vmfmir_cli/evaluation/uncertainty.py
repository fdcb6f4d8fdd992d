"""Is kappa a real uncertainty? R@1 by kappa decile and Spearman(kappa, 1/rank), PCME++-style.

A model whose concentration means something retrieves its confident queries (high kappa) better
than its ambiguous ones: R@1 rises from the lowest to the highest kappa decile and the Spearman
correlation between a query's kappa and its reciprocal rank is positive. A flat profile and a
correlation near 0 mean kappa carries no information about retrieval difficulty.

Queries are sorted by kappa (ascending, stable) and cut into ``bins`` groups of equal size (sizes
differ by at most one); with fewer queries than bins, each query is its own bin. Equal kappas that
straddle a cut are split by query order.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import torch

from vmfmir_cli.engine.metrics import spearman

DEFAULT_BINS = 10


def kappa_bins(kappa: torch.Tensor, ranks: torch.Tensor, bins: int = DEFAULT_BINS) -> list[dict]:
    """Per kappa bin (lowest kappa first): ``{"bin", "kappa_min", "kappa_max", "n", "r1", "mrr"}``."""
    kappa = torch.as_tensor(kappa, dtype=torch.float64).flatten()
    ranks = torch.as_tensor(ranks).flatten().to(torch.float64)
    if kappa.numel() != ranks.numel():
        raise ValueError(f"kappa has {kappa.numel()} entries but ranks {ranks.numel()}")
    if kappa.numel() == 0:
        return []
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    order = torch.sort(kappa, stable=True).indices
    out = []
    for b, idx in enumerate(torch.tensor_split(order, min(bins, kappa.numel()))):
        k, r = kappa[idx], ranks[idx]
        out.append(
            {
                "bin": b + 1,
                "kappa_min": float(k.min()),
                "kappa_max": float(k.max()),
                "n": int(idx.numel()),
                "r1": float((r <= 1).to(torch.float64).mean()),
                "mrr": float(r.reciprocal().mean()),
            }
        )
    return out


def kappa_rank_correlation(kappa: torch.Tensor, ranks: torch.Tensor) -> Optional[float]:
    """Spearman correlation between kappa and reciprocal rank; None when undefined (constant input)."""
    kappa = torch.as_tensor(kappa, dtype=torch.float64).flatten()
    ranks = torch.as_tensor(ranks).flatten().to(torch.float64)
    if kappa.numel() < 2:
        return None
    rho = spearman(kappa, ranks.reciprocal())
    return None if math.isnan(rho) else rho


def uncertainty_report(
    per_direction: Mapping[str, tuple[str, torch.Tensor, torch.Tensor]],
    bins: int = DEFAULT_BINS,
    modalities: Optional[Sequence[str]] = None,
) -> dict:
    """The uncertainty section of an evaluation.

    Args:
        per_direction: ``{direction: (query modality, query kappa (Q,), ranks (Q,))}`` for the
            single-modality directions.
        bins: number of kappa bins (10: deciles).
        modalities: report order (default: order of first appearance).

    Returns:
        ``{modality: {"n_queries", "spearman", "kappa_deciles": [...], "directions": {direction:
        {"n_queries", "spearman", "kappa_deciles"}}}}`` where a modality pools the queries of all its
        directions (one observation per query and target). ``spearman`` is None when undefined.
    """
    grouped: dict[str, list[tuple[str, torch.Tensor, torch.Tensor]]] = {}
    for name, (modality, kappa, ranks) in per_direction.items():
        grouped.setdefault(modality, []).append((name, torch.as_tensor(kappa), torch.as_tensor(ranks)))
    order = list(modalities) if modalities is not None else list(grouped)
    report: dict = {}
    for modality in order:
        if modality not in grouped:
            continue
        entries = grouped[modality]
        kappa = torch.cat([k.flatten().to(torch.float64) for _, k, _ in entries])
        ranks = torch.cat([r.flatten() for _, _, r in entries])
        report[modality] = {
            "n_queries": int(kappa.numel()),
            "spearman": kappa_rank_correlation(kappa, ranks),
            "kappa_deciles": kappa_bins(kappa, ranks, bins),
            "directions": {
                name: {
                    "n_queries": int(k.numel()),
                    "spearman": kappa_rank_correlation(k, r),
                    "kappa_deciles": kappa_bins(k, r, bins),
                }
                for name, k, r in entries
            },
        }
    return report


__all__ = ["DEFAULT_BINS", "kappa_bins", "kappa_rank_correlation", "uncertainty_report"]
