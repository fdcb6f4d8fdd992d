"""benchmarks/reproduction (the study of benchmarks/reproduce.py) without training: statistics on
hand-made numbers, the run plan and its budget, configs, the analysis and the generated answers on
synthetic per-run records; one end-to-end --quick run on the tiny dataset."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.reproduction import analysis, parallel, plan, report, settings, stats  # noqa: E402


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


# --------------------------------------------------------------------------------------------------
# stats
# --------------------------------------------------------------------------------------------------


def test_metric_values_by_hand():
    r = t([1, 2, 4, 10])
    assert stats.metric_value(r, "mrr") == pytest.approx((1 + 0.5 + 0.25 + 0.1) / 4)
    assert stats.metric_value(r, "r1") == 0.25 and stats.metric_value(r, "r10") == 1.0
    assert stats.metric_value(r, "mr") == 3.0  # mean of the two middle ranks
    assert stats.metric_value(t([5, 1, 3]), "mr") == 3.0
    with pytest.raises(ValueError):
        stats.metric_value(r, "ndcg")


@pytest.mark.parametrize("n", [1, 2, 5, 64, 65])
def test_replicates_from_counts_equal_the_metric_of_the_drawn_ranks(n):
    gen = torch.Generator().manual_seed(n)
    r = torch.randint(1, 30, (n,), generator=gen)
    idx = torch.randint(n, (50, n), generator=gen)
    counts = stats._counts(idx, n)
    for m in ("mrr", "r1", "r10", "mr"):
        direct = torch.tensor([stats.metric_value(r[i], m) for i in idx], dtype=torch.float64)
        assert torch.allclose(stats._replicate_values(r, counts, m), direct), m


def _clear(n_seeds=3, n=40):
    good = [[t([1 + (q % 2) for q in range(n)])] for _ in range(n_seeds)]  # ranks 1, 2, 1, 2, ...
    bad = [[t([4 + (q + s) % 5 for q in range(n)])] for s in range(n_seeds)]  # ranks 4..8
    return good, bad


def test_a_clear_difference_is_a_win_and_its_reverse_a_loss():
    good, bad = _clear()
    for m in ("mrr", "r1", "r10", "mr"):
        win = stats.bootstrap(good, bad, m, replicates=500, seed=1)
        loss = stats.bootstrap(bad, good, m, replicates=500, seed=1)
        if m == "r10":  # every rank is <= 10 on both sides: no difference to find
            assert win["verdict"] == "none" and win["low"] == win["high"] == 0.0
            continue
        assert win["verdict"] == "win" and loss["verdict"] == "loss", m
        assert win["low"] <= win["estimate"] <= win["high"]
    mr = stats.bootstrap(good, bad, "mr", replicates=500, seed=1)
    assert mr["estimate"] < 0 and mr["high"] < 0 and mr["lower_is_better"]  # lower MR is better: a win
    mrr = stats.bootstrap(good, bad, "mrr", replicates=500, seed=1)
    expect = 0.75 - statistics.fmean(stats.metric_value(b[0], "mrr") for b in bad)
    assert mrr["estimate"] == pytest.approx(expect)


def test_identical_inputs_give_an_interval_containing_zero():
    gen = torch.Generator().manual_seed(0)
    a = [[torch.randint(1, 30, (25,), generator=gen), torch.randint(1, 30, (12,), generator=gen)] for _ in range(4)]
    for m in stats.METRICS:
        out = stats.bootstrap(a, a, m, replicates=300, seed=3)
        assert out["low"] <= 0.0 <= out["high"] and out["verdict"] == "none" and out["estimate"] == 0.0


def test_the_interval_is_deterministic_for_a_fixed_seed():
    gen = torch.Generator().manual_seed(1)
    a = [[torch.randint(1, 20, (30,), generator=gen)] for _ in range(3)]
    b = [[torch.randint(1, 20, (30,), generator=gen)] for _ in range(3)]
    one = stats.bootstrap(a, b, "mrr", replicates=400, seed=7)
    assert stats.bootstrap(a, b, "mrr", replicates=400, seed=7) == one
    other = stats.bootstrap(a, b, "mrr", replicates=400, seed=8)
    assert (other["low"], other["high"]) != (one["low"], one["high"])
    assert other["estimate"] == one["estimate"]  # the point estimate does not depend on the draws


def test_overall_is_the_mean_over_groups_and_pairing_is_checked():
    a = [[t([1, 1]), t([2, 2, 2, 2])]]  # MRR 1.0 and 0.5
    b = [[t([2, 2]), t([4, 4, 4, 4])]]  # MRR 0.5 and 0.25
    out = stats.bootstrap(a, b, "mrr", replicates=50)
    assert out["estimate"] == pytest.approx(((1.0 - 0.5) + (0.5 - 0.25)) / 2)
    assert out["n_queries"] == [2, 4] and out["n_seeds"] == 1
    assert out["low"] == out["high"] == pytest.approx(0.375)  # constant ranks within each group
    assert stats.bootstrap(a, None, "mrr", replicates=50)["estimate"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="paired"):
        stats.bootstrap(a, [[t([2, 2]), t([4, 4, 4])]], "mrr")
    with pytest.raises(ValueError, match="same queries"):
        stats.bootstrap([[t([1, 2])], [t([1, 2, 3])]], None, "mrr")


def test_resampling_whole_pieces_widens_the_interval_of_duplicated_queries():
    gen = torch.Generator().manual_seed(5)
    x = torch.randint(1, 40, (30,), generator=gen)
    dup = x.repeat(4)  # every piece has four identical queries
    pieces = torch.arange(30).repeat(4)
    by_query = stats.bootstrap([[dup]], None, "mrr", replicates=2000, seed=1)
    by_piece = stats.bootstrap([[dup]], None, "mrr", replicates=2000, seed=1, clusters=[pieces])
    distinct = stats.bootstrap([[x]], None, "mrr", replicates=2000, seed=1)
    width = lambda b: b["high"] - b["low"]  # noqa: E731
    assert by_piece["resampled"] == "clusters" and by_query["resampled"] == "queries"
    assert width(by_piece) > 1.5 * width(by_query)  # four copies are not four observations
    assert width(by_piece) == pytest.approx(width(distinct), rel=0.2)
    assert by_piece["estimate"] == by_query["estimate"] == pytest.approx(stats.metric_value(x, "mrr"))
    same = stats.bootstrap([[dup], [dup]], [[dup], [dup]], "mr", replicates=200, clusters=[pieces])
    assert same["low"] == same["high"] == 0.0 and same["verdict"] == "none"
    with pytest.raises(ValueError, match="one id per query"):
        stats.bootstrap([[dup]], None, "mrr", clusters=[pieces[:10]])


def test_replicates_of_weighted_draws_equal_the_metric_of_the_drawn_multiset():
    gen = torch.Generator().manual_seed(2)
    r = torch.randint(1, 20, (12,), generator=gen)
    pieces = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4, 4, 4, 4])
    drawn = stats._counts(torch.randint(5, (40, 5), generator=gen), 5)[pieces]  # (12, 40)
    for m in ("mrr", "r1", "r10", "mr"):
        direct = []
        for b in range(40):
            picked = torch.cat([r[q].repeat(int(drawn[q, b])) for q in range(12)])
            direct.append(stats.metric_value(picked, m) if picked.numel() else float("nan"))
        got = stats._replicate_values(r, drawn, m)
        assert torch.allclose(got, torch.tensor(direct, dtype=torch.float64), equal_nan=True), m


def test_seed_bootstrap_against_a_null_and_the_verdict_rule():
    up = stats.seed_bootstrap([0.6, 0.7, 0.65, None], null=0.5, replicates=300)
    assert up["verdict"] == "win" and up["n_seeds"] == 3 and up["estimate"] == pytest.approx(0.65)
    assert stats.seed_bootstrap([0.3, 0.35], null=0.5)["verdict"] == "loss"
    assert stats.seed_bootstrap([-0.1, 0.1, 0.0], null=0.0)["verdict"] == "none"
    assert stats.seed_bootstrap([None, None]) is None
    assert stats.verdict(0.1, 0.2) == "win" and stats.verdict(-0.2, -0.1) == "loss"
    assert stats.verdict(-0.2, -0.1, lower_is_better=True) == "win" and stats.verdict(-0.1, 0.1) == "none"
    ms = stats.mean_std([1.0, None, 3.0])
    assert ms["mean"] == 2.0 and ms["std"] == pytest.approx(2 ** 0.5) and ms["n"] == 2


# --------------------------------------------------------------------------------------------------
# plan, budget, configs
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_every_loss_gets_the_same_tuning_budget(n):
    grid = settings.tuning_grid(list(settings.LOSSES), n)
    counts = {loss: sum(1 for _, l, _ in grid if l == loss) for loss in settings.LOSSES}
    assert set(counts.values()) == {n}
    for loss in settings.LOSSES:  # the first setting is the recipe as it is
        assert [over for _, l, over in grid if l == loss][0] == {}
    specs = plan.tune_specs(grid, 100) + plan.study_specs(list(settings.LOSSES), 5, {}, {"audio": {"id": "x"}}, 3)
    budget = plan.budget_per_loss(specs, {s.key: 200 for s in specs})
    for group, runs, steps in (("tune", n, 200 * n), ("main", 5, 1000), ("side", 3, 600)):
        assert budget[group] == {loss: {"runs": runs, "steps": steps} for loss in settings.LOSSES}
    assert all(s.seed == 100 for s in specs if s.group == "tune")
    with pytest.raises(SystemExit):
        settings.tuning_grid(["proposed"], 9)


def test_main_runs_go_seed_by_seed_with_the_chosen_settings():
    chosen = {"proposed": {"inv_temperature": 10.0}}
    specs = plan.study_specs(["proposed", "infonce"], 2, chosen, {"text": {"id": "wordllama-text"}}, 1)
    assert [s.key for s in specs] == ["main/proposed-s0", "main/infonce-s0", "main/proposed-s1", "main/infonce-s1",
                                      "side/proposed-s0", "side/infonce-s0"]
    assert specs[0].overrides == {"inv_temperature": 10.0} and specs[1].overrides == {}
    assert specs[4].overrides == {"inv_temperature": 10.0, "encoders": {"text": {"id": "wordllama-text"}}}
    assert not any(s.evaluated_on_test for s in plan.tune_specs([("recipe", "baseline", {})], 100))
    assert plan.study_specs(["baseline"], 1, {}, None, 3)[-1].group == "main"  # no side encoders, no side runs


def test_the_estimate_adds_up_the_plan():
    specs = plan.tune_specs([("recipe", "proposed", {})], 100) + plan.study_specs(["proposed", "infonce"], 2, {})
    costs = plan.Costs(step={"proposed": 1.0, "infonce": 0.5}, overhead={"proposed": 20.0, "infonce": 10.0}, val=2.0,
                       eval=30.0)
    est = plan.estimate(specs, {s.key: 100 for s in specs}, epochs=4, costs=costs, prepare=60.0)
    tune = 20 + 100 * 1.0 + 3 * 2.0  # no test evaluation
    main = 2 * (20 + 100 + 6 + 30) + 2 * (10 + 50 + 6 + 30)
    assert est["groups"]["tune"] == pytest.approx(tune) and est["groups"]["main"] == pytest.approx(main)
    assert est["total"] == pytest.approx(60 + tune + main)
    assert "OVER BUDGET" in plan.describe(est, budget_s=100) and "OVER" not in plan.describe(est, budget_s=1e6)
    fits = plan.epochs_within(specs, 25, 4, costs, budget_s=est["total"] - 1, prepare=60.0)
    assert fits == 3 and plan.epochs_within(specs, 25, 4, costs, budget_s=10.0) is None


def test_the_estimate_of_parallel_runs_is_the_wall_time_of_their_schedule():
    specs = plan.tune_specs([("recipe", "proposed", {}), ("recipe", "infonce", {})], 100) + plan.study_specs(
        ["proposed", "infonce"], 2, {}, {"audio": {"id": "x"}}, 1)
    costs = plan.Costs(step={"proposed": 1.0, "infonce": 0.5}, overhead={"proposed": 20.0, "infonce": 10.0}, val=2.0,
                       eval=30.0)
    steps = {s.key: 100 for s in specs}
    one = plan.estimate(specs, steps, epochs=4, costs=costs, warm=200.0)
    two = plan.estimate(specs, steps, epochs=4, costs=costs, jobs=2, warm=200.0)
    p, i = 20 + 100 + 6, 10 + 50 + 6  # a proposed / an infonce run without its test evaluation
    assert one["total"] == pytest.approx(200 + p + i + 3 * (p + 30) + 3 * (i + 30))
    # the measured warm-up, the two tuning runs side by side, then the six runs greedily (lanes):
    # +P +I -> [156, 96]; +P -> [156, 252]; +I -> [252, 252]; +P (side) -> [408, 252]; +I (side) -> [408, 348]
    assert two["total"] == pytest.approx(200 + max(p, i) + 408)
    assert two["groups"]["warm"] == pytest.approx(200) and two["groups"]["main"] == pytest.approx(one["groups"]["main"] / 2)
    assert "2 runs at a time" in plan.describe(two) and "at a time" not in plan.describe(one)
    assert plan.makespan([5.0, 1.0, 1.0, 1.0], 2) == 5.0 and plan.makespan([], 3) == 0.0


def test_parallel_tasks_start_in_order_keep_their_results_in_order_and_time_each_group():
    import threading

    started, lock = [], threading.Lock()
    gate = threading.Event()

    def task(i, wait=False):
        def fn():
            with lock:
                started.append(i)
            if wait:
                assert gate.wait(5)
            time.sleep(0.01)
            return i * i
        return fn

    # task 0 blocks until task 3 has started: only possible when two workers run at once
    tasks = [parallel.Task("a", task(0, wait=True)), parallel.Task("a", task(1)), parallel.Task("b", task(2)),
             parallel.Task("b", lambda: (started.append(3), gate.set(), 9)[-1])]
    seen = []
    outcome = parallel.Outcome()
    assert parallel.run_tasks(tasks, 2, lambda i, r: seen.append((i, r)), outcome) == [0, 1, 4, 9]
    assert started.index(0) < started.index(2) and started.index(1) < started.index(2) < started.index(3)
    assert sorted(seen) == [(0, 0), (1, 1), (2, 4), (3, 9)]
    assert 0 < outcome.wall("b") <= outcome.wall("a") and outcome.wall("none") == 0.0
    # one worker: the calling thread, in order
    assert parallel.run_tasks([parallel.Task("a", task(k)) for k in range(3)], 1) == [0, 1, 4]


def test_the_union_of_overlapping_spans_counts_each_second_once():
    out = parallel.Outcome({"a": [(0.0, 10.0), (5.0, 12.0), (20.0, 21.0), (20.5, 20.7)]})
    assert out.wall("a") == pytest.approx(13.0)


def test_a_failed_task_stops_new_ones_and_is_raised_after_the_running_ones_finish():
    ran = []

    def ok(i, seconds=0.0):
        def fn():
            time.sleep(seconds)
            ran.append(i)
            return i
        return fn

    def boom():
        raise SystemExit("run 1 failed")

    tasks = [parallel.Task("g", ok(0, 0.2)), parallel.Task("g", boom)] + [parallel.Task("g", ok(k)) for k in range(2, 6)]
    with pytest.raises(SystemExit, match="run 1 failed"):
        parallel.run_tasks(tasks, 2)
    assert 0 in ran and not set(ran) & {3, 4, 5}  # the running task finished; later ones never started
    with pytest.raises(ValueError):
        parallel.run_tasks(tasks, 0)


def test_a_failure_is_reported_at_once(capsys):
    def boom():
        raise SystemExit("train main/proposed-s0 failed (exit 1)")

    with pytest.raises(SystemExit):
        parallel.run_tasks([parallel.Task("g", boom), parallel.Task("g", lambda: time.sleep(0.3))], 2)
    assert "failed: train main/proposed-s0 failed (exit 1); no new task starts" in capsys.readouterr().err


def test_ctrl_c_interrupts_the_running_commands_and_waits_for_the_workers():
    import _thread
    import threading

    release, finished = threading.Event(), []
    patience = 120  # seconds; release comes at once, the margin is for a loaded CI machine

    def blocked():
        assert release.wait(patience)  # a running command, until on_interrupt stops it
        finished.append("blocked")

    def ctrl_c():
        _thread.interrupt_main()
        assert release.wait(patience)

    tasks = [parallel.Task("g", blocked), parallel.Task("g", ctrl_c), parallel.Task("g", lambda: finished.append("x"))]
    with pytest.raises(KeyboardInterrupt):
        parallel.run_tasks(tasks, 2, on_interrupt=release.set)
    assert finished == ["blocked"]  # the running task finished before the raise; no new one started


def test_the_study_trains_and_evaluates_two_runs_at_a_time_in_plan_order(tmp_path, monkeypatch):
    import threading

    from benchmarks.reproduction import ranks, stages, study

    args = study.parser(study.__doc__ or "").parse_args(["--jobs", "2", "--runs", str(tmp_path / "runs"),
                                                          "--out", str(tmp_path / "out")])
    st = study.Study(args, [])
    st.train_records, st.reused, st.spe = {}, 0, 10
    specs = plan.study_specs(list(settings.LOSSES), 2, {})
    running, peak, lock = [0], [0], threading.Lock()

    def fake_train(spec, cfg, data, runs, epochs, sets, device, threads=None):
        assert cfg.is_file() and threads == 1
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05 if spec.seed == 0 else 0.01)
        with lock:
            running[0] -= 1
        return {"run_dir": str(runs / spec.name), "reused": False, "seconds": 0.05}

    monkeypatch.setattr(stages, "train", fake_train)
    monkeypatch.setattr(ranks, "evaluate", lambda spec, *a, **k: {"name": spec.name, "group": spec.group})
    records = st.train_and_evaluate(specs, {"runs": {s.key: 1.0 for s in specs}})
    assert [r["name"] for r in records] == [s.name for s in specs]  # plan order, whatever finished first
    assert set(st.train_records) == {s.key for s in specs} and peak[0] == 2
    assert 0 < st.stage_seconds["main"] < sum(0.05 if s.seed == 0 else 0.01 for s in specs)  # the runs overlapped


def test_study_configs_are_what_vmfmir_train_reads(tmp_path):
    from vmfmir_cli.training.config import load_config

    raw = settings.loss_configs(ROOT / "examples", list(settings.LOSSES))
    assert settings.shared_differences(raw) == []  # the example recipes share encoders, data and budget
    quick = settings.apply(raw["proposed"], {**settings.QUICK_OVERRIDES, "caption_levels": {"0": 1, "3": 2}})
    assert quick["encoders"] == settings.QUICK_OVERRIDES["encoders"]  # replaced as a whole
    assert raw["proposed"]["encoders"]["audio"]["n_mels"] == 48  # apply does not touch its input
    path = tmp_path / "run.toml"
    path.write_text(settings.to_toml(quick, header="a test"))
    cfg = load_config(path, overrides={"seed": 3})
    assert cfg.encoders == quick["encoders"] and cfg.dim == 16 and cfg.seed == 3 and cfg.loss == "proposed"
    assert cfg.inv_temperature == raw["proposed"]["inv_temperature"]  # read from the example, not copied
    changed = {**raw, "baseline": settings.apply(raw["baseline"], {"dim": 32})}
    assert settings.shared_differences(changed) == ["dim"]
    assert settings.side_encoders(None) is None and settings.side_encoders(tmp_path / "absent.toml") is None
    (tmp_path / "side.toml").write_text('[encoders.text]\nid = "wordllama-text"\n')
    assert settings.side_encoders(tmp_path / "side.toml") == {"text": {"id": "wordllama-text"}}


# --------------------------------------------------------------------------------------------------
# analysis + report on synthetic records
# --------------------------------------------------------------------------------------------------

DIRS = ("audio->image", "image->audio", "text->audio")
N = 24


def _curve(gain):
    return [{"reject": p / 10, "n_kept": 10, "r1": 0.4 + gain * p / 5} for p in range(10)]


def _record(loss, seed, base_rank, kappa_quality=0.0, agreement=1.0, pieces=True):
    """Ranks base_rank + (q + seed) % 3; captions of levels 3 and 1; kappa measures around their null + quality;
    two queries per piece (``pieces``: the record says so, and the bootstrap resamples pieces)."""
    ranks = [base_rank + (q + seed) % 3 for q in range(N)]
    piece = {"piece": [q // 2 for q in range(N)]} if pieces else {}
    levels = [3 if q % 2 else 1 for q in range(N)]
    kappa = [float(q + 1) for q in range(N)]
    amb = {
        "text": {"spearman_kappa_level": kappa_quality + 0.01 * seed, "r_auroc": 0.5 + kappa_quality / 2 + 0.01 * seed,
                 "reject_curve": _curve(kappa_quality), "levels": [{"level": lv, "kappa_median": 5.0 + lv} for lv in range(4)]},
        "kappa_at_bounds": {"text": 0.0},
    }
    for m in ("audio", "image"):
        amb[m] = {"spearman_kappa_level": kappa_quality, "crop_kappa_drop": 0.5 + kappa_quality / 2 + 0.01 * seed,
                  "r_auroc": 0.5 + 0.01 * (seed - 1), "reject_curve": _curve(0.0),
                  "views": [{"fraction": f, "kappa_median": 10 * f} for f in (0.25, 0.5, 1.0)]}
    return {
        "group": "main", "loss": loss, "seed": seed, "name": f"{loss}-s{seed}",
        "eval": {"ambiguity": amb if loss != "infonce" else {}, "uncertainty": {"text": {"spearman": 0.1}}},
        "ranks": {
            "directions": {d: {"ranks": ranks, **piece} for d in DIRS},
            "captions": {"audio": {"level": levels, "ranks": ranks, **piece},
                         "image": {"level": levels, "ranks": ranks, **piece}},
            "fusion": {"level": levels, "product_of_experts": ranks, "mean_direction": [r + 1 for r in ranks],
                       "image_only": ranks, **piece},
            "items": {"ids": [f"i{q}" for q in range(N)],
                      "kappa": {"audio": kappa, "image": kappa if agreement > 0 else kappa[::-1],
                                "text": [k * (1 + 0.1 * ((q * 7 + seed) % 5)) for q, k in enumerate(kappa)]}},
        },
    }


def _study(p_rank, b_rank, i_rank, p_quality=0.6, b_quality=0.6, b_agreement=1.0, seeds=4, pieces=True):
    recs = []
    for s in range(seeds):
        recs += [_record("proposed", s, p_rank, p_quality, pieces=pieces),
                 _record("baseline", s, b_rank, b_quality, b_agreement, pieces=pieces),
                 _record("infonce", s, i_rank, pieces=pieces)]
    return analysis.by_loss(recs)


def _answers(runs, replicates=300):
    doc = {
        "retrieval": analysis.retrieval(runs, replicates=replicates),
        "q2": analysis.question2(runs, replicates=replicates),
        "q3": analysis.question3(runs, replicates=replicates),
        "q4": analysis.question4(runs, replicates=replicates),
    }
    return doc, report.answers(doc)


def test_question_1_verdicts_follow_the_intervals():
    _, win = _answers(_study(1, 12, 12))
    assert win["q1"].startswith("**1. Does Proposed beat Baseline")
    assert "Yes: Proposed beats Baseline on MRR, R@1, R@10 and MR." in win["q1"]
    assert "R@10 +100.0 [+100.0, +100.0] pp (win)" in win["q1"] and "MR -11.0 [-11.0, -11.0] (win)" in win["q1"]
    _, partly = _answers(_study(1, 4, 4))  # every rank <= 10 on both sides: R@10 cannot differ
    assert "Partly: Proposed beats Baseline on MRR, R@1 and MR; no significant difference on R@10." in partly["q1"]
    _, loss = _answers(_study(4, 1, 4))
    assert "No: Proposed is worse than Baseline on MRR, R@1 and MR; no significant difference on R@10." in loss["q1"]
    assert "(loss)" in loss["q1"]
    _, none = _answers(_study(2, 2, 2))
    assert "No: no significant difference on MRR, R@1, R@10 and MR." in none["q1"]
    assert "MRR +0.000 [+0.000, +0.000] (no significant difference)" in none["q1"]
    assert "over 4 seeds × the test pieces" in none["q1"]
    doc, by_query = _answers(_study(1, 12, 12, pieces=False))  # records without pieces: queries one by one
    assert doc["retrieval"]["resampled"] == "queries" and "× the test queries" in by_query["q1"]
    assert "Yes: Proposed beats Baseline on MRR, R@1, R@10 and MR." in by_query["q1"]


def test_question_2_compares_captions_and_fused_queries_with_infonce():
    doc, win = _answers(_study(1, 1, 4))
    assert "Yes: better on level-3 captions (proposed), level-3 captions (baseline)" in win["q2"]
    assert "image + text → audio, product of experts − InfoNCE's mean of the two directions: proposed +" in win["q2"]
    level3 = doc["q2"]["levels"]["3"]
    assert level3["proposed-infonce"]["verdict"] == "win" and level3["mrr"]["proposed"]["mean"] > level3["mrr"]["infonce"]["mean"]
    own = doc["q2"]["fusion"]["proposed_poe-proposed_mean"]
    assert own["verdict"] == "win"  # the synthetic mean of directions ranks every query one lower
    _, loss = _answers(_study(4, 4, 1))
    assert loss["q2"].split(" MRR differences")[0].endswith("No: worse on level-3 captions (proposed), level-3 captions "
                                                           "(baseline), level-1 captions (proposed), level-1 captions "
                                                           "(baseline), fused queries (proposed) and fused queries (baseline).")


def test_question_3_judges_each_kappa_measure_against_its_null():
    doc, ans = _answers(_study(2, 2, 2, p_quality=0.6, b_quality=-0.6))
    q3 = ans["q3"]
    assert "proposed: informative on" in q3 and "text ρ(κ, level) +0.615" in q3 and "(informative)" in q3
    assert "baseline: informative on 0 of 9 measures" in q3 and "(inverted)" in q3
    assert "audio R-AUROC 0.505" in q3 and "(not distinguishable from chance)" in q3
    text = doc["q3"]["losses"]["proposed"]["text"]
    assert text["reject_gain"]["mean"] == pytest.approx(0.6)  # R@1 at 50% rejected minus R@1 of all
    assert doc["q3"]["difference"]["text"]["spearman_level"]["verdict"] == "win"
    assert len(text["reject_curve"]) == 10


def test_question_4_measures_the_agreement_of_kappa_across_modalities():
    doc, ans = _answers(_study(2, 2, 2, b_agreement=-1.0))
    row = doc["q4"]["pairs"]["audio-image"]
    assert row["proposed"]["mean"] == pytest.approx(1.0) and row["baseline"]["mean"] == pytest.approx(-1.0)
    assert row["difference"]["verdict"] == "win"
    assert ans["q4"].startswith("**4. What does SSW change about kappa?** SSW raises the agreement on audio–image")
    assert "audio–image +1.000 vs -1.000, difference +2.000 [+2.000, +2.000] (win)" in ans["q4"]
    _, same = _answers(_study(2, 2, 2))
    assert "No significant difference on audio–image, audio–text and image–text" in same["q4"]


def test_the_report_and_plots(tmp_path):
    from benchmarks.reproduction import plots

    runs = _study(1, 2, 3, seeds=2)
    doc, ans = _answers(runs, replicates=100)
    doc.update({
        "command": "python benchmarks/reproduce.py --quick", "seconds": 90.0, "quick": True,
        "machine": {"cpu_count": 2, "torch_threads": 1, "load_average_at_start": [1.0, 1.0, 1.0]},
        "estimate": {"total": 60.0, "prepare": 0.0, "groups": {"tune": 0.0, "main": 50.0, "side": 0.0}},
        "stages": {"prepare": 5.0, "main": 70.0}, "answers": ans,
        "side": {"config": "examples/pretrained.toml", "status": "Skipped: examples/pretrained.toml does not exist."},
        "tuning": {"settings_per_loss": 2, "seed": 100, "chosen": {"proposed": {"label": "tau10"}},
                   "rows": [{"loss": "proposed", "label": "recipe", "overrides": {}, "val_mrr": 0.1},
                            {"loss": "proposed", "label": "tau10", "overrides": {"inv_temperature": 10.0}, "val_mrr": 0.2}]},
        "setup": {"dataset": {"path": "data", "items": {"train": 8, "val": 2, "test": 2}}, "epochs": 1,
                  "steps_per_run": 3, "batch_size": 8, "seeds": [0, 1], "configs": {"proposed": "examples/proposed.toml"},
                  "scores": {"proposed": "elk"}, "replicates": 100, "bootstrap_seed": 0,
                  "budget": {"main": {"proposed": {"runs": 2, "steps": 6}}}},
    })
    md = report.markdown(doc)
    for line in ans.values():
        assert line in md
    assert "| **mean** | 0.611 ± 0.000 |" in md and "Skipped: examples/pretrained.toml does not exist." in md
    assert "| proposed | tau10 | `{\"inv_temperature\": 10.0}` | 0.2000 | **yes** |" in md
    assert "read these intervals and verdicts as a check of the code" in md  # 2 seeds
    assert "earlier invocation" not in md and "| stage | wall time | estimated |" in md
    # a rerun that reused the finished runs of an earlier invocation states the time of both
    rerun = {**doc, "seconds": 30.0, "stages": {"prepare": 0.0, "main": 2.0, "side": 25.0},
             "earlier": {"seconds": 600.0, "stages": {"prepare": 5.0, "main": 590.0}, "invocations": 1}}
    md2 = report.markdown(rerun)
    assert "0.5 min on this machine (plus 10.0 min in 1 earlier invocation whose finished runs it reused: 10.5 min in all)" in md2
    assert "| main | 0.0 min | 9.8 min | 0.8 min |" in md2 and "| side | 0.4 min | – | 0.0 min |" in md2
    written = plots.write_plots(doc, runs, tmp_path)
    assert [p.name for p in written] == [plots.MRR_FILE, plots.LEVEL_FILE, plots.REJECT_FILE]
    assert all(p.stat().st_size > 1000 for p in written)


# --------------------------------------------------------------------------------------------------
# end to end
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_quick_study_end_to_end(request, tmp_path):
    """--quick on the tiny dataset (no tuning, to stay short), then --report-only from the saved ranks.

    About 80 s on one thread of a loaded 2-core machine (9 training processes), over the suite's 60 s
    bar for one test: it runs only when asked for, with ``-m slow`` or ``VMFMIR_SLOW_TESTS=1``."""
    expr = request.config.getoption("markexpr") or ""
    if os.environ.get("VMFMIR_SLOW_TESTS") != "1" and ("slow" not in expr or "not slow" in expr):
        pytest.skip("slow (about 80 s): run with -m slow or VMFMIR_SLOW_TESTS=1")
    tiny_dataset = request.getfixturevalue("tiny_dataset")  # built only when the test runs
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    base = [sys.executable, str(ROOT / "benchmarks" / "reproduce.py"), "--quick", "--data", str(tiny_dataset),
            "--skip-prepare", "--no-tune", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    t0 = time.perf_counter()
    proc = subprocess.run(base, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seconds = time.perf_counter() - t0
    doc = json.loads((tmp_path / "out" / "reproduction_quick.json").read_text())
    assert set(doc["answers"]) == {"q1", "q2", "q3", "q4"} and doc["quick"] is True
    assert sorted(p.name for p in (tmp_path / "out" / "reproduction_quick-ranks").glob("*.json")) == sorted(
        f"main-{loss}-s{s}.json" for loss in settings.LOSSES for s in (0, 1))
    assert set(doc["stages"]) >= {"probe", "main", "analysis"} and doc["estimate"]["total"] > 0
    # the scores the eval picks for each loss when none is asked for
    assert doc["setup"]["scores"] == {"proposed": "expected_cosine", "baseline": "expected_cosine", "infonce": "cosine"}
    again = subprocess.run(base + ["--report-only"], capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    redo = json.loads((tmp_path / "out" / "reproduction_quick.json").read_text())
    assert redo["answers"] == doc["answers"] and redo["retrieval"] == doc["retrieval"]
    # the same command again reuses every run, and its report carries the first invocation's time
    third = subprocess.run(base, capture_output=True, text=True, env=env, timeout=300)
    assert third.returncode == 0, third.stderr[-3000:]
    rerun = json.loads((tmp_path / "out" / "reproduction_quick.json").read_text())
    assert rerun["earlier"]["invocations"] == 1 and rerun["earlier"]["seconds"] == pytest.approx(redo["seconds"])
    assert rerun["answers"] == doc["answers"] and rerun["seconds"] < doc["seconds"]
    print(f"quick study on the tiny dataset: {seconds:.0f} s")
