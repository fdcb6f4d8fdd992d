"""The markdown report of the study; the answer to each of the four questions is generated from the numbers.

Each answer line names its numbers (estimate and 95% interval) and a verdict that follows from the
interval alone (:func:`benchmarks.reproduction.stats.verdict`): a win when the interval excludes 0 on
the good side, a loss on the bad side, no significant difference otherwise. Nothing here is
hard-coded to an outcome.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional, Sequence

from benchmarks.reproduction.analysis import KAPPA_MODALITIES, PAIRS, pair_name
from benchmarks.reproduction.settings import LOSSES, PROBABILISTIC
from benchmarks.reproduction.stats import METRIC_LABELS, METRICS

WORDS = {"win": "win", "none": "no significant difference", "loss": "loss"}
KAPPA_WORDS = {"win": "informative", "none": "not distinguishable from chance", "loss": "inverted"}
MEASURE_LABELS = {
    "spearman_level": "ρ(κ, level)",
    "crop_drop": "crop drop",
    "r_auroc": "R-AUROC",
    "reject_gain": "R@1 gain at 50% rejected",
    "spearman_rank": "ρ(κ, 1/rank)",
}
#: the measures question 3 judges kappa by (modality, measure)
Q3_MEASURES = (
    ("text", "spearman_level"), ("audio", "crop_drop"), ("image", "crop_drop"),
    ("text", "r_auroc"), ("audio", "r_auroc"), ("image", "r_auroc"),
    ("text", "reject_gain"), ("audio", "reject_gain"), ("image", "reject_gain"),
)


# --------------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------------


def _num(metric: str, value: Optional[float], signed: bool = False) -> str:
    if value is None:
        return "–"
    sign = "+" if signed else ""
    if metric == "mrr":
        return f"{value:{sign}.3f}"
    if metric == "mr":
        return f"{value:{sign}.1f}"
    if metric.startswith("r") and metric[1:].isdigit():  # R@k in % (differences in percentage points)
        return f"{100 * value:{sign}.1f}"
    return f"{value:{sign}.3f}"


def fmt_mean(metric: str, stats: Optional[Mapping]) -> str:
    if not stats or stats.get("mean") is None:
        return "–"
    return f"{_num(metric, stats['mean'])} ± {_num(metric, stats['std'])}"


def fmt_interval(metric: str, boot: Optional[Mapping], signed: bool = True) -> str:
    """``+0.012 [+0.004, +0.020]``."""
    if not boot:
        return "–"
    return (f"{_num(metric, boot['estimate'], signed)} [{_num(metric, boot['low'], signed)}, "
            f"{_num(metric, boot['high'], signed)}]")


def fmt_diff(metric: str, boot: Optional[Mapping]) -> str:
    """An interval with its verdict when significant: ``+0.012 [+0.004, +0.020] win``."""
    if not boot:
        return "–"
    mark = "" if boot["verdict"] == "none" else f" **{boot['verdict']}**"
    return fmt_interval(metric, boot) + mark


def _join(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def summarize(
    verdicts: Mapping[str, str], better: str, worse: str, same: str = "no significant difference on",
    head: bool = True,
) -> str:
    """A phrase from ``{label: verdict}``: ``Yes: <better> A, B`` / ``No: ...`` / ``Partly`` / ``Mixed``."""
    wins = [k for k, v in verdicts.items() if v == "win"]
    losses = [k for k, v in verdicts.items() if v == "loss"]
    nones = [k for k, v in verdicts.items() if v == "none"]
    if not verdicts:
        return "Not measured"
    parts = []
    if wins:
        parts.append(f"{better} {_join(wins)}")
    if losses:
        parts.append(f"{worse} {_join(losses)}")
    if nones:
        parts.append(f"{same} {_join(nones)}")
    text = "; ".join(parts)
    if not head:
        return text[0].upper() + text[1:]
    word = "Yes" if wins and not losses and not nones else "No" if not wins else "Partly" if not losses else "Mixed"
    return f"{word}: {text}"


def _pct(metric: str) -> str:
    return " pp" if metric.startswith("r") and metric[1:].isdigit() else ""


# --------------------------------------------------------------------------------------------------
# The four answers
# --------------------------------------------------------------------------------------------------


def answer_q1(retrieval: Mapping[str, Any]) -> str:
    title = "**1. Does Proposed beat Baseline (MRR / R@1 / R@10 / MR)?**"
    pair = retrieval.get("pairs", {}).get(pair_name("proposed", "baseline"))
    if not pair:
        return f"{title} Not measured: the study needs proposed and baseline runs on common seeds."
    verdicts, parts = {}, []
    for m in METRICS:
        boot = pair["overall"][m]
        verdicts[METRIC_LABELS[m]] = boot["verdict"]
        parts.append(f"{METRIC_LABELS[m]} {fmt_interval(m, boot)}{_pct(m)} ({WORDS[boot['verdict']]})")
    n_dir = len(retrieval["directions"])
    return (
        f"{title} {summarize(verdicts, 'Proposed beats Baseline on', 'Proposed is worse than Baseline on')}. "
        f"Proposed − Baseline, mean of {n_dir} directions: " + "; ".join(parts)
        + f" (95% bootstrap intervals over {len(pair['seeds'])} seeds × the test {retrieval.get('resampled', 'queries')};"
        " lower MR is better)."
    )


def answer_q2(q2: Mapping[str, Any]) -> str:
    title = "**2. Do the probabilistic models beat InfoNCE (level-3 captions, level-1 captions, fused image + text → audio)?**"
    verdicts, parts = {}, []
    for level, name in (("3", "level-3 captions"), ("1", "level-1 captions")):
        row = q2.get("levels", {}).get(level, {})
        cells = []
        for p in PROBABILISTIC:
            boot = row.get(pair_name(p, "infonce"))
            if boot:
                verdicts[f"{name} ({p})"] = boot["verdict"]
                cells.append(f"{p} − infonce {fmt_interval('mrr', boot)} ({WORDS[boot['verdict']]})")
        if cells:
            parts.append(f"{name}: " + ", ".join(cells))
    fusion = q2.get("fusion", {})
    cells, own = [], []
    for p in PROBABILISTIC:
        boot = fusion.get(f"{p}_poe-infonce_mean")
        if boot:
            verdicts[f"fused queries ({p})"] = boot["verdict"]
            cells.append(f"{p} {fmt_interval('mrr', boot)} ({WORDS[boot['verdict']]})")
        mine = fusion.get(f"{p}_poe-{p}_mean")
        if mine:
            own.append(f"{p} {fmt_interval('mrr', mine)} ({WORDS[mine['verdict']]})")
    if cells:
        parts.append("image + text → audio, product of experts − InfoNCE's mean of the two directions: " + ", ".join(cells))
    if not verdicts:
        return f"{title} Not measured: the study needs probabilistic and InfoNCE runs on a dataset with caption levels."
    tail = f" (A model's own product of experts − its own mean of directions: {', '.join(own)}.)" if own else ""
    return (
        f"{title} {summarize(verdicts, 'better on', 'worse on')}. MRR differences: " + "; ".join(parts)
        + f" (95% bootstrap intervals over seeds × {q2.get('resampled', 'queries')})." + tail
    )


def answer_q3(q3: Mapping[str, Any]) -> str:
    title = "**3. Is kappa a real uncertainty?**"
    parts = []
    for loss, table in q3.get("losses", {}).items():
        cells, verdicts = [], {}
        for m, key in Q3_MEASURES:
            entry = table.get(m, {}).get(key)
            if not entry or not entry.get("ci"):
                continue
            ci = entry["ci"]
            label = f"{m} {MEASURE_LABELS[key]}"
            verdicts[label] = ci["verdict"]
            cells.append(f"{label} {fmt_interval('value', ci, signed=key in ('spearman_level', 'reject_gain'))} "
                         f"({KAPPA_WORDS[ci['verdict']]})")
        if cells:
            n_inf = sum(v == "win" for v in verdicts.values())
            parts.append(f"{loss}: informative on {n_inf} of {len(verdicts)} measures — " + ", ".join(cells))
    if not parts:
        return f"{title} Not measured: the study needs probabilistic runs evaluated with the ambiguity section."
    nulls = q3.get("nulls", {})
    return (
        f"{title} " + "; ".join(parts)
        + f" (mean over seeds [95% interval over seeds]; uninformative: ρ {nulls.get('spearman_level', 0):g}, crop drop "
        f"{nulls.get('crop_drop', 0.5):g}, R-AUROC {nulls.get('r_auroc', 0.5):g}, R@1 gain {nulls.get('reject_gain', 0):g})."
    )


def answer_q4(q4: Mapping[str, Any]) -> str:
    title = "**4. What does SSW change about kappa?**"
    verdicts, parts = {}, []
    for name, row in q4.get("pairs", {}).items():
        diff = row.get("difference")
        if not diff or "proposed" not in row or "baseline" not in row:
            continue
        label = name.replace("-", "–")
        verdicts[label] = diff["verdict"]
        parts.append(
            f"{label} {row['proposed']['mean']:+.3f} vs {row['baseline']['mean']:+.3f}, difference "
            f"{fmt_interval('value', diff)} ({WORDS[diff['verdict']]})"
        )
    if not verdicts:
        return f"{title} Not measured: the study needs proposed and baseline runs on common seeds."
    summary = summarize(verdicts, "SSW raises the agreement on", "SSW lowers the agreement on", head=False)
    return (
        f"{title} {summary}. Agreement of the two kappas one item gets from two modalities (Spearman over the test "
        "items), proposed vs baseline: " + "; ".join(parts) + " (mean over seeds; 95% interval over seeds)."
    )


def answers(report: Mapping[str, Any]) -> dict[str, str]:
    return {
        "q1": answer_q1(report["retrieval"]),
        "q2": answer_q2(report["q2"]),
        "q3": answer_q3(report["q3"]),
        "q4": answer_q4(report["q4"]),
    }


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------


def _losses(retrieval: Mapping[str, Any]) -> list[str]:
    return [l for l in LOSSES if l in retrieval.get("losses", {})]


def _pairs(retrieval: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(a, b) for a, b in PAIRS if pair_name(a, b) in retrieval.get("pairs", {})]


def direction_table(retrieval: Mapping[str, Any], metric: str = "mrr") -> list[str]:
    losses, pairs = _losses(retrieval), _pairs(retrieval)
    head = ["direction", *losses, *[f"{a} − {b}" for a, b in pairs]]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for d in retrieval["directions"]:
        cells = [fmt_mean(metric, retrieval["losses"][l]["directions"][d][metric]) for l in losses]
        cells += [fmt_diff(metric, retrieval["pairs"][pair_name(a, b)]["directions"][d][metric]) for a, b in pairs]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    cells = [fmt_mean(metric, retrieval["losses"][l]["overall"][metric]) for l in losses]
    cells += [fmt_diff(metric, retrieval["pairs"][pair_name(a, b)]["overall"][metric]) for a, b in pairs]
    lines.append("| **mean** | " + " | ".join(cells) + " |")
    return lines


def overall_table(retrieval: Mapping[str, Any]) -> list[str]:
    losses, pairs = _losses(retrieval), _pairs(retrieval)
    head = ["metric", *losses, *[f"{a} − {b}" for a, b in pairs]]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for m in METRICS:
        cells = [fmt_mean(m, retrieval["losses"][l]["overall"][m]) for l in losses]
        cells += [fmt_diff(m, retrieval["pairs"][pair_name(a, b)]["overall"][m]) for a, b in pairs]
        lines.append(f"| {METRIC_LABELS[m]} | " + " | ".join(cells) + " |")
    return lines


def q2_table(q2: Mapping[str, Any]) -> list[str]:
    losses = [l for l in LOSSES if any(l in row.get("mrr", {}) for row in q2.get("levels", {}).values())]
    if not losses:
        return []
    lines = ["| queries (MRR) | " + " | ".join(losses) + " |", "|---|" + "---:|" * len(losses)]
    for level, row in q2.get("levels", {}).items():
        lines.append(f"| level-{level} captions | " + " | ".join(fmt_mean("mrr", row["mrr"].get(l)) for l in losses) + " |")
    fusion = q2.get("fusion", {}).get("mrr", {})
    for kind, name in (("product_of_experts", "product of experts"), ("mean_direction", "mean of directions"),
                       ("image_only", "image alone")):
        lines.append(f"| image + text → audio, {name} | "
                     + " | ".join(fmt_mean("mrr", (fusion.get(l) or {}).get(kind)) for l in losses) + " |")
    return lines


def q3_table(q3: Mapping[str, Any]) -> list[str]:
    keys = list(MEASURE_LABELS)
    lines = ["| loss | modality | " + " | ".join(MEASURE_LABELS[k] for k in keys) + " | κ at bounds |",
             "|---|---|" + "---:|" * (len(keys) + 1)]
    for loss, table in q3.get("losses", {}).items():
        for m in KAPPA_MODALITIES:
            row = table.get(m, {})
            cells = []
            for k in keys:
                e = row.get(k)
                cells.append("–" if not e or e.get("mean") is None else
                             f"{e['mean']:+.3f} ± {e['std']:.3f}" + (f" [{e['ci']['low']:+.3f}, {e['ci']['high']:+.3f}]" if e.get("ci") else ""))
            bounds = row.get("kappa_at_bounds")
            cells.append("–" if not bounds or bounds.get("mean") is None else f"{100 * bounds['mean']:.0f}%")
            lines.append(f"| {loss} | {m} | " + " | ".join(cells) + " |")
    diff = q3.get("difference", {})
    if diff:
        lines += ["", "proposed − baseline (per-seed differences, 95% interval over seeds):", "",
                  "| modality | " + " | ".join(MEASURE_LABELS[k] for k in keys) + " |", "|---|" + "---:|" * len(keys)]
        for m in KAPPA_MODALITIES:
            lines.append(f"| {m} | " + " | ".join(fmt_diff("value", diff.get(m, {}).get(k)) for k in keys) + " |")
    return lines


def reject_table(q3: Mapping[str, Any]) -> list[str]:
    rows = []
    for loss, table in q3.get("losses", {}).items():
        for m in KAPPA_MODALITIES:
            curve = (table.get(m) or {}).get("reject_curve")
            if curve:
                rows.append((loss, m, curve))
    if not rows:
        return []
    head = [f"{100 * p['reject']:.0f}%" for p in rows[0][2]]
    lines = ["| loss | queries | " + " | ".join(head) + " |", "|---|---|" + "---:|" * len(head)]
    for loss, m, curve in rows:
        lines.append(f"| {loss} | {m} | " + " | ".join(f"{100 * p['mean']:.1f}" for p in curve) + " |")
    return lines


def q4_table(q4: Mapping[str, Any]) -> list[str]:
    if not q4.get("pairs"):
        return []
    lines = ["| modalities | proposed | baseline | proposed − baseline |", "|---|---:|---:|---:|"]
    for name, row in q4["pairs"].items():
        cells = [fmt_mean("value", row.get(l)) for l in PROBABILISTIC] + [fmt_diff("value", row.get("difference"))]
        lines.append(f"| {name.replace('-', '–')} | " + " | ".join(cells) + " |")
    med = q4.get("median_kappa", {})
    if med:
        lines += ["", "| median κ over the test media | " + " | ".join(KAPPA_MODALITIES) + " |",
                  "|---|" + "---:|" * len(KAPPA_MODALITIES)]
        for loss, row in med.items():
            cells = ["–" if row[m]["mean"] is None else f"{row[m]['mean']:.3g} ± {row[m]['std']:.2g}" for m in KAPPA_MODALITIES]
            lines.append(f"| {loss} | " + " | ".join(cells) + " |")
    return lines


def tuning_table(tuning: Mapping[str, Any]) -> list[str]:
    lines = ["| loss | setting | changes | val MRR | chosen |", "|---|---|---|---:|---|"]
    for row in tuning["rows"]:
        chosen = tuning["chosen"].get(row["loss"], {}).get("label") == row["label"]
        mrr = "–" if row.get("val_mrr") is None else f"{row['val_mrr']:.4f}"
        lines.append(f"| {row['loss']} | {row['label']} | `{json.dumps(row['overrides'])}` | {mrr} | {'**yes**' if chosen else ''} |")
    return lines


def budget_table(budget: Mapping[str, Any]) -> list[str]:
    lines = ["| stage | " + " | ".join(f"{l} (runs / steps)" for l in LOSSES) + " |", "|---|" + "---:|" * len(LOSSES)]
    for group, row in budget.items():
        lines.append(f"| {group} | " + " | ".join(
            f"{row[l]['runs']} / {row[l]['steps']}" if l in row else "–" for l in LOSSES) + " |")
    return lines


# --------------------------------------------------------------------------------------------------
# The document
# --------------------------------------------------------------------------------------------------


def _earlier_note(report: Mapping[str, Any]) -> str:
    """``, plus N min in earlier invocation(s) ...`` when this one reused their finished runs."""
    e = report.get("earlier")
    if not e:
        return ""
    n = e.get("invocations", 1)
    total = (report.get("seconds") or 0.0) + e.get("seconds", 0.0)
    return (f" (plus {_minutes(e.get('seconds'))} in {n} earlier invocation{'s' if n != 1 else ''} whose finished "
            f"runs it reused: {_minutes(total)} in all)")


def _jobs_text(jobs: int, threads: int) -> str:
    return (f"{jobs} runs at a time with 1 torch thread each (`--jobs {jobs}`)" if jobs > 1
            else f"one run at a time, torch threads {threads}")


def _minutes(seconds: Optional[float]) -> str:
    return "–" if seconds is None else f"{seconds / 60:.1f} min"


def markdown(report: Mapping[str, Any]) -> str:
    s = report["setup"]
    ds = s["dataset"]
    mach = report["machine"]
    title = "Reproduction v2" + (" (--quick: a smoke run, the numbers mean nothing)" if report.get("quick") else "")
    lines = [
        f"## {title}: Proposed vs Baseline vs InfoNCE on the music21 benchmark",
        "",
        f"Command: `{report['command']}` — {_minutes(report['seconds'])} on this machine{_earlier_note(report)} "
        f"({mach['cpu_count']} CPU cores, {_jobs_text(s.get('jobs', 1), mach['torch_threads'])}, device {s.get('device') or 'auto'}, "
        f"load average {mach.get('load_average_at_start', '?')} at the start, {mach.get('load_average_at_end', '?')} at the end); "
        f"estimated before training: {_minutes(report['estimate']['total'])} (a fresh prepare at the README's rate + "
        "the measured feature-cache warm-up + the runs at the probe's measured costs; the probe's own time is not in "
        "it).",
        "",
        f"Data: `{ds['path']}` ({ds['items']['train']} train / {ds['items']['val']} val / {ds['items']['test']} test items; "
        f"prepare options {json.dumps(ds.get('options', {}))}). Every run: {s['epochs']} epoch(s) ({s['steps_per_run']} steps "
        f"of batch {s['batch_size']}), the checkpoint with the best val MRR kept; configs "
        + ", ".join(f"`{p}`" for p in s["configs"].values())
        + (" with the quick mode's tiny encoders and sizes (`QUICK_OVERRIDES`)" if report.get("quick") else "")
        + (f" with `--set {' --set '.join(s['sets'])}`" if s.get("sets") else "")
        + f"; seeds {', '.join(map(str, s['seeds']))}. Test scores: "
        + ", ".join(f"{l} {sc}" for l, sc in s["scores"].items())
        + f". Intervals: {s['replicates']} bootstrap replicates (seed {s['bootstrap_seed']}), drawing seeds and "
        f"test {s.get('resample', 'pieces')} with replacement.",
        "",
        "### The answers",
        "",
    ]
    for key in ("q1", "q2", "q3", "q4"):
        lines += [report["answers"][key], ""]
    retr = report["retrieval"]
    lines += [f"### Retrieval on the test split (mean ± std over {len(s['seeds'])} seeds; differences with 95% intervals)", ""]
    lines += overall_table(retr) + ["", "MRR per direction:", ""] + direction_table(retr)
    q2 = q2_table(report["q2"])
    if q2:
        lines += ["", "### Captions by level and fused queries (test, MRR, mean ± std over seeds)", ""] + q2
    lines += ["", "### Is kappa an uncertainty? (test, mean ± std over seeds [95% interval over seeds])", ""]
    if len(s["seeds"]) < 5:
        lines += [f"(With {len(s['seeds'])} seeds an interval over seeds alone takes only a few distinct values: "
                  "read these intervals and verdicts as a check of the code, not as evidence.)", ""]
    lines += q3_table(report["q3"])
    rej = reject_table(report["q3"])
    if rej:
        lines += ["", "Reject curves: R@1 (%) of the queries kept after rejecting the least confident share:", ""] + rej
    q4 = q4_table(report["q4"])
    if q4:
        lines += ["", "### Agreement of the kappas of one item across modalities (Spearman over the test items)", ""] + q4
    side = report.get("side") or {}
    lines += ["", f"### Side table: the other encoder set (`{side.get('config', '–')}`)", ""]
    if side.get("retrieval"):
        lines += [f"Seeds {', '.join(map(str, side['seeds']))}; the main table's tuned settings; only the encoders differ.", ""]
        lines += overall_table(side["retrieval"])
    else:
        lines.append(side.get("status", "not run"))
    tuning = report.get("tuning")
    lines += ["", "### Tuning (val split only)", ""]
    if tuning:
        lines += [f"{tuning['settings_per_loss']} settings per loss (the same budget for every loss), one run each at seed "
                  f"{tuning['seed']} (not a reported seed), {s['epochs']} epoch(s); the best val MRR (the trainer's, mean over "
                  "the modality pairs) picks each loss's settings for the main and side runs.", ""]
        lines += tuning_table(tuning)
    else:
        lines.append("Not run (`--no-tune`): every loss uses its config as it is.")
    lines += ["", "### Budget and time", ""] + budget_table(s["budget"])
    est = report["estimate"]
    earlier = (report.get("earlier") or {}).get("stages")
    if earlier:
        lines += ["", "| stage | wall time, this invocation | earlier invocations (reused runs) | estimated |",
                  "|---|---:|---:|---:|"]
    else:
        lines += ["", "| stage | wall time | estimated |", "|---|---:|---:|"]
    for stage in list(report["stages"]) + [k for k in (earlier or {}) if k not in report["stages"]]:
        guess = est["groups"].get(stage) if stage in est["groups"] else est.get(stage)
        mine = _minutes(report["stages"].get(stage))
        lines.append(f"| {stage} | {mine} | {_minutes(earlier.get(stage))} | {_minutes(guess)} |" if earlier
                     else f"| {stage} | {mine} | {_minutes(guess)} |")
    costs = report.get("costs")
    if costs:
        lines += ["", "Measured costs (" + costs["source"] + "): seconds per step "
                  + ", ".join(f"{k} {v:.2f}" for k, v in costs["step"].items())
                  + f"; one test evaluation {costs['eval']:.0f} s."]
    if report.get("plots"):
        lines += ["", "Plots: " + ", ".join(f"[{p.rsplit('/', 1)[-1]}]({p})" for p in report["plots"])]
    elif report.get("plots_note"):
        lines += ["", report["plots_note"]]
    return "\n".join(lines) + "\n"


def tuning_markdown(report: Mapping[str, Any]) -> str:
    t = report["tuning"]
    lines = [
        "## Reproduction v2: tuning (val split only)",
        "",
        f"Command: `{report['command']}` — {_minutes(report['seconds'])}. {t['settings_per_loss']} settings per loss, "
        f"seed {t['seed']}, {report['setup']['epochs']} epoch(s); the test split is not read in this mode.",
        "",
    ]
    return "\n".join(lines + tuning_table(t)) + "\n"


__all__ = [
    "answer_q1",
    "answer_q2",
    "answer_q3",
    "answer_q4",
    "answers",
    "fmt_diff",
    "fmt_interval",
    "markdown",
    "summarize",
    "tuning_markdown",
]
