"""How many dimensions does a trained run's embedding use? Effective rank and mean cosine of mu.

    python benchmarks/embedding_rank.py RUN [RUN ...] --data DATA [--split test]

For every modality of each run: the effective rank of the split's mean directions (exp of the
entropy of the normalised squared singular values of the uncentred (N, d) matrix: d for directions
spread evenly over the sphere, ~1 when all items share one direction) and the mean cosine between
different items' mu (~0 spread, 1 collapsed into one point; a large value means a cap). The same
measures as benchmarks/controlled.py. Prints one JSON object per run.
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


def effective_rank(mu: torch.Tensor) -> float:
    s = torch.linalg.svdvals(mu.double())
    p = s.square() / s.square().sum()
    return float(torch.exp(-(p * p.clamp_min(1e-30).log()).sum()))


def mean_cosine(mu: torch.Tensor) -> float:
    mu = torch.nn.functional.normalize(mu.double(), dim=-1)
    n = mu.shape[0]
    if n < 2:
        return float("nan")
    total = mu.sum(0)
    return float((total @ total - n) / (n * (n - 1)))  # mean of the off-diagonal of mu mu^T


def measure(run: str, data: str, split: str = "test") -> dict:
    from vmfmir_cli.evaluation.evaluate import EvalOptions, load_and_encode

    loaded = load_and_encode(EvalOptions(run=run, data=data, split=split, ambiguity=False))
    return {"run": str(loaded.run_dir), "split": split,
            "modalities": {m: {"n": int(e.mu.shape[0]), "dim": int(e.mu.shape[1]), "effective_rank": effective_rank(e.mu),
                               "mean_cosine": mean_cosine(e.mu)} for m, e in loaded.embeddings.items()}}


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders")
    parser.add_argument("--data", required=True, help="the prepared dataset the runs were trained on")
    parser.add_argument("--split", default="test")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = []
    for run in args.runs:
        result = measure(run, args.data, args.split)
        print(json.dumps(result), flush=True)
        out.append(result)
    return out


if __name__ == "__main__":
    main()
