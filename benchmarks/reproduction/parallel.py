"""Tasks of the study side by side (``--jobs N``): a small worker pool that keeps the plan's order.

Every training run is its own ``vmfmir train`` process, so running N of them at once needs no more
than N threads here that each start a process and wait for it. With ``--jobs 2`` on 2 cores each
process gets one torch thread (``OMP_NUM_THREADS=1``); measured on the study's proposed config, two
such processes side by side train 1.14x as many steps per second as one process with 2 threads
(README, "Reproduction"), because a step of these small models does not keep two threads busy.

Tasks start in list order (the first N at once, then one whenever a worker is free), so that an
interrupted study has every loss for its first seeds, as without ``--jobs``. The first failure stops new tasks from starting; the running ones finish,
then the failure is raised. The wall time of each group of tasks is the length of the union of its
tasks' intervals (groups that overlap at a boundary count the overlap in both).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Generic, Optional, Sequence, TypeVar

T = TypeVar("T")


@dataclass
class Task(Generic[T]):
    """One unit of work: ``fn()`` is its result; ``group`` names the stage its time counts to."""

    group: str
    fn: Callable[[], T]


@dataclass
class Outcome:
    """What :func:`run_tasks` measured: per group, the (start, end) of every task (``time.perf_counter``)."""

    spans: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def wall(self, group: str) -> float:
        """Seconds during which at least one task of ``group`` was running."""
        total, end = 0.0, float("-inf")
        for a, b in sorted(self.spans.get(group, [])):
            if b <= end:
                continue
            total += b - max(a, end)
            end = b
        return total


def run_tasks(
    tasks: Sequence[Task[T]],
    jobs: int,
    done: Optional[Callable[[int, T], None]] = None,
    outcome: Optional[Outcome] = None,
) -> list[T]:
    """Run ``tasks`` on ``jobs`` workers in list order and return their results in that order.

    ``done(i, result)`` is called (under a lock, one call at a time) when task ``i`` finishes.
    ``jobs == 1`` runs everything in the calling thread.
    """
    if jobs < 1:
        raise ValueError("jobs must be >= 1")
    outcome = outcome if outcome is not None else Outcome()
    results: list[Optional[T]] = [None] * len(tasks)
    lock = threading.Lock()
    state = {"next": 0, "error": None}

    def one(i: int) -> None:
        t0 = time.perf_counter()
        try:
            result = tasks[i].fn()
        finally:
            with lock:
                outcome.spans.setdefault(tasks[i].group, []).append((t0, time.perf_counter()))
        results[i] = result
        if done is not None:
            with lock:
                done(i, result)

    if jobs == 1:
        for i in range(len(tasks)):
            one(i)
        return results  # type: ignore[return-value]

    def worker() -> None:
        while True:
            with lock:
                if state["error"] is not None or state["next"] >= len(tasks):
                    return
                i = state["next"]
                state["next"] += 1
            try:
                one(i)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                with lock:
                    if state["error"] is None:
                        state["error"] = exc
                return

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(jobs, len(tasks)))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except KeyboardInterrupt:
        with lock:
            state["error"] = state["error"] or KeyboardInterrupt()
        raise
    if state["error"] is not None:
        raise state["error"]
    return results  # type: ignore[return-value]


__all__ = ["Outcome", "Task", "run_tasks"]
