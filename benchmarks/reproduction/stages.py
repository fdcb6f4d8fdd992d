"""The stages of the study: prepare the data, warm the feature cache, probe the costs, train.

Training goes through the ``vmfmir`` command (one subprocess per run, ``vmfmir train --config``
with the study's config written next to the runs), so every run is what a user would get; a run
that finished earlier with the same settings is reused and an interrupted one is resumed. The
test evaluation with its per-query ranks is in ``ranks.py``.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

from benchmarks.reproduction.plan import Costs, RunSpec, cost_key
from benchmarks.reproduction.settings import ROOT, to_toml

def log(message: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")  # one write: lines of parallel runs do not mix
    sys.stderr.flush()


def vmfmir_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "vmfmir_cli", *args]


_children: set[subprocess.Popen] = set()  # the commands running now (from any worker thread)
_children_lock = threading.Lock()


def _run(cmd: list[str], threads: Optional[int] = None) -> subprocess.CompletedProcess:
    """Run a vmfmir command with this checkout's package first on the path; stdout captured.
    ``threads``: the process's torch / OpenMP threads (``--jobs``: one per process), else inherited."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
    with _children_lock:
        _children.add(proc)
    try:
        out, _ = proc.communicate()
    except BaseException:  # interrupted in this thread: the command must not outlive the study
        proc.kill()
        proc.wait()
        raise
    finally:
        with _children_lock:
            _children.discard(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, None)


def stop_commands() -> int:
    """Interrupt every command still running (``vmfmir train`` stops at its next step and keeps what
    it wrote; a rerun resumes it). Returns how many were running."""
    with _children_lock:
        procs = list(_children)
    for proc in procs:
        try:
            proc.send_signal(signal.SIGINT)
        except OSError:
            pass
    return len(procs)


def _shown(cmd: list[str]) -> str:
    return shlex.join(["vmfmir", *cmd[3:]])


def write_json(path: Path, doc: Any, indent: Optional[int] = 1) -> None:
    """Atomically, NaN written as null; ``indent=None``: compact (the per-run rank files)."""
    from vmfmir_cli.utils_io import json_safe, write_text

    write_text(path, json.dumps(json_safe(doc), indent=indent) + "\n")


def machine_info() -> dict[str, Any]:
    import platform

    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cuda": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    info["load_average_at_start"] = load_average()
    return info


