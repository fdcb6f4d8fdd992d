"""Ranking one query vMF against an index: exact per-item scores, an optional faiss first stage, top-k.

The query is scored against every item of the target modality with one of
:data:`~vmfmir_cli.engine.scores.SCORE_KINDS` (one matrix-vector product plus elementwise work per
query, see :mod:`vmfmir_cli.index.scoring`). ``target="all"`` scores every modality of the index
and ranks each item by its best-matching modality.

With ``use_faiss=True`` (the ``faiss`` extra) a first stage finds the ``rerank`` best items by exact
maximum inner product (faiss ``IndexFlatIP``), and only those candidates are scored with the chosen
kind. For elk and bhattacharyya the inner product is over A(k_i) mu_i with A(k_q) mu_q (exactly the
expected-cosine ranking, a proxy); cosine, expected_cosine and kl have exact inner-product forms
(mu; A(k) mu; [k_i mu_i, log C(k_i)] with [A(k_q) mu_q, 1]), so for them the first stage loses
nothing.
"""

from __future__ import annotations

from typing import Any

import torch

from vmfmir_cli.engine.scores import SCORE_KINDS
from vmfmir_cli.errors import ConfigError, DataError
from vmfmir_cli.index import store

#: the score ``vmfmir query`` uses when none is given, set from validation results: with the centred
#: head expected_cosine leads every distribution score on val (README, "Does kappa track a known
#: ambiguity?"); elk until then
DEFAULT_SCORE = "expected_cosine"
DEFAULT_TARGET = "audio"
DEFAULT_RERANK = 1000
TARGETS = ("audio", "image", "text", "all")


def prepared(index: store.Index, modality: str):
    """The cached :class:`~vmfmir_cli.index.scoring.PreparedItems` of one modality of ``index``."""
    from vmfmir_cli.index.scoring import PreparedItems

    def build():
        terms = index.terms.get(modality, {})
        return PreparedItems(index.mu[modality], index.kappa[modality], log_c=terms.get("log_c"), a=terms.get("a"))

    return index.cached(("prepared", modality), build)


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def require_faiss():
    """The faiss module, or the one-line error that says how to get it."""
    try:
        import faiss
    except ImportError:
        raise ConfigError(
            "--faiss needs the faiss extra: pip install 'vmfmir[faiss]' (faiss-cpu); or drop --faiss for exact scoring"
        ) from None
    return faiss


def _faiss_index(index: store.Index, modality: str, family: str = "a_mu"):
    faiss = require_faiss()

    def build():
        vectors = prepared(index, modality).first_stage_vectors(family).to(torch.float32).contiguous().numpy()
        flat = faiss.IndexFlatIP(vectors.shape[1])
        flat.add(vectors)
        return flat

    return index.cached(("faiss", modality, family), build)


def _first_stage(index: store.Index, modality: str, query, kind: str, rerank: int) -> torch.Tensor:
    """Rows of the ``rerank`` best items by exact maximum inner product (faiss ``IndexFlatIP``).

    The vectors depend on the score (:data:`~vmfmir_cli.index.scoring.FIRST_STAGE`): A(k_i) mu_i
    against A(k_q) mu_q (the expected-cosine ranking) for elk and bhattacharyya, and exact
    equivalents for cosine, expected_cosine and kl.
    """
    from vmfmir_cli.index.scoring import FIRST_STAGE

    family = FIRST_STAGE[kind]
    flat = _faiss_index(index, modality, family)
    vector = prepared(index, modality).first_stage_queries(query, family).to(torch.float32).contiguous().numpy()
    _, ids = flat.search(vector, min(rerank, flat.ntotal))
    ids = torch.from_numpy(ids[0]).to(torch.int64)
    return ids[ids >= 0]


def _first_stage_info(kind: str, rerank: int) -> dict[str, Any]:
    from vmfmir_cli.index.scoring import FIRST_STAGE

    vectors = {"mu": "mu", "a_mu": "A(kappa) mu", "kl": "[kappa mu, log C(kappa)]"}[FIRST_STAGE[kind]]
    return {"method": "faiss IndexFlatIP", "vectors": vectors, "exact": kind in ("cosine", "expected_cosine", "kl"),
            "rerank": int(rerank)}


