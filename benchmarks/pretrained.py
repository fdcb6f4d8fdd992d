"""Out-of-vocabulary text queries: does a run retrieve the right audio for words its captions never used?

    python benchmarks/pretrained.py --data data/default --runs runs/proposed runs/pretrained
    python benchmarks/pretrained.py --data data/default --runs runs/a runs/b --labels built-in,pretrained \\
        --target image --index-root /tmp/oov-index --out benchmarks/results/pretrained-image

The queries (``benchmarks/data/oov_queries.json``) are hand-written free-form texts, most of them in
words outside the benchmark's caption vocabulary ("sleepy violin" for slow items played on the
fiddle, "baroque music" for Bach, Corelli, Handel and C. P. E. Bach), each with its expected
matches as a predicate on the items' facts (``meta["facts"]``, see
``vmfmir_cli/data/recipes/music21_captions.py``); a few *control* queries use the benchmark's own
level-1 words ("calm piano"). For every run, the ``--split`` items are embedded with the run's model
(``vmfmir_cli.index.embed_dataset``), every query is searched against all ``--target`` items
(``vmfmir_cli.index.search``, the run's default score), and per query:

* ``p_at_k``: the share of matching items among the top ``--k`` (and ``base_rate``, the share of
  matching items in the split: what a random ranking scores);
* ``first_rr``: 1 / rank of the first matching item (``vmfmir_cli.engine.metrics``; averaged: MRR);
* ``auroc``: the probability that a matching item outscores a non-matching one
  (``vmfmir_cli.evaluation.ambiguity.roc_auc``, ties 1/2; 0.5 = chance).

Queries with no matching or no non-matching item in the split are reported but left out of the
means. For a score image target only queries on facts of the piece (not the performance: tempo,
instrument) apply. The report also lists, per query, the ``oov_words`` that do occur in the
split's training captions (none should). Writes ``--out``.json and ``--out``.md
(default ``benchmarks/results/pretrained``).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

QUERIES = ROOT / "benchmarks" / "data" / "oov_queries.json"
OUT = ROOT / "benchmarks" / "results" / "pretrained"
#: facts of a performance (an audio item), not of the piece its score image shows
PERFORMANCE_FACTS = frozenset({"tempo_word", "tempo_class", "instrument", "instrument_family"})
METRICS = ("p_at_k", "first_rr", "auroc")


# --------------------------------------------------------------------------------------------------
# Queries and matches
# --------------------------------------------------------------------------------------------------


def load_queries(path: str | Path = QUERIES) -> list[dict]:
    """The query list of ``path``, checked: each has ``query`` (str) and ``match`` ({fact: [values]})."""
    queries = json.loads(Path(path).read_text(encoding="utf-8"))["queries"]
    for i, q in enumerate(queries):
        match = q.get("match")
        if not isinstance(q.get("query"), str) or not isinstance(match, dict) or not match:
            raise ValueError(f"{path}: query {i} needs a 'query' string and a non-empty 'match' table")
        if not all(isinstance(v, list) and v for v in match.values()):
            raise ValueError(f"{path}: query {q['query']!r}: every match value must be a non-empty list")
    return queries


def matches(facts: Mapping[str, Any], match: Mapping[str, Sequence[Any]]) -> bool:
    """Whether an item with ``facts`` fits ``match``: every listed fact has one of the listed values."""
    return all(facts.get(name) in values for name, values in match.items())


def applies(query: Mapping[str, Any], target: str) -> bool:
    """A score image only shows the piece: queries on the performance do not apply to it."""
    return target != "image" or not (set(query["match"]) & PERFORMANCE_FACTS)


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+(?:[-'][a-z0-9]+)*", text.lower()))


def caption_vocabulary(items: Iterable[Any]) -> set[str]:
    """Every word of every caption (and main text) of ``items``."""
    from vmfmir_cli.data.captions import item_captions

    vocab: set[str] = set()
    for it in items:
        vocab |= words(it.text or "")
        for caption in item_captions(it):
            vocab |= words(caption.text)
    return vocab


# --------------------------------------------------------------------------------------------------
# Metrics of one query
# --------------------------------------------------------------------------------------------------


def query_metrics(scores: Sequence[float], relevant: Sequence[bool], k: int = 10) -> dict[str, Any]:
    """p@k, first-match reciprocal rank and AUROC of one query's scores over all candidates."""
    import torch

    from vmfmir_cli.engine.metrics import ranks_from_scores
    from vmfmir_cli.evaluation.ambiguity import roc_auc

    s = torch.as_tensor(list(scores), dtype=torch.float64)
    y = torch.as_tensor(list(relevant), dtype=torch.bool)
    n, n_rel = int(y.numel()), int(y.sum())
    out: dict[str, Any] = {"n_items": n, "n_matching": n_rel, "base_rate": n_rel / n if n else None}
    if n_rel == 0 or n_rel == n:
        return {**out, "p_at_k": None, "first_rr": None, "auroc": None, "first_rank": None}
    order = sorted(range(n), key=lambda i: (-float(s[i]), i))  # ties by position, as vmfmir query
    top = order[: min(k, n)]
    first = int(ranks_from_scores(s[None], y[None])[0])  # ties count against the matching item
    return {
        **out,
        "p_at_k": sum(bool(y[i]) for i in top) / len(top),
        "first_rank": first,
        "first_rr": 1.0 / first,
        "auroc": roc_auc(s, y),
    }