def load_average() -> Optional[list[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def dataset_summary(data: Path) -> dict[str, Any]:
    """Items per split (from the manifest), the prepare options and the caption levels."""
    from vmfmir_cli.data.captions import has_levels
    from vmfmir_cli.data.manifest import read_dataset_info, read_manifest, split_items

    items = read_manifest(data)
    info = read_dataset_info(data)
    return {
        "path": str(data),
        "items": {s: len(split_items(items, s)) for s in ("train", "val", "test")},
        "options": info.get("options", {}),
        "caption_levels": bool(has_levels(items)),
    }


def prepare(data: Path, pieces: int, variants: int, workers: Optional[int], skip: bool) -> dict[str, Any]:
    """``vmfmir prepare music21`` into ``data`` (resumes a partial build), or check it exists (``skip``)."""
    if skip:
        if not (data / "manifest.jsonl").is_file():
            raise SystemExit(f"--skip-prepare: no dataset at {data}; drop the flag to build it")
        log(f"prepare: skipped, using {data}")
        return {"seconds": 0.0, "skipped": True, "dataset": dataset_summary(data)}
    cmd = vmfmir_cmd("prepare", "music21", "--out", str(data), "--pieces", str(pieces), "--variants", str(variants),
                     "--quiet", "--json")
    if workers:
        cmd += ["--workers", str(workers)]
    log(f"prepare: {_shown(cmd)}")
    t0 = time.perf_counter()
    proc = _run(cmd)
    if proc.returncode != 0:
        raise SystemExit(f"prepare failed (exit {proc.returncode}); see the messages above")
    seconds = time.perf_counter() - t0
    log(f"prepare: done in {seconds:.0f} s")
    return {"seconds": seconds, "skipped": False, "command": _shown(cmd), "dataset": dataset_summary(data)}


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    from vmfmir_cli.training.data import plan_batches

    return plan_batches(n_train, batch_size, 1).steps_per_epoch


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


def write_config(path: Path, values: dict[str, Any], note: str) -> Path:
    from vmfmir_cli.utils_io import write_text

    write_text(path, to_toml(values, header=f"written by benchmarks/reproduce.py: {note}"))
    return path


def _train_flags(spec: RunSpec, data: Path, epochs: int, device: Optional[str]) -> dict[str, Any]:
    return {"data": str(data), "loss": spec.loss, "seed": spec.seed, "epochs": epochs, "device": device}


def _differences(run_dir: Path, config_file: Path, flags: dict, sets: list[str]) -> list[str]:
    """Settings of a finished or interrupted run that differ from what the study would train now."""
    from vmfmir_cli.training.checkpoint import find_checkpoint
    from vmfmir_cli.training.config import RESUMABLE_KEYS, load_config

    final = run_dir / "final" / "config.json"
    if final.is_file():
        saved = json.loads(final.read_text())["train"]
    else:
        found = find_checkpoint(run_dir)
        saved = {} if found is None else found.state["config"]
    wanted = load_config(config_file, overrides=flags, sets=sets).to_dict()
    keys = (set(saved) & set(wanted)) - set(RESUMABLE_KEYS)  # keys of another vmfmir version: not compared
    diff = sorted(k for k in keys if saved.get(k) != wanted.get(k))
    return diff + (["epochs"] if saved.get("epochs") != wanted.get("epochs") else [])


def _train_cmd(
    config_file: Path, data: Path, loss: str, seed: int, epochs: int, runs: Path, name: str, device: Optional[str],
    sets: list[str], extra: tuple[str, ...] | list[str] = (),
) -> list[str]:
    return vmfmir_cmd(
        "train", "--quiet", "--json", "--config", str(config_file), "--data", str(data), "--loss", loss,
        "--seed", str(seed), "--epochs", str(epochs), "--out", str(runs), "--name", name, *extra,
        *(["--device", device] if device else []), *[a for s in sets for a in ("--set", s)],
    )


def _run_train(cmd: list[str], what: str, hint: str, threads: Optional[int] = None) -> tuple[dict[str, Any], float]:
    """Run a ``vmfmir train --json`` command: (its summary, wall seconds); a failure stops the study."""
    log(f"{what}: {_shown(cmd)}")
    t0 = time.perf_counter()
    proc = _run(cmd, threads)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed (exit {proc.returncode}); {hint}")
    return (json.loads(proc.stdout) if proc.stdout.strip() else {}), seconds


def finished(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run that trained to its end (``vmfmir train`` writes ``final/`` last)."""
    return (run_dir / "final" / "config.json").is_file()


def train(
    spec: RunSpec, config_file: Path, data: Path, runs: Path, epochs: int, sets: list[str], device: Optional[str],
    threads: Optional[int] = None,
) -> dict[str, Any]:
    """Train ``runs/<name>`` (or reuse a finished run / resume an interrupted one with the same settings)."""
    run_dir = runs / spec.name
    flags = _train_flags(spec, data, epochs, device)
    record = {"name": spec.name, "group": spec.group, "loss": spec.loss, "seed": spec.seed, "run_dir": str(run_dir),
              "overrides": spec.overrides if spec.group != "side" else {k: v for k, v in spec.overrides.items() if k != "encoders"},
              "label": spec.label}
    if (run_dir / "checkpoint").is_dir():
        diff = _differences(run_dir, config_file, {k: v for k, v in flags.items() if v is not None}, sets)
        if diff:
            raise SystemExit(f"{run_dir} was trained with other settings ({', '.join(diff)} differ); remove it or "
                             "pass another --runs folder")
        if finished(run_dir):
            log(f"train {spec.key}: finished earlier with the same settings, reused")
            summary = _summary_of(run_dir)
            return {**record, "reused": True, "seconds": None, "summary": summary}
        cmd = vmfmir_cmd("train", "--quiet", "--json", "--resume", str(run_dir), "--out", str(runs))
        log(f"train {spec.key}: resuming an interrupted run")
    elif run_dir.exists():
        raise SystemExit(f"{run_dir} exists but is not a run vmfmir can resume; remove it or pass another --runs folder")
    else:
        cmd = _train_cmd(config_file, data, spec.loss, spec.seed, epochs, runs, spec.name, device, sets)
    summary, seconds = _run_train(cmd, f"train {spec.key}", "rerun the study to resume it", threads)
    log(f"train {spec.key}: {seconds:.0f} s, best val MRR {summary.get('best_mrr', float('nan')):.4f}")
    return {**record, "reused": False, "command": _shown(cmd), "seconds": seconds, "summary": summary}


def _summary_of(run_dir: Path) -> dict[str, Any]:
    """best val MRR and step of a finished run, from its metrics.jsonl."""
    best, best_step, steps = None, None, 0
    path = run_dir / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        row = json.loads(line)
        steps = max(steps, int(row.get("step", 0)))
        if row.get("type") == "val" and (best is None or row["mrr"] > best):
            best, best_step = row["mrr"], row["step"]
    return {"run_dir": str(run_dir), "best_mrr": best, "best_step": best_step, "steps": steps}


# --------------------------------------------------------------------------------------------------
# The probe: measured costs for the time estimate
# --------------------------------------------------------------------------------------------------


def _step_seconds(metrics_file: Path, batch: int) -> list[float]:
    """Seconds of every logged training step (``items_per_s`` is the batch over the step's wall time)."""
    out = []
    for line in metrics_file.read_text().splitlines():
        row = json.loads(line)
        if row.get("type") == "train" and row.get("items_per_s"):
            out.append(batch / float(row["items_per_s"]))
    return out


def probe(
    specs: list[RunSpec],
    configs: dict[str, Path],
    data: Path,
    folder: Path,
    epochs: int,
    n_train: int,
    n_val: int,
    device: Optional[str],
    sets: Optional[list[str]] = None,
    steps: int = 3,
    jobs: int = 1,
) -> Costs:
    """Train ``steps`` steps of one run of every (encoder set, loss) of the plan and evaluate one of
    them on test: the measured seconds per step, per-run overhead and evaluation time.

    ``configs``: the config file of each :func:`cost_key`. The runs go to ``folder`` (removed first).
    ``jobs > 1``: the probe runs go ``jobs`` at a time with one thread each, as the study's runs
    will, so that the costs are those of a run sharing the machine.
    """
    import shutil

    from benchmarks.reproduction.parallel import Task, run_tasks
    from benchmarks.reproduction.ranks import evaluate_run
    from vmfmir_cli.training.config import load_config

    if folder.exists():
        shutil.rmtree(folder)
    first: dict[str, RunSpec] = {}
    for spec in specs:
        first.setdefault(cost_key(spec), spec)
    threads = 1 if jobs > 1 else None

    def one(key: str, spec: RunSpec, suffix: str = "") -> tuple[float, float]:
        cfg = load_config(configs[key], sets=sets)
        batch = min(cfg.batch_size, n_train)
        name = key.replace(":", "-") + suffix
        cmd = _train_cmd(configs[key], data, spec.loss, 0, epochs, folder, name, device,
                         [*(sets or []), "log_every=1", "checkpoint_every=0"], ["--max-steps", str(steps)])
        _, wall = _run_train(cmd, f"probe {key}", "see the messages above", threads)
        times = _step_seconds(folder / name / "metrics.jsonl", batch)
        step, rest = statistics.median(times[1:] if len(times) > 1 else times), max(0.0, wall - sum(times))
        log(f"probe {key}{suffix}: {step:.2f} s per step, {rest:.0f} s start + build + validation")
        return step, rest

    todo = list(first.items())
    # side by side, every probe must share the machine as the study's runs will: the last round is
    # filled with repeats of the first probes (their numbers are not used)
    pad = (-len(todo)) % jobs if jobs > 1 else 0
    tasks = [Task("probe", lambda k=k, s=s: one(k, s)) for k, s in todo]
    tasks += [Task("probe", lambda k=k, s=s: one(k, s, "-pad")) for k, s in todo[:pad]]
    measured = run_tasks(tasks, jobs, on_interrupt=stop_commands)
    step_s = {k: m[0] for (k, _), m in zip(todo, measured)}
    overhead = {k: m[1] for (k, _), m in zip(todo, measured)}
    t0 = time.perf_counter()
    evaluate_run(folder / next(iter(first)).replace(":", "-"), data, None, device)
    eval_s = time.perf_counter() - t0
    log(f"probe: a test evaluation takes {eval_s:.0f} s")
    # a validation with a warm cache: the encoders' forward pass over the val split; a forward is
    # about a third of a training step's forward + backward (the cheapest loss: mostly encoders)
    cheapest = min(step_s.values())
    batch = max(1, min(load_config(next(iter(configs.values())), sets=sets).batch_size, n_train))
    val = cheapest * n_val / batch / 3
    source = f"probe: {steps} steps of each loss on the study's data" + (f", {jobs} at a time" if jobs > 1 else "")
    return Costs(step_s, overhead, val, float(eval_s), source=source)


def warm_features(
    data: Path, config: Path, shard: int, shards: int, threads: Optional[int], sets: Optional[list[str]] = None
) -> dict[str, Any]:
    """One shard of ``benchmarks/warm_features.py``: fill the disk feature cache of ``config``'s audio
    encoder (with the study's ``--set`` values) for the dataset's audio items (a no-op for encoders
    without a cache; items already cached are only read). Returns the script's JSON line."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "warm_features.py"), "--data", str(data), "--config", str(config),
           "--shard", str(shard), "--shards", str(shards), "--threads", str(threads or os.cpu_count() or 1),
           *[a for s in sets or [] for a in ("--set", s)]]
    log(f"warm {shard + 1}/{shards}: {shlex.join(['python', *cmd[1:]])}")
    proc = _run(cmd, threads)
    if proc.returncode != 0:
        raise SystemExit(f"warming the feature cache failed (exit {proc.returncode}); see the messages above")
    lines = [l for l in proc.stdout.splitlines() if l.strip()]
    result = json.loads(lines[-1]) if lines else {}
    log(f"warm {shard + 1}/{shards}: {result.get('computed', 0)} computed, {result.get('read', 0)} read, "
        f"{result.get('seconds', 0):.0f} s")
    return result


__all__ = [
    "dataset_summary",
    "finished",
    "load_average",
    "log",
    "machine_info",
    "prepare",
    "probe",
    "steps_per_epoch",
    "stop_commands",
    "train",
    "warm_features",
    "write_config",
    "write_json",
]