def score_rows(
    index: store.Index, modality: str, query, kind: str, use_faiss: bool = False, rerank: int = DEFAULT_RERANK
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, scores) of one modality: every row, or the faiss first stage's candidates."""
    items = prepared(index, modality)
    if use_faiss:
        rows = _first_stage(index, modality, query, kind, rerank)
        return rows, items.scores(query, kind, rows=rows)[0]
    return torch.arange(len(items)), items.scores(query, kind)[0]


def rank(
    index: store.Index,
    query,
    target: str = DEFAULT_TARGET,
    k: int = 10,
    score: str = DEFAULT_SCORE,
    use_faiss: bool = False,
    rerank: int = DEFAULT_RERANK,
) -> tuple[list[tuple[int, str, int, float]], int, int]:
    """Top ``k`` of ``index`` for one query vMF (batch shape (1,)).

    Returns ``(hits, candidates, searched)`` with hits as ``(item position, modality, row, score)``,
    best first (ties broken by position in the index).
    """
    _check_rank_args(index, target, k, score, rerank)
    modalities = index.modalities if target == "all" else [target]
    searched = sum(index.count(m) for m in modalities)
    if target != "all":
        rows, scores = score_rows(index, target, query, score, use_faiss, rerank)
        top = _top(scores, k)
        item_pos = index.rows[target][rows[top]]
        hits = [(int(p), target, int(rows[t]), float(scores[t])) for p, t in zip(item_pos.tolist(), top.tolist())]
        return hits, int(rows.shape[0]), searched
    best = torch.full((len(index),), float("-inf"), dtype=torch.float64)
    best_mod = torch.full((len(index),), -1, dtype=torch.int64)
    best_row = torch.full((len(index),), -1, dtype=torch.int64)
    candidates = 0
    for j, m in enumerate(modalities):
        rows, scores = score_rows(index, m, query, score, use_faiss, rerank)
        candidates += int(rows.shape[0])
        pos = index.rows[m][rows]
        # several rows of one modality never share an item, so a plain masked assignment is exact
        better = scores.to(torch.float64) > best[pos]
        sel = pos[better]
        best[sel] = scores.to(torch.float64)[better]
        best_mod[sel] = j
        best_row[sel] = rows[better]
    have = torch.nonzero(best_mod >= 0).squeeze(-1)
    top = have[_top(best[have], k)]
    hits = [(int(p), modalities[int(best_mod[p])], int(best_row[p]), float(best[p])) for p in top.tolist()]
    return hits, candidates, searched


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest scores, best first, ties by index (deterministic)."""
    k = min(int(k), int(scores.shape[0]))
    if k == 0:
        return torch.zeros(0, dtype=torch.int64)
    values, idx = torch.topk(scores, k)
    order = sorted(range(k), key=lambda i: (-float(values[i]), int(idx[i])))
    return idx[order]


def _check_rank_args(index: store.Index, target: str, k: int, score: str, rerank: int) -> None:
    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}; use one of {', '.join(TARGETS)}")
    if score not in SCORE_KINDS:
        raise ConfigError(f"unknown score {score!r}; use one of {', '.join(SCORE_KINDS)}")
    if int(k) < 1:
        raise ConfigError(f"-k must be at least 1, got {k}")
    if int(rerank) < 1:
        raise ConfigError(f"--rerank must be at least 1, got {rerank}")
    where = str(index.path) if index.path else "the index"
    if target == "all":
        if not index.modalities:
            raise DataError(f"{where} holds no items")
    elif index.count(target) == 0:
        have = ", ".join(index.modalities) or "none"
        raise DataError(f"{where} holds no {target} items (it has: {have}); choose --target among them")


__all__ = ["DEFAULT_RERANK", "DEFAULT_SCORE", "DEFAULT_TARGET", "TARGETS",
           "faiss_available", "prepared", "rank", "require_faiss", "score_rows"]
