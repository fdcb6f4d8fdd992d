"""Search an index with a multimodal query: encode, fuse (product of experts), score, top-k.

A query is any combination of an audio file, a score image and a text. Each is encoded by the
index's model into a vMF, and the query vMFs are fused as a product of experts
(:func:`~vmfmir_cli.engine.vmf.fuse`: natural parameters add, eta = sum_m w_m kappa_m mu_m), so a
confident modality (large kappa) pulls the fused direction further than an uncertain one, and the
fused kappa says how certain the model is of the combined query.

The fused query is scored against every item of the target modality with one of
:data:`~vmfmir_cli.engine.scores.SCORE_KINDS` (one matrix-vector product plus elementwise work per
query, see :mod:`vmfmir_cli.index.scoring`). ``target="all"`` scores every modality of the index
and ranks each item by its best-matching modality.

Which score puts an item's own distribution first: ``kl`` (-KL(q || i) <= 0, = 0 iff equal) and
``bhattacharyya`` (log BC <= 0, = 0 iff equal) do. ``elk`` (the expected likelihood kernel,
log int p_q p_i) and ``expected_cosine`` do not: in the query's own direction ELK equals
log C(k_q) + log C(k_i) - log C(k_q + k_i), which grows with k_i (its derivative is
A(k_q + k_i) - A(k_i) > 0), so a more concentrated item with the same mu outranks the query's own
distribution. They rank by closeness *and* confidence of the item, which is what retrieval wants.

With ``use_faiss=True`` (the ``faiss`` extra) a first stage finds the ``rerank`` best items by exact
maximum inner product (faiss ``IndexFlatIP``), and only those candidates are scored with the chosen
kind. For elk and bhattacharyya the inner product is over A(k_i) mu_i with A(k_q) mu_q (exactly the
expected-cosine ranking, a proxy); cosine, expected_cosine and kl have exact inner-product forms
(mu; A(k) mu; [k_i mu_i, log C(k_i)] with [A(k_q) mu_q, 1]), so for them the first stage loses
nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from vmfmir_cli.engine.scores import SCORE_KINDS
from vmfmir_cli.errors import CheckpointError, ConfigError, DataError
from vmfmir_cli.index import store

#: the score ``vmfmir query`` uses when none is given (the lead sets it from the eval results)
DEFAULT_SCORE = "elk"
DEFAULT_TARGET = "audio"
DEFAULT_RERANK = 1000
TARGETS = ("audio", "image", "text", "all")
QUERY_MODALITIES = ("audio", "image", "text")


@dataclass
class Hit:
    """One ranked item."""

    rank: int
    id: str
    score: float
    modality: str  # the modality of the item that was matched
    kappa: float  # that row's concentration
    text: Optional[str] = None
    audio: Optional[str] = None
    image: Optional[str] = None
    group: Optional[str] = None
    split: Optional[str] = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Optional[str]:
        """The media file of the matched modality (a text item's file, if it came from one)."""
        if self.modality in ("audio", "image"):
            return getattr(self, self.modality)
        return self.meta.get("file")


@dataclass
class SearchResult:
    """Ranked hits plus what the query was and how certain the model is of it."""

    hits: list[Hit]
    target: str
    score: str
    k: int
    query: dict[str, Optional[str]]
    kappa: dict[str, float]  # per query modality, and "fused"
    weights: dict[str, float]
    candidates: int  # rows scored with the chosen kind
    searched: int  # rows in the target modality (or modalities)
    first_stage: Optional[dict[str, Any]] = None
    index: Optional[str] = None
    run: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for hit, row in zip(self.hits, out["hits"]):
            row["path"] = hit.path
        return out


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def parse_weights(spec: str | Mapping[str, float] | None) -> dict[str, float]:
    """``"image=1.0,text=0.5"`` (or a mapping) -> {"image": 1.0, "text": 0.5}."""
    if spec is None or spec == "":
        return {}
    if isinstance(spec, Mapping):
        pairs = [(str(k), v) for k, v in spec.items()]
    else:
        pairs = []
        for part in str(spec).split(","):
            if not part.strip():
                continue
            name, sep, value = part.partition("=")
            if not sep:
                raise ConfigError(f"weight {part.strip()!r} is not MODALITY=NUMBER (e.g. --weight image=1.0,text=0.5)")
            pairs.append((name.strip(), value.strip()))
    weights: dict[str, float] = {}
    for name, value in pairs:
        if name not in QUERY_MODALITIES:
            raise ConfigError(f"unknown modality {name!r} in the weights; use audio, image or text")
        try:
            w = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"weight {name}={value!r} is not a number") from None
        if not w >= 0 or w == float("inf"):
            raise ConfigError(f"weight {name}={value} must be a finite number >= 0")
        weights[name] = w
    return weights


