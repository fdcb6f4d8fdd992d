"""The numbers of the study, from the per-run records (eval document + per-query ranks; no model).

* :func:`retrieval` — per loss, direction and metric: mean +- std over seeds and the bootstrap
  interval of the loss's own value; per pair of losses the paired difference and its interval, per
  direction and overall (the mean over the directions).
* :func:`question2` — probabilistic vs InfoNCE on level-3 captions, level-1 captions and fused
  image + text -> audio queries (product of experts against the mean of the two directions).
* :func:`question3` — is kappa a real uncertainty: the ambiguity section's Spearman, crop drop,
  R-AUROC and reject curve per loss, with intervals over seeds against the uninformative value.
* :func:`question4` — what SSW changes about kappa: the agreement (Spearman over test items) of the
  kappas that two modalities give the same item, proposed vs baseline, with intervals over seeds.

Every function returns plain JSON-ready dicts; :mod:`.report` turns them into text.
"""

from __future__ import annotations

import itertools
import math
import statistics
from typing import Any, Iterable, Mapping, Optional, Sequence

import torch

from benchmarks.reproduction.settings import LOSSES, PROBABILISTIC
from benchmarks.reproduction.stats import METRICS, bootstrap, mean_std, metric_value, seed_bootstrap

#: the paired differences the study reports (A - B)
PAIRS = (("proposed", "baseline"), ("baseline", "infonce"), ("proposed", "infonce"))
VIEW_MODALITIES = ("audio", "image")
KAPPA_MODALITIES = ("text", "audio", "image")
#: the uninformative value of each kappa measure (a constant kappa scores exactly this)
NULLS = {"spearman_level": 0.0, "crop_drop": 0.5, "r_auroc": 0.5, "reject_gain": 0.0, "spearman_rank": 0.0}
REJECT_AT = 0.5  # the reject-curve summary: R@1 gain after rejecting the least confident half


def pair_name(a: str, b: str) -> str:
    return f"{a}-{b}"


def by_loss(records: Iterable[dict], group: str = "main") -> dict[str, list[dict]]:
    """``{loss: [records of the group, by seed]}`` in :data:`LOSSES` order."""
    out: dict[str, list[dict]] = {}
    for rec in records:
        if rec.get("group") == group:
            out.setdefault(rec["loss"], []).append(rec)
    return {loss: sorted(out[loss], key=lambda r: r["seed"]) for loss in LOSSES if loss in out}


def _paired(runs: Mapping[str, list[dict]], a: str, b: str) -> tuple[list[dict], list[dict]]:
    """The records of A and B on their common seeds, in seed order."""
    sa = {r["seed"]: r for r in runs.get(a, [])}
    sb = {r["seed"]: r for r in runs.get(b, [])}
    seeds = sorted(set(sa) & set(sb))
    return [sa[s] for s in seeds], [sb[s] for s in seeds]


def _ranks(values: Sequence[int]) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.long)


def direction_ranks(recs: list[dict], directions: Sequence[str]) -> list[list[torch.Tensor]]:
    return [[_ranks(r["ranks"]["directions"][d]["ranks"]) for d in directions] for r in recs]


def common_directions(recs: Iterable[dict]) -> list[str]:
    recs = list(recs)
    if not recs:
        return []
    first = list(recs[0]["ranks"]["directions"])
    return [d for d in first if all(d in r["ranks"]["directions"] for r in recs)]


# --------------------------------------------------------------------------------------------------
# Retrieval (question 1 and the tables)
# --------------------------------------------------------------------------------------------------


def direction_pieces(recs: list[dict], directions: Sequence[str], by_piece: bool = True) -> Optional[list[torch.Tensor]]:
    """The piece of every query of each direction (the bootstrap's clusters), or None (resample queries)."""
    if not by_piece or not recs:
        return None
    first = recs[0]["ranks"]["directions"]
    if any("piece" not in first[d] for d in directions):
        return None
    return [torch.tensor(first[d]["piece"], dtype=torch.long) for d in directions]


