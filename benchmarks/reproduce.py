"""The reproduction: does Proposed beat Baseline (and InfoNCE) on the music21 benchmark?

    python benchmarks/reproduce.py            # the full study (`make reproduce`): 500 pieces, 16 epochs,
                                              # 3 losses x 3 seeds; 14.5 min on 2 idle CPU cores (measured)
    python benchmarks/reproduce.py --quick    # a smoke run of every stage on a tiny setting (about 1 min)
    python benchmarks/reproduce.py --tune     # val-only sweep of the hyper-parameters (15 runs, one seed each)

Stages (each resumable: rerunning the command reuses finished work):

1. prepare  ``vmfmir prepare music21 --pieces N`` into ``--data`` (default ``data/reproduce``);
2. train    ``vmfmir train --loss L --seed S`` for every loss (proposed, baseline, infonce) and seed,
            all with the same settings (:data:`SETTINGS`, written to ``<runs>/reproduce.toml``) and
            budget (``--epochs``); the trainer keeps the checkpoint with the best *val* MRR;
3. eval     every run on the val split and on the test split under every retrieval score;
4. report   the score is chosen on *val* only (best mean val MRR of the probabilistic runs;
            InfoNCE runs use cosine), then the *test* metrics under that score are aggregated over
            seeds (mean +- std per direction and metric) and Proposed is compared with Baseline
            seed by seed. Written to ``<out>/reproduction.json`` and ``<out>/reproduction.md``.

``--tune`` trains one seed per hyper-parameter setting of :func:`tuning_grid` and reports val
metrics only (``<out>/tuning.json`` / ``tuning.md``); the test split is never read in that mode.

Every number in the report is measured by this script on the machine it runs on: it records the
wall time of each stage, the CPU count, torch's thread count and the load average (other processes
on a shared machine slow everything down).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LOSSES = ("proposed", "baseline", "infonce")
PROBABILISTIC = ("proposed", "baseline")

#: the settings every run shares (TrainConfig keys): the CPU-sized model and optimisation of
#: examples/{proposed,baseline,infonce}.toml (tau 5: with tau 20 MCInfoNCE stalls at loss log 2 and
#: chance-level retrieval on this budget), so that 9 runs fit well within an hour on 2 CPU cores (14.5 min measured)
SETTINGS: dict[str, Any] = {
    "dim": 64,
    "batch_size": 64,
    "optimizer": "adamw",
    "lr": 2e-3,
    "weight_decay": 0.05,
    "grad_clip": 1.0,
    "schedule": "cosine",
    "warmup_fraction": 0.05,
    "min_lr_ratio": 0.01,
    "inv_temperature": 5.0,
    "mc_samples": 16,
    "kappa_min": 1.0,
    "kappa_max": 1000.0,
    "ssw_lambda": 0.1,  # proposed only
    "ssw_p": 2.0,  # proposed only
    "ssw_projections": 64,  # proposed only
    "val_score": "elk",
    "checkpoint_every": 1000,
    "encoders": {
        "audio": {"id": "mel-cnn", "dim": 128, "n_mels": 48, "hop_length": 512, "channels": [16, 32, 64]},
        "image": {"id": "score-cnn", "dim": 128, "height": 64, "width": 256, "channels": [16, 32, 64]},
        "text": {"id": "text-transformer", "dim": 128, "d_model": 64, "layers": 2, "heads": 4, "ff_dim": 128},
    },
}
#: the full study: 500 pieces x 2 performances (800 train / 100 val / 100 test items), 16 epochs of
#: batch 64 (192 steps) per run, 3 losses x 3 seeds; about 95 s per run, 14.5 min in all on 2 idle CPU cores
FULL = {"pieces": 500, "epochs": 16, "seeds": 3}
QUICK = {"pieces": 16, "epochs": 1, "seeds": 1}
QUICK_SETTINGS: dict[str, Any] = {
    "dim": 16,
    "batch_size": 8,
    "mc_samples": 4,
    "ssw_projections": 8,
    "encoders": {
        "audio": {"id": "mel-cnn", "dim": 16, "n_mels": 16, "channels": [4, 8], "window_seconds": 2.0,
                  "window_hop_seconds": 2.0},
        "image": {"id": "score-cnn", "dim": 16, "height": 32, "width": 128, "channels": [4, 8]},
        "text": {"id": "text-transformer", "dim": 16, "d_model": 16, "ff_dim": 32, "heads": 2, "layers": 1},
    },
}


def tuning_grid(quick: bool = False) -> list[tuple[str, str, dict]]:
    """(name, loss, overrides of SETTINGS) of the val-only sweep: shared knobs first, then the SSW term."""
    grid = [
        ("baseline", "baseline", {}),
        ("proposed", "proposed", {}),
        ("infonce", "infonce", {}),
        # shared knobs, the same change for both probabilistic losses
        ("baseline-lr5e-3", "baseline", {"lr": 5e-3}),
        ("proposed-lr5e-3", "proposed", {"lr": 5e-3}),
        ("baseline-tau10", "baseline", {"inv_temperature": 10.0}),
        ("proposed-tau10", "proposed", {"inv_temperature": 10.0}),
        ("baseline-tau20", "baseline", {"inv_temperature": 20.0}),  # the usual MCInfoNCE value
        # kappa runs to its upper bound when nothing holds it; a low bound keeps it in range
        ("baseline-kmax100", "baseline", {"kappa_max": 100.0}),
        ("proposed-kmax100", "proposed", {"kappa_max": 100.0}),
        # the SSW term: its weight (in a pilot lambda * SSW was < 0.1% of the loss at lambda 0.1), p, slices, samples
        ("proposed-lambda1", "proposed", {"ssw_lambda": 1.0}),
        ("proposed-lambda10", "proposed", {"ssw_lambda": 10.0}),
        ("proposed-p1", "proposed", {"ssw_p": 1.0}),
        ("proposed-proj16", "proposed", {"ssw_projections": 16}),
        ("proposed-samples8", "proposed", {"mc_samples": 8}),
    ]
    return grid[:4] if quick else grid


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def vmfmir_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "vmfmir_cli", *args]


def merge_settings(base: dict, overrides: dict) -> dict:
    out = json.loads(json.dumps(base))
    for key, value in overrides.items():
        if key == "encoders":
            for m, spec in value.items():
                out.setdefault("encoders", {}).setdefault(m, {}).update(spec)
        else:
            out[key] = value
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(settings: dict) -> str:
    """The flat config TOML ``vmfmir train --config`` reads (top-level keys + ``[encoders.<m>]``)."""
    lines = ["# written by benchmarks/reproduce.py: the settings every run of the study shares"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in settings.items() if k != "encoders"]
    for m, spec in settings.get("encoders", {}).items():
        lines += ["", f"[encoders.{m}]"] + [f"{k} = {_toml_value(v)}" for k, v in spec.items()]
    return "\n".join(lines) + "\n"


def machine_info() -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    try:
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return info


def mean_std(values: list[float]) -> dict:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None, "values": values}
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {"mean": statistics.fmean(vals), "std": std, "values": values}


# --------------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------------


def prepare(data: Path, pieces: int, workers: Optional[int], skip: bool) -> dict:
    from vmfmir_cli.data.manifest import read_dataset_info

    if skip:
        if not (data / "manifest.jsonl").is_file():
            raise SystemExit(f"--skip-prepare: no dataset at {data}; drop the flag to build it")
        log(f"prepare: skipped, using {data}")
        return {"seconds": 0.0, "skipped": True, "info": read_dataset_info(data)}
    cmd = vmfmir_cmd("prepare", "music21", "--out", str(data), "--pieces", str(pieces), "--quiet", "--json")
    if workers:
        cmd += ["--workers", str(workers)]
    log(f"prepare: {shlex.join(['vmfmir', *cmd[3:]])}")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"prepare failed (exit {proc.returncode}); see the messages above")
    seconds = time.perf_counter() - t0
    summary = json.loads(proc.stdout) if proc.stdout.strip() else {}
    log(f"prepare: {summary.get('items', '?')} items in {seconds:.0f} s")
    return {"seconds": seconds, "skipped": False, "command": shlex.join(["vmfmir", *cmd[3:]]), "summary": summary,
            "info": read_dataset_info(data)}


def run_is_finished(run_dir: Path) -> bool:
    return (run_dir / "final" / "config.json").is_file() and (run_dir / "config.json").is_file()


def expected_config(config_file: Path, overrides: dict, extra_sets: list[str]) -> dict:
    """The resolved TrainConfig a fresh ``vmfmir train`` would use (to check a finished run matches)."""
    from vmfmir_cli.training.config import load_config

    return load_config(config_file, overrides=overrides, sets=extra_sets).to_dict()


def config_differences(saved: dict, wanted: dict) -> list[str]:
    from vmfmir_cli.training.config import RESUMABLE_KEYS

    # keys only one side knows come from another vmfmir version (renamed or new options): not compared
    keys = (set(saved) & set(wanted)) - set(RESUMABLE_KEYS) - {"epochs"}
    diff = sorted(k for k in keys if saved.get(k) != wanted.get(k))
    if saved.get("epochs") != wanted.get("epochs"):
        diff.append("epochs")
    return diff


def clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def train_run(
    name: str, loss: str, seed: int, epochs: int, data: Path, runs: Path, config_file: Path, extra_sets: list[str]
) -> dict:
    """Train (or reuse / resume) ``runs/name``; returns the command, the summary and the wall time."""
    run_dir = runs / name
    base = ["train", "--quiet", "--json"]
    flags = {"data": str(data), "loss": loss, "seed": seed, "epochs": epochs, "out": str(runs), "name": name}
    if run_dir.is_dir() and (run_dir / "checkpoint").is_dir():
        state = run_dir / "final" / "config.json" if run_is_finished(run_dir) else None
        saved = json.loads(state.read_text())["train"] if state else _checkpoint_config(run_dir)
        diff = config_differences(saved or {}, expected_config(config_file, flags, extra_sets))
        if diff:
            raise SystemExit(
                f"{run_dir} was trained with other settings ({', '.join(diff)} differ); remove it or pass another "
                "--runs folder"
            )
        if state is not None:
            log(f"train {name}: finished earlier with the same settings, reused")
            return {"name": name, "loss": loss, "seed": seed, "reused": True, "run_dir": str(run_dir)}
    if run_dir.is_dir() and (run_dir / "checkpoint").is_dir():
        cmd = vmfmir_cmd(*base, "--resume", str(run_dir), "--out", str(runs))
        log(f"train {name}: resuming an interrupted run")
    elif run_dir.exists():
        raise SystemExit(f"{run_dir} exists but is not a run vmfmir can resume; remove it or pass another --runs folder")
    else:
        cmd = vmfmir_cmd(
            *base, "--config", str(config_file), "--data", str(data), "--loss", loss, "--seed", str(seed),
            "--epochs", str(epochs), "--out", str(runs), "--name", name, *[a for s in extra_sets for a in ("--set", s)],
        )
    log(f"train {name}: {shlex.join(['vmfmir', *cmd[3:]])}")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"training {name} failed (exit {proc.returncode}); rerun the script to resume it")
    summary = json.loads(proc.stdout) if proc.stdout.strip() else {}
    log(f"train {name}: {seconds:.0f} s, best val MRR {summary.get('best_mrr', float('nan')):.4f}")
    return {
        "name": name, "loss": loss, "seed": seed, "reused": False, "run_dir": str(run_dir),
        "command": shlex.join(["vmfmir", *cmd[3:]]), "seconds": seconds, "summary": summary,
    }


def _checkpoint_config(run_dir: Path) -> Optional[dict]:
    from vmfmir_cli.training.checkpoint import find_checkpoint

    found = find_checkpoint(run_dir)
    return None if found is None else found.state["config"]


def evaluate(run_dir: Path, data: Path, split: str) -> dict:
    """``{score: eval JSON}`` of one run on one split under every score (encoded once)."""
    from vmfmir_cli.engine.scores import SCORE_KINDS
    from vmfmir_cli.evaluation.evaluate import EvalOptions, evaluate_run_scores

    results = evaluate_run_scores(EvalOptions(run=str(run_dir), data=str(data), split=split), SCORE_KINDS)
    return {r.score: r.to_json() for r in results}


def mean_mrr(doc: dict) -> float:
    dirs = doc["directions"]
    return statistics.fmean(d["mrr"] for d in dirs.values())


# --------------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------------


def select_score(val: dict[str, dict[str, dict]], runs: dict[str, dict]) -> tuple[str, dict]:
    """The score with the best mean val MRR over the probabilistic runs (directions and seeds)."""
    from vmfmir_cli.engine.scores import SCORE_KINDS

    table: dict[str, dict] = {}
    for kind in SCORE_KINDS:
        per_loss = {}
        for loss in LOSSES:
            names = [n for n, r in runs.items() if r["loss"] == loss]
            if names:
                per_loss[loss] = statistics.fmean(mean_mrr(val[n][kind]) for n in names)
        prob = [per_loss[l] for l in PROBABILISTIC if l in per_loss]
        table[kind] = {"per_loss": per_loss, "probabilistic_mean": statistics.fmean(prob) if prob else None}
    candidates = [k for k in SCORE_KINDS if table[k]["probabilistic_mean"] is not None]
    best = max(candidates, key=lambda k: table[k]["probabilistic_mean"]) if candidates else "elk"
    return best, table


def aggregate(test: dict[str, dict[str, dict]], runs: dict[str, dict], score_of: dict[str, str]) -> dict:
    """Per loss, direction and metric: mean +- std over seeds of the test metrics (under the chosen score)."""
    from vmfmir_cli.evaluation.retrieval import METRICS

    out: dict[str, Any] = {}
    for loss in LOSSES:
        names = sorted((n for n, r in runs.items() if r["loss"] == loss), key=lambda n: runs[n]["seed"])
        if not names:
            continue
        docs = [test[n][score_of[loss]] for n in names]
        directions = list(docs[0]["directions"])
        per_dir = {}
        for d in directions:
            per_dir[d] = {m: mean_std([doc["directions"][d][m] for doc in docs]) for m in METRICS}
            per_dir[d]["n_queries"] = docs[0]["directions"][d]["n_queries"]
        per_dir["mean"] = {
            m: mean_std([statistics.fmean(doc["directions"][d][m] for d in directions) for doc in docs]) for m in METRICS
        }
        unc = {}
        for modality in docs[0].get("uncertainty", {}):
            rhos = [doc["uncertainty"][modality]["spearman"] for doc in docs]
            low = [doc["uncertainty"][modality]["kappa_deciles"][0]["r1"] for doc in docs]
            high = [doc["uncertainty"][modality]["kappa_deciles"][-1]["r1"] for doc in docs]
            unc[modality] = {"spearman": mean_std(rhos), "r1_lowest_decile": mean_std(low), "r1_highest_decile": mean_std(high)}
        out[loss] = {"score": score_of[loss], "seeds": [runs[n]["seed"] for n in names], "runs": names,
                     "directions": per_dir, "uncertainty": unc}
    return out


def paired_comparison(test: dict, runs: dict, score: str, a: str = "proposed", b: str = "baseline") -> Optional[dict]:
    """Proposed - Baseline per direction and metric, paired by seed (same seed, same data order)."""
    from vmfmir_cli.evaluation.retrieval import LOWER_IS_BETTER, METRICS

    by_seed = {}
    for n, r in runs.items():
        by_seed.setdefault(r["seed"], {})[r["loss"]] = n
    seeds = sorted(s for s, losses in by_seed.items() if a in losses and b in losses)
    if not seeds:
        return None
    da = [test[by_seed[s][a]][score] for s in seeds]
    db = [test[by_seed[s][b]][score] for s in seeds]
    directions = list(da[0]["directions"])
    rows: dict[str, dict] = {}
    wins = {m: 0 for m in METRICS}
    for d in directions + ["mean"]:
        rows[d] = {}
        for m in METRICS:
            if d == "mean":
                va = [statistics.fmean(x["directions"][k][m] for k in directions) for x in da]
                vb = [statistics.fmean(x["directions"][k][m] for k in directions) for x in db]
            else:
                va = [x["directions"][d][m] for x in da]
                vb = [x["directions"][d][m] for x in db]
            diffs = [x - y for x, y in zip(va, vb)]
            better = [(x < 0) if m in LOWER_IS_BETTER else (x > 0) for x in diffs]
            stats = mean_std(diffs)
            rows[d][m] = {**stats, "seeds_a_better": sum(better), "seeds": len(seeds)}
            if d != "mean":
                mean_diff = stats["mean"]
                if (mean_diff < 0) if m in LOWER_IS_BETTER else (mean_diff > 0):
                    wins[m] += 1
    return {"a": a, "b": b, "score": score, "seeds": seeds, "directions": rows, "directions_a_better": wins,
            "n_directions": len(directions)}


# --------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------


def _fmt(metric: str, stats: dict, pct: bool = True) -> str:
    mean, std = stats["mean"], stats["std"]
    if mean is None:
        return "-"
    if metric == "mrr":
        return f"{mean:.3f} ± {std:.3f}"
    if metric == "mr":
        return f"{mean:.1f} ± {std:.1f}"
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def _fmt_diff(metric: str, stats: dict) -> str:
    mean, std = stats["mean"], stats["std"]
    if metric == "mrr":
        text = f"{mean:+.3f} ± {std:.3f}"
    elif metric == "mr":
        text = f"{mean:+.1f} ± {std:.1f}"
    else:
        text = f"{100 * mean:+.1f} ± {100 * std:.1f}"
    return f"{text} ({stats['seeds_a_better']}/{stats['seeds']})"


def markdown(report: dict) -> str:
    from vmfmir_cli.evaluation.retrieval import METRIC_LABELS, METRICS

    s = report["setup"]
    agg = report["test"]
    losses = [l for l in LOSSES if l in agg]
    lines = [
        "## Reproduction: Proposed vs Baseline vs InfoNCE on the music21 benchmark",
        "",
        f"Command: `{report['command']}` — {report['seconds'] / 60:.1f} min on this machine "
        f"({s['machine']['cpu_count']} CPU cores, {s['machine']['torch_threads']} torch threads, "
        f"load average {s['machine'].get('load_average_at_start', '?')} at the start).",
        "",
        f"Dataset: `vmfmir prepare music21 --pieces {s['pieces']}` ({s['items']['train']} train / {s['items']['val']} val / "
        f"{s['items']['test']} test items; 2 performances per piece sharing the score image). "
        f"Training: {s['epochs']} epoch(s), same settings for every loss (`{Path(s['config_file']).name}`: "
        f"dim {s['settings']['dim']}, batch {s['settings']['batch_size']}, lr {s['settings']['lr']}, "
        f"tau {s['settings']['inv_temperature']}, {s['settings']['mc_samples']} MC samples, kappa in "
        f"[{s['settings']['kappa_min']:g}, {s['settings']['kappa_max']:g}]; proposed: lambda {s['settings']['ssw_lambda']}, "
        f"p {s['settings']['ssw_p']}, {s['settings']['ssw_projections']} projections); seeds {', '.join(map(str, s['seeds']))}; "
        "the checkpoint with the best val MRR is kept.",
        "",
        f"Retrieval score: **{report['score']}** for the probabilistic runs (best mean val MRR among "
        f"{', '.join(report['score_selection'])}; chosen on val only), cosine for InfoNCE.",
        "",
        f"### Test split, mean ± std over {len(s['seeds'])} seed(s) (R@k in %, MR = median rank)",
        "",
        "| direction | metric | " + " | ".join(losses) + (" | proposed − baseline (seeds better) |" if report.get("paired") else " |"),
        "|---|---|" + "---:|" * len(losses) + ("---:|" if report.get("paired") else ""),
    ]
    paired = report.get("paired")
    directions = list(agg[losses[0]]["directions"])
    for d in directions:
        for i, m in enumerate(METRICS):
            cells = [_fmt(m, agg[l]["directions"][d][m]) if d in agg[l]["directions"] else "-" for l in losses]
            diff = [_fmt_diff(m, paired["directions"][d][m])] if paired and d in paired["directions"] else []
            name = f"**{d}**" if d == "mean" else d
            lines.append(f"| {name if i == 0 else ''} | {METRIC_LABELS[m]} | " + " | ".join(cells + diff) + " |")
    if paired:
        wins = paired["directions_a_better"]
        n = paired["n_directions"]
        lines += [
            "",
            "Proposed beats Baseline (mean over seeds) on "
            + ", ".join(f"{METRIC_LABELS[m]} {wins[m]}/{n}" for m in METRICS)
            + " directions.",
        ]
    lines += ["", "### Score selection (val MRR, mean over directions and seeds)", "",
              "| score | " + " | ".join(losses) + " |", "|---|" + "---:|" * len(losses)]
    for kind, row in report["score_selection"].items():
        cells = [f"{row['per_loss'][l]:.3f}" if l in row["per_loss"] else "-" for l in losses]
        mark = " (chosen)" if kind == report["score"] else ""
        lines.append(f"| {kind}{mark} | " + " | ".join(cells) + " |")
    unc_losses = [l for l in losses if agg[l]["uncertainty"]]
    if unc_losses:
        lines += ["", "### Is kappa an uncertainty? (test; Spearman(kappa, 1/rank) and R@1 in the lowest / highest kappa decile)", "",
                  "| loss | query | Spearman | R@1 lowest decile | R@1 highest decile |", "|---|---|---:|---:|---:|"]
        for l in unc_losses:
            for modality, u in agg[l]["uncertainty"].items():
                rho = u["spearman"]
                rho_text = "-" if rho["mean"] is None else f"{rho['mean']:+.2f} ± {rho['std']:.2f}"
                lines.append(
                    f"| {l} | {modality} | {rho_text} | {100 * u['r1_lowest_decile']['mean']:.0f}% | "
                    f"{100 * u['r1_highest_decile']['mean']:.0f}% |"
                )
    lines += ["", "Training time per run (s): " + ", ".join(
        f"{r['name']} {r['seconds']:.0f}" for r in report["runs"].values() if r.get("seconds") is not None)]
    reused = [r["name"] for r in report["runs"].values() if r.get("reused")]
    if reused:
        lines += ["", f"Note: {', '.join(reused)} were trained by an earlier invocation and reused; their training "
                  "time is not part of the run time above."]
    return "\n".join(lines) + "\n"


def tuning_markdown(report: dict) -> str:
    from vmfmir_cli.evaluation.retrieval import METRIC_LABELS

    lines = [
        "## Hyper-parameter sweep (val split only, seed 0)",
        "",
        f"Command: `{report['command']}` — {report['seconds'] / 60:.1f} min. Base settings: "
        f"`{json.dumps({k: v for k, v in report['settings'].items() if k != 'encoders'})}`; "
        f"{report['epochs']} epochs, {report['pieces']} pieces.",
        "",
        "| setting | loss | changes | " + " | ".join(f"val MRR ({k})" for k in report["scores"]) + " | mean R@1 (best score) |",
        "|---|---|---|" + "---:|" * len(report["scores"]) + "---:|",
    ]
    for row in report["rows"]:
        cells = [f"{row['val_mrr'][k]:.3f}" if math.isfinite(row["val_mrr"][k]) else "-" for k in report["scores"]]
        lines.append(
            f"| {row['name']} | {row['loss']} | `{json.dumps(row['overrides'])}` | " + " | ".join(cells)
            + f" | {100 * row['best_r1']:.1f}% |"
        )
    lines += ["", f"{METRIC_LABELS['mrr']} is the mean over the 9 directions; the test split is not read in this mode."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pieces", type=int, help=f"music21 pieces to prepare (default {FULL['pieces']}; quick {QUICK['pieces']})")
    p.add_argument("--epochs", type=int, help=f"training epochs of every run (default {FULL['epochs']}; quick {QUICK['epochs']})")
    p.add_argument("--seeds", type=int, help=f"seeds per loss: 0..N-1 (default {FULL['seeds']}; quick {QUICK['seeds']})")
    p.add_argument("--losses", default=",".join(LOSSES), help="comma-separated losses (default: all three)")
    p.add_argument("--data", type=Path, help="dataset folder (default data/reproduce, quick data/reproduce-quick)")
    p.add_argument("--runs", type=Path, help="runs folder (default runs/reproduce, quick runs/reproduce-quick)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="where the JSON and markdown go")
    p.add_argument("--skip-prepare", action="store_true", help="use --data as it is (no vmfmir prepare)")
    p.add_argument("--workers", type=int, help="prepare worker processes (default: all cores)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a shared setting for every run (vmfmir train --set syntax), repeatable")
    p.add_argument("--quick", action="store_true", help="a tiny smoke run of every stage (results *_quick.*)")
    p.add_argument("--tune", action="store_true", help="val-only hyper-parameter sweep (one seed per setting)")
    p.add_argument("--only", default="", metavar="NAME,...",
                   help="with --tune: run only these settings of the grid (e.g. proposed,proposed-lambda1)")
    return p.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    preset = QUICK if args.quick else FULL
    pieces = args.pieces or preset["pieces"]
    epochs = args.epochs or preset["epochs"]
    n_seeds = args.seeds or preset["seeds"]
    suffix = "-quick" if args.quick else ""
    data = (args.data or ROOT / "data" / f"reproduce{suffix}").resolve()
    runs_root = (args.runs or ROOT / "runs" / f"reproduce{suffix}").resolve()
    runs_root = runs_root / "tune" if args.tune else runs_root
    out = args.out.resolve()
    losses = [l.strip() for l in args.losses.split(",") if l.strip()]
    unknown = [l for l in losses if l not in LOSSES]
    if unknown:
        raise SystemExit(f"unknown loss {unknown[0]!r}; choose from {', '.join(LOSSES)}")
    settings = merge_settings(SETTINGS, QUICK_SETTINGS) if args.quick else json.loads(json.dumps(SETTINGS))
    command = shlex.join(["python", "benchmarks/reproduce.py", *(argv if argv is not None else sys.argv[1:])])
    machine = machine_info()
    log(f"reproduce: {pieces} pieces, {epochs} epochs, {n_seeds} seed(s), losses {', '.join(losses)}; "
        f"data {data}, runs {runs_root}; machine {machine['cpu_count']} cores, load {machine.get('load_average_at_start')}")

    prep = prepare(data, pieces, args.workers, args.skip_prepare)
    pieces = prep["info"].get("options", {}).get("pieces", pieces)  # what the dataset really holds
    counts = prep["info"].get("counts", {})
    items = {s: counts.get(s, {}).get("items") for s in ("train", "val", "test")}
    runs_root.mkdir(parents=True, exist_ok=True)

    from vmfmir_cli.utils_io import write_json, write_text

    if args.tune:
        return tune(args, settings, data, runs_root, out, epochs, pieces, command, machine, prep, t_start)

    config_file = runs_root / "reproduce.toml"
    write_text(config_file, to_toml(settings))
    runs: dict[str, dict] = {}
    plan = [(loss, seed) for seed in range(n_seeds) for loss in losses]
    t_train = time.perf_counter()
    for i, (loss, seed) in enumerate(plan):
        name = f"{loss}-seed{seed}"
        runs[name] = train_run(name, loss, seed, epochs, data, runs_root, config_file, args.sets)
        done = time.perf_counter() - t_train
        if i + 1 < len(plan):
            log(f"{i + 1}/{len(plan)} runs done; about {done / (i + 1) * (len(plan) - i - 1) / 60:.0f} min of training left")

    log("eval: every run on val and test under every score")
    t_eval = time.perf_counter()
    val = {n: evaluate(Path(r["run_dir"]), data, "val") for n, r in runs.items()}
    test = {n: evaluate(Path(r["run_dir"]), data, "test") for n, r in runs.items()}
    eval_seconds = time.perf_counter() - t_eval

    score, selection = select_score(val, runs)
    score_of = {l: ("cosine" if l == "infonce" else score) for l in LOSSES}
    agg = aggregate(test, runs, score_of)
    paired = paired_comparison(test, runs, score) if set(PROBABILISTIC) <= set(losses) else None
    seconds = time.perf_counter() - t_start
    report = {
        "command": command,
        "seconds": seconds,
        "stages": {"prepare": prep["seconds"], "train": sum(r.get("seconds", 0.0) for r in runs.values()), "eval": eval_seconds},
        "setup": {
            "pieces": pieces, "epochs": epochs, "seeds": list(range(n_seeds)), "losses": losses, "items": items,
            "data": str(data), "runs": str(runs_root), "config_file": str(config_file), "settings": settings,
            "extra_sets": args.sets, "machine": machine, "prepare": {k: v for k, v in prep.items() if k != "info"},
            "quick": args.quick,
        },
        "score": score,
        "score_selection": selection,
        "runs": runs,
        "test": agg,
        "paired": paired,
        "val_metrics": {n: {k: {"directions": d["directions"]} for k, d in v.items()} for n, v in val.items()},
        # every score's test metrics, for transparency (the score was chosen on val); the kappa analysis
        # under the chosen score only
        "test_metrics": {n: {k: {"directions": d["directions"]} for k, d in v.items()} for n, v in test.items()},
        "test_uncertainty": {n: test[n][score_of[r["loss"]]]["uncertainty"] for n, r in runs.items()},
    }
    try:
        report["setup"]["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    stem = "reproduction_quick" if args.quick else "reproduction"
    write_json(out / f"{stem}.json", clean(report))
    md = markdown(report)
    write_text(out / f"{stem}.md", md)
    print(md)
    log(f"wrote {out / (stem + '.json')} and {out / (stem + '.md')} in {seconds / 60:.1f} min")
    return 0


def tune(args, settings, data, runs_root, out, epochs, pieces, command, machine, prep, t_start) -> int:
    """Train one seed per setting of :func:`tuning_grid`, evaluate on val only."""
    from vmfmir_cli.engine.scores import SCORE_KINDS
    from vmfmir_cli.utils_io import write_json, write_text

    grid = tuning_grid(args.quick)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        known = [name for name, _, _ in grid]
        missing = [n for n in wanted if n not in known]
        if missing:
            raise SystemExit(f"unknown tuning setting {missing[0]!r}; choose from {', '.join(known)}")
        grid = [g for g in grid if g[0] in wanted]
    rows = []
    for name, loss, overrides in grid:
        variant = merge_settings(settings, overrides)
        config_file = runs_root / f"{name}.toml"
        write_text(config_file, to_toml(variant))
        run = train_run(name, loss, 0, epochs, data, runs_root, config_file, args.sets)
        val = evaluate(Path(run["run_dir"]), data, "val")
        kinds = ["cosine"] if loss == "infonce" else list(SCORE_KINDS)
        val_mrr = {k: (mean_mrr(val[k]) if k in kinds else float("nan")) for k in SCORE_KINDS}
        best = max(kinds, key=lambda k: val_mrr[k])
        best_r1 = statistics.fmean(d["r1"] for d in val[best]["directions"].values())
        rows.append({"name": name, "loss": loss, "overrides": overrides, "run": run, "val_mrr": val_mrr,
                     "best_score": best, "best_r1": best_r1,
                     "val": {k: {"directions": v["directions"]} for k, v in val.items()},
                     "val_uncertainty": val[best]["uncertainty"]})
        log(f"tune {name}: val MRR {val_mrr[best]:.4f} ({best})")
    report = {"command": command, "seconds": time.perf_counter() - t_start, "settings": settings, "epochs": epochs,
              "pieces": pieces, "machine": machine, "prepare": {k: v for k, v in prep.items() if k != "info"},
              "scores": list(SCORE_KINDS), "rows": rows}
    stem = "tuning_quick" if args.quick else ("tuning-" + "-".join(r["name"] for r in rows) if args.only else "tuning")
    stem = stem if len(stem) < 120 else "tuning-subset"
    write_json(out / f"{stem}.json", clean(report))
    md = tuning_markdown(report)
    write_text(out / f"{stem}.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
