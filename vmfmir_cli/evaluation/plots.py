"""PNG plots of an evaluation (matplotlib, drawn off-screen; no pyplot state is touched).

* ``recall_at_k.png``         R@k against k (log scale) for every direction;
* ``r1_by_kappa_decile.png``  R@1 per kappa decile of the queries, one line per query modality
                              (skipped when the evaluation has no uncertainty section);
* ``kappa_histograms.png``    the distribution of kappa per modality (log scale);
* ``reject_curve.png``        R@1 of the queries kept after rejecting the least confident share,
                              per graded query modality (the ambiguity section; not for deterministic runs);
* ``kappa_by_level.png``      median kappa by caption level (text) and view fraction (audio, image).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch

from vmfmir_cli.evaluation.evaluate import is_deterministic
from vmfmir_cli.evaluation.retrieval import EvalResult
from vmfmir_cli.utils_io import write_bytes

RECALL_FILE = "recall_at_k.png"
DECILE_FILE = "r1_by_kappa_decile.png"
KAPPA_FILE = "kappa_histograms.png"
REJECT_FILE = "reject_curve.png"
LEVEL_FILE = "kappa_by_level.png"


def new_figure(width: float = 7.0, height: float = 4.5):
    """An off-screen matplotlib Figure (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: Path) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    write_bytes(path, buf.getvalue())
    return path


def _title(result: EvalResult, what: str) -> str:
    return f"{what} — run {result.run}, {result.split} split, score {result.score}"


def recall_curve(ranks: torch.Tensor, max_k: int) -> tuple[list[int], list[float]]:
    """(k, R@k) for k = 1..max_k."""
    r = torch.as_tensor(ranks).flatten()
    ks = list(range(1, max(1, max_k) + 1))
    counts = torch.bincount(r.clamp(max=max_k + 1), minlength=max_k + 2)[1 : max_k + 1]
    recall = (torch.cumsum(counts, 0).to(torch.float64) / max(1, r.numel())).tolist()
    return ks, recall


