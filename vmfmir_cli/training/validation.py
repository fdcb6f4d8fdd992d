"""Validation: encode the val split per modality and measure retrieval MRR over modality pairs.

For every ordered pair ``(a, b)`` of trained modalities, every val item with ``a`` is a query and
every val item with ``b`` a candidate; the candidates of the query's ``group`` are relevant (variants
of a piece share its score image), queries whose group has no ``b`` are skipped. Scores come from
:func:`vmfmir_cli.engine.scores.score` (``val_score``; cosine for infonce runs) and ranks from
:func:`vmfmir_cli.engine.metrics.ranks_from_scores`. The validation MRR that picks the best
checkpoint is the mean of the pairs' MRRs.
"""

from __future__ import annotations

import contextlib
import math
from itertools import permutations
from typing import Callable, Sequence

import torch

from vmfmir_cli.engine.metrics import ranks_from_scores, summarize
from vmfmir_cli.engine.scores import score
from vmfmir_cli.engine.vmf import VonMisesFisher
from vmfmir_cli.training.data import chunks


@torch.no_grad()
def encode_split(
    model,
    dataset,
    modalities: Sequence[str],
    batch_size: int,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> dict[str, dict]:
    """``{m: {"mu": (N_m, d) float64, "kappa": (N_m,) float64, "groups": [..], "rows": [..]}}``."""
    was_training = model.training
    model.eval()
    out = {m: {"mu": [], "kappa": [], "groups": [], "rows": []} for m in modalities}
    try:
        for rows in chunks(range(len(dataset)), batch_size):
            items = [dataset[i] for i in rows]
            for m in modalities:
                present = [(i, it) for i, it in zip(rows, items) if it.get(m) is not None]
                if not present:
                    continue
                batch = model.collate(m, [it[m] for _, it in present])
                with autocast():
                    mu, kappa = model.encode_params(m, batch)
                out[m]["mu"].append(mu.double().cpu())
                out[m]["kappa"].append(kappa.double().cpu())
                out[m]["groups"].extend(it["group"] for _, it in present)
                out[m]["rows"].extend(i for i, _ in present)
    finally:
        model.train(was_training)
    result = {}
    for m, parts in out.items():
        if parts["mu"]:
            result[m] = {
                "mu": torch.cat(parts["mu"]),
                "kappa": torch.cat(parts["kappa"]),
                "groups": parts["groups"],
                "rows": parts["rows"],
            }
    return result


def retrieval_metrics(encoded: dict[str, dict], kind: str) -> dict:
    """``{"mrr": mean over pairs, "pairs": {"a->b": summary}, "kappa": {m: mean}, "finite": bool}``."""
    group_ids: dict[str, int] = {}
    for m in encoded:
        for g in encoded[m]["groups"]:
            group_ids.setdefault(g, len(group_ids))
    pairs, finite = {}, True
    for a, b in permutations(list(encoded), 2):
        qa, cb = encoded[a], encoded[b]
        ga = torch.tensor([group_ids[g] for g in qa["groups"]])
        gb = torch.tensor([group_ids[g] for g in cb["groups"]])
        relevant = ga[:, None] == gb[None, :]
        keep = relevant.any(dim=1)
        if not bool(keep.any()):
            continue
        queries = VonMisesFisher(qa["mu"][keep], qa["kappa"][keep], validate_args=False)
        items = VonMisesFisher(cb["mu"], cb["kappa"], validate_args=False)
        scores = score(queries, items, kind=kind)
        if not bool(torch.isfinite(scores).all()):
            finite = False
            scores = torch.nan_to_num(scores, nan=-math.inf)
        ranks = ranks_from_scores(scores, relevant[keep])
        pairs[f"{a}->{b}"] = summarize(ranks)
    mrr = sum(p["mrr"] for p in pairs.values()) / len(pairs) if pairs else 0.0
    kappa = {m: float(e["kappa"].mean()) for m, e in encoded.items()}
    return {"mrr": mrr, "pairs": pairs, "kappa": kappa, "finite": finite, "score": kind}


__all__ = ["encode_split", "retrieval_metrics"]
