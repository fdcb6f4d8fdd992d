"""Query latency and memory of an index of N synthetic vMFs: exact scoring vs the faiss first stage.

    python benchmarks/query.py                 # N = 1e4, 1e5, 1e6; writes benchmarks/results/query.json
    python benchmarks/query.py --quick         # N = 2000 (smoke run), writes benchmarks/results/query_quick.json
    python benchmarks/query.py --sizes 100000 --kinds elk

What one query costs (one fused query vMF, as ``vmfmir query`` sends), top-10, d = 128, float32:

* ``engine``   ``vmfmir_cli.engine.scores.score(q, items)`` + top-k: the reference, which recomputes
               every per-item term (log C_d(kappa_i) in float64, the augmented item matrix) per call;
* ``exact``    what ``vmfmir query`` does (``vmfmir_cli.index.ranking.score_rows``): per-item terms
               stored by ``vmfmir embed`` (log C_d(kappa_i), A_d(kappa_i): ``embed_terms_s``) or
               derived once per opened index (``prepare_s``), then one matrix-vector product +
               O(N) elementwise work + top-k; ``open_s`` is the time to load the index files;
* ``faiss``    ``vmfmir query --faiss`` (the ``faiss`` extra): an exact inner-product first stage
               (``IndexFlatIP``) returning ``rerank`` candidates, re-ranked by the chosen score. For
               elk/bhattacharyya the vectors are A(kappa_i) mu_i (the expected-cosine ranking, a
               proxy); for kl they are [kappa_i mu_i, log C(kappa_i)], an exact form of -KL.
               ``faiss_build_s`` is the one-off index build.

Recall: fraction of the exact top-10 (same score kind) that the faiss path returns, averaged over
the queries, for each ``rerank``. Memory: bytes of the index tensors, of the prepared per-item
terms and of the faiss copy, plus the peak resident memory a query adds (Linux VmHWM, reset before
each path).

The data: items are noisy copies of 1000 random directions (clusters, like pieces with many
performances), kappa log-uniform in [5, 500]; each query is a perturbed item with its own kappa.
Timings are medians over the queries after a warm-up (the slow ``engine`` reference over at most 5
of them above N = 1e5), paths measured in alternation per query so that all see the same load on a
shared machine.
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
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from vmfmir_cli.engine.scores import score  # noqa: E402
from vmfmir_cli.engine.vmf import VonMisesFisher  # noqa: E402
from vmfmir_cli.index.scoring import FIRST_STAGE  # noqa: E402
from vmfmir_cli.index.ranking import _faiss_index, _top, prepared, score_rows  # noqa: E402
from vmfmir_cli.index.build import scoring_terms  # noqa: E402
from vmfmir_cli.index.store import Index, load_index, save_index  # noqa: E402
from vmfmir_cli.utils_io import write_json  # noqa: E402

K = 10
DIM = 128


def _rss_peak_kb() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _rss_kb() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def synthetic(n: int, n_queries: int, dim: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(1000, dim, generator=g), dim=-1)
    mu = torch.empty(n, dim)
    step = 200_000
    for start in range(0, n, step):  # in blocks: bounded temporary memory
        stop = min(start + step, n)
        which = torch.randint(0, 1000, (stop - start,), generator=g)
        mu[start:stop] = torch.nn.functional.normalize(
            centres[which] + 0.6 * torch.randn(stop - start, dim, generator=g) / math.sqrt(dim) * 4, dim=-1
        )
    kappa = torch.exp(torch.empty(n).uniform_(math.log(5.0), math.log(500.0), generator=g))
    pick = torch.randint(0, n, (n_queries,), generator=g)
    q_mu = torch.nn.functional.normalize(mu[pick] + 0.15 * torch.randn(n_queries, dim, generator=g) / math.sqrt(dim) * 4, dim=-1)
    q_kappa = torch.exp(torch.empty(n_queries).uniform_(math.log(5.0), math.log(500.0), generator=g))
    return mu.contiguous(), kappa, q_mu, q_kappa


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def synthetic_index(mu: torch.Tensor, kappa: torch.Tensor) -> tuple[Index, float]:
    """An in-memory index whose audio rows are the synthetic items (items.jsonl rows are minimal),
    with the per-row scoring terms that ``vmfmir embed`` stores; returns it and the terms' time."""
    index = Index(info={"dim": mu.shape[1], "model_hash": None, "run": None}, items=[{"id": str(i)} for i in range(len(kappa))])
    index.mu["audio"], index.kappa["audio"], index.rows["audio"] = mu, kappa, torch.arange(len(kappa))
    seconds, (log_c, a) = _timed(lambda: scoring_terms(kappa, mu.shape[1]))
    index.terms["audio"] = {"log_c": log_c, "a": a}
    return index, seconds


