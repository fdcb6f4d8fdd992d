"""Where does the embedding collapse? The controlled process of ``benchmarks/controlled.py``, probed
every ``--every`` steps of training on a fixed batch of 512 fresh draws.

Each probe line: the mean cosine between different items' mu (0 = spread, 1 = collapsed), the
effective rank of mu (of d), the mean cosine of mu to the true posterior's mean after the best
rotation, the median of kappa_hat / kappa_true, Spearman(kappa_hat, kappa_true), and the training
loss of the model and of the true posterior on the same probe pairs (the same Monte Carlo draws).

    python benchmarks/controlled_trajectory.py --setting d64-kappa16-256 --set negatives=analytic
    python benchmarks/controlled_trajectory.py --set negatives=analytic --set phase_fraction=0.6
    python benchmarks/controlled_trajectory.py --set negatives=analytic --variant linear
    python benchmarks/controlled_trajectory.py --set sample_mean=score

Variants (``--variant``): ``mlp`` (controlled.py's network), ``linear`` (the 2-layer body replaced
by one linear layer: the map from observation to v is linear, so this removes the body's capacity
and inductive bias as a cause), ``detach-negatives`` (the negatives' kappas get no gradient through
the denominator; analytic negatives only). Prints one JSON object per probe.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import controlled as C  # noqa: E402  (the benchmark's own process, network and loss)

from vmfmir_cli.engine.losses import _log_kernel, draw_samples  # noqa: E402
from vmfmir_cli.engine.vmf import VonMisesFisher  # noqa: E402

VARIANTS = ("mlp", "linear", "detach-negatives")


def _detached_negatives_loss(params: dict, cfg: dict, gen) -> torch.Tensor:
    """The default loss (analytic positive and negatives, summed denominator, mean of per-sample
    probabilities) with the negatives' kappas detached: an item's kappa learns only as anchor and
    as positive."""
    dists = {m: VonMisesFisher(mu, k, validate_args=False) for m, (mu, k) in params.items()}
    z = draw_samples(dists, cfg["num_samples"], gen)
    tau = cfg["tau"] if cfg["tau"] is not None else cfg["kappa_pos"]
    total = 0.0
    for a, b in (("a", "b"), ("b", "a")):
        mu_b, k_b = params[b]
        dots = torch.matmul(z[a], mu_b.T)  # (S, R, K)
        d = mu_b.shape[-1]
        logits = _log_kernel(dots, k_b.detach().expand_as(dots), tau, d)
        diag = dots.diagonal(dim1=1, dim2=2)  # (S, R): the positives
        pos = _log_kernel(diag, k_b.expand_as(diag), tau, d)
        eye = torch.eye(dots.shape[1], dtype=torch.bool)
        neg = torch.logsumexp(logits.masked_fill(eye, -math.inf), dim=2)
        log_p = pos - torch.logaddexp(pos, neg)
        total = total - (torch.logsumexp(log_p, 0) - math.log(log_p.shape[0])).mean()
    return total / 2


def trajectory(setting: str, overrides: dict, variant: str = "mlp", every: int = 100):
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    cfg = {**C.BASE, **C.SETTINGS[setting], **overrides}
    loss_fn = C.loss_fn
    if variant == "detach-negatives":
        if cfg["negatives"] == "sampled" or cfg["sample_mean"] != "probability":
            raise SystemExit("--variant detach-negatives is the default loss with analytic negatives only")
        loss_fn = _detached_negatives_loss
    torch.manual_seed(cfg["seed"])
    proc = C.Process(cfg, cfg["seed"])
    in_dim = cfg["obs_factor"] * cfg["d"] + 1
    net = C.Net(in_dim, cfg)
    if variant == "linear":
        net.body = torch.nn.Linear(in_dim, cfg["hidden"])
    (xa_t, va_t, ka_t), (xb_t, vb_t, kb_t) = proc.draw(512, torch.Generator().manual_seed(5))

    def probe(step: int) -> dict:
        net.eval()
        with torch.no_grad():
            mu, k = net(xa_t)
            mu_b, k_b = net(xb_t)
            gram = mu @ mu.T
            off = ~torch.eye(gram.shape[0], dtype=torch.bool)
            half = 256
            model = float(loss_fn({"a": (mu[:half], k[:half]), "b": (mu_b[:half], k_b[:half])}, cfg,
                                  torch.Generator().manual_seed(4242)))
            true = float(loss_fn({"a": (va_t[:half], ka_t[:half]), "b": (vb_t[:half], kb_t[:half])}, cfg,
                                 torch.Generator().manual_seed(4242)))
        net.train()
        row = {"step": step, "mean_cosine_negatives": float(gram[off].mean()), "effective_rank": C._effective_rank(mu),
               "mu_cosine_to_v": C._procrustes_cosine(mu, va_t), "median_ratio": float((k / ka_t).median()),
               "spearman": C._spearman(k, ka_t), "loss_model": model, "loss_true_posterior": true}
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
        return row

    rows = [probe(0)]
    C.train(net, proc, cfg, loss_fn, on_step=lambda done: rows.append(probe(done)) if done % every == 0 else None)
    return rows


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", default="d64-kappa16-256", choices=sorted(C.SETTINGS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key of benchmarks/controlled.py")
    parser.add_argument("--variant", default="mlp", choices=VARIANTS)
    parser.add_argument("--every", type=int, default=100, help="probe every N steps (default 100)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = C.parse_sets(args.set, parser.error)
    return trajectory(args.setting, overrides, args.variant, args.every)


if __name__ == "__main__":
    main()