def retrieval(
    runs: Mapping[str, list[dict]],
    metrics: Sequence[str] = METRICS,
    pairs: Sequence[tuple[str, str]] = PAIRS,
    replicates: int = 2000,
    seed: int = 0,
    by_piece: bool = True,
) -> dict[str, Any]:
    """``{"directions": [...], "losses": {loss: {"seeds", "directions": {d: {metric: mean_std}}, "overall"}},
    "pairs": {"a-b": {"a", "b", "seeds", "directions": {d: {metric: bootstrap}}, "overall": {...}}}}``; a
    loss's own interval ("ci") for every metric overall and for MRR per direction."""
    directions = common_directions(r for recs in runs.values() for r in recs)
    pieces = direction_pieces([r for recs in runs.values() for r in recs], directions, by_piece)
    one = (lambda j: None) if pieces is None else (lambda j: [pieces[j]])
    out: dict[str, Any] = {"directions": directions, "losses": {}, "pairs": {},
                           "resampled": "queries" if pieces is None else "pieces"}
    for loss, recs in runs.items():
        ranks = direction_ranks(recs, directions)
        per_dir = {}
        for j, d in enumerate(directions):
            per_dir[d] = {m: mean_std([metric_value(rs[j], m) for rs in ranks]) for m in metrics}
            if "mrr" in per_dir[d]:  # the interval of the loss's own MRR (the plot's error bars)
                boot = bootstrap([[rs[j]] for rs in ranks], None, "mrr", replicates, seed, clusters=one(j))
                per_dir[d]["mrr"]["ci"] = _ci(boot)
            per_dir[d]["n_queries"] = int(ranks[0][j].numel())
        overall = {
            m: {**mean_std([statistics.fmean(metric_value(x, m) for x in rs) for rs in ranks]),
                "ci": _ci(bootstrap(ranks, None, m, replicates, seed, clusters=pieces))}
            for m in metrics
        }
        out["losses"][loss] = {"seeds": [r["seed"] for r in recs], "directions": per_dir, "overall": overall}
    for a, b in pairs:
        ra, rb = _paired(runs, a, b)
        if not ra:
            continue
        xa, xb = direction_ranks(ra, directions), direction_ranks(rb, directions)
        out["pairs"][pair_name(a, b)] = {
            "a": a,
            "b": b,
            "seeds": [r["seed"] for r in ra],
            "directions": {
                d: {m: bootstrap([[x[j]] for x in xa], [[x[j]] for x in xb], m, replicates, seed, clusters=one(j))
                    for m in metrics}
                for j, d in enumerate(directions)
            },
            "overall": {m: bootstrap(xa, xb, m, replicates, seed, clusters=pieces) for m in metrics},
        }
    return out


def _ci(boot: dict) -> dict:
    return {"low": boot["low"], "high": boot["high"], "level": boot["level"]}


# --------------------------------------------------------------------------------------------------
# Question 2: captions by level and fused queries
# --------------------------------------------------------------------------------------------------


def caption_level(rec: dict, level: int, key: str = "ranks") -> Optional[torch.Tensor]:
    """``key`` ("ranks" or "piece") of the caption queries of ``level``, pooled over the targets
    (audio, then image); None when the record has none."""
    caps = rec["ranks"].get("captions") or {}
    flat = [v for t in sorted(caps) for v, lvl in zip(caps[t].get(key) or [], caps[t]["level"]) if lvl == level]
    return _ranks(flat) if flat else None


def fused(rec: dict, key: str) -> Optional[torch.Tensor]:
    """``key`` (a fusion kind's ranks, or "piece") of the image + caption -> audio queries."""
    fusion = rec["ranks"].get("fusion")
    return None if not fusion or key not in fusion else _ranks(fusion[key])


def _compare(a_ranks: list, b_ranks: list, metric: str, replicates: int, seed: int,
             pieces: Optional[torch.Tensor] = None) -> Optional[dict]:
    if not a_ranks or any(x is None for x in a_ranks + b_ranks):
        return None
    if len({int(x.numel()) for x in a_ranks + b_ranks}) != 1:
        raise ValueError("the runs compared have different queries (another test split?)")
    clusters = None if pieces is None else [pieces]
    return bootstrap([[x] for x in a_ranks], [[x] for x in b_ranks], metric, replicates, seed, clusters=clusters)


def _means(ranks: list, metric: str = "mrr") -> Optional[dict]:
    if not ranks or any(x is None for x in ranks):
        return None
    return mean_std([metric_value(x, metric) for x in ranks])


