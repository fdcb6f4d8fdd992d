"""How much does a query's own vMF know about its retrieval success, and how much the gallery?

    python benchmarks/kappa_probe.py RUN [RUN ...] --data DATA [--modality audio] [--score-split test]

The eval's R-AUROC asks kappa, a number computed from the query alone, to rank the queries whose
match comes first above the others. For the eval's pooled graded queries of one modality (its 25 /
50 / 100% views against every other modality, as ``vmfmir eval`` pools them) this scores, with the
same AUROC for a rank-1 hit on the test split:

* ``kappa``: the eval's R-AUROC;
* ``fraction``: the view fraction (knows the benchmark's known ambiguity exactly, nothing else);
* ``probe_kappa_fraction``: a ridge regression of -log(rank) on (log kappa, fraction);
* ``probe_mu``: the same on (mu, log kappa, fraction), i.e. on everything the query's vMF holds: a
  ridge read-out of the embedding (a linear probe, not a bound: it can score below kappa itself);
* ``margin`` and ``top_score``: the top-1 minus the top-2 score of the query against the
  candidates, and the top-1 score. They use the gallery, which kappa cannot see (the top-1 score
  of ``expected_cosine`` also carries the query's kappa).
* ``within_collection`` (whole items, per target; where the captions state a ``collection``): the
  share of the top 10 from the query's own collection against the base rate, and the R@1 of the
  match among the candidates of that collection against a random order: how much of the
  retrieval is the style of a collection and how much the piece.

The probes are fitted on the val split (ridge strength by 5-fold cross-validation over the val
queries, folds by the query's media so that its views and targets stay together) and scored on the
test split, so nothing is tuned on what it is scored on. Prints one JSON object per run; with
``--out FILE`` also appends it there. ``--score-split train --score-items 400`` scores a sample of
the training items instead, in a gallery as large as the test split's: a kappa that predicts the
training items' hits and not the test items' has learnt something that does not transfer. A diagnostic, not a recipe.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

#: ridge strengths tried by the cross-validation (on standardised features)
ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
FOLDS = 5


def pooled_queries(loaded, modality: str, score_kind: str) -> dict:
    """Every graded query of ``modality`` against every other modality: its mu, kappa, view
    fraction, media (for the folds), rank of the match and score margin."""
    from vmfmir_cli.evaluation.graded import view_queries

    out: dict[str, list] = {"mu": [], "kappa": [], "fraction": [], "rank": [], "margin": [], "top": [], "media": []}
    media_ids: dict[str, int] = {}
    for vq in view_queries(loaded.items, loaded.embeddings, loaded.graded.views[modality], modality, score_kind):
        top = vq.scores.topk(2, dim=1).values
        out["rank"].append(vq.ranks().to(torch.float64))
        out["margin"].append((top[:, 0] - top[:, 1]).to(torch.float64))
        out["top"].append(top[:, 0].to(torch.float64))
        out["mu"].append(vq.queries.loc.to(torch.float64))
        out["kappa"].append(vq.queries.concentration.to(torch.float64))
        out["fraction"].append(torch.full((len(vq.keys),), vq.fraction, dtype=torch.float64))
        out["media"].append(torch.tensor([media_ids.setdefault(k, len(media_ids)) for k in vq.keys], dtype=torch.long))
    return {k: torch.cat(v) for k, v in out.items()}


def features(q: dict, with_mu: bool) -> torch.Tensor:
    cols = [q["kappa"].log().unsqueeze(1), q["fraction"].unsqueeze(1)]
    if with_mu:
        cols.insert(0, q["mu"])
    return torch.cat(cols, dim=1)


class Ridge:
    """Ridge regression on standardised features (the intercept is not penalised)."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> "Ridge":
        self.mean, self.std = x.mean(0), x.std(0).clamp_min(1e-12)
        z = (x - self.mean) / self.std
        self.y0 = y.mean()
        a = z.T @ z + self.alpha * torch.eye(z.shape[1], dtype=z.dtype)
        self.w = torch.linalg.solve(a, z.T @ (y - self.y0))
        return self

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std) @ self.w + self.y0


def choose_alpha(x: torch.Tensor, y: torch.Tensor, groups: torch.Tensor, seed: int = 0) -> float:
    """The ridge strength of :data:`ALPHAS` with the least cross-validated squared error, folds by
    ``groups``."""
    ids = groups.unique()
    perm = ids[torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed))]
    fold_of = torch.empty(int(groups.max()) + 1, dtype=torch.long)
    fold_of[perm] = torch.arange(len(perm)) % FOLDS
    fold = fold_of[groups]
    best, best_err = ALPHAS[0], math.inf
    for alpha in ALPHAS:
        err = 0.0
        for k in range(FOLDS):
            held = fold == k
            model = Ridge(alpha).fit(x[~held], y[~held])
            err += float(((model.predict(x[held]) - y[held]) ** 2).sum())
        if err < best_err:
            best, best_err = alpha, err
    return best