def open_time(index: Index) -> tuple[float, int]:
    """Seconds to load the index from disk (what each ``vmfmir query`` process pays), and its size."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="vmfmir-bench-") as tmp:
        save_index(index, tmp)
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
        seconds, _ = _timed(lambda: load_index(tmp))
    return seconds, size


def bench_size(n: int, kinds, reranks, n_queries: int, with_engine: bool, use_faiss: bool, with_open: bool = True) -> dict:
    mu, kappa, q_mu, q_kappa = synthetic(n, n_queries + 1, DIM)
    engine_queries = n_queries if n <= 100_000 else min(n_queries, 5)
    items_vmf = VonMisesFisher(mu, kappa, validate_args=False)
    queries = [VonMisesFisher(q_mu[i : i + 1], q_kappa[i : i + 1], validate_args=False) for i in range(n_queries + 1)]
    index, terms_s = synthetic_index(mu, kappa)
    result: dict = {"items": n, "dim": DIM, "queries": n_queries, "k": K, "index_bytes": mu.numel() * 4 + kappa.numel() * 4,
                    "embed_terms_s": terms_s, "kinds": {}, "prepare_s": {}, "faiss_build_s": {}, "faiss_bytes": {}}
    if with_open:
        result["open_s"], result["files_bytes"] = open_time(index)

    for kind in kinds:  # the one-off work of opening an index (what the first query of a process pays)
        result["prepare_s"][kind], _ = _timed(lambda kind=kind: prepared(index, "audio").prepare(kind))
        if use_faiss:
            family = FIRST_STAGE[kind]
            if family not in result["faiss_build_s"]:
                result["faiss_build_s"][family], flat = _timed(lambda family=family: _faiss_index(index, "audio", family))
                result["faiss_bytes"][family] = flat.ntotal * flat.d * 4
    result["prepared_bytes"] = sum(t.numel() * t.element_size() for t in prepared(index, "audio")._terms.values())

    def engine_query(q, kind):
        return torch.topk(score(q, items_vmf, kind)[0], K).indices

    def search_query(q, kind, faiss_rerank=None):
        rows, scores = score_rows(index, "audio", q, kind, use_faiss=faiss_rerank is not None, rerank=faiss_rerank or 1)
        return rows[_top(scores, K)]

    for kind in kinds:
        paths = {"exact": lambda q, kind=kind: search_query(q, kind)}
        if with_engine:
            paths["engine"] = lambda q, kind=kind: engine_query(q, kind)
        if use_faiss:
            for r in reranks:
                if r <= n:
                    paths[f"faiss_rerank{r}"] = lambda q, kind=kind, r=r: search_query(q, kind, r)
        for fn in paths.values():  # warm-up
            fn(queries[-1])
        times = {name: [] for name in paths}
        recall = {name: [] for name in paths if name != "exact"}
        peak = {name: 0 for name in paths}
        for qi, q in enumerate(queries[:-1]):
            truth = None
            for name, fn in paths.items():
                if name == "engine" and qi >= engine_queries:
                    continue  # the slow reference: a few queries are enough
                base = _rss_kb() if _reset_peak() else None
                t, top = _timed(lambda fn=fn: fn(q))
                after = _rss_peak_kb()
                if base is not None and after is not None:
                    peak[name] = max(peak[name], (after - base) * 1024)
                times[name].append(t)
                if name == "exact":
                    truth = set(top.tolist())
                else:
                    recall[name].append(len(truth & set(top.tolist())) / K)
        result["kinds"][kind] = {
            name: {
                "median_s": statistics.median(ts),
                "p90_s": sorted(ts)[max(0, math.ceil(0.9 * len(ts)) - 1)],
                "peak_extra_bytes": peak[name],
                **({"recall_at_10": statistics.mean(recall[name])} if name in recall else {}),
            }
            for name, ts in times.items()
        }
    return result


def _fmt_bytes(b: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if b < 1024 or unit == "GB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024
    return f"{b:.1f} GB"


def print_table(data: dict) -> None:
    print(f"\nquery latency, one query, top-{K}, d={DIM}, float32, torch threads {data['machine']['torch_threads']}"
          f" (load average at start {data['machine']['loadavg']})")
    head = f"{'N':>9}  {'score':<9} {'path':<17} {'median':>10} {'p90':>10} {'peak extra':>11} {'recall@10':>9}"
    print(head)
    print("-" * len(head))
    for size in data["sizes"]:
        for kind, paths in size["kinds"].items():
            for name, r in paths.items():
                recall = f"{r['recall_at_10']:.3f}" if "recall_at_10" in r else ""
                print(f"{size['items']:>9}  {kind:<9} {name:<17} {r['median_s'] * 1e3:>8.1f}ms {r['p90_s'] * 1e3:>8.1f}ms "
                      f"{_fmt_bytes(r['peak_extra_bytes']):>11} {recall:>9}")
        extra = f"index {_fmt_bytes(size['index_bytes'])}"
        if "open_s" in size:
            extra += f" ({_fmt_bytes(size['files_bytes'])} on disk, opened in {size['open_s'] * 1e3:.0f}ms)"
        extra += f", terms at embed time {size['embed_terms_s'] * 1e3:.0f}ms"
        extra += f", prepared terms {_fmt_bytes(size['prepared_bytes'])} in " + ", ".join(
            f"{k} {v * 1e3:.0f}ms" for k, v in size["prepare_s"].items()
        )
        for family, nbytes in size["faiss_bytes"].items():
            extra += f"; faiss {family} {_fmt_bytes(nbytes)} built in {size['faiss_build_s'][family] * 1e3:.0f}ms"
        print(f"{'':>11}{extra}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--sizes", type=int, nargs="*", help="numbers of items (default 1e4 1e5 1e6)")
    parser.add_argument("--kinds", nargs="*", default=["elk", "kl"], help="score kinds to time")
    parser.add_argument("--reranks", type=int, nargs="*", default=[100, 1000], help="faiss candidates to re-rank")
    parser.add_argument("--queries", type=int, default=None, help="queries per size (default 20; quick 3)")
    parser.add_argument("--no-engine", action="store_true", help="skip the engine.scores.score reference path")
    parser.add_argument("--no-faiss", action="store_true", help="skip the faiss path even when installed")
    parser.add_argument("--no-open", action="store_true", help="skip timing an index load from disk")
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    args = parser.parse_args(argv)

    sizes = args.sizes or ([2000] if args.quick else [10_000, 100_000, 1_000_000])
    n_queries = args.queries or (3 if args.quick else 20)
    reranks = [r for r in args.reranks if r > 0] or [1000]
    try:
        import faiss

        faiss_version = faiss.__version__
    except ImportError:
        faiss_version = None
    use_faiss = faiss_version is not None and not args.no_faiss
    data = {
        "quick": bool(args.quick),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "faiss": faiss_version,
            "loadavg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        },
        "sizes": [],
    }
    if faiss_version is None:
        print("faiss is not installed (pip install 'vmfmir[faiss]'): timing the exact paths only", file=sys.stderr)
    for n in sizes:
        print(f"N = {n} ...", file=sys.stderr, flush=True)
        data["sizes"].append(bench_size(n, args.kinds, reranks, n_queries, not args.no_engine, use_faiss, not args.no_open))
    out = args.out or ROOT / "benchmarks" / "results" / ("query_quick.json" if args.quick else "query.json")
    write_json(out, data)
    print_table(data)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