def question2(
    runs: Mapping[str, list[dict]], levels: Sequence[int] = (3, 1), replicates: int = 2000, seed: int = 0,
    by_piece: bool = True,
) -> dict[str, Any]:
    """Per probabilistic loss P: P - InfoNCE on the captions of each level (MRR), and P's product of
    experts against InfoNCE's mean of directions on image + caption -> audio (all levels), plus P's
    own product of experts against its own mean of directions."""
    anyone = next((r for recs in runs.values() for r in recs), None)
    has_pieces = anyone is not None and "piece" in ((anyone["ranks"].get("fusion") or {}))
    out: dict[str, Any] = {"levels": {}, "fusion": {}, "metric": "mrr",
                           "resampled": "pieces" if by_piece and has_pieces else "queries"}
    for level in levels:
        row: dict[str, Any] = {"mrr": {l: _means([caption_level(r, level) for r in recs]) for l, recs in runs.items()}}
        pieces = caption_level(anyone, level, "piece") if by_piece and anyone else None
        for p in PROBABILISTIC:
            ra, rb = _paired(runs, p, "infonce")
            row[pair_name(p, "infonce")] = _compare(
                [caption_level(r, level) for r in ra], [caption_level(r, level) for r in rb], "mrr", replicates, seed,
                pieces,
            )
        out["levels"][str(level)] = row
    fusion: dict[str, Any] = {
        "mrr": {l: {k: _means([fused(r, k) for r in recs]) for k in ("product_of_experts", "mean_direction", "image_only")}
                for l, recs in runs.items()}
    }
    pieces = fused(anyone, "piece") if by_piece and anyone else None
    for p in PROBABILISTIC:
        ra, rb = _paired(runs, p, "infonce")
        fusion[f"{p}_poe-infonce_mean"] = _compare(
            [fused(r, "product_of_experts") for r in ra], [fused(r, "mean_direction") for r in rb],
            "mrr", replicates, seed, pieces,
        )
        own = runs.get(p, [])
        fusion[f"{p}_poe-{p}_mean"] = _compare(
            [fused(r, "product_of_experts") for r in own], [fused(r, "mean_direction") for r in own],
            "mrr", replicates, seed, pieces,
        )
    out["fusion"] = fusion
    return out


# --------------------------------------------------------------------------------------------------
# Question 3: is kappa an uncertainty?
# --------------------------------------------------------------------------------------------------


def _reject_gain(curve: Optional[list]) -> Optional[float]:
    if not curve:
        return None
    at = min(curve, key=lambda p: abs(p["reject"] - REJECT_AT))
    return at["r1"] - curve[0]["r1"]


def kappa_measures(rec: dict) -> dict[str, dict[str, Optional[float]]]:
    """Per modality: ``spearman_level``, ``crop_drop`` (audio, image), ``r_auroc``, ``reject_gain``
    (R@1 after rejecting the least confident half minus R@1 of all) from the ambiguity section, and
    ``spearman_rank`` (Spearman of kappa and 1/rank, the uncertainty section)."""
    amb = rec["eval"].get("ambiguity") or {}
    unc = rec["eval"].get("uncertainty") or {}
    out = {}
    for m in KAPPA_MODALITIES:
        sec = amb.get(m) or {}
        out[m] = {
            "spearman_level": sec.get("spearman_kappa_level"),
            "crop_drop": sec.get("crop_kappa_drop") if m in VIEW_MODALITIES else None,
            "r_auroc": sec.get("r_auroc"),
            "reject_gain": _reject_gain(sec.get("reject_curve")),
            "spearman_rank": (unc.get(m) or {}).get("spearman"),
        }
    return out


def mean_reject_curve(recs: list[dict], modality: str) -> Optional[list[dict]]:
    curves = [((r["eval"].get("ambiguity") or {}).get(modality) or {}).get("reject_curve") for r in recs]
    if not curves or any(not c for c in curves):
        return None
    return [
        {"reject": pts[0]["reject"], **mean_std([p["r1"] for p in pts])} for pts in zip(*curves)
    ]


