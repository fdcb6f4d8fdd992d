"""The study from start to end (what ``benchmarks/reproduce.py`` runs): prepare -> probe + estimate ->
tune (val) -> main and side runs (train + test evaluation) -> statistics -> report and plots.

Every stage is resumable: rerunning the same command reuses finished runs and evaluations.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

from benchmarks.reproduction import analysis, parallel, plan, plots, ranks, report, settings, stages
from benchmarks.reproduction.settings import LOSSES, ROOT
from benchmarks.reproduction.stages import log


def _shown_path(path: Path) -> str:
    """A path relative to the checkout when it lies inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _run_config(base: dict, spec: plan.RunSpec) -> dict:
    return settings.apply(base, spec.overrides)


def _config_file(runs: Path, spec: plan.RunSpec, base: dict) -> Path:
    return stages.write_config(runs / spec.group / f"{spec.name}.toml", _run_config(base, spec),
                               f"{spec.group} run {spec.name} ({spec.loss}, seed {spec.seed})")


class Study:
    """The resolved options of one invocation and what it has measured so far."""

    def __init__(self, args: argparse.Namespace, argv: list[str]):
        self.args = args
        self.quick = args.quick
        preset = settings.QUICK if args.quick else settings.FULL
        self.preset = preset
        self.epochs = args.epochs or preset.epochs
        self.seeds = args.seeds or preset.seeds
        self.tune_n = 0 if args.no_tune else (args.tune_settings if args.tune_settings is not None else preset.tune_settings)
        self.tune_seed = preset.tune_seed if args.tune_seed is None else args.tune_seed
        self.side_seeds = args.side_seeds or preset.side_seeds
        self.replicates = args.replicates or preset.replicates
        suffix = "-quick" if args.quick else ""
        self.data = (args.data or ROOT / "data" / f"reproduction{suffix}").resolve()
        self.runs = (args.runs or ROOT / "runs" / f"reproduction{suffix}").resolve()
        self.out = args.out.resolve()
        self.stem = "reproduction_quick" if args.quick else "reproduction"
        self.ranks_dir = self.out / f"{self.stem}-ranks"
        self.losses = [l.strip() for l in args.losses.split(",") if l.strip()]
        unknown = [l for l in self.losses if l not in LOSSES]
        if unknown:
            raise SystemExit(f"unknown loss {unknown[0]!r}; choose from {', '.join(LOSSES)}")
        if args.tune and self.tune_n < 1:
            raise SystemExit("--tune runs the tuning stage only: it needs --tune-settings >= 1 (and no --no-tune)")
        self.config_dir = args.configs.resolve()
        if args.jobs < 1:
            raise SystemExit(f"--jobs must be at least 1 (got {args.jobs})")
        self.jobs = args.jobs
        #: torch threads of every training process: one each when runs share the machine
        self.threads = 1 if self.jobs > 1 else None
        self.eval_lock = threading.Lock()  # evaluations run in this process, one at a time
        self.command = shlex.join(["python", "benchmarks/reproduce.py", *argv])
        self.t0 = time.perf_counter()
        self.stage_seconds: dict[str, float] = {}

        raw = settings.loss_configs(self.config_dir, self.losses)
        extra = {**settings.STUDY_OVERRIDES, **(settings.QUICK_OVERRIDES if args.quick else {})}
        self.base = {loss: settings.apply(values, extra) for loss, values in raw.items()}
        diff = settings.shared_differences(self.base)
        if diff:
            raise SystemExit(
                f"the loss configs in {self.config_dir} differ on {', '.join(diff)}; the study compares losses with "
                "the same encoders, data, augmentation and budget"
            )
        self.side_config = args.side_config.resolve() if args.side_config else None
        self.side_encoders = settings.side_encoders(self.side_config) if args.side else None
        if not args.side:
            self.side_status = ("Not run: opt-in with `--side` (the default plan leaves it out to stay within the "
                                "2-hour budget).")
        elif self.side_encoders is None:
            self.side_status = (f"Skipped: {_shown_path(self.side_config)} does not exist (the other encoder set is not "
                                "available yet).")
        else:
            self.side_status = "run"

    # -- helpers -----------------------------------------------------------------------------------

    def _timed(self, stage: str, seconds: float) -> None:
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds

    def steps_for(self, specs: list[plan.RunSpec]) -> dict[str, int]:
        return {s.key: self.epochs * self.spe for s in specs}

    def plan_all(self, chosen: dict) -> list[plan.RunSpec]:
        grid = settings.tuning_grid(self.losses, self.tune_n)
        return plan.tune_specs(grid, self.tune_seed) + plan.study_specs(
            self.losses, self.seeds, chosen, self.side_encoders, self.side_seeds
        )

    # -- stages ------------------------------------------------------------------------------------

    def prepare(self) -> dict:
        pieces = self.args.pieces or self.preset.pieces
        fresh = not self.args.skip_prepare and not (self.data / "manifest.jsonl").is_file()
        self.prepare_estimate = pieces * plan.PREPARE_SECONDS_PER_PIECE if fresh else 0.0
        if fresh:
            log(f"prepare: {pieces} pieces; about {self.prepare_estimate / 60:.0f} min at the README's rate")
        prep = stages.prepare(self.data, pieces, self.args.variants or self.preset.variants, self.args.workers,
                              self.args.skip_prepare)
        self._timed("prepare", prep["seconds"])
        self.dataset = prep["dataset"]
        items = self.dataset["items"]
        self.batch = settings.resolved(self.base[self.losses[0]])["batch_size"]
        self.spe = stages.steps_per_epoch(items["train"], self.batch)
        return prep

    def costs(self, specs: list[plan.RunSpec]) -> plan.Costs:
        folder = self.runs / "probe"
        cache = folder / "costs.json"
        keys = sorted({plan.cost_key(s) for s in specs})
        if cache.is_file() and not self.args.reprobe:
            saved = json.loads(cache.read_text())
            same = (saved.get("data") == str(self.data) and saved.get("sets") == self.args.sets
                    and saved.get("jobs", 1) == self.jobs)
            if same and sorted(saved.get("step", {})) == keys:
                log(f"probe: reusing the costs measured earlier ({cache}; --reprobe measures again)")
                return plan.Costs(saved["step"], saved["overhead"], saved["val"], saved["eval"], saved["source"])
        configs = {}
        for spec in specs:
            key = plan.cost_key(spec)
            if key not in configs:
                probe_spec = plan.RunSpec(key.replace(":", "-"), "probe", spec.loss, 0,
                                          {"encoders": spec.overrides["encoders"]} if spec.group == "side" else {})
                configs[key] = _config_file(self.runs, probe_spec, self.base[spec.loss])
        t0 = time.perf_counter()
        items = self.dataset["items"]
        costs = stages.probe(specs, configs, self.data, folder / "runs", self.epochs, items["train"], items["val"],
                             self.args.device, self.args.sets, jobs=self.jobs)
        self._timed("probe", time.perf_counter() - t0)
        stages.write_json(cache, {**costs.to_json(), "data": str(self.data), "sets": self.args.sets, "jobs": self.jobs})
        return costs

    def tune(self) -> Optional[dict]:
        grid = settings.tuning_grid(self.losses, self.tune_n)
        if not grid:
            return None
        t0 = time.perf_counter()
        specs = plan.tune_specs(grid, self.tune_seed)

        configs = {s.key: _config_file(self.runs, s, self.base[s.loss]) for s in specs}  # here, not in the workers

        def one(spec: plan.RunSpec) -> dict:
            return stages.train(spec, configs[spec.key], self.data, self.runs / "tune", self.epochs, self.args.sets,
                                self.args.device, self.threads)

        rows = []
        runs = parallel.run_tasks([parallel.Task("tune", lambda s=s: one(s)) for s in specs], self.jobs,
                                  on_interrupt=stages.stop_commands)
        for spec, run in zip(specs, runs):
            self.train_records[spec.key] = run
            self.reused += bool(run.get("reused"))
            rows.append({"label": spec.label, "loss": spec.loss, "overrides": spec.overrides,
                         "val_mrr": (run.get("summary") or {}).get("best_mrr"), "seconds": run.get("seconds")})
        chosen = {}
        for loss in self.losses:
            mine = [r for r in rows if r["loss"] == loss and r["val_mrr"] is not None]
            if mine:
                best = max(mine, key=lambda r: r["val_mrr"])  # ties: the first (the recipe as it is)
                chosen[loss] = {"label": best["label"], "overrides": best["overrides"], "val_mrr": best["val_mrr"]}
        self._timed("tune", time.perf_counter() - t0)
        return {"settings_per_loss": self.tune_n, "seed": self.tune_seed, "rows": rows, "chosen": chosen}

    def warm(self, specs: list[plan.RunSpec]) -> float:
        """Fill the side encoders' feature cache (``jobs`` shards side by side) when side runs are
        planned and not all finished, before the probe measures them; its wall seconds."""
        side = [s for s in specs if s.group == "side"]
        if not side or all(stages.finished(self.runs / s.group / s.name) for s in side):
            return 0.0
        # the side runs' own config (base recipe + study overrides + the side encoders), with --set
        cfg = _config_file(self.runs, plan.RunSpec("side-encoders", "warm", side[0].loss, 0,
                                                   {"encoders": self.side_encoders}), self.base[side[0].loss])
        t0 = time.perf_counter()
        tasks = [parallel.Task("warm", lambda i=i: stages.warm_features(self.data, cfg, i, self.jobs, self.threads,
                                                                       self.args.sets))
                 for i in range(self.jobs)]
        parallel.run_tasks(tasks, self.jobs, on_interrupt=stages.stop_commands)
        seconds = time.perf_counter() - t0
        self._timed("warm", seconds)
        return seconds

    def train_and_evaluate(self, specs: list[plan.RunSpec], est: dict) -> list[dict]:
        """Train and evaluate every run (``--jobs`` at a time)."""
        progress = {"est": 0.0, "act": 0.0, "left": [s.key for s in specs]}

        configs = {s.key: _config_file(self.runs, s, self.base[s.loss]) for s in specs}  # here, not in the workers

        def one(spec: plan.RunSpec) -> dict:
            t0 = time.perf_counter()
            run = stages.train(spec, configs[spec.key], self.data, self.runs / spec.group, self.epochs, self.args.sets,
                               self.args.device, self.threads)
            with self.eval_lock:  # one evaluation at a time, in this process
                if self.threads:
                    import torch

                    torch.set_num_threads(self.threads)  # this worker thread's own intra-op pool
                record = ranks.evaluate(spec, Path(run["run_dir"]), self.data,
                                         self.ranks_dir / f"{spec.group}-{spec.name}.json", self.args.score,
                                         self.args.device)
            return {"spec": spec, "run": run, "record": record, "seconds": time.perf_counter() - t0}

        def done(_: int, out: dict) -> None:
            spec, run = out["spec"], out["run"]
            self.train_records[spec.key] = run
            self.reused += bool(run.get("reused"))
            progress["left"].remove(spec.key)
            if not run.get("reused"):
                progress["est"] += est["runs"].get(spec.key, 0.0)
                progress["act"] += out["seconds"]
            scale = progress["act"] / progress["est"] if progress["est"] else 1.0
            left = sum(est["runs"].get(k, 0.0) for k in progress["left"]) * scale / self.jobs
            if progress["left"]:
                log(f"{len(specs) - len(progress['left'])}/{len(specs)} runs done; about {left / 60:.0f} min left")

        outcome = parallel.Outcome()
        results = parallel.run_tasks([parallel.Task(s.group, lambda s=s: one(s)) for s in specs], self.jobs, done,
                                     outcome, on_interrupt=stages.stop_commands)
        for group in outcome.spans:
            self._timed(group, outcome.wall(group))
        return [r["record"] for r in results]

    # -- the report --------------------------------------------------------------------------------

    def analyse(self, records: list[dict], doc: dict) -> dict:
        t0 = time.perf_counter()
        b, seed = self.replicates, self.args.bootstrap_seed
        main = analysis.by_loss(records, "main")
        by_piece = self.args.resample == "pieces"
        doc["retrieval"] = analysis.retrieval(main, replicates=b, seed=seed, by_piece=by_piece)
        doc["q2"] = analysis.question2(main, replicates=b, seed=seed, by_piece=by_piece)
        doc["q3"] = analysis.question3(main, replicates=b, seed=seed)
        doc["q4"] = analysis.question4(main, replicates=b, seed=seed)
        side = analysis.by_loss(records, "side")
        doc["side"] = {"config": _shown_path(self.side_config) if self.side_config else None, "status": self.side_status}
        if side:
            doc["side"].update({"retrieval": analysis.retrieval(side, replicates=b, seed=seed, by_piece=by_piece),
                                "seeds": sorted({r["seed"] for recs in side.values() for r in recs})})
        doc["answers"] = report.answers(doc)
        folder = self.out / f"{self.stem}-plots"
        if plots.available():
            doc["plots"] = [str(p.relative_to(self.out)) for p in plots.write_plots(doc, main, folder)]
        else:
            doc["plots"], doc["plots_note"] = [], "Plots skipped: matplotlib is not installed."
        self._timed("analysis", time.perf_counter() - t0)
        return doc

    def setup(self, chosen: dict, specs: list[plan.RunSpec]) -> dict:
        from vmfmir_cli.evaluation.evaluate import default_score

        return {
            "dataset": {**self.dataset, "path": _shown_path(self.data)},
            "epochs": self.epochs,
            "steps_per_run": self.epochs * self.spe,
            "batch_size": self.batch,
            "seeds": list(range(self.seeds)),
            "losses": self.losses,
            "configs": {l: _shown_path(self.config_dir / f"{l}.toml") for l in self.losses},
            "recipe": {l: settings.resolved(settings.apply(self.base[l], chosen.get(l, {}).get("overrides", {})))
                       for l in self.losses},
            "sets": self.args.sets,
            "device": self.args.device,
            "jobs": self.jobs,
            "scores": {l: self.args.score or default_score(l) for l in self.losses},
            "replicates": self.replicates,
            "bootstrap_seed": self.args.bootstrap_seed,
            "resample": self.args.resample,
            "budget": plan.budget_per_loss(specs, self.steps_for(specs)),
            "runs_folder": str(self.runs),
            "ranks_folder": str(self.ranks_dir),
        }

    def finish(self, doc: dict, tuning_only: bool = False, seconds: Optional[float] = None) -> int:
        doc["seconds"] = time.perf_counter() - self.t0 if seconds is None else seconds
        doc["stages"] = dict(self.stage_seconds)
        if not self.args.report_only:
            doc["earlier"] = self.earlier_time(tuning_only) if self.reused else None
            doc["machine"]["load_average_at_end"] = stages.load_average()
        stem = ("tuning_quick" if self.quick else "tuning") if tuning_only else self.stem
        text = report.tuning_markdown(doc) if tuning_only else report.markdown(doc)
        stages.write_json(self.out / f"{stem}.json", doc)
        from vmfmir_cli.utils_io import write_text

        write_text(self.out / f"{stem}.md", text)
        print(text)
        log(f"wrote {self.out / (stem + '.json')} and {stem}.md in {doc['seconds'] / 60:.1f} min")
        return 0

    # -- the modes ---------------------------------------------------------------------------------

    def earlier_time(self, tuning_only: bool) -> Optional[dict]:
        """The time of the earlier invocations whose finished runs this one reused: the seconds and
        stage times of the report they left in ``--out`` (cumulative: that report carries its own
        earlier ones), so that the report states what the whole study cost, not only this call."""
        stem = ("tuning_quick" if self.quick else "tuning") if tuning_only else self.stem
        path = self.out / f"{stem}.json"
        try:
            before = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        prior = before.get("earlier") or {}
        stages_before = dict(prior.get("stages", {}))
        for stage, seconds in (before.get("stages") or {}).items():
            stages_before[stage] = stages_before.get(stage, 0.0) + float(seconds)
        return {"seconds": float(before.get("seconds", 0.0)) + float(prior.get("seconds", 0.0)),
                "stages": stages_before, "invocations": int(prior.get("invocations", 0)) + 1,
                "command": before.get("command")}

    def run(self) -> int:
        self.train_records: dict[str, dict] = {}
        self.reused = 0
        import torch

        threads_before = torch.get_num_threads()
        if self.jobs > 1:  # this process's evaluations share the cores with the training processes
            torch.set_num_threads(1)
        machine = stages.machine_info()
        prep = self.prepare()
        items = self.dataset["items"]
        log(f"reproduce: {items['train']} / {items['val']} / {items['test']} items, {self.epochs} epochs "
            f"({self.epochs * self.spe} steps), {self.seeds} seeds x {', '.join(self.losses)}, {self.tune_n} tuning "
            f"setting(s) per loss, side table: {'yes' if self.side_encoders else 'no'}; machine {machine['cpu_count']} "
            f"cores, load {machine['load_average_at_start']}")
        specs = self.plan_all({})
        if self.args.tune:  # only the tuning runs
            specs = [s for s in specs if s.group == "tune"]
        warm = self.warm(specs)
        costs = self.costs(specs)
        est = plan.estimate(specs, self.steps_for(specs), self.epochs, costs, self.prepare_estimate, self.jobs, warm)
        budget = self.args.budget_minutes * 60
        log(plan.describe(est, budget))
        if est["total"] > budget:
            fits = plan.epochs_within(specs, self.spe, self.epochs, costs, budget, self.prepare_estimate, self.jobs,
                                      warm)
            log(f"the plan does not fit {self.args.budget_minutes:g} min: "
                + (f"--epochs {fits} would" if fits else "fewer seeds or tuning settings would be needed")
                + "; carrying on with the plan as asked")
        doc: dict[str, Any] = {"command": self.command, "quick": self.quick, "machine": machine, "estimate": est,
                               "costs": costs.to_json(), "prepare": {k: v for k, v in prep.items() if k != "dataset"}}
        if self.args.estimate_only:
            doc["setup"] = self.setup({}, specs)
            print(json.dumps({"estimate": est, "costs": costs.to_json()}, indent=1))
            return 0
        tuning = self.tune()
        chosen = (tuning or {}).get("chosen", {})
        doc["tuning"] = tuning
        if self.args.tune:
            doc["setup"] = self.setup(chosen, specs)
            doc["runs"] = self.train_records
            return self.finish(doc, tuning_only=True)
        study = plan.study_specs(self.losses, self.seeds, {l: c["overrides"] for l, c in chosen.items()},
                                 self.side_encoders, self.side_seeds)
        records = self.train_and_evaluate(study, est)
        torch.set_num_threads(threads_before)  # the analysis (the bootstrap) has the machine to itself
        doc["setup"] = self.setup(chosen, specs)
        doc["runs"] = self.train_records
        return self.finish(self.analyse(records, doc))

    def report_only(self) -> int:
        """Recompute the statistics, answers and plots from the saved per-run ranks (no training, no encoding)."""
        path = self.out / f"{self.stem}.json"
        if not path.is_file():
            raise SystemExit(f"--report-only: no {path}; run the study first")
        doc = json.loads(path.read_text())
        self.stage_seconds = {k: v for k, v in doc.get("stages", {}).items() if k != "analysis"}
        records = ranks.load_records(self.ranks_dir)
        doc["setup"]["replicates"], doc["setup"]["bootstrap_seed"] = self.replicates, self.args.bootstrap_seed
        doc["setup"]["resample"] = self.args.resample
        # the total stays the study's own time, with this analysis in place of the earlier one (not
        # the time this invocation spent reading the ranks and drawing the plots)
        study = doc.get("seconds", 0.0) - doc.get("stages", {}).get("analysis", 0.0)
        doc = self.analyse(records, doc)
        return self.finish(doc, seconds=study + self.stage_seconds.get("analysis", 0.0))


