"""Is a windowed item's kappa more than its length? (audio of a trained run, by default)

    python benchmarks/kappa_length.py RUN [RUN ...] --data DATA [--split test] [--modality audio] [--views]

A windowed encoder (mel-cnn: 4-second windows) fuses the vMFs of an item's windows as a product
of experts, so the item's kappa grows with the number of windows unless the head learns otherwise.
For every item of the split this reads the number of windows the encoder cuts it into and reports,
per run:

* ``spearman_kappa_windows``: Spearman(kappa, windows) (near 1: the kappa is mostly the length);
* ``spearman_window_kappa_length``: Spearman(kappa / windows, windows): how the head's evidence per
  window changes with the length (negative: it discounts long items, but less than the product adds);
* ``spearman_kappa_meta``: Spearman(kappa, field) for every numeric field of the items' metadata
  that every item has (for the music21 benchmark: tempo_bpm, duration_s, parts, ...), i.e. what
  else the kappa follows;
* per target modality, the rank-1 hits of the full item as the query and the AUROC of kappa and of
  the number of windows as predictors of a hit (0.5: no information), with the eval's score;
* ``views`` (with ``--views``): the eval's graded views (the first 25 / 50 / 100% of every item,
  against every other modality) pooled as in ``vmfmir eval``'s R-AUROC: the AUROC for a rank-1 hit
  of kappa (the eval's number), of the view fraction itself (what knowing the known ambiguity
  exactly and nothing else would give), of the number of windows, and of kappa / windows (the
  evidence per window: the kappa of the normalised geometric mean of the windows' vMFs, i.e. their
  natural parameters averaged instead of added; the mean direction and so every rank stay the
  same), and of kappa * windows^-alpha for alpha in 0 / 0.25 / 0.5 / 0.75 / 1
  (``auroc_kappa_tempered``: a product of experts that counts correlated windows as less than
  independent evidence); and how deep kappa's knowledge reaches: ``depth`` (the AUROC of kappa and
  of the view fraction for a match within the top 1 / 5 / 10 / 50), ``spearman_kappa_rank`` and
  ``spearman_fraction_rank`` (Spearman with -rank over every view query),
  ``spearman_kappa_rank_full_views`` (the same among the whole items only: what kappa knows beyond
  the view), and ``by_collection`` (hit rate, median rank and median kappa per ``collection`` fact
  of the captions, where the dataset states one). A diagnostic on the split it reads, not a
  recipe tuned on it.

Prints one JSON object per run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


def window_counts(encoder, items: dict, modality: str, fractions=(1.0,)) -> dict:
    """``{(media key, fraction): rows}``: how many rows ``encoder`` makes of each view of each media
    of ``items`` (``{media key: item}``; 1 row for an encoder without windows). Each media is read once."""
    from vmfmir_cli.data.media import load_audio, load_image
    from vmfmir_cli.data.views import view

    counts = {}
    for key, item in items.items():
        path = getattr(item, modality)
        raw = load_audio(path, int(encoder.cfg["sample_rate"])) if modality == "audio" else load_image(path)
        for f in fractions:
            x = encoder.preprocess(view(raw, modality, f))
            counts[(key, f)] = int(x.shape[0]) if "owner" in encoder.collate([x]) else 1
    return counts


def meta_correlations(items, kappa: torch.Tensor) -> dict:
    """Spearman(kappa, field) for each numeric metadata field that every item has and that varies."""
    from vmfmir_cli.evaluation.ambiguity import rank_correlation

    def number(value):
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    fields = sorted(set.intersection(*(set(it.meta) for it in items))) if items else []
    out = {}
    for field in fields:
        values = [number(it.meta[field]) for it in items]
        if all(v is not None for v in values) and len(set(values)) > 1:
            out[field] = rank_correlation(kappa, torch.tensor(values, dtype=torch.float64))
    return out


DEPTHS = (1, 5, 10, 50)
TEMPERS = (0.0, 0.25, 0.5, 0.75, 1.0)  # 0: the product of experts; 1: kappa / windows


def view_aurocs(loaded, windows: dict, modality: str, score_kind: str) -> dict:
    """Pooled AUROC over the graded views of kappa, windows and kappa / windows (see module docs);
    ``windows``: :func:`window_counts` of every view."""
    from vmfmir_cli.evaluation.ambiguity import rank_correlation, roc_auc
    from vmfmir_cli.evaluation.graded import view_queries
    from vmfmir_cli.evaluation.tasks import media_key

    views = loaded.graded.views[modality]
    collection = {media_key(it, modality): _collection(it) for it in loaded.items if it.has(modality)}
    kappas, counts, fractions, ranks, groups = [], [], [], [], []
    for vq in view_queries(loaded.items, loaded.embeddings, views, modality, score_kind):
        ranks.append(vq.ranks().to(torch.float64))
        kappas.append(vq.queries.concentration.to(torch.float64))
        counts.append(torch.tensor([windows[(k, vq.fraction)] for k in vq.keys], dtype=torch.float64))
        fractions.append(torch.full((len(vq.keys),), vq.fraction, dtype=torch.float64))
        groups += [collection[k] for k in vq.keys]
    kappa, count, rank, fraction = torch.cat(kappas), torch.cat(counts), torch.cat(ranks), torch.cat(fractions)
    hit = rank <= 1
    full = fraction == 1.0
    out = {"n_queries": int(hit.numel()), "hits": int(hit.sum()), "auroc_kappa": roc_auc(kappa, hit),
           "auroc_fraction": roc_auc(fraction, hit), "auroc_windows": roc_auc(count, hit),
           "auroc_kappa_per_window": roc_auc(kappa / count, hit)}
    # Between the product of experts (alpha = 0) and the mean of the windows' natural parameters
    # (alpha = 1): kappa * windows^-alpha keeps every rank of these queries (the query's kappa
    # scales every candidate's score alike) and tempers how much a slow performance's extra
    # windows count as evidence.
    out["auroc_kappa_tempered"] = {str(a): roc_auc(kappa * count.pow(-a), hit) for a in TEMPERS}
    # How deep does kappa's knowledge reach? A hit at depth k is the match within the top k; the
    # Spearman correlations with -rank use every query (higher: kappa ranks the easy queries first).
    out["depth"] = {str(k): {"hits": int((rank <= k).sum()), "auroc_kappa": roc_auc(kappa, rank <= k),
                             "auroc_fraction": roc_auc(fraction, rank <= k)} for k in DEPTHS}
    out["spearman_kappa_rank"] = rank_correlation(kappa, -rank)
    out["spearman_fraction_rank"] = rank_correlation(fraction, -rank)
    out["spearman_kappa_rank_full_views"] = rank_correlation(kappa[full], -rank[full]) if full.any() else None
    if any(g is not None for g in groups):
        by = {}
        for name in sorted({g for g in groups if g is not None}):
            sel = torch.tensor([g == name for g in groups])
            by[name] = {"n_queries": int(sel.sum()), "r1": float(hit[sel].double().mean()),
                        "median_rank": float(rank[sel].median()), "median_kappa": float(kappa[sel].median())}
        out["by_collection"] = by
    return out


def _collection(item):
    """The ``collection`` fact of an item's captions (the music21 benchmark states it), else None."""
    for caption in getattr(item, "captions", None) or ():
        value = caption.facts.get("collection") if caption.facts else None
        if value:
            return str(value)
    return None


