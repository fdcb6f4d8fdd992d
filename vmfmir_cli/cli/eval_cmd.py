"""``vmfmir eval``: retrieval metrics of a trained run on a split, kappa analysis, comparisons, plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from vmfmir_cli.cli.common import err, out, plural, progress, user_errors

SCORE_CHOICES = ("elk", "kl", "bhattacharyya", "expected_cosine", "cosine", "all")
SPLIT_CHOICES = ("test", "val", "train", "all")


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_command(
        runs: Annotated[
            Optional[list[str]],
            typer.Argument(help="Runs to compare side by side (only with --compare).", show_default=False),
        ] = None,
        run: Annotated[
            str, typer.Option("--run", help="Run folder, or runs/latest (symlink or runs/LATEST).")
        ] = "runs/latest",
        data: Annotated[str, typer.Option("--data", help="Prepared dataset folder (manifest.jsonl).")] = "data",
        split: Annotated[str, typer.Option("--split", help="Split to evaluate: test, val, train or all.")] = "test",
        score: Annotated[
            Optional[str],
            typer.Option(
                "--score",
                help="Retrieval score: elk, kl, bhattacharyya, expected_cosine, cosine, or all (compare every "
                "score on one run). Default: the default score of vmfmir query; cosine for infonce runs.",
                show_default=False,
            ),
        ] = None,
        json_file: Annotated[
            Optional[Path], typer.Option("--json", help="Write the metrics as JSON to FILE ('-': stdout, no table).")
        ] = None,
        plots: Annotated[
            Optional[Path],
            typer.Option("--plots", help="Write PNG plots (recall@k, R@1 by kappa decile, kappa histograms) to DIR."),
        ] = None,
        compare: Annotated[
            bool,
            typer.Option("--compare", help="Compare the runs given as arguments: vmfmir eval --compare RUN RUN ..."),
        ] = False,
        batch_size: Annotated[int, typer.Option("--batch-size", help="Items encoded at once.")] = 32,
        device: Annotated[
            Optional[str], typer.Option("--device", help="Device to encode on (cpu, cuda, ...; default cpu).")
        ] = None,
        ambiguity: Annotated[
            bool,
            typer.Option(
                "--ambiguity/--no-ambiguity",
                help="Also encode the graded queries (views of 25/50/100% of every audio and image; every caption "
                "with its level) and report whether kappa tracks their ambiguity (the 'ambiguity' JSON section).",
            ),
        ] = True,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        """Evaluate a trained run: MRR, R@1/5/10 and median rank for every direction.

        Directions: audio->image, image->audio, audio->text, text->audio, image->text, text->image and the multimodal queries image+text->audio, audio+text->image, audio+image->text (the two query vMFs fused as a product of experts).

        Identical media are one query/candidate (the variants of a piece share their score image); a candidate is relevant when an item of the split pairs it with the query.

        The uncertainty section shows, per query modality, R@1 by kappa decile and the Spearman correlation between kappa and reciprocal rank: if kappa is a real uncertainty, low-kappa queries are retrieved worse.

        The ambiguity section (JSON key "ambiguity") uses queries whose ambiguity is known: views keeping the first 25/50/100% of each audio / score image, and every caption of an item (level 3 = full description, 2 = facts, 1 = vague, 0 = says nothing; only its own item is correct). Per query modality: "levels" / "views" (n_queries, mrr, r1, kappa_mean, kappa_median, r_auroc within the level; n_compatible = items a caption fits), "spearman_kappa_level" (kappa vs level / fraction), "spearman_kappa_compatible" (text: kappa vs -log n_compatible), "crop_kappa_drop" (share of items whose 25% view has a lower kappa than the full one; 0.5 = chance), "r_auroc" (AUROC of kappa for rank 1; 0.5 = uninformative) and "r_auroc_ci95" (its 95% interval, a bootstrap over the queries' items), "r_auroc_level" ("level AUROC": the same AUROC of the caption level / view fraction itself: what a kappa that grows with the level and knows nothing else scores; kappa can exceed it; also for deterministic runs), "reject_curve" (R@1 after rejecting the 0..90% lowest-kappa queries). "fusion": image+text->audio by caption level, product of experts vs the mean of the two directions vs the image alone. Deterministic (infonce) runs get null for every number that needs kappa.
        """
        with user_errors():
            from vmfmir_cli.errors import ConfigError

            if split not in SPLIT_CHOICES:
                raise ConfigError(f"unknown --split {split!r}; use one of {', '.join(SPLIT_CHOICES)}")
            if score is not None and score not in SCORE_CHOICES:
                raise ConfigError(f"unknown --score {score!r}; use one of {', '.join(SCORE_CHOICES)}")
            if runs and not compare:
                raise ConfigError(
                    f"unexpected argument(s) {' '.join(runs)}: to compare runs use vmfmir eval --compare RUN RUN ...; "
                    "to evaluate one run use --run RUN"
                )
            _check_outputs(json_file, plots)  # a read-only disk or a file in the way: before the work
            if compare:
                if not runs:
                    raise ConfigError("--compare needs the runs to compare: vmfmir eval --compare RUN RUN ...")
                if score == "all":
                    raise ConfigError("--compare and --score all cannot be combined; compare runs under one score")
                _compare_runs(runs, data, split, score, json_file, plots, batch_size, device, quiet, ambiguity)
            elif score == "all":
                _compare_scores(run, data, split, json_file, plots, batch_size, device, quiet, ambiguity)
            else:
                _single(run, data, split, score, json_file, plots, batch_size, device, quiet, ambiguity)


# --------------------------------------------------------------------------------------------------
# The three modes
# --------------------------------------------------------------------------------------------------


def _options(
    run: str, data: str, split: str, score: Optional[str], batch_size: int, device: Optional[str], ambiguity: bool = True
):
    from vmfmir_cli.evaluation.evaluate import EvalOptions

    options = EvalOptions(
        run=run, data=data, split=split, score=score, batch_size=batch_size, device=device, ambiguity=ambiguity
    )
    options.validate()
    return options


def _encode(options, quiet: bool, label: str = ""):
    from vmfmir_cli.evaluation.evaluate import load_and_encode, load_split, resolve_run

    resolve_run(options.run)  # cheap checks first: a user error never leaves a progress bar behind
    load_split(options.data, options.split)
    with progress(quiet=quiet, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def on_progress(modality: str, done: int, total: int) -> None:
            if modality not in tasks:
                tasks[modality] = bar.add_task(f"{label}encoding {modality}", total=total, rate="")
            bar.update(tasks[modality], completed=done)

        return load_and_encode(options, on_progress=on_progress)


def _single(run, data, split, score, json_file, plots, batch_size, device, quiet, ambiguity=True) -> None:
    from vmfmir_cli.evaluation.evaluate import evaluate_loaded

    options = _options(run, data, split, score, batch_size, device, ambiguity)
    loaded = _encode(options, quiet)
    result = evaluate_loaded(loaded, options)
    doc = result.to_json()
    to_stdout = _write_json(json_file, doc)
    if not to_stdout:
        _print_result(result)
    _write_plots(plots, [(None, result)])


def _compare_scores(run, data, split, json_file, plots, batch_size, device, quiet, ambiguity=True) -> None:
    from vmfmir_cli.engine.scores import SCORE_KINDS
    from vmfmir_cli.evaluation.compare import compare_results
    from vmfmir_cli.evaluation.evaluate import evaluate_loaded

    options = _options(run, data, split, "all", batch_size, device, ambiguity)
    loaded = _encode(options, quiet)
    results = [evaluate_loaded(loaded, options, kind) for kind in SCORE_KINDS]
    docs = [r.to_json() for r in results]
    comparison = compare_results(docs, labels=list(SCORE_KINDS))
    first = docs[0]
    doc = {
        "run": first["run"],
        "split": split,
        "n_items": first["n_items"],
        "loss": first["loss"],
        "best_score_by_mean_mrr": comparison["labels"][comparison["directions"]["mean"]["mrr"]["best"][0]]
        if "mean" in comparison["directions"] and comparison["directions"]["mean"]["mrr"]["best"]
        else None,
        "compare": comparison,
        "scores": {kind: d for kind, d in zip(SCORE_KINDS, docs)},
    }
    if not _write_json(json_file, doc):
        title = f"vmfmir eval --score all: run {first['run']}, {split} split ({plural(first['n_items'], 'item')})"
        _print_comparison(comparison, title, "score")
        _print_notes(results[0].notes)
    _write_plots(plots, [(r.score, r) for r in results])


def _compare_runs(runs, data, split, score, json_file, plots, batch_size, device, quiet, ambiguity=True) -> None:
    from vmfmir_cli.evaluation.compare import compare_results
    from vmfmir_cli.evaluation.evaluate import evaluate_loaded

    results = []
    for i, run in enumerate(runs):
        options = _options(run, data, split, score, batch_size, device, ambiguity)
        loaded = _encode(options, quiet, label=f"[{i + 1}/{len(runs)}] ")
        results.append(evaluate_loaded(loaded, options))
    labels = _labels(runs, [r.run for r in results])
    docs = [r.to_json() for r in results]
    comparison = compare_results(docs, labels=labels)
    doc = {"split": split, "n_items": docs[0]["n_items"], "compare": comparison, "runs": docs}
    if not _write_json(json_file, doc):
        scores = ", ".join(f"{lab}: {r.score}" + (f" ({r.loss})" if r.loss else "") for lab, r in zip(labels, results))
        title = f"vmfmir eval --compare: {split} split ({plural(docs[0]['n_items'], 'item')}); scores {scores}"
        _print_comparison(comparison, title, "run")
        for lab, r in zip(labels, results):
            _print_notes(r.notes, prefix=f"{lab}: ")
    _write_plots(plots, list(zip(labels, results)))


def _labels(given: list[str], names: list[str]) -> list[str]:
    """Run folder names, or the arguments as typed when two runs share a folder name."""
    labels = names if len(set(names)) == len(names) else list(given)
    seen: dict[str, int] = {}
    out_labels = []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out_labels.append(lab if seen[lab] == 1 else f"{lab} ({seen[lab]})")
    return out_labels


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def _check_outputs(json_file: Optional[Path], plots: Optional[Path]) -> None:
    from vmfmir_cli.utils_io import ensure_writable

    if json_file is not None and str(json_file) != "-":
        ensure_writable(json_file, "file")
    if plots is not None:
        ensure_writable(plots, "folder")


def _write_json(json_file: Optional[Path], doc: dict) -> bool:
    """Write ``doc``; True when it went to stdout (then no table is printed)."""
    if json_file is None:
        return False
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    if str(json_file) == "-":
        typer.echo(text)
        return True
    from vmfmir_cli.utils_io import write_text

    write_text(json_file, text + "\n")
    err.print(f"wrote {json_file}", highlight=False)
    return False


def _write_plots(plots: Optional[Path], results: list) -> None:
    if plots is None:
        return
    from vmfmir_cli.evaluation.plots import write_plots

    for label, result in results:
        target = plots if label is None else plots / _safe(label)
        for path in write_plots(result, target):
            err.print(f"wrote {path}", highlight=False)


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label) or "run"


def _fmt(metric: str, value: Optional[float]) -> str:
    if value is None:
        return "-"
    if metric == "mrr":
        return f"{value:.3f}"
    if metric == "mr":
        return _short_number(value)
    return f"{100 * value:.1f}%"


def _short_number(value: float, signed: bool = False) -> str:
    """5 -> "5", 5.5 -> "5.5", 5.1667 -> "5.17" (median ranks and their means)."""
    text = f"{value:+.2f}" if signed else f"{value:.2f}"
    return text.rstrip("0").rstrip(".")


def _fmt_diff(metric: str, value: Optional[float]) -> str:
    if value is None:
        return ""
    if metric == "mrr":
        text = f"{value:+.3f}"
    elif metric == "mr":
        text = _short_number(value, signed=True)
    else:
        text = f"{100 * value:+.1f}"
    better = value < 0 if metric == "mr" else value > 0
    if value == 0:
        return f"[dim]{text}[/]"
    return f"[green]{text}[/]" if better else f"[red]{text}[/]"


def _print_result(result) -> None:
    from rich.markup import escape
    from rich.table import Table

    from vmfmir_cli.evaluation.retrieval import METRIC_LABELS, METRICS
    from vmfmir_cli.evaluation.tasks import RELEVANCE_CONVENTION

    loss = f" ({result.loss})" if result.loss else ""
    table = Table(
        title=escape(
            f"vmfmir eval: run {result.run}{loss}, {result.split} split ({plural(result.n_items, 'item')}), score {result.score}"
        ),
        title_justify="left",
        caption=escape(f"relevance: {RELEVANCE_CONVENTION}. MR = median rank (lower is better)."),
        caption_justify="left",
    )
    table.add_column("direction")
    for metric in METRICS:
        table.add_column(METRIC_LABELS[metric], justify="right")
    table.add_column("queries", justify="right")
    table.add_column("candidates", justify="right")
    fused_started = False
    for name, d in result.directions.items():
        if len(d.sources) > 1 and not fused_started:
            table.add_section()
            fused_started = True
        m = d.metrics
        table.add_row(name, *(_fmt(k, m[k]) for k in METRICS), str(m["n_queries"]), str(d.n_candidates))
    out.print(table)
    if result.uncertainty:
        _print_uncertainty(result)
    if result.ambiguity:
        _print_ambiguity(result.ambiguity)
    _print_notes(result.notes)


def _print_uncertainty(result) -> None:
    from rich.table import Table

    nbins = max(len(r["kappa_deciles"]) for r in result.uncertainty.values())
    table = Table(
        title="Is kappa an uncertainty? R@1 by kappa decile of the query (1 = lowest kappa)",
        title_justify="left",
        caption=(
            "Spearman = rank correlation between a query's kappa and its reciprocal rank (pooled over the "
            "query modality's directions); > 0 means low kappa marks hard queries."
        ),
        caption_justify="left",
    )
    table.add_column("query")
    table.add_column("n", justify="right")
    table.add_column("Spearman", justify="right")
    for b in range(1, nbins + 1):
        table.add_column(f"D{b}" if nbins == 10 else f"B{b}", justify="right")
    table.add_column("kappa range", justify="right")
    for modality, report in result.uncertainty.items():
        bins = report["kappa_deciles"]
        cells = [f"{100 * b['r1']:.0f}%" for b in bins] + [""] * (nbins - len(bins))
        rho = report["spearman"]
        krange = f"{bins[0]['kappa_min']:.3g}..{bins[-1]['kappa_max']:.3g}" if bins else "-"
        table.add_row(modality, str(report["n_queries"]), "-" if rho is None else f"{rho:+.3f}", *cells, krange)
    out.print(table)


def _num(value: Optional[float], fmt: str = "{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def _auroc(section: dict) -> str:
    """R-AUROC with its 95% interval (a bootstrap over the queries' items) when there is one."""
    ci = section.get("r_auroc_ci95")
    text = _num(section.get("r_auroc"))
    return text if not ci else f"{text} [{ci[0]:.2f}, {ci[1]:.2f}]"


def _print_ambiguity(amb: dict) -> None:
    """The ambiguity section: by caption level / view fraction, kappa checks, and fusion by text level."""
    from rich.table import Table

    table = Table(
        title="Ambiguity: retrieval and kappa by caption level (text) and view fraction (audio, image)",
        title_justify="left",
        caption=(
            "level 3 = full description ... 0 = says nothing; fit = median number of items of the split a caption "
            "describes; a view keeps the first 25/50/100% of the audio or score image; R-AUROC: kappa as a "
            "predictor of rank 1 among the queries of that row only"
        ),
        caption_justify="left",
    )
    for col in ("query", "level", "n", "MRR", "R@1", "kappa mean", "kappa median", "R-AUROC", "fit"):
        table.add_column(col, justify="left" if col == "query" else "right")
    for modality in ("text", "audio", "image"):
        section = amb.get(modality)
        if not section:
            continue
        table.add_section()
        rows = section.get("levels") or section.get("views") or []
        for i, row in enumerate(rows):
            level = str(row["level"]) if "level" in row else f"{100 * row['fraction']:.0f}%"
            fit = row.get("n_compatible_median")
            table.add_row(
                modality if i == 0 else "", level, str(row["n_queries"]), f"{row['mrr']:.3f}", f"{100 * row['r1']:.1f}%",
                _num(row.get("kappa_mean"), "{:.3g}"), _num(row.get("kappa_median"), "{:.3g}"),
                _num(row.get("r_auroc")), "" if fit is None else f"{fit:g}",
            )
    out.print(table)
    checks = Table(
        title="Is kappa the known ambiguity? (uninformative kappa: Spearman 0, crop drop 0.5, R-AUROC 0.5)",
        title_justify="left",
        caption=(
            "rho level: Spearman(kappa, caption level / view fraction); rho fit: Spearman(kappa, -log(items a caption "
            "fits)); crop drop: share of items whose 25% view has a lower kappa than the full one; R-AUROC: kappa "
            "as a predictor of rank 1 [95% interval, bootstrap over items]; level AUROC: the caption level / view "
            "fraction itself as that predictor (a kappa that only knows the level; kappa can do better); at bounds: share "
            "of the split's media whose kappa is within 5% of the head's bounds"
        ),
        caption_justify="left",
    )
    for col in ("query", "rho level", "rho fit", "crop drop", "R-AUROC", "level AUROC", "at bounds"):
        checks.add_column(col, justify="left" if col == "query" else "right", no_wrap=col == "R-AUROC")
    reject = Table(
        title="Rejecting the least confident queries (lowest kappa): R@1 of the rest (flat: kappa does not help)",
        title_justify="left",
    )
    for col in ("query", "none rejected", "50% rejected", "90% rejected"):
        reject.add_column(col, justify="left" if col == "query" else "right")
    for modality in ("text", "audio", "image"):
        section = amb.get(modality)
        if not section:
            continue
        checks.add_row(
            modality,
            _num(section.get("spearman_kappa_level"), "{:+.3f}"),
            _num(section.get("spearman_kappa_compatible"), "{:+.3f}") if modality == "text" else "",
            _num(section.get("crop_kappa_drop")) if modality != "text" else "",
            _auroc(section),
            _num(section.get("r_auroc_level")),
            _num((amb.get("kappa_at_bounds") or {}).get(modality), "{:.1%}"),
        )
        curve = {round(p["reject"], 2): p["r1"] for p in (section.get("reject_curve") or [])}
        if curve:
            reject.add_row(modality, *(_num(curve.get(p), "{:.1%}") for p in (0.0, 0.5, 0.9)))
    if not amb.get("kappa_used", True):
        checks.caption = "kappa is not trained in this run (deterministic loss): no kappa check but the level's own AUROC"
    out.print(checks)
    if reject.row_count:
        out.print(reject)
    fusion = amb.get("fusion")
    if fusion:
        fused = Table(
            title=f"Fusion, {fusion['direction']} by caption level: MRR (R@1)",
            title_justify="left",
            caption=(
                "product of experts = vmfmir query --image --text; mean direction = cosine of the normalised mean of "
                "the two mu (a deterministic model); the answer is the item's own recording"
            ),
            caption_justify="left",
        )
        for col in ("level", "n", "product of experts", "mean direction", "image only"):
            fused.add_column(col, justify="right")
        for row in fusion["levels"]:
            cells = [
                f"{row[k]['mrr']:.3f} ({100 * row[k]['r1']:.1f}%)"
                for k in ("product_of_experts", "mean_direction", "image_only")
            ]
            fused.add_row(str(row["level"]), str(row["n_queries"]), *cells)
        out.print(fused)


def _print_comparison(comparison: dict, title: str, what: str) -> None:
    """Evaluations as columns (value and Δ per evaluation) when that fits the terminal, else as rows."""
    from rich.markup import escape
    from rich.table import Table

    from vmfmir_cli.evaluation.retrieval import METRIC_LABELS, METRICS

    labels = comparison["labels"]
    ref = comparison["reference"]
    n = len(labels)
    wide_width = 20 + 9 + sum(max(8, len(lab)) + 3 for lab in labels) + sum(max(9, len(lab) + 2) + 3 for lab in labels[1:])
    wide = wide_width <= out.width
    table = Table(
        title=escape(title),
        title_justify="left",
        caption=escape(
            f"best {what} in bold; Δ = difference to {ref} (green: better, red: worse; R@k in points). "
            f"'mean' averages the directions all {what}s have."
        ),
        caption_justify="left",
    )
    table.add_column("direction", overflow="fold")

    def cell(metric: str, row: dict, i: int) -> str:
        text = _fmt(metric, row["values"][i])
        return f"[bold]{text}[/]" if i in row["best"] and n > 1 else text

    if wide:
        table.add_column("metric")
        for i, lab in enumerate(labels):
            table.add_column(escape(lab), justify="right", no_wrap=True)
            if i > 0:
                table.add_column(f"Δ {escape(lab)}", justify="right", no_wrap=True)
        for name, per_metric in comparison["directions"].items():
            table.add_section()
            for j, (metric, row) in enumerate(per_metric.items()):
                cells = []
                for i in range(n):
                    cells.append(cell(metric, row, i))
                    if i > 0:
                        cells.append(_fmt_diff(metric, row["diff"][i]))
                table.add_row(name if j == 0 else "", METRIC_LABELS.get(metric, metric), *cells)
    else:  # narrow terminal: one row per evaluation, Δ under each value
        table.add_column(what, overflow="fold")
        for metric in METRICS:
            table.add_column(METRIC_LABELS[metric], justify="right", no_wrap=True)
        for name, per_metric in comparison["directions"].items():
            table.add_section()
            for i, lab in enumerate(labels):
                cells = []
                for metric in METRICS:
                    row = per_metric[metric]
                    diff = _fmt_diff(metric, row["diff"][i]) if i > 0 else ""
                    cells.append(cell(metric, row, i) + (f"\n{diff}" if diff else ""))
                table.add_row(name if i == 0 else "", escape(lab), *cells)
    out.print(table)


def _print_notes(notes: list[str], prefix: str = "") -> None:
    from rich.markup import escape

    for note in notes:
        out.print(f"[yellow]note:[/] {escape(prefix + note)}", highlight=False)