def default_jobs() -> int:
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def parser(doc: str) -> argparse.ArgumentParser:
    full, quick = settings.FULL, settings.QUICK
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], epilog="\n\n".join(doc.split("\n\n")[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--quick", action="store_true", help="every stage on a tiny setting (results *_quick.*)")
    a("--tune", action="store_true", help="only the val-only tuning stage (writes tuning.{json,md})")
    a("--report-only", action="store_true", help="recompute the statistics and report from the saved per-run ranks")
    a("--estimate-only", action="store_true", help="prepare (with --side: warm the feature cache), probe and print the time estimate, then stop")
    a("--configs", type=Path, default=ROOT / "examples", help="folder of <loss>.toml recipes (default examples/)")
    a("--losses", default=",".join(LOSSES), help="comma-separated losses (default: all three)")
    a("--data", type=Path, help="dataset folder (default data/reproduction, quick data/reproduction-quick)")
    a("--skip-prepare", action="store_true", help="use --data as it is (no vmfmir prepare)")
    a("--pieces", type=int, help=f"music21 pieces to prepare (default {full.pieces}; quick {quick.pieces})")
    a("--variants", type=int, help=f"performances per piece (default {full.variants})")
    a("--workers", type=int, help="prepare worker processes (default: all cores)")
    a("--runs", type=Path, help="runs folder (default runs/reproduction, quick runs/reproduction-quick)")
    a("--out", type=Path, default=ROOT / "benchmarks" / "results", help="where the JSON, markdown, ranks and plots go")
    a("--epochs", type=int, help=f"epochs of every run (default {full.epochs}; quick {quick.epochs})")
    a("--seeds", type=int, help=f"seeds per loss, 0..N-1 (default {full.seeds}; quick {quick.seeds})")
    a("--tune-settings", type=int, help=f"tuning settings per loss, the same for each (default {full.tune_settings})")
    a("--tune-seed", type=int, help=f"seed of the tuning runs (default {full.tune_seed}, not a reported seed)")
    a("--no-tune", action="store_true", help="no tuning: every loss uses its config as it is")
    a("--side", action="store_true", help="also the side table with the other encoder set (opt-in: time)")
    a("--side-config", type=Path, default=ROOT / "examples" / "pretrained.toml",
      help="TOML whose [encoders.*] tables are the other encoder set (default examples/pretrained.toml; "
           "the side table is skipped when it is absent)")
    a("--side-seeds", type=int, help=f"seeds of the side table (default {full.side_seeds})")
    a("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
      help="override a setting of every run (vmfmir train --set syntax), repeatable")
    a("--jobs", type=int, default=default_jobs(),
      help="training runs at a time, each with one torch thread when more than 1 (default: 2 on a machine with 2 or "
           "more CPU cores, else 1; on 2 cores the study's runs went 1.37x faster than one 2-thread run at a time)")
    a("--device", help="training and evaluation device (default: vmfmir's auto)")
    a("--score", help="retrieval score of the test evaluation (default: expected_cosine, the retrieval default; "
                      "cosine for infonce)")
    a("--replicates", type=int, help=f"bootstrap replicates (default {full.replicates})")
    a("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    a("--resample", choices=("pieces", "queries"), default="pieces",
      help="what the bootstrap draws besides seeds: whole test pieces with all their queries (default), or "
           "queries one by one")
    a("--budget-minutes", type=float, default=120.0, help="the budget the estimate is compared with (default 120)")
    a("--reprobe", action="store_true", help="measure the costs again instead of reusing the last probe")
    return p


def main(argv: Optional[list[str]], doc: str) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser(doc).parse_args(argv)
    study = Study(args, argv)
    return study.report_only() if args.report_only else study.run()


__all__ = ["Study", "main", "parser"]
