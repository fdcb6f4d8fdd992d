"""Tasks of the study side by side (``--jobs N``): a small worker pool that keeps the plan's order.

Every training run is its own ``vmfmir train`` process, so running N of them at once needs no more
than N threads here that each start a process and wait for it. With ``--jobs 2`` on 2 cores each
process gets one torch thread (``OMP_NUM_THREADS=1``); measured on the full study, two such
processes side by side got through its runs 1.37x faster than one process with 2 threads at a time
(README, "Reproduction"): a step of these small models does not keep two threads busy, and one
run's start-up and evaluation overlap the other's training.

Tasks start in list order (the first N at once, then one whenever a worker is free), so that an
interrupted study has every loss for its first seeds, as without ``--jobs``.

- A failed task is reported at once (one line on stderr); no new task starts, the running ones
  finish (their runs stay reusable), then the failure is raised.
- Ctrl-C calls ``on_interrupt`` (the study interrupts its running commands, which keep what they
  wrote), waits for the workers, and raises KeyboardInterrupt, chained to a failure if one came first.

The wall time of each group of tasks is the length of the union of its tasks' intervals (groups
that overlap at a boundary count the overlap in both).
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Generic, Optional, Sequence, TypeVar

T = TypeVar("T")

#: how long Ctrl-C waits for the interrupted workers before giving up on them
INTERRUPT_WAIT_S = 60.0


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


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit) and isinstance(exc.code, str):
        return exc.code
    return f"{type(exc).__name__}: {exc}"


def run_tasks(
    tasks: Sequence[Task[T]],
    jobs: int,
    done: Optional[Callable[[int, T], None]] = None,
    outcome: Optional[Outcome] = None,
    on_interrupt: Optional[Callable[[], object]] = None,
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
    state: dict = {"next": 0, "error": None, "running": 0}

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
                state["running"] += 1
            try:
                one(i)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                with lock:
                    state["running"] -= 1
                    first = state["error"] is None
                    if first:
                        state["error"] = exc
                    others = state["running"]
                if first:
                    wait = f"waiting for the {others} running task(s) to finish" if others else "stopping"
                    sys.stderr.write(f"failed: {_describe(exc)}; no new task starts, {wait}\n")
                    sys.stderr.flush()
                return
            with lock:
                state["running"] -= 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(jobs, len(tasks)))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except KeyboardInterrupt as interrupt:
        with lock:
            failure, state["error"] = state["error"], state["error"] or interrupt
        if on_interrupt is not None:
            on_interrupt()
        deadline = time.monotonic() + INTERRUPT_WAIT_S
        for t in threads:
            if t.is_alive() or t.ident is not None:
                t.join(max(0.0, deadline - time.monotonic()))
        if failure is not None:
            raise KeyboardInterrupt() from failure
        raise
    if state["error"] is not None:
        raise state["error"]
    return results  # type: ignore[return-value]


__all__ = ["INTERRUPT_WAIT_S", "Outcome", "Task", "run_tasks"]