def question3(runs: Mapping[str, list[dict]], replicates: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Per probabilistic loss, modality and measure: mean +- std over seeds and the seed interval
    against the uninformative value (:data:`NULLS`); the mean reject curves; proposed - baseline."""
    out: dict[str, Any] = {"nulls": NULLS, "losses": {}, "difference": {}}
    for loss in PROBABILISTIC:
        recs = runs.get(loss) or []
        if not recs:
            continue
        per_seed = [kappa_measures(r) for r in recs]
        table: dict[str, Any] = {}
        for m in KAPPA_MODALITIES:
            table[m] = {}
            for key, null in NULLS.items():
                vals = [x[m][key] for x in per_seed]
                if all(v is None for v in vals):
                    continue
                table[m][key] = {**mean_std(vals), "ci": seed_bootstrap(vals, null, replicates, seed)}
            table[m]["reject_curve"] = mean_reject_curve(recs, m)
            bounds = [(r["eval"].get("ambiguity") or {}).get("kappa_at_bounds", {}).get(m) for r in recs]
            table[m]["kappa_at_bounds"] = mean_std(bounds) if any(b is not None for b in bounds) else None
        out["losses"][loss] = table
    ra, rb = _paired(runs, "proposed", "baseline")
    if ra:
        ma, mb = [kappa_measures(r) for r in ra], [kappa_measures(r) for r in rb]
        for m in KAPPA_MODALITIES:
            row = {}
            for key in NULLS:
                diffs = [None if x[m][key] is None or y[m][key] is None else x[m][key] - y[m][key] for x, y in zip(ma, mb)]
                ci = seed_bootstrap(diffs, 0.0, replicates, seed)
                if ci is not None:
                    row[key] = ci
            out["difference"][m] = row
    return out


# --------------------------------------------------------------------------------------------------
# Question 4: what SSW changes about kappa
# --------------------------------------------------------------------------------------------------


def kappa_agreement(rec: dict, m1: str, m2: str) -> Optional[float]:
    """Spearman over test items of the kappa of the item's ``m1`` and of its ``m2`` media."""
    from vmfmir_cli.engine.metrics import spearman

    kappa = rec["ranks"]["items"]["kappa"]
    if m1 not in kappa or m2 not in kappa:
        return None
    pairs = [(x, y) for x, y in zip(kappa[m1], kappa[m2]) if x is not None and y is not None]
    if len(pairs) < 3:
        return None
    rho = spearman(torch.tensor([p[0] for p in pairs], dtype=torch.float64),
                   torch.tensor([p[1] for p in pairs], dtype=torch.float64))
    return None if math.isnan(rho) else float(rho)


def median_kappa(rec: dict, modality: str) -> Optional[float]:
    vals = [v for v in rec["ranks"]["items"]["kappa"].get(modality, []) if v is not None]
    return statistics.median(vals) if vals else None


def question4(runs: Mapping[str, list[dict]], replicates: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Per modality pair: the agreement of the two kappas of one item for proposed and baseline
    (mean +- std over seeds, seed interval against 0) and proposed - baseline paired by seed; the
    median kappa per modality for context."""
    out: dict[str, Any] = {"pairs": {}, "median_kappa": {}}
    pairs = list(itertools.combinations(("audio", "image", "text"), 2))
    ra, rb = _paired(runs, "proposed", "baseline")
    for m1, m2 in pairs:
        name = f"{m1}-{m2}"
        row: dict[str, Any] = {}
        for loss in PROBABILISTIC:
            vals = [kappa_agreement(r, m1, m2) for r in runs.get(loss, [])]
            if any(v is not None for v in vals):
                row[loss] = {**mean_std(vals), "ci": seed_bootstrap(vals, 0.0, replicates, seed)}
        if ra:
            diffs = []
            for x, y in zip(ra, rb):
                kx, ky = kappa_agreement(x, m1, m2), kappa_agreement(y, m1, m2)
                diffs.append(None if kx is None or ky is None else kx - ky)
            row["difference"] = seed_bootstrap(diffs, 0.0, replicates, seed)
        if row:
            out["pairs"][name] = row
    for loss in PROBABILISTIC:
        recs = runs.get(loss, [])
        if recs:
            out["median_kappa"][loss] = {m: mean_std([median_kappa(r, m) for r in recs]) for m in KAPPA_MODALITIES}
    return out


__all__ = [
    "KAPPA_MODALITIES",
    "NULLS",
    "PAIRS",
    "by_loss",
    "caption_level",
    "common_directions",
    "direction_pieces",
    "direction_ranks",
    "fused",
    "kappa_agreement",
    "kappa_measures",
    "mean_reject_curve",
    "pair_name",
    "question2",
    "question3",
    "question4",
    "retrieval",
]
