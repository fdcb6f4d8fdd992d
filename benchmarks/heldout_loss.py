"""Is kappa over-confident on items the model never trained on? The contrastive loss on a held-out split.

    python benchmarks/heldout_loss.py RUN [RUN ...] --data DATA [--split val] [--batches 40]

Training makes kappa grow while the training pairs are told apart ever better (README, "Twice and
four times the epochs"). Whether that is over-confidence shows on items the model has not seen:
this scores the run's own contrastive objective (MCInfoNCE with the run's recipe: tau, samples,
denominator, positive, negatives; the SSW term left out) on random batches of the split's items,
of the run's training batch size, one item per group (variants of a piece share a score image, and
would be each other's negatives). It scores the same batches and Monte Carlo draws with every
kappa multiplied by a common factor ``s`` (1/256 ... 4), and reports

* ``loss``: the held-out loss of the run's kappas (``s = 1``);
* ``best_scale`` and ``best_loss``: the factor with the lowest held-out loss and that loss.
  ``best_scale`` well below 1 says kappa is over-confident on new items by about ``1 / best_scale``
  (a common factor changes no ranking, so it says nothing of the R-AUROC, only of the scale);
* ``best_scale_by_modality``: the same with one modality's kappas scaled and the others' as they are;
* ``loss_by_scale``, the median kappa per modality on the split, and the run's epochs.

Prints one JSON object per run; ``--out FILE`` also appends it there. A diagnostic, not a recipe.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

#: the common factors tried on every kappa
SCALES = tuple(2.0 ** k for k in range(-8, 3))


def item_rows(loaded) -> tuple[dict, dict]:
    """Per item (one per group), its vMF parameters per modality and a mask of the media it has:
    ``({m: (mu (N, d), kappa (N,))}, {m: bool (N,)})``."""
    from vmfmir_cli.evaluation.tasks import media_key

    seen, items = set(), []
    for it in loaded.items:
        if it.group not in seen:
            seen.add(it.group)
            items.append(it)
    params, masks = {}, {}
    for m, emb in loaded.embeddings.items():
        keys = [media_key(it, m) for it in items]
        mask = torch.tensor([k is not None for k in keys])
        rows = emb.rows([k if k is not None else emb.keys[0] for k in keys])
        params[m] = (emb.mu[rows].to(torch.float64), emb.kappa[rows].to(torch.float64))
        masks[m] = mask
    return params, masks


def measure(run: str, data: str, split: str = "val", batches: int = 40, seed: int = 0) -> dict:
    from vmfmir_cli.evaluation.evaluate import EvalOptions, is_deterministic, load_and_encode, run_loss
    from vmfmir_cli.training.config import TrainConfig
    from vmfmir_cli.training.objective import training_loss

    loaded = load_and_encode(EvalOptions(run=run, data=data, split=split, ambiguity=False))
    if is_deterministic(run_loss(loaded.config)):
        raise SystemExit(f"{run} is a deterministic ({run_loss(loaded.config)}) run: it has no kappa to score")
    saved = loaded.config.get("train")  # a run saved without its training config: today's recipe
    cfg = (TrainConfig.from_saved(saved) if isinstance(saved, dict) else TrainConfig()).replace(loss="baseline")
    params, masks = item_rows(loaded)
    n = next(iter(masks.values())).numel()
    size = min(cfg.batch_size, n)
    gen = torch.Generator().manual_seed(seed)
    # scale every modality's kappa ("all"), or one modality's with the others' left as they are
    targets = ["all", *params]
    totals = torch.zeros(len(targets), len(SCALES), dtype=torch.float64)
    with torch.no_grad():
        for b in range(batches):
            idx = torch.randperm(n, generator=gen)[:size]
            batch_masks = {m: k[idx] for m, k in masks.items()}
            draw_seed = seed * 1_000_003 + b
            for t, target in enumerate(targets):
                for j, s in enumerate(SCALES):
                    batch = {m: (mu[idx], kappa[idx] * (s if target in ("all", m) else 1.0))
                             for m, (mu, kappa) in params.items()}
                    loss, _, _ = training_loss(batch, batch_masks, cfg,
                                               generator=torch.Generator().manual_seed(draw_seed))
                    totals[t, j] += float(loss)
    losses = totals / batches
    at_one = SCALES.index(1.0)
    best = [int(torch.argmin(row)) for row in losses]
    return {
        "run": run, "split": split, "epochs": loaded.config.get("epoch"), "items": n, "batch_size": size,
        "batches": batches, "loss": float(losses[0, at_one]), "best_scale": SCALES[best[0]],
        "best_loss": float(losses[0, best[0]]),
        "best_scale_by_modality": {m: SCALES[best[t]] for t, m in enumerate(targets) if m != "all"},
        "loss_by_scale": {f"{s:g}": round(float(v), 4) for s, v in zip(SCALES, losses[0])},
        "median_kappa": {m: float(kappa[masks[m]].median()) for m, (_, kappa) in params.items()},
    }


def main(argv=None) -> list:
    from benchmarks.kappa_probe import emit

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders")
    parser.add_argument("--data", required=True, help="the prepared dataset the runs were trained on")
    parser.add_argument("--split", default="val", help="the held-out split (default: val)")
    parser.add_argument("--batches", type=int, default=40, help="random batches scored per run (default: 40)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="also append each JSON line to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = []
    for run in args.runs:
        result = measure(run, args.data, args.split, args.batches, args.seed)
        emit(result, args.out)
        out.append(result)
    return out


if __name__ == "__main__":
    main()