def open_index(index: str | Path | store.Index) -> store.Index:
    return index if isinstance(index, store.Index) else store.load_index(index)


def load_index_model(index: store.Index, run: str | Path | None = None, device: Optional[str] = None):
    """The model that built ``index`` (from ``index.json``'s run, or ``run``), hash-checked."""
    from vmfmir_cli.model import load_model, read_model_config
    from vmfmir_cli.index.build import resolve_device, resolve_run, run_model_hash

    where = str(index.path) if index.path else "index"
    if run is None:
        if not index.run:
            raise CheckpointError(f"the index at {where} does not name the run that built it; pass --run")
        if not Path(index.run).is_dir():
            raise CheckpointError(
                f"the run that built the index at {where} ({index.run}) is gone; pass --run with a run of the same "
                f"model ({index.model_hash}) or re-embed"
            )
        run_dir = Path(index.run)
    else:
        run_dir = resolve_run(run)
    config = read_model_config(run_dir)
    store.check_model_hash(index.info, run_model_hash(run_dir, config), run_dir, where=where)
    model, _ = load_model(run_dir, map_location=resolve_device(device))
    return model, run_dir


def check_query(
    audio: Any = None, image: Any = None, text: Optional[str] = None, modalities: Optional[list[str]] = None
) -> dict[str, Any]:
    """Validate a query before any model work -> {modality: file Path / decoded input / stripped text}.

    Raises DataError for no query, an empty text or a missing file, ConfigError for a modality
    outside ``modalities`` (the ones the model was trained on, when known).
    """
    given = {m: v for m, v in (("audio", audio), ("image", image), ("text", text)) if v is not None}
    if not given:
        raise DataError("no query: give at least one of --audio FILE, --image FILE or --text TEXT")
    if modalities is not None:
        for m in given:
            if m not in modalities:
                raise ConfigError(
                    f"the model was not trained on {m} (it knows {', '.join(modalities)}); drop --{m}"
                )
    if "text" in given:
        if not isinstance(given["text"], str) or not given["text"].strip():
            raise DataError("the text query is empty: pass some words, e.g. --text 'a slow melody played on flute'")
        given["text"] = given["text"].strip()
    for m in ("audio", "image"):
        value = given.get(m)
        if isinstance(value, (str, Path)):
            path = Path(value).expanduser()
            if not path.is_file():
                raise DataError(f"{value}: no such {m} file")
            given[m] = path
    return given


def encode_query(
    model: Any, audio: Any = None, image: Any = None, text: Optional[str] = None, device: Optional[str] = None
) -> dict[str, Any]:
    """Encode each given query modality -> {modality: VonMisesFisher of batch shape (1,)}.

    ``audio``/``image`` are file paths (or decoded inputs), ``text`` a string. An undecodable file
    raises DataError (from the media decoders).
    """
    from vmfmir_cli.engine.vmf import VonMisesFisher
    from vmfmir_cli.index.encode import encode_items

    given = check_query(audio, image, text, list(model.modalities))
    out = {}
    for m, value in given.items():
        mu, kappa = encode_items(model, [value], m, batch_size=1, device=device)
        out[m] = VonMisesFisher(mu, kappa, validate_args=False)
    return out


def fuse_query(dists: Mapping[str, Any], weights: Optional[Mapping[str, float]] = None):
    """Product of experts of the query modalities (weights default to 1)."""
    from vmfmir_cli.engine.vmf import fuse

    weights = dict(weights or {})
    extra = sorted(set(weights) - set(dists))
    if extra:
        raise ConfigError(f"a weight is given for {', '.join(extra)}, which is not part of the query")
    names = list(dists)
    ws = [float(weights.get(m, 1.0)) for m in names]
    eta = sum(w * dists[m].concentration.unsqueeze(-1) * dists[m].loc for w, m in zip(ws, names))
    if not bool((eta.norm(dim=-1) > 1e-6 * max(1.0, max(float(dists[m].concentration.max()) for m in names))).all()):
        raise ConfigError("the fused query has no direction (all weights 0, or the query modalities cancel out)")
    return fuse(*[dists[m] for m in names], weights=ws)


# --------------------------------------------------------------------------------------------------
# Ranking
# --------------------------------------------------------------------------------------------------


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