def measure(run: str, data: str, split: str = "test", modality: str = "audio", views: bool = False) -> dict:
    from vmfmir_cli.evaluation.ambiguity import rank_correlation, roc_auc
    from vmfmir_cli.evaluation.evaluate import EvalOptions, default_score, load_and_encode
    from vmfmir_cli.evaluation.retrieval import rank_task
    from vmfmir_cli.evaluation.tasks import build_task, media_key
    from vmfmir_cli.model import load_model

    loaded = load_and_encode(EvalOptions(run=run, data=data, split=split, ambiguity=views))
    if modality not in loaded.embeddings:
        raise SystemExit(f"{run} has no {modality} encoder (it has: {', '.join(loaded.embeddings)})")
    model, _ = load_model(loaded.run_dir)
    encoder = model.encoder(modality)
    by_key = {media_key(it, modality): it for it in loaded.items if it.has(modality)}
    emb = loaded.embeddings[modality]
    fractions = sorted(set(loaded.graded.views[modality]) | {1.0}) if views else [1.0]
    counts = window_counts(encoder, {k: by_key[k] for k in emb.keys}, modality, fractions)
    windows = torch.tensor([counts[(k, 1.0)] for k in emb.keys], dtype=torch.float64)
    kappa = emb.kappa.to(torch.float64)
    score = default_score(loaded.loss)
    result = {
        "run": str(loaded.run_dir), "split": split, "modality": modality, "n": len(emb.keys), "score": score,
        "windows": {"min": int(windows.min()), "median": float(windows.median()), "max": int(windows.max())},
        "spearman_kappa_windows": rank_correlation(kappa, windows),
        "spearman_window_kappa_length": rank_correlation(kappa / windows, windows),
        "spearman_kappa_meta": meta_correlations([by_key[k] for k in emb.keys], kappa),
        "targets": {},
    }
    row = {k: i for i, k in enumerate(emb.keys)}
    for target in [m for m in loaded.embeddings if m != modality]:
        task = build_task(loaded.items, (modality,), target)
        if task.n_queries == 0:
            continue
        ranks, q_kappa = rank_task(task, loaded.embeddings, score)
        hits = ranks <= 1
        q_windows = windows[[row[q[0]] for q in task.queries]]
        result["targets"][target] = {
            "n_queries": task.n_queries, "hits": int(hits.sum()),
            "auroc_kappa": roc_auc(q_kappa, hits), "auroc_windows": roc_auc(q_windows, hits),
        }
    if views:
        result["views"] = view_aurocs(loaded, counts, modality, score)
    return result


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders")
    parser.add_argument("--data", required=True, help="the prepared dataset the runs were trained on")
    parser.add_argument("--split", default="test")
    parser.add_argument("--modality", default="audio", choices=("audio", "image"))
    parser.add_argument("--views", action="store_true",
                        help="also the pooled R-AUROC over the graded views with kappa per window (encodes the views)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = []
    for run in args.runs:
        result = measure(run, args.data, args.split, args.modality, views=args.views)
        print(json.dumps(result), flush=True)
        out.append(result)
    return out


if __name__ == "__main__":
    main()
