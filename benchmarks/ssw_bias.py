"""The bias of the SSW alignment estimate: identical vMFs must score ~0 at every kappa.

    python benchmarks/ssw_bias.py     # writes benchmarks/results/ssw_bias.json, prints a markdown table
    (also: python benchmarks/controlled.py --ssw)

``ssw_alignment_loss`` between identical vMFs and between vMFs whose means are at cosine 0.95, at
kappa 10 / 100 / 1000, d = 64, 200 pairs (mean and standard error over 20 groups of pairs), for the
plain plug-in estimate and the debiased one at several sample counts.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from vmfmir_cli.engine.losses import ssw_alignment_loss  # noqa: E402
from vmfmir_cli.engine.vmf import VonMisesFisher  # noqa: E402


def _unit(x):
    return torch.nn.functional.normalize(x, dim=-1)


SSW_VARIANTS = [
    ("plain, 16 samples, 64 projections (landed)", {"num_samples": 16, "num_projections": 64, "debias": False}),
    ("plain, 256 samples, 64 projections", {"num_samples": 256, "num_projections": 64, "debias": False}),
    ("debiased, 16 samples, 128 projections", {"num_samples": 16, "num_projections": 128, "debias": True}),
    ("debiased, 32 samples, 128 projections", {"num_samples": 32, "num_projections": 128, "debias": True}),
    ("debiased, 64 samples, 128 projections", {"num_samples": 64, "num_projections": 128, "debias": True}),
]


def ssw_bias(pairs: int = 200, d: int = 64, seed: int = 0) -> list[dict]:
    """``ssw_alignment_loss`` between identical vMFs and between vMFs whose means are at cosine 0.95,
    at kappa 10 / 100 / 1000 (mean and standard error over ``pairs`` pairs)."""
    rows = []
    for label, kw in SSW_VARIANTS:
        row = {"estimator": label, **kw}
        for kappa in (10.0, 100.0, 1000.0):
            for cos in (1.0, 0.95):
                g = torch.Generator().manual_seed(seed)
                mu = _unit(torch.randn(pairs, d, generator=g, dtype=torch.float64))
                other = _unit(torch.randn(pairs, d, generator=g, dtype=torch.float64))
                other = _unit(other - (other * mu).sum(-1, keepdim=True) * mu)  # orthogonal to mu
                mu2 = cos * mu + math.sqrt(1 - cos * cos) * other
                k = torch.full((pairs,), kappa, dtype=torch.float64)
                dists = {"a": VonMisesFisher(mu, k), "b": VonMisesFisher(mu2, k)}
                groups = 20  # the loss averages over pairs: 20 groups give a standard error
                size = pairs // groups
                per_group = []
                for i in range(groups):
                    sl = slice(i * size, (i + 1) * size)
                    sub = {m: VonMisesFisher(v.loc[sl], v.concentration[sl]) for m, v in dists.items()}
                    per_group.append(float(ssw_alignment_loss(sub, generator=g, **kw)))
                t = torch.tensor(per_group)
                tag = "identical" if cos == 1.0 else "cos0.95"
                row[f"{tag}_k{int(kappa)}"] = float(t.mean())
                row[f"{tag}_k{int(kappa)}_se"] = float(t.std() / math.sqrt(groups))
        rows.append(row)
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/ssw_bias.json)")
    args = parser.parse_args(argv)
    rows = ssw_bias()
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / "ssw_bias.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "ssw_bias", "d": 64, "pairs": 200, "p": 2, "rows": rows}, indent=2) + "\n")
    print("| estimator | " + " | ".join(f"{t} k{k}" for t in ("identical", "cos0.95") for k in (10, 100, 1000)) + " |")
    for r in rows:
        cells = [f"{r[f'{t}_k{k}']:.5f} +- {r[f'{t}_k{k}_se']:.5f}" for t in ("identical", "cos0.95") for k in (10, 100, 1000)]
        print(f"| {r['estimator']} | " + " | ".join(cells) + " |")
    print(f"wrote {out}")
    return {"rows": rows}


if __name__ == "__main__":
    main()
