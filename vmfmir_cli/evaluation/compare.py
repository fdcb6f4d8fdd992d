"""Side-by-side comparison of evaluations (several runs, or one run under several scores).

:func:`compare_results` takes the ``to_json()`` documents of evaluations and returns, per direction
and metric, every evaluation's value, its difference to the first one (the reference) and which
evaluation is best (MR: lowest; the others: highest). A ``"mean"`` row averages each metric over the
directions every evaluation has.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from vmfmir_cli.evaluation.retrieval import LOWER_IS_BETTER, METRICS

MEAN_ROW = "mean"


def _best(values: Sequence[Optional[float]], metric: str) -> list[int]:
    present = [(v, i) for i, v in enumerate(values) if v is not None]
    if not present:
        return []
    target = min(v for v, _ in present) if metric in LOWER_IS_BETTER else max(v for v, _ in present)
    return [i for v, i in present if abs(v - target) <= 1e-12 * max(1.0, abs(target))]


def _row(values: list[Optional[float]], metric: str) -> dict[str, Any]:
    ref = values[0]
    diffs = [None if (v is None or ref is None) else v - ref for v in values]
    diffs[0] = None
    return {"values": values, "diff": diffs, "best": _best(values, metric)}


def compare_results(results: Sequence[Mapping[str, Any]], labels: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """``{"labels", "reference", "metrics", "directions": {direction: {metric: {"values", "diff", "best"}}}}``.

    ``diff[i]`` is ``values[i] - values[0]`` (None for the reference and for missing values); ``best``
    lists the indices of the best evaluation(s). Directions appear in the order of first appearance.
    """
    if len(results) < 1:
        raise ValueError("compare_results needs at least one evaluation")
    labels = list(labels) if labels is not None else [str(r.get("run")) for r in results]
    if len(labels) != len(results):
        raise ValueError(f"got {len(labels)} labels for {len(results)} evaluations")
    names: list[str] = []
    for r in results:
        for name in r.get("directions", {}):
            if name not in names:
                names.append(name)
    directions: dict[str, dict] = {}
    for name in names:
        per_metric = {}
        for metric in METRICS:
            values = [r.get("directions", {}).get(name, {}).get(metric) for r in results]
            per_metric[metric] = _row(values, metric)
        directions[name] = per_metric
    common = [n for n in names if all(n in r.get("directions", {}) for r in results)]
    if common:
        mean = {}
        for metric in METRICS:
            values = []
            for r in results:
                vals = [r["directions"][n].get(metric) for n in common]
                values.append(None if any(v is None for v in vals) else sum(vals) / len(vals))
            mean[metric] = _row(values, metric)
        directions[MEAN_ROW] = mean
    return {
        "labels": labels,
        "reference": labels[0],
        "metrics": list(METRICS),
        "directions": directions,
        "mean_over": common,
    }


__all__ = ["MEAN_ROW", "compare_results"]
