"""PNG plots of the study (matplotlib off-screen, the figure helpers of ``vmfmir eval --plots``).

* ``mrr_by_direction.png``  test MRR per direction and loss, mean over seeds, with the 95% bootstrap
                            interval (seeds x queries) as error bars;
* ``kappa_by_level.png``    median kappa by caption level (text) and by view fraction (audio, image),
                            per probabilistic loss, mean over seeds;
* ``reject_curves.png``     R@1 of the queries kept after rejecting the least confident share, per
                            graded query modality and probabilistic loss (mean over seeds, +- std band).

Skipped (with a note in the report) when matplotlib is not installed.
"""

from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path
from typing import Any, Mapping, Optional

from benchmarks.reproduction.analysis import KAPPA_MODALITIES
from benchmarks.reproduction.settings import LOSSES, PROBABILISTIC

MRR_FILE = "mrr_by_direction.png"
LEVEL_FILE = "kappa_by_level.png"
REJECT_FILE = "reject_curves.png"


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def plot_mrr_by_direction(retrieval: Mapping[str, Any], path: Path) -> Path:
    from vmfmir_cli.evaluation.plots import new_figure, save_figure

    losses = [l for l in LOSSES if l in retrieval["losses"]]
    directions = list(retrieval["directions"])
    fig = new_figure(width=max(7.0, 0.9 * len(directions) + 2), height=4.5)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(losses))
    for i, loss in enumerate(losses):
        rows = [retrieval["losses"][loss]["directions"][d]["mrr"] for d in directions]
        xs = [j + (i - (len(losses) - 1) / 2) * width for j in range(len(directions))]
        means = [r["mean"] for r in rows]
        err = [[m - r["ci"]["low"] for m, r in zip(means, rows)], [r["ci"]["high"] - m for m, r in zip(means, rows)]]
        ax.bar(xs, means, width=width, yerr=err, capsize=2, label=loss, color=f"C{i}")
    ax.set_xticks(range(len(directions)))
    ax.set_xticklabels(directions, rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("test MRR (95% interval over seeds x queries)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("MRR per direction", fontsize=9)
    return save_figure(fig, path)


def _kappa_rows(rec: dict, modality: str) -> list[tuple[str, Optional[float]]]:
    sec = (rec["eval"].get("ambiguity") or {}).get(modality) or {}
    if modality == "text":
        return [(str(r["level"]), r.get("kappa_median")) for r in sec.get("levels") or []]
    return [(f"{100 * r['fraction']:.0f}%", r.get("kappa_median")) for r in sec.get("views") or []]


def plot_kappa_by_level(runs: Mapping[str, list[dict]], path: Path) -> Path:
    from vmfmir_cli.evaluation.plots import new_figure, save_figure

    fig = new_figure(width=3.3 * len(KAPPA_MODALITIES), height=3.4)
    for i, m in enumerate(KAPPA_MODALITIES):
        ax = fig.add_subplot(1, len(KAPPA_MODALITIES), i + 1)
        spans: list[float] = []
        for j, loss in enumerate(l for l in PROBABILISTIC if l in runs):
            per_seed = [_kappa_rows(r, m) for r in runs[loss]]
            if not per_seed or not per_seed[0]:
                continue
            xs = [x for x, _ in per_seed[0]]
            values = [[row[k][1] for row in per_seed if k < len(row) and row[k][1] is not None] for k in range(len(xs))]
            ys = [statistics.fmean(v) if v else float("nan") for v in values]
            ax.plot(xs, ys, marker="o", label=loss, color=f"C{j}")
            spans = spans or [y for y in ys if y == y and y > 0]
        if spans and max(spans) > 10 * min(spans):  # kappa spans decades: a log axis
            ax.set_yscale("log")
        ax.set_xlabel("caption level" if m == "text" else "view (share of the media)")
        ax.set_ylabel("median kappa")
        ax.set_title(m, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("kappa by ambiguity (test; mean over seeds)", fontsize=9)
    return save_figure(fig, path)


def plot_reject_curves(q3: Mapping[str, Any], path: Path) -> Path:
    from vmfmir_cli.evaluation.plots import new_figure, save_figure

    fig = new_figure(width=3.3 * len(KAPPA_MODALITIES), height=3.4)
    for i, m in enumerate(KAPPA_MODALITIES):
        ax = fig.add_subplot(1, len(KAPPA_MODALITIES), i + 1)
        for j, (loss, table) in enumerate(q3.get("losses", {}).items()):
            curve = (table.get(m) or {}).get("reject_curve")
            if not curve:
                continue
            xs = [100 * p["reject"] for p in curve]
            mean = [p["mean"] for p in curve]
            std = [p["std"] or 0.0 for p in curve]
            ax.plot(xs, mean, marker="o", label=loss, color=f"C{j}")
            ax.fill_between(xs, [max(0.0, a - b) for a, b in zip(mean, std)], [min(1.0, a + b) for a, b in zip(mean, std)],
                            alpha=0.2, color=f"C{j}")
        ax.set_xlabel("least confident queries rejected, %")
        ax.set_ylabel("R@1 of the queries kept")
        ax.set_title(f"{m} queries", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("reject curves (test; mean ± std over seeds)", fontsize=9)
    return save_figure(fig, path)


def write_plots(report: Mapping[str, Any], runs: Mapping[str, list[dict]], folder: Path) -> list[Path]:
    """The three plots into ``folder``; [] when matplotlib is missing."""
    if not available():
        return []
    folder.mkdir(parents=True, exist_ok=True)
    out = [plot_mrr_by_direction(report["retrieval"], folder / MRR_FILE)]
    if any(l in runs for l in PROBABILISTIC):
        out.append(plot_kappa_by_level(runs, folder / LEVEL_FILE))
        out.append(plot_reject_curves(report["q3"], folder / REJECT_FILE))
    return out


__all__ = ["LEVEL_FILE", "MRR_FILE", "REJECT_FILE", "available", "write_plots"]
