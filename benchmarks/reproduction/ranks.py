"""The test evaluation of every run, with its per-query ranks.

The evaluation runs in the study's process (``load_and_encode`` + ``evaluate_loaded``, the code
of ``vmfmir eval``) so that the per-query ranks can be saved: one JSON file per run with the eval
document and

* ``directions[name]``: the 1-based rank of every query (and its kappa, for probabilistic runs);
* ``captions[target]``: every caption query against audio / image: its index, caption level and rank;
* ``fusion``: image + caption -> audio, per query: level and the ranks of the product of experts,
  the mean of the two directions (cosine) and the image alone;
* ``items``: per test item, the kappa of its audio, image and text (the agreement of question 4);
* ``pieces`` and a ``piece`` index per query everywhere: the bootstrap resamples whole pieces.

From those files the statistics are recomputed without encoding anything (``--report-only``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

from benchmarks.reproduction.plan import RunSpec
from benchmarks.reproduction.stages import log, write_json

RANKS_FORMAT = 2  # 2: the piece of every query


def _g6(values) -> list[float]:
    return [float(f"{float(v):.6g}") for v in values]


def evaluate_run(run_dir: Path, data: Path, score: Optional[str], device: Optional[str]):
    """``(loaded, result)``: the run encoded on the test split and evaluated under ``score``."""
    from vmfmir_cli.evaluation.evaluate import EvalOptions, evaluate_loaded, load_and_encode

    options = EvalOptions(run=str(run_dir), data=str(data), split="test", score=score, device=device, ambiguity=True)
    loaded = load_and_encode(options)
    return loaded, evaluate_loaded(loaded, options, score)


def per_query(loaded, result) -> dict[str, Any]:
    """The per-query ranks of an evaluation (module docstring)."""
    from vmfmir_cli.evaluation.evaluate import is_deterministic
    from vmfmir_cli.evaluation.graded import FUSION_KINDS, caption_ranks, fusion_ranks
    from vmfmir_cli.evaluation.tasks import media_key

    trained = not is_deterministic(loaded.loss)
    items = loaded.items
    pieces = list(dict.fromkeys(it.group for it in items))
    piece = {g: i for i, g in enumerate(pieces)}
    out: dict[str, Any] = {
        "kappa_trained": trained,
        "pieces": pieces,
        "directions": {
            name: {"ranks": d.ranks.tolist(), "query_kappa": _g6(d.query_kappa) if trained else None,
                   "piece": _query_pieces(items, d.sources, d.target, piece)}
            for name, d in result.directions.items()
        },
        "captions": {},
        "fusion": None,
    }
    captions = loaded.graded.captions if loaded.graded is not None else None
    if captions is not None and captions.embeddings is not None:
        kappa = captions.embeddings.take(captions.texts).concentration
        for target, sel, ranks in caption_ranks(loaded.items, loaded.embeddings, captions, result.score):
            idx = sel.tolist()
            out["captions"][target] = {
                "query": idx,
                "piece": [piece[items[captions.items[j]].group] for j in idx],
                "level": [captions.levels[j] for j in idx],
                "ranks": ranks.tolist(),
                "kappa": _g6(kappa[sel]) if trained else None,
            }
        fused = fusion_ranks(loaded.items, loaded.embeddings, captions, result.score)
        if fused is not None:
            query = fused["queries"].tolist()
            out["fusion"] = {"query": query, "piece": [piece[items[captions.items[j]].group] for j in query],
                             "level": fused["levels"].tolist(), **{k: fused[k].tolist() for k in FUSION_KINDS}}
    kappas = {}
    for m, emb in loaded.embeddings.items():
        row = {k: float(v) for k, v in zip(emb.keys, emb.kappa.tolist())}
        kappas[m] = [None if media_key(it, m) is None else float(f"{row[media_key(it, m)]:.6g}") for it in loaded.items]
    out["items"] = {"ids": [it.id for it in items], "piece": [piece[it.group] for it in items], "kappa": kappas}
    return out


def _query_pieces(items, sources, target, piece: dict) -> list[int]:
    """The piece of every query of a direction, in the order of its ranks (:func:`build_task`'s queries)."""
    from vmfmir_cli.evaluation.tasks import build_task, media_key

    first: dict[tuple, int] = {}
    for it in items:
        first.setdefault(tuple(media_key(it, m) for m in sources), piece[it.group])
    return [first[q] for q in build_task(items, sources, target).queries]


def _model_stamp(run_dir: Path) -> dict[str, int]:
    st = (run_dir / "model.safetensors").stat()
    return {"mtime_ns": st.st_mtime_ns, "size": st.st_size}


def evaluate(spec: RunSpec, run_dir: Path, data: Path, out_file: Path, score: Optional[str], device: Optional[str]) -> dict:
    """Evaluate a run on test and write ``out_file`` (eval document + per-query ranks); a file written
    earlier for the same model file is reused."""
    if out_file.is_file():
        record = json.loads(out_file.read_text())
        if record.get("model") == _model_stamp(run_dir) and record.get("requested_score") == score:
            log(f"eval {spec.key}: reused {out_file.name}")
            return record
    t0 = time.perf_counter()
    loaded, result = evaluate_run(run_dir, data, score, device)
    record = {
        "format": RANKS_FORMAT,
        "name": spec.name,
        "group": spec.group,
        "loss": spec.loss,
        "seed": spec.seed,
        "split": "test",
        "requested_score": score,
        "score": result.score,
        "model": _model_stamp(run_dir),
        "eval": result.to_json(),
        "ranks": per_query(loaded, result),
    }
    record["seconds"] = time.perf_counter() - t0
    write_json(out_file, record, indent=None)
    log(f"eval {spec.key}: {record['seconds']:.0f} s (score {result.score})")
    return record


def load_records(folder: Path) -> list[dict]:
    """Every per-run record of a study (``--report-only``)."""
    if not folder.is_dir():
        raise SystemExit(f"no per-run results in {folder}; run the study first")
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


__all__ = ["RANKS_FORMAT", "evaluate", "evaluate_run", "load_records", "per_query"]