def summarise(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Means over the rows whose metrics exist (plus how many queries that is)."""
    used = [r for r in rows if r.get("auroc") is not None]
    out: dict[str, Any] = {"queries": len(used), "skipped": len(rows) - len(used)}
    for key in (*METRICS, "base_rate"):
        values = [float(r[key]) for r in used]
        out[key] = statistics.fmean(values) if values else None
    out["mrr"] = out.pop("first_rr")
    return out


# --------------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------------


def evaluate_run(
    run: str | Path,
    data: str | Path,
    queries: Sequence[Mapping[str, Any]],
    *,
    split: str = "test",
    target: str = "audio",
    k: int = 10,
    score: str = "auto",
    index_dir: str | Path,
    device: Optional[str] = None,
) -> dict[str, Any]:
    """Embed ``split`` with ``run`` into ``index_dir`` and score every applicable query."""
    from vmfmir_cli.data.captions import item_facts
    from vmfmir_cli.model import read_model_config
    from vmfmir_cli.evaluation.evaluate import default_score, resolve_run, run_loss
    from vmfmir_cli.index import embed_dataset, load_index, search
    from vmfmir_cli.index.search import load_index_model

    started = time.perf_counter()
    run_dir = resolve_run(run)
    config = read_model_config(run_dir)
    kind = default_score(run_loss(config)) if score == "auto" else score
    embed_dataset(run_dir, data, split=split, out=index_dir, device=device)
    index = load_index(index_dir)
    model, _ = load_index_model(index, run=run_dir, device=device)
    n = index.count(target)
    rows = []
    for q in queries:
        row: dict[str, Any] = {"query": q["query"], "control": bool(q.get("control"))}
        if not applies(q, target):
            rows.append({**row, "applies": False})
            continue
        result = search(index, model=model, text=q["query"], target=target, k=n, score=kind)
        relevant = [matches(item_facts(hit), q["match"]) for hit in result.hits]
        metrics = query_metrics([hit.score for hit in result.hits], relevant, k=k)
        top = [hit.id for hit in result.hits[:3]]
        rows.append({**row, "applies": True, **metrics, "kappa": result.kappa["text"], "top3": top})
    applicable = [r for r in rows if r["applies"]]
    encoders = {m: spec.get("id") for m, spec in config["model"]["encoders"].items()}
    return {
        "run": str(run_dir),
        "encoders": encoders,
        "loss": run_loss(config),
        "score": kind,
        "n_targets": n,
        "oov": summarise([r for r in applicable if not r["control"]]),
        "control": summarise([r for r in applicable if r["control"]]),
        "per_query": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }


def vocabulary_check(data: str | Path, queries: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Per query, the oov_words that the training captions of ``data`` do use (should be none)."""
    from vmfmir_cli.data.manifest import read_manifest, split_items

    vocab = caption_vocabulary(split_items(read_manifest(data), "train"))
    return {q["query"]: sorted(w for w in q.get("oov_words", []) if w.lower() in vocab) for q in queries}


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def _f(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(result: Mapping[str, Any]) -> str:
    runs = result["runs"]
    lines = [
        f"# Out-of-vocabulary text queries -> {result['target']} ({result['split']} split of {result['data']})",
        "",
        f"{result['n_queries']} queries ({result['n_control']} controls in the benchmark's own words), "
        f"`{Path(result['queries_file']).name}`; p@{result['k']} = share of matching items in the top {result['k']} "
        "(base = share in the split), MRR = 1 / rank of the first matching item, AUROC = matching vs "
        "non-matching items (0.5 = chance). Means over the queries with both kinds of item in the split.",
        "",
        f"| run | encoders (audio / text) | score | OOV p@{result['k']} | OOV base | OOV MRR | OOV AUROC "
        f"| control p@{result['k']} | control MRR | control AUROC |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in zip(result["labels"], runs):
        enc = f"{r['encoders'].get('audio', '-')} / {r['encoders'].get('text', '-')}"
        o, c = r["oov"], r["control"]
        lines.append(
            f"| {label} | {enc} | {r['score']} | {_f(o['p_at_k'])} | {_f(o['base_rate'])} | {_f(o['mrr'])} "
            f"| {_f(o['auroc'])} | {_f(c['p_at_k'])} | {_f(c['mrr'])} | {_f(c['auroc'])} |"
        )
    lines += ["", "Per query (AUROC / p@k; `n` matching items of the split):", ""]
    lines.append("| query | n | " + " | ".join(result["labels"]) + " |")
    lines.append("|---|---:|" + "---:|" * len(runs))
    for i, q in enumerate(runs[0]["per_query"] if runs else []):
        mark = " (control)" if q["control"] else ""
        if not q["applies"]:
            lines.append(f"| {q['query']}{mark} | - | " + " | ".join("n/a" for _ in runs) + " |")
            continue
        cells = [f"{_f(r['per_query'][i]['auroc'], 2)} / {_f(r['per_query'][i]['p_at_k'], 2)}" for r in runs]
        lines.append(f"| {q['query']}{mark} | {q['n_matching']} | " + " | ".join(cells) + " |")
    used = {q: w for q, w in result["oov_words_in_train_captions"].items() if w}
    lines += ["", "OOV words that do occur in the training captions: "
              + ("; ".join(f"{q!r}: {', '.join(w)}" for q, w in used.items()) if used else "none.")]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a prepared music21 benchmark (vmfmir prepare music21)")
    parser.add_argument("--runs", nargs="+", required=True, help="run folders to compare")
    parser.add_argument("--labels", default=None, help="comma-separated names of the runs (default: folder names)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--target", default="audio", choices=("audio", "image"))
    parser.add_argument("--queries", default=str(QUERIES))
    parser.add_argument("-k", "--k", type=int, default=10)
    parser.add_argument("--score", default="auto", help="retrieval score (auto: each run's eval default)")
    parser.add_argument("--index-root", default=None, help="keep each run's index in DIR/<label> (default: temporary)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=str(OUT), help="output path without suffix (.json and .md are written)")
    args = parser.parse_args(argv)

    from vmfmir_cli.utils_io import write_json, write_text

    queries = load_queries(args.queries)
    labels = args.labels.split(",") if args.labels else [Path(r).resolve().name for r in args.runs]
    if len(labels) != len(args.runs) or len(set(labels)) != len(labels):
        parser.error("--labels needs one distinct name per run")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.index_root) if args.index_root else Path(tmp)
        runs = []
        for label, run in zip(labels, args.runs):
            runs.append(evaluate_run(run, args.data, queries, split=args.split, target=args.target, k=args.k,
                                     score=args.score, index_dir=root / label, device=args.device))
            o = runs[-1]["oov"]
            print(f"{label}: OOV p@{args.k} {_f(o['p_at_k'])} (base {_f(o['base_rate'])}), MRR {_f(o['mrr'])}, "
                  f"AUROC {_f(o['auroc'])} over {o['queries']} queries ({runs[-1]['seconds']} s)")
    result = {
        "benchmark": "pretrained_oov_queries",
        "data": str(Path(args.data).resolve()),
        "split": args.split,
        "target": args.target,
        "k": args.k,
        "queries_file": str(Path(args.queries).resolve()),
        "n_queries": len(queries),
        "n_control": sum(bool(q.get("control")) for q in queries),
        "labels": labels,
        "runs": runs,
        "oov_words_in_train_captions": vocabulary_check(args.data, queries),
    }
    out_json, out_md = Path(f"{args.out}.json"), Path(f"{args.out}.md")
    write_json(out_json, result)
    write_text(out_md, markdown(result))
    print(f"wrote {out_json} and {out_md}")
    return result


if __name__ == "__main__":
    main()
