"""The run plan of a study (which runs, in which order) and its time estimate.

Groups: ``tune`` (one run per tuning setting, at the tuning seed, scored on val only), ``main``
(every loss x seeds 0..N-1 with its tuned settings, evaluated on test) and ``side`` (the other
encoder set, the same tuned settings, fewer seeds). Main and side runs go seed by seed, so an
interrupted study has every loss for its first seeds.

The estimate multiplies the plan by measured costs (:class:`Costs`: a short probe run of each loss
on the study's own data, see ``stages.probe``): per run, the probe's overhead (start, model build,
one validation) + steps x the probe's seconds per step + one more validation per further epoch +
one test evaluation (main and side runs). The probe's steps are first-epoch steps (the
preprocessing cache is still cold), so the estimate errs on the long side for later epochs.

With ``--jobs N`` the runs go N at a time (``parallel.py``; the probe then measures its costs N at a
time too) and the estimate is the wall time of that schedule: the tuning runs, then the main and
side runs, each phase assigned in plan order to the first free worker. The feature-cache warm-up
of the side encoders runs before the probe (so that the probe measures the side runs as they will
train, reading the cache), and the estimate adds its measured time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

GROUPS = ("tune", "warm", "main", "side")
#: `vmfmir prepare music21` cost per piece (README: 2,000 pieces in 319 s with 2 workers)
PREPARE_SECONDS_PER_PIECE = 319.0 / 2000


@dataclass
class RunSpec:
    """One training run of the study: ``<runs>/<group>/<name>``."""

    name: str
    group: str
    loss: str
    seed: int
    overrides: dict = field(default_factory=dict)  # over the loss config (tuning setting, side encoders)
    label: str = ""  # the tuning setting's label

    @property
    def key(self) -> str:
        return f"{self.group}/{self.name}"

    @property
    def evaluated_on_test(self) -> bool:
        return self.group != "tune"


def tune_specs(grid: list[tuple[str, str, dict]], tune_seed: int) -> list[RunSpec]:
    return [RunSpec(f"{loss}-{label}", "tune", loss, tune_seed, dict(over), label) for label, loss, over in grid]


def study_specs(
    losses: list[str],
    seeds: int,
    chosen: Mapping[str, Mapping[str, Any]],
    side_encoders: Optional[dict] = None,
    side_seeds: int = 0,
) -> list[RunSpec]:
    """The main runs (``losses`` x ``seeds``) and, with ``side_encoders``, the side runs, seed by seed."""
    specs = [RunSpec(f"{loss}-s{s}", "main", loss, s, dict(chosen.get(loss, {}))) for s in range(seeds) for loss in losses]
    if side_encoders:
        specs += [
            RunSpec(f"{loss}-s{s}", "side", loss, s, {**chosen.get(loss, {}), "encoders": side_encoders})
            for s in range(side_seeds)
            for loss in losses
        ]
    return specs


def budget_per_loss(specs: list[RunSpec], steps_per_run: Mapping[str, int]) -> dict[str, dict[str, dict[str, int]]]:
    """``{group: {loss: {"runs", "steps"}}}``: what the plan spends on each loss (equal budgets are checked by tests)."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for spec in specs:
        row = out.setdefault(spec.group, {}).setdefault(spec.loss, {"runs": 0, "steps": 0})
        row["runs"] += 1
        row["steps"] += int(steps_per_run[spec.key])
    return out


@dataclass
class Costs:
    """Measured costs in seconds: per loss (and encoder set) ``step`` and ``overhead`` (start, build,
    one validation, end); ``val`` one validation with a warm cache; ``eval`` one test evaluation."""

    step: dict[str, float]
    overhead: dict[str, float]
    val: float
    eval: float
    source: str = "probe"

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "overhead": self.overhead, "val": self.val, "eval": self.eval, "source": self.source}


def cost_key(spec: RunSpec) -> str:
    """Which probe measured a run: the side runs have their own encoders."""
    return f"side:{spec.loss}" if spec.group == "side" else spec.loss


def run_seconds(spec: RunSpec, steps: int, epochs: int, costs: Costs) -> float:
    key = cost_key(spec)
    if key not in costs.step:  # no probe of this encoder set: the main set's costs
        key = spec.loss
    seconds = costs.overhead[key] + steps * costs.step[key] + max(0, epochs - 1) * costs.val
    return seconds + (costs.eval if spec.evaluated_on_test else 0.0)


def makespan(seconds: list[float], jobs: int) -> float:
    """Wall time of tasks taken in order by ``jobs`` workers, each task going to the first free one."""
    lanes = [0.0] * max(1, jobs)
    for t in seconds:
        i = lanes.index(min(lanes))
        lanes[i] += t
    return max(lanes)


def estimate(
    specs: list[RunSpec],
    steps_per_run: Mapping[str, int],
    epochs: int,
    costs: Costs,
    prepare: float = 0.0,
    jobs: int = 1,
    warm: float = 0.0,
) -> dict[str, Any]:
    """``{"total", "prepare", "jobs", "groups": {group: seconds}, "runs": {key: seconds}}`` in seconds.

    ``prepare``: building the dataset (0 when it exists); ``warm``: the wall time of the feature-cache
    warm-up. ``runs`` are the seconds of each run; ``groups`` the wall time of each group's share
    (its runs' seconds over ``jobs``); ``total`` the wall time of the schedule (module docstring)."""
    runs = {s.key: run_seconds(s, int(steps_per_run[s.key]), epochs, costs) for s in specs}
    jobs = max(1, jobs)
    groups = {g: sum(v for k, v in runs.items() if k.startswith(g + "/")) / jobs for g in GROUPS}
    groups["warm"] = warm
    tune = [runs[s.key] for s in specs if s.group == "tune"]
    rest = [runs[s.key] for s in specs if s.group != "tune"]
    total = prepare + warm + makespan(tune, jobs) + makespan(rest, jobs)
    return {"total": total, "prepare": prepare, "jobs": jobs, "groups": groups, "runs": runs}


def epochs_within(
    specs: list[RunSpec], steps_per_epoch: int, epochs: int, costs: Costs, budget_s: float, prepare: float = 0.0,
    jobs: int = 1, warm: float = 0.0,
) -> Optional[int]:
    """The most epochs (at most ``epochs``) whose estimate fits ``budget_s``; None when not even one does."""
    for e in range(epochs, 0, -1):
        if estimate(specs, {s.key: e * steps_per_epoch for s in specs}, e, costs, prepare, jobs, warm)["total"] <= budget_s:
            return e
    return None


def describe(est: Mapping[str, Any], budget_s: Optional[float] = None) -> str:
    """One line: the estimate by stage (and how it compares with a budget)."""
    parts = [f"{g} {est['groups'][g] / 60:.0f} min" for g in GROUPS if est["groups"].get(g)]
    if est.get("prepare"):
        parts.insert(0, f"prepare {est['prepare'] / 60:.0f} min")
    jobs = est.get("jobs", 1)
    text = f"estimated {est['total'] / 60:.0f} min ({', '.join(parts)}{f'; {jobs} runs at a time' if jobs > 1 else ''})"
    if budget_s:
        text += f"; budget {budget_s / 60:.0f} min" + (" - OVER BUDGET" if est["total"] > budget_s else "")
    return text


__all__ = [
    "Costs",
    "GROUPS",
    "PREPARE_SECONDS_PER_PIECE",
    "RunSpec",
    "budget_per_loss",
    "cost_key",
    "describe",
    "epochs_within",
    "estimate",
    "makespan",
    "run_seconds",
    "study_specs",
    "tune_specs",
]
