"""Engine speed benchmarks: each figure is a ratio against a baseline measured in the same run.

    python benchmarks/engine.py            # full sizes, writes benchmarks/results/engine.json
    python benchmarks/engine.py --quick    # tiny sizes (smoke run), writes benchmarks/results/engine_quick.json

(a) ssw_loss:    SSW alignment loss (p = 2) over P pairs of S-sample clouds, forward + backward,
                 ours batched vs POT's ``ot.sliced_wasserstein_sphere`` called once per pair (numpy
                 backend, forward only, same projections). A secondary figure times POT's torch
                 backend forward + backward on a subset of pairs and extrapolates linearly.
(b) rsample:     S samples from each of N vMFs, kappa log-uniform in [10, 1e4]:
                 ``VonMisesFisher(...).rsample((S,))`` vs ``scipy.stats.vonmises_fisher`` looped
                 per vMF on a subset, extrapolated linearly to N.
(c) elk_scoring: ``scores.score(q, items, kind="elk")`` vs the plain (Q x d)(d x N) matmul.

Timings are medians over repeats after warm-up, ours and the baseline measured in alternation (so
both see the same load on a shared machine), on CPU, float32 unless noted. Targets:
(a) >= 50x, (b) >= 30x, (c) <= 2x.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _threads_from_argv(argv: list[str]):
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return None


# --threads also caps the BLAS / OpenMP pools that numpy and scipy use (the baselines): that must be
# set before numpy is imported.
_THREADS = _threads_from_argv(sys.argv[1:]) if __name__ == "__main__" else None
if _THREADS is not None:
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _THREADS
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from vmfmir_cli.engine.losses import ssw_alignment_loss  # noqa: E402
from vmfmir_cli.engine.scores import score  # noqa: E402
from vmfmir_cli.engine.ssw import random_projections, spherical_sliced_wasserstein  # noqa: E402
from vmfmir_cli.engine.vmf import VonMisesFisher  # noqa: E402
from vmfmir_cli.utils_io import write_json  # noqa: E402

FULL = {
    "ssw": {"pairs": 256, "samples": 16, "dim": 128, "projections": 64, "p": 2, "pot_torch_pairs": 16},
    "rsample": {"num_vmfs": 4096, "samples": 16, "dim": 256, "scipy_subset": 256},
    "elk": {"queries": 1000, "items": 100_000, "dim": 256},
    "repeats": 3,
    "warmup": 1,
}
QUICK = {
    "ssw": {"pairs": 8, "samples": 4, "dim": 8, "projections": 4, "p": 2, "pot_torch_pairs": 2},
    "rsample": {"num_vmfs": 16, "samples": 2, "dim": 8, "scipy_subset": 4},
    "elk": {"queries": 8, "items": 300, "dim": 64},
    "repeats": 1,
    "warmup": 1,
}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _interleaved(ours, baseline, repeats: int, warmup: int, ours_per_round: int = 1):
    """Median times of ``ours`` and ``baseline``, measured in alternation (round r times ours
    ``ours_per_round`` times, then the baseline once) so that both see the same machine load."""
    for _ in range(warmup):
        ours()
        baseline()
    ours_times, base_times = [], []
    for _ in range(repeats):
        ours_times.extend(_timed(ours) for _ in range(ours_per_round))
        base_times.append(_timed(baseline))
    return statistics.median(ours_times), ours_times, statistics.median(base_times), base_times


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def _synced(fn, device: torch.device):
    """``fn`` followed by a CUDA synchronisation (so that timings include the kernels)."""
    if device.type != "cuda":
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize(device)
        return out

    return run


def bench_ssw(cfg: dict, repeats: int, warmup: int, device: torch.device = torch.device("cpu")) -> dict:
    import ot

    gen = torch.Generator().manual_seed(0)
    pairs, s, d, num_proj, p = cfg["pairs"], cfg["samples"], cfg["dim"], cfg["projections"], cfg["p"]
    x = _unit(torch.randn(s, pairs, d, generator=gen))
    y = _unit(x + 0.5 * torch.randn(s, pairs, d, generator=gen))
    proj = random_projections(d, num_proj, generator=gen)
    xd, yd, projd = x.to(device), y.to(device), proj.to(device)

    def _ours():
        xa = xd.clone().requires_grad_(True)
        yb = yd.clone().requires_grad_(True)
        # the plain estimate, as POT computes it (debias=True would run six half-size transports)
        loss = ssw_alignment_loss(None, samples={"a": xa, "b": yb}, p=p, projections=projd, debias=False)
        loss.backward()
        return loss

    ours = _synced(_ours, device)

    xs = x.transpose(0, 1).contiguous().numpy()  # (pairs, S, d)
    ys = y.transpose(0, 1).contiguous().numpy()
    proj_np = proj.numpy()

    def pot_numpy():
        return [
            ot.sliced_wasserstein_sphere(xs[i], ys[i], p=p, projections=proj_np, n_projections=num_proj) ** p
            for i in range(pairs)
        ]

    # ours is cheap: extra warm-up calls (the first ones pay one-off allocator/thread-pool costs)
    for _ in range(2):
        ours()
    t_ours, ours_times, t_pot, pot_times = _interleaved(ours, pot_numpy, repeats, warmup, ours_per_round=3)

    # agreement of the values (ours per pair vs POT per pair), float32 inputs
    with torch.no_grad():
        ours_vals = spherical_sliced_wasserstein(x.transpose(0, 1), y.transpose(0, 1), p=p, projections=proj).numpy()
    pot_vals = np.asarray(pot_numpy(), dtype=np.float64)
    max_abs_diff = float(np.max(np.abs(ours_vals - pot_vals)))

    # secondary: POT torch backend, forward + backward, on a subset, extrapolated
    sub = min(cfg["pot_torch_pairs"], pairs)
    xt = x.transpose(0, 1)
    yt = y.transpose(0, 1)

    def pot_torch():
        for i in range(sub):
            xi = xt[i].clone().requires_grad_(True)
            yi = yt[i].clone().requires_grad_(True)
            val = ot.sliced_wasserstein_sphere(xi, yi, p=p, projections=proj, n_projections=num_proj) ** p
            (val / pairs).backward()

    pot_torch()  # warm-up
    t_pot_torch_sub = _timed(pot_torch)
    t_pot_torch = t_pot_torch_sub * pairs / sub
    return {
        "config": {**cfg, "dtype": "float32", "device": str(device)},
        "ours": "vmfmir ssw_alignment_loss (debias=False), all pairs batched, forward + backward",
        "baseline": "POT ot.sliced_wasserstein_sphere once per pair, numpy backend, forward only (same projections)",
        "ours_s": t_ours,
        "baseline_s": t_pot,
        "ratio": t_pot / t_ours,
        "ratio_meaning": "speedup (baseline time / ours)",
        "target": ">= 50x",
        "meets_target": t_pot / t_ours >= 50,
        "ours_times_s": ours_times,
        "baseline_times_s": pot_times,
        "max_abs_diff_vs_pot": max_abs_diff,
        "pot_torch_fwd_bwd_s_extrapolated": t_pot_torch,
        "pot_torch_pairs_timed": sub,
        "ratio_vs_pot_torch_fwd_bwd": t_pot_torch / t_ours,
    }


def bench_rsample(cfg: dict, repeats: int, warmup: int, device: torch.device = torch.device("cpu")) -> dict:
    from scipy.stats import vonmises_fisher

    gen = torch.Generator().manual_seed(1)
    n, s, d, subset = cfg["num_vmfs"], cfg["samples"], cfg["dim"], cfg["scipy_subset"]
    loc = _unit(torch.randn(n, d, generator=gen))
    kappa = torch.exp(torch.empty(n).uniform_(math.log(10.0), math.log(1e4), generator=gen))
    dist = VonMisesFisher(loc.to(device), kappa.to(device))
    dgen = torch.Generator(device=device).manual_seed(1)
    ours = _synced(lambda: dist.rsample((s,), generator=dgen), device)

    subset = min(subset, n)
    loc64 = loc.double().numpy()
    kap64 = kappa.double().numpy()
    rng = np.random.default_rng(0)

    def scipy_loop():
        for i in range(subset):
            vonmises_fisher(loc64[i], kap64[i]).rvs(s, random_state=rng)

    t_ours, ours_times, t_sub, sub_times = _interleaved(ours, scipy_loop, repeats, warmup)
    t_scipy = t_sub * n / subset
    sample = ours()
    # sanity: mean of mu.x over all draws against the average A_d(kappa)
    from vmfmir_cli.engine.vmf import mean_resultant_length

    emp = float((sample.double().cpu() * loc.double()).sum(-1).mean())
    ref = float(mean_resultant_length(kappa.double(), d).mean())
    return {
        "config": {**cfg, "kappa": "log-uniform [10, 1e4]", "dtype": "float32", "device": str(device)},
        "ours": "VonMisesFisher(loc, kappa).rsample((S,)), all vMFs at once",
        "baseline": f"scipy.stats.vonmises_fisher(mu, kappa).rvs(S) looped per vMF, timed on {subset} vMFs "
        f"and extrapolated linearly to {n}",
        "ours_s": t_ours,
        "baseline_s": t_scipy,
        "baseline_subset_s": t_sub,
        "baseline_subset_times_s": sub_times,
        "ratio": t_scipy / t_ours,
        "ratio_meaning": "speedup (baseline time / ours)",
        "target": ">= 30x",
        "meets_target": t_scipy / t_ours >= 30,
        "ours_times_s": ours_times,
        "mean_cosine_empirical": emp,
        "mean_cosine_expected": ref,
    }


def bench_elk(cfg: dict, repeats: int, warmup: int, device: torch.device = torch.device("cpu")) -> dict:
    gen = torch.Generator().manual_seed(2)
    q_n, i_n, d = cfg["queries"], cfg["items"], cfg["dim"]

    def make(n):
        loc = _unit(torch.randn(n, d, generator=gen))
        kappa = torch.exp(torch.empty(n).uniform_(math.log(10.0), math.log(1e4), generator=gen))
        return VonMisesFisher(loc.to(device), kappa.to(device))

    queries, items = make(q_n), make(i_n)
    q_loc, i_loc = queries.loc, items.loc
    elk = _synced(lambda: score(queries, items, kind="elk"), device)
    matmul = _synced(lambda: q_loc @ i_loc.T, device)

    t_elk, elk_times, t_mm, mm_times = _interleaved(elk, matmul, repeats, warmup)
    # accuracy spot check of the fast path against the float64 exact formula on a few rows
    from vmfmir_cli.engine.vmf import log_expected_likelihood

    rows = min(4, q_n)
    out = elk()[:rows].double().cpu()
    q_loc, i_loc = q_loc.cpu(), i_loc.cpu()
    queries = VonMisesFisher(q_loc, queries.concentration.cpu())
    items = VonMisesFisher(i_loc, items.concentration.cpu())
    q64 = VonMisesFisher(q_loc[:rows].double(), queries.concentration[:rows].double())
    i64 = VonMisesFisher(i_loc[: min(2000, i_n)].double(), items.concentration[: min(2000, i_n)].double())
    ref = log_expected_likelihood(
        VonMisesFisher(q64.loc[:, None, :].expand(rows, i64.loc.shape[0], d), q64.concentration[:, None].expand(rows, i64.loc.shape[0])),
        VonMisesFisher(i64.loc[None].expand(rows, -1, -1), i64.concentration[None].expand(rows, -1)),
    )
    err = (out[:, : ref.shape[1]] - ref).abs()
    rel = float((err / ref.abs().clamp_min(1.0)).max())
    return {
        "config": {**cfg, "kappa": "log-uniform [10, 1e4]", "dtype": "float32", "device": str(device)},
        "ours": 'vmfmir_cli.engine.scores.score(q, items, kind="elk")',
        "baseline": "plain (Q x d) @ (d x N) float32 matmul of the mean directions",
        "ours_s": t_elk,
        "baseline_s": t_mm,
        "ratio": t_elk / t_mm,
        "ratio_meaning": "slowdown (ours / baseline)",
        "target": "<= 2x",
        "meets_target": t_elk / t_mm <= 2,
        "ours_times_s": elk_times,
        "baseline_times_s": mm_times,
        "max_rel_err_vs_float64": rel,
    }


def machine_info() -> dict:
    import scipy

    try:
        import ot

        pot_version = ot.__version__
    except Exception:  # pragma: no cover
        pot_version = None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "blas_threads_env": os.environ.get("OPENBLAS_NUM_THREADS"),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pot": pot_version,
        "device": "cpu" if not torch.cuda.is_available() else f"cpu; cuda: {torch.cuda.get_device_name(0)}",
        "load_average_1m_5m_15m": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _print_table(results: dict, quick: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="vmfmir engine benchmarks" + (" (--quick sizes)" if quick else ""))
    for col in ("benchmark", "ours", "baseline", "ratio", "target", "met"):
        table.add_column(col, justify="right" if col in ("ours", "baseline", "ratio") else "left")
    for name, r in results.items():
        table.add_row(
            name,
            f"{r['ours_s'] * 1e3:.1f} ms",
            f"{r['baseline_s'] * 1e3:.1f} ms",
            f"{r['ratio']:.1f}x",
            r["target"],
            "yes" if r["meets_target"] else "NO",
        )
    console = Console()
    console.print(table)
    for name, r in results.items():
        console.print(f"[bold]{name}[/]: ours = {r['ours']}; baseline = {r['baseline']}")
    ssw = results.get("ssw_loss")
    if ssw:
        console.print(
            f"ssw_loss extra: POT torch backend forward+backward, {ssw['pot_torch_pairs_timed']} pairs timed and "
            f"extrapolated: {ssw['pot_torch_fwd_bwd_s_extrapolated'] * 1e3:.0f} ms "
            f"({ssw['ratio_vs_pot_torch_fwd_bwd']:.0f}x); max |ours - POT| = {ssw['max_abs_diff_vs_pot']:.2e}"
        )
    rs = results.get("rsample")
    if rs:
        console.print(
            f"rsample check: mean mu.x = {rs['mean_cosine_empirical']:.4f} vs E = {rs['mean_cosine_expected']:.4f}"
        )
    elk = results.get("elk_scoring")
    if elk:
        console.print(f"elk_scoring check: max relative error vs float64 = {elk['max_rel_err_vs_float64']:.1e}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run")
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    parser.add_argument("--only", choices=["ssw_loss", "rsample", "elk_scoring"], action="append", help="run only these")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (median)")
    parser.add_argument("--device", default="cpu", help="device of vmfmir's side (cpu, cuda, cuda:N); the POT / "
                        "scipy baselines always run on the CPU")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch intra-op threads (default: torch's choice); on a loaded shared machine 1 thread is far "
        "less sensitive to other processes",
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine")
    cfg = QUICK if args.quick else FULL
    repeats = args.repeats or cfg["repeats"]
    warmup = cfg["warmup"]
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    out = args.out or ROOT / "benchmarks" / "results" / (f"engine{suffix}_quick.json" if args.quick else f"engine{suffix}.json")
    torch.manual_seed(0)
    load_before = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    selected = args.only or ["ssw_loss", "rsample", "elk_scoring"]
    results = {}
    if "ssw_loss" in selected:
        results["ssw_loss"] = bench_ssw(cfg["ssw"], repeats, warmup, device)
    if "rsample" in selected:
        results["rsample"] = bench_rsample(cfg["rsample"], repeats, warmup, device)
    if "elk_scoring" in selected:
        results["elk_scoring"] = bench_elk(cfg["elk"], repeats, warmup, device)
    payload = {
        "quick": bool(args.quick),
        "repeats": repeats,
        "warmup": warmup,
        "device": str(device),
        "machine": {**machine_info(), "load_average_at_start": load_before},
        "benchmarks": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, payload)
    _print_table(results, args.quick)
    if load_before is not None:
        print(f"load average (1 min) at start {load_before[0]:.2f}, at end {os.getloadavg()[0]:.2f} "
              f"on {os.cpu_count()} CPUs (other processes distort timings)")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
