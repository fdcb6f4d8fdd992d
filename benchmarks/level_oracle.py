"""What R-AUROC does knowing the view (or the caption level) allow? The oracle of saved results.

    python benchmarks/level_oracle.py benchmarks/results/ambiguity-*.json [--markdown]

A predictor that knows a graded query's view fraction exactly (and nothing else) ranks the queries
by 25 / 50 / 100% with ties inside a view, so its AUROC for a rank-1 hit follows from the number of
queries and the R@1 of each view alone. ``vmfmir eval`` reports it as ``r_auroc_level`` since it
was added; this recomputes it from the ``views`` rows of any saved eval document (results written
before it, too), so every saved run can be set beside its kappa's R-AUROC. Per run and modality it
prints the R@1 per view, the ratio of the whole items' R@1 to the quarter views', the oracle and
kappa's R-AUROC; the same for text with the caption levels 0-3 in place of the views.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence


#: the query modalities of the eval's ambiguity section, in the order of the table
MODALITIES = ("audio", "image", "text")


def level_auroc(rows: Sequence[tuple[int, float]]) -> Optional[float]:
    """AUROC (ties = 1/2) of the level as a predictor of a hit, from ``(n_queries, hit_rate)`` per
    level in increasing order of the level; None without hits or without misses."""
    hits = [n * p for n, p in rows]
    misses = [n * (1.0 - p) for n, p in rows]
    total_h, total_m = sum(hits), sum(misses)
    if total_h <= 0 or total_m <= 0:
        return None
    below = 0.0  # misses at lower levels
    area = 0.0
    for h, m in zip(hits, misses):
        area += h * (below + 0.5 * m)
        below += m
    return area / (total_h * total_m)


def rows_of(doc: dict, modality: str) -> Optional[dict]:
    """R@1 per level (view fraction for audio and images, caption level for text, ascending), the
    ratio of the top level's R@1 to the bottom one's, the oracle and kappa's R-AUROC."""
    section = (doc.get("ambiguity") or {}).get(modality)
    key = "levels" if modality == "text" else "views"
    if not section or not section.get(key):
        return None
    by = "level" if key == "levels" else "fraction"
    rows = sorted(section[key], key=lambda r: r[by])
    r1 = [r["r1"] for r in rows]
    return {
        "levels": [r[by] for r in rows],
        "r1": r1,
        "ratio": r1[-1] / r1[0] if r1[0] > 0 else None,
        "oracle": level_auroc([(r["n_queries"], r["r1"]) for r in rows]),
        "kappa": section.get("r_auroc"),
    }


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="ambiguity-*.json written by benchmarks/ambiguity.py")
    parser.add_argument("--markdown", action="store_true", help="a markdown table instead of JSON lines")
    args = parser.parse_args(argv)
    out = []
    for path in args.results:
        try:
            evals = json.loads(path.read_text(encoding="utf-8"))["evals"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"{path}: not an ambiguity result with 'evals' ({exc})") from None
        for name, doc in evals.items():
            row = {"file": path.name, "run": name}
            for m in MODALITIES:
                row[m] = rows_of(doc, m)
            out.append(row)
    if args.markdown:
        heads = ["run"]
        for m in MODALITIES:
            levels = "L0/L1/L2/L3" if m == "text" else "25/50/100%"
            heads += [f"{m} R@1 {levels}", "ratio", "level oracle" if m == "text" else "view oracle", "kappa"]
        print("| " + " | ".join(heads) + " |")
        print("|" + "---|" * len(heads))

        def cells(r):
            if r is None:
                return ["–"] * 4
            f = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
            ratio = "–" if r["ratio"] is None else f"{r['ratio']:.2f}"
            return ["/".join(f"{100 * p:.2f}" for p in r["r1"]), ratio, f(r["oracle"]), f(r["kappa"])]

        for row in out:
            print("| " + " | ".join([row["run"], *(c for m in MODALITIES for c in cells(row[m]))]) + " |")
    else:
        for row in out:
            print(json.dumps(row))
    return out


if __name__ == "__main__":
    main()