def _integer_log_axis(ax, max_k: int) -> None:
    """A log-scaled k axis labelled 1, 2, 5, 10, 20, 50, ... (no 2x10^0 style minor labels)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, ScalarFormatter

    ticks = [m * 10**e for e in range(0, 8) for m in (1, 2, 5) if m * 10**e <= max_k]
    ax.set_xscale("log")
    ax.set_xlim(1, max_k)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_recall_at_k(result: EvalResult, path: Path) -> Path:
    fig = new_figure()
    ax = fig.add_subplot(1, 1, 1)
    max_k = max((d.n_candidates for d in result.directions.values()), default=1)
    for name, d in result.directions.items():
        ks, recall = recall_curve(d.ranks, d.n_candidates)
        ax.plot(ks, recall, label=name, linestyle="--" if len(d.sources) > 1 else "-")
    _integer_log_axis(ax, max(2, max_k))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("k")
    ax.set_ylabel("R@k")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    ax.set_title(_title(result, "Recall@k"), fontsize=9)
    return save_figure(fig, path)


def plot_r1_by_decile(result: EvalResult, path: Path) -> Path:
    fig = new_figure()
    ax = fig.add_subplot(1, 1, 1)
    for modality, report in result.uncertainty.items():
        bins = report["kappa_deciles"]
        rho = report["spearman"]
        label = f"{modality} queries (Spearman {rho:+.2f})" if rho is not None else f"{modality} queries"
        ax.plot([b["bin"] for b in bins], [b["r1"] for b in bins], marker="o", label=label)
    ax.set_xlabel("kappa decile of the query (1 = least concentrated)")
    ax.set_ylabel("R@1")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(_title(result, "R@1 by kappa decile"), fontsize=9)
    return save_figure(fig, path)


def plot_kappa_histograms(result: EvalResult, path: Path) -> Path:
    mods = [m for m in result.modalities if m in result.kappas]
    fig = new_figure(width=3.2 * max(1, len(mods)), height=3.4)
    for i, m in enumerate(mods):
        ax = fig.add_subplot(1, max(1, len(mods)), i + 1)
        k = result.kappas[m].to(torch.float64).clamp_min(1e-6)
        lo, hi = float(k.min()), float(k.max())
        if hi <= lo * 1.0001:  # constant kappa: a single bar around it
            lo, hi = lo / 1.5, hi * 1.5
        if hi / lo >= 10:  # kappa spans decades: log-spaced bins on a log axis
            ax.hist(k.tolist(), bins=torch.logspace(math.log10(lo), math.log10(hi), 31).tolist(), color=f"C{i}")
            ax.set_xscale("log")
        else:
            ax.hist(k.tolist(), bins=torch.linspace(lo, hi, 31).tolist(), color=f"C{i}")
        ax.set_xlabel("kappa")
        ax.set_ylabel("media")
        ax.set_title(f"{m} (n={k.numel()}, median {float(k.median()):.3g})", fontsize=9)
    fig.suptitle(_title(result, "kappa per modality"), fontsize=9)
    return save_figure(fig, path)


def plot_reject_curve(result: EvalResult, path: Path) -> Path:
    fig = new_figure()
    ax = fig.add_subplot(1, 1, 1)
    for modality in ("text", "audio", "image"):
        section = result.ambiguity.get(modality) or {}
        curve = section.get("reject_curve")
        if not curve:
            continue
        auroc = section.get("r_auroc")
        label = f"{modality} queries" + (f" (R-AUROC {auroc:.2f})" if auroc is not None else "")
        ax.plot([100 * p["reject"] for p in curve], [p["r1"] for p in curve], marker="o", label=label)
    ax.set_xlabel("share of the least confident (lowest kappa) queries rejected, %")
    ax.set_ylabel("R@1 of the queries kept")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(_title(result, "error vs reject"), fontsize=9)
    return save_figure(fig, path)


def plot_kappa_by_level(result: EvalResult, path: Path) -> Path:
    panels = [m for m in ("text", "audio", "image") if (result.ambiguity.get(m) or {}).get("spearman_kappa_level") is not None]
    fig = new_figure(width=3.2 * max(1, len(panels)), height=3.4)
    for i, m in enumerate(panels):
        section = result.ambiguity[m]
        rows = section.get("levels") or section.get("views") or []
        ax = fig.add_subplot(1, max(1, len(panels)), i + 1)
        xs = [str(r["level"]) if "level" in r else f"{100 * r['fraction']:.0f}%" for r in rows]
        ax.bar(xs, [r["kappa_median"] for r in rows], color=f"C{i}")
        ax.set_xlabel("caption level" if m == "text" else "view (share of the media)")
        ax.set_ylabel("median kappa")
        ax.set_title(f"{m} (Spearman {section['spearman_kappa_level']:+.2f})", fontsize=9)
    fig.suptitle(_title(result, "kappa by ambiguity"), fontsize=9)
    return save_figure(fig, path)


def write_plots(result: EvalResult, out_dir: str | Path) -> list[Path]:
    """Write the plots of ``result`` into ``out_dir`` (created); returns the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [plot_recall_at_k(result, out_dir / RECALL_FILE)]
    if result.uncertainty:
        written.append(plot_r1_by_decile(result, out_dir / DECILE_FILE))
    if result.kappas and not is_deterministic(result.loss):  # an InfoNCE run's kappa is untrained
        written.append(plot_kappa_histograms(result, out_dir / KAPPA_FILE))
    if result.ambiguity.get("kappa_used"):
        written.append(plot_reject_curve(result, out_dir / REJECT_FILE))
        written.append(plot_kappa_by_level(result, out_dir / LEVEL_FILE))
    return written


__all__ = [
    "DECILE_FILE",
    "KAPPA_FILE",
    "LEVEL_FILE",
    "REJECT_FILE",
    "RECALL_FILE",
    "new_figure",
    "plot_kappa_by_level",
    "plot_kappa_histograms",
    "plot_reject_curve",
    "plot_r1_by_decile",
    "plot_recall_at_k",
    "recall_curve",
    "save_figure",
    "write_plots",
]