def _faiss_index(index: store.Index, modality: str, family: str = "a_mu"):
    try:
        import faiss
    except ImportError:
        raise ConfigError(
            "--faiss needs the faiss extra: pip install 'vmfmir[faiss]' (faiss-cpu); or drop --faiss for exact scoring"
        ) from None

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


# --------------------------------------------------------------------------------------------------
# The one call
# --------------------------------------------------------------------------------------------------


def search(
    index: str | Path | store.Index,
    model: Any = None,
    audio: Any = None,
    image: Any = None,
    text: Optional[str] = None,
    target: str = DEFAULT_TARGET,
    k: int = 10,
    score: str = DEFAULT_SCORE,
    weights: str | Mapping[str, float] | None = None,
    use_faiss: bool = False,
    *,
    rerank: int = DEFAULT_RERANK,
    run: str | Path | None = None,
    device: Optional[str] = None,
) -> SearchResult:
    """Rank the index's ``target`` items for a query of any of audio / image / text.

    Args:
        index: an index folder or a loaded :class:`~vmfmir_cli.index.store.Index`.
        model: the model that built the index; default: loaded from the run named in
            ``index.json`` (or ``run``), refused when its weights hash differs from the index's.
        audio, image: query files (or decoded inputs); text: a query string.
        target: "audio", "image", "text" or "all".
        k: number of hits; score: one of ``SCORE_KINDS``.
        weights: fusion weights per query modality ("image=1.0,text=0.5" or a mapping; default 1).
        use_faiss: exact inner-product first stage with faiss, re-ranking the best ``rerank``.
    """
    index = open_index(index)
    if audio is None and image is None and text is None:
        raise DataError("no query: give at least one of --audio FILE, --image FILE or --text TEXT")
    _check_rank_args(index, target, k, score, rerank)
    weight_map = parse_weights(weights)
    given = [m for m, v in (("audio", audio), ("image", image), ("text", text)) if v is not None]
    extra = sorted(set(weight_map) - set(given))
    if extra:
        raise ConfigError(f"a weight is given for {', '.join(extra)}, which is not part of the query")
    check_query(audio, image, text, index.info.get("model_modalities"))  # fail before loading the model
    if use_faiss and not faiss_available():
        _faiss_index(index, target)  # the clear error, before any model work
    run_dir = index.run
    if model is None:
        model, run_path = load_index_model(index, run=run, device=device)
        run_dir = str(run_path)
    if int(model.embed_dim) != index.dim:
        raise CheckpointError(f"the model embeds into {model.embed_dim} dimensions but the index holds {index.dim}")
    dists = encode_query(model, audio=audio, image=image, text=text)  # on the model's device
    fused = fuse_query(dists, weight_map)
    hits, candidates, searched = rank(index, fused, target, k, score, use_faiss, rerank)
    result_hits = []
    for r, (pos, modality, row, value) in enumerate(hits, start=1):
        item = index.items[pos]
        result_hits.append(
            Hit(
                rank=r,
                id=str(item.get("id")),
                score=value,
                modality=modality,
                kappa=float(index.kappa[modality][row]),
                text=item.get("text"),
                audio=item.get("audio"),
                image=item.get("image"),
                group=item.get("group"),
                split=item.get("split"),
                meta=dict(item.get("meta") or {}),
            )
        )
    kappas = {m: float(d.concentration[0]) for m, d in dists.items()}
    kappas["fused"] = float(fused.concentration[0])
    query = {
        "audio": str(audio) if isinstance(audio, (str, Path)) else (None if audio is None else "<audio>"),
        "image": str(image) if isinstance(image, (str, Path)) else (None if image is None else "<image>"),
        "text": text,
    }
    return SearchResult(
        hits=result_hits,
        target=target,
        score=score,
        k=int(k),
        query=query,
        kappa=kappas,
        weights={m: float(weight_map.get(m, 1.0)) for m in dists},
        candidates=candidates,
        searched=searched,
        first_stage=_first_stage_info(score, rerank) if use_faiss else None,
        index=str(Path(index.path).resolve()) if index.path else None,
        run=run_dir,
    )


__all__ = [
    "DEFAULT_RERANK",
    "DEFAULT_SCORE",
    "DEFAULT_TARGET",
    "Hit",
    "SearchResult",
    "TARGETS",
    "encode_query",
    "check_query",
    "faiss_available",
    "fuse_query",
    "load_index_model",
    "open_index",
    "parse_weights",
    "rank",
    "score_rows",
    "search",
]
