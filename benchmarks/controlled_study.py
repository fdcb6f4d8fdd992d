"""Studies on the controlled process of ``benchmarks/controlled.py``: one change at a time, a table.

    python benchmarks/controlled_study.py causes      # issue 11's suspected causes (controlled_study.json)
    python benchmarks/controlled_study.py centring    # the centred head, and what it was told apart from
    (also: python benchmarks/controlled.py --study [causes|centring])

Each study is a base recipe and a list of rows (cause, label, setting, overrides). A row whose
configuration is already in the output JSON is kept, not rerun, so an interrupted study resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import controlled as C  # noqa: E402  (the process, the network, the loss and run_setting)

RESULTS = Path(__file__).resolve().parent / "results"

#: the measurement study of issue 11: one suspected cause at a time, on d = 8 unless named
#: (cause, name, setting, overrides); "landed" is the recipe before the issue. The study was measured
#: before the centred head and the cosine schedule: its rows start from STUDY_BASE, not BASE.
STUDY_BASE = {**C.BASE, "center": 0, "schedule": "constant"}
LANDED = {"denominator": "mean", "positive": "sampled", "kappa_head": "sigmoid", "kappa_max": 1000.0}
STUDY = [
    ("reproduce", "landed (mean, tau 20)", "d8", {**LANDED}),
    ("reproduce", "landed (mean, tau 5)", "d8", {**LANDED, "tau": 5.0}),
    ("a denominator", "sum, sampled, S 16", "d8", {**LANDED, "denominator": "sum"}),
    ("b+c", "sum, analytic positive, exp head (default)", "d8", {}),
    ("b bias", "sum, analytic positive, sigmoid head", "d8", {**LANDED, "denominator": "sum", "positive": "analytic"}),
    ("default", "default, d 64", "d64", {}),
    ("c head", "sum, sampled, exp head", "d8", {"positive": "sampled"}),
    ("e temperature", "default, tau 10", "d8", {"tau": 10.0}),
    ("d phased", "default, 30% mu first", "d8", {"phase_fraction": 0.3}),
    ("default", "default, d 64, kappa 32-512, kernel 160", "d64-kappa32-512", {}),
    ("b bias", "sum, sampled, S 16, jackknife", "d8", {**LANDED, "denominator": "sum", "bias_correction": "jackknife"}),
    ("reproduce", "landed, d 64, kappa 32-512, kernel 160", "d64-kappa32-512", {**LANDED}),
    ("default", "default, d 16", "d16", {}),
    ("b samples", "default, S 4", "d8", {"num_samples": 4}),
    ("e temperature", "default, tau 40", "d8", {"tau": 40.0}),
    ("default", "default, kernel 80", "d8-kpos80", {}),
    ("default", "default, kappa 16-256", "d8-kappa16-256", {}),
    ("b samples", "default, S 64", "d8", {"num_samples": 64}),
    ("reproduce", "landed (mean, tau 20), d 64", "d64", {**LANDED}),
    ("a denominator", "sum, sampled, d 64", "d64", {**LANDED, "denominator": "sum"}),
    ("b samples", "sum, sampled, S 64", "d8", {**LANDED, "denominator": "sum", "num_samples": 64}),
    ("f negatives", "default, d 64, kappa 16-256, kernel 40", "d64-kappa16-256", {}),
    ("f negatives", "analytic negatives, d 64, kappa 16-256, kernel 40", "d64-kappa16-256", {"negatives": "analytic"}),
    ("f negatives", "analytic negatives", "d8", {"negatives": "analytic"}),
    ("f negatives", "analytic negatives, 2000 steps, d 64, kappa 16-256", "d64-kappa16-256",
     {"negatives": "analytic", "steps": 2000}),
]

#: the centred head (VMFHead(center=True)): today's BASE against the earlier default, one change at a
#: time, and the explanations ruled out first (input centring, the body), seed 0. The earlier
#: default is STUDY_BASE with analytic negatives: the probability form, no centring, constant lr.
EARLIER = {"center": 0, "schedule": "constant"}
CENTRING = [
    ("earlier default", "uncentred, constant lr", "d8", EARLIER),
    ("earlier default", "uncentred, constant lr", "d64-kappa16-256", EARLIER),
    ("schedule", "uncentred, cosine lr", "d8", {"center": 0}),
    ("schedule", "uncentred, cosine lr", "d64-kappa16-256", {"center": 0}),
    ("centring", "centred, constant lr", "d8", {"schedule": "constant"}),
    ("centring", "centred, constant lr", "d64-kappa16-256", {"schedule": "constant"}),
    ("today", "centred, cosine lr (default)", "d8", {}),
    ("today", "centred, cosine lr (default)", "d64-kappa16-256", {}),
    ("ruled out: input", "uncentred, log kappa input centred, score form", "d8",
     {**EARLIER, "obs_center": 1, "sample_mean": "score"}),
    ("ruled out: body", "uncentred, linear body, score form", "d8", {**EARLIER, "body": "linear", "sample_mean": "score"}),
    ("ruled out: body", "uncentred, linear body, score form", "d64-kappa16-256",
     {**EARLIER, "body": "linear", "sample_mean": "score"}),
    ("mean over samples", "centred, score form", "d8", {"sample_mean": "score"}),
    ("mean over samples", "centred, score form", "d64-kappa16-256", {"sample_mean": "score"}),
]

STUDIES = {
    "causes": (STUDY_BASE, STUDY, "controlled_study.json"),
    "centring": (C.BASE, CENTRING, "controlled_centring.json"),
}


def _row(r: dict) -> str:
    return (f"| {r['spearman']:+.3f} | {r['median_ratio']:.2f} | {100 * r['at_bounds']:.1f}% | {r['effective_rank']:.1f} "
            f"| {r['mean_cosine_negatives']:+.2f} | {r['test_loss_model']:.3f} | {r['test_loss_true_posterior']:.3f} |")


TABLE_HEAD = ("| cause | recipe | setting | Spearman | median kappa_hat/kappa_true | at bounds | eff. rank of mu "
              "| mean cos of negatives | test loss | true-posterior loss |\n|---|---|---|---|---|---|---|---|---|---|")


def run_study(name: str, sets: dict, out: Path | None = None) -> dict:
    """Run the rows of study ``name`` in order; rows already in ``out`` with the same configuration
    are kept, not rerun. ``sets`` override every row."""
    base, study, filename = STUDIES[name]
    out = out or RESULTS / filename
    done = {}
    if out.is_file():
        for r in json.loads(out.read_text()).get("results", []):
            # rows saved before a key existed ran with that key's value in the study's base
            done[json.dumps({**base, **r["config"]}, sort_keys=True)] = r
    rows = []
    for cause, label, setting, over in study:
        cfg = {**base, **C.SETTINGS[setting], **over, **sets}
        key = json.dumps(cfg, sort_keys=True)
        r = done[key] if key in done else C.run_setting(cfg, setting)
        r.update(cause=cause, recipe=label)
        rows.append(r)
        print(f"| {cause} | {label} | {setting} {_row(r)}", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"benchmark": f"controlled_study:{name}", "overrides": sets, "results": rows}, indent=2) + "\n")
    print(TABLE_HEAD)
    for r in rows:
        print(f"| {r['cause']} | {r['recipe']} | {r['setting']} {_row(r)}")
    print(f"wrote {out}")
    return {"results": rows}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", nargs="?", default="causes", choices=sorted(STUDIES))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key of benchmarks/controlled.py in every row")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/<the study's file>)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    C.torch.set_num_threads(args.threads)
    return run_study(args.study, C.parse_sets(args.set, parser.error), Path(args.out) if args.out else None)


if __name__ == "__main__":
    main()