def within_collection(loaded, modality: str, score_kind: str) -> dict:
    """What the retrieval of whole items knows, per target modality: the share of the top 10 from
    the query's own collection (``top10_same_collection``, against ``base_rate``, the share of the
    candidates from it), and, among the candidates of the query's collection only, the R@1 of the
    match (``r1_in_collection``) against a random order (``r1_in_collection_random``). Queries
    whose dataset states no collection are left out."""
    from benchmarks.kappa_length import _collection
    from vmfmir_cli.engine.scores import score
    from vmfmir_cli.evaluation.tasks import build_task, media_key

    collection = {media_key(it, m): _collection(it) for it in loaded.items for m in loaded.embeddings if it.has(m)}
    out = {}
    for target in [m for m in loaded.embeddings if m != modality]:
        task = build_task(loaded.items, (modality,), target)
        if task.n_queries == 0:
            continue
        keys = [q[0] for q in task.queries]
        scores = score(loaded.embeddings[modality].take(keys), loaded.embeddings[target].take(task.candidates),
                       kind=score_kind)
        cand = [collection[k] for k in task.candidates]
        top = scores.topk(min(10, scores.shape[1]), dim=1).indices
        same, base, hit, chance, n = 0.0, 0.0, 0.0, 0.0, 0
        for i, key in enumerate(keys):
            own = collection[key]
            mask = torch.tensor([c == own for c in cand])
            relevant = task.relevant[i] & mask
            if own is None or not bool(relevant.any()):
                continue
            n += 1
            same += float(mask[top[i]].double().mean())
            base += float(mask.double().mean())
            sub = scores[i][mask]
            hit += float(sub.max() == scores[i][relevant].max())  # the best of the collection is a match
            chance += float(relevant.sum()) / float(mask.sum())
        if n:
            out[target] = {"n_queries": n, "top10_same_collection": same / n, "base_rate": base / n,
                           "r1_in_collection": hit / n, "r1_in_collection_random": chance / n}
    return out


def sample_items(n: Optional[int], seed: int = 0):
    """An item selector for ``load_and_encode``: ``n`` items drawn at random (seeded), or all."""
    def select(items):
        if n is None or n >= len(items):
            return items
        keep = sorted(torch.randperm(len(items), generator=torch.Generator().manual_seed(seed))[:n].tolist())
        return [items[i] for i in keep]
    return select


def measure(run: str, data: str, modality: str = "audio", fit_split: str = "val", score_split: str = "test",
            score_items: Optional[int] = None) -> dict:
    from vmfmir_cli.evaluation.ambiguity import roc_auc
    from vmfmir_cli.evaluation.evaluate import EvalOptions, default_score, load_and_encode

    splits, collections = {}, {}
    for split in dict.fromkeys((fit_split, score_split)):
        select = sample_items(score_items) if split == score_split else None
        loaded = load_and_encode(EvalOptions(run=run, data=data, split=split, ambiguity=True), select=select)
        if modality not in loaded.graded.views:
            raise SystemExit(f"{run} has no graded {modality} views (it has: {', '.join(loaded.graded.views)})")
        splits[split] = pooled_queries(loaded, modality, default_score(loaded.loss))
        if split == score_split:
            collections = within_collection(loaded, modality, default_score(loaded.loss))
    val, test = splits[fit_split], splits[score_split]
    hit = test["rank"] <= 1
    result = {
        "run": run, "modality": modality, "fit_split": fit_split, "score_split": score_split,
        "score_items": score_items,
        "n_queries": {s: int(q["rank"].numel()) for s, q in splits.items()},
        "hits": {s: int((q["rank"] <= 1).sum()) for s, q in splits.items()},
        "auroc": {"kappa": roc_auc(test["kappa"], hit), "fraction": roc_auc(test["fraction"], hit)},
        "alpha": {},
    }
    for name, with_mu in (("probe_kappa_fraction", False), ("probe_mu", True)):
        x_val, x_test = features(val, with_mu), features(test, with_mu)
        y_val = -val["rank"].log()
        alpha = choose_alpha(x_val, y_val, val["media"])
        pred = Ridge(alpha).fit(x_val, y_val).predict(x_test)
        result["auroc"][name] = roc_auc(pred, hit)
        result["alpha"][name] = alpha
    result["auroc"]["margin"] = roc_auc(test["margin"], hit)
    result["auroc"]["top_score"] = roc_auc(test["top"], hit)
    result["within_collection"] = collections
    return result


def emit(result: dict, out: Optional[Path] = None) -> None:
    """Print ``result`` as one JSON line and, with ``out``, append that line to the file."""
    line = json.dumps(result)
    print(line, flush=True)
    if out:
        with Path(out).open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders")
    parser.add_argument("--data", required=True, help="the prepared dataset the runs were trained on")
    parser.add_argument("--modality", default="audio", choices=("audio", "image"))
    parser.add_argument("--fit-split", default="val", help="the split the probes are fitted on (default: val)")
    parser.add_argument("--score-split", default="test",
                        help="the split everything is scored on (default: test; 'train' asks whether kappa "
                             "knows the training items' hits, i.e. whether it was learnt and did not transfer)")
    parser.add_argument("--score-items", type=int, default=None,
                        help="score a seeded random sample of this many items of the scored split (e.g. 400 "
                             "of train, so that its gallery is as large as test's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="also append each JSON line to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = []
    for run in args.runs:
        result = measure(run, args.data, args.modality, fit_split=args.fit_split, score_split=args.score_split,
                         score_items=args.score_items)
        emit(result, args.out)
        out.append(result)
    return out


if __name__ == "__main__":
    main()
