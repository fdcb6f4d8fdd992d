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

The pieces live beside it: :mod:`vmfmir_cli.index.query` (weights, the index's model, checking,
encoding and fusing the query) and :mod:`vmfmir_cli.index.ranking` (exact scores, the optional faiss
first stage, top-k).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from vmfmir_cli.errors import CheckpointError, ConfigError, DataError
from vmfmir_cli.index import store
from vmfmir_cli.index.query import (
    QUERY_MODALITIES,  # noqa: F401  (re-exported)
    check_query,
    encode_query,
    fuse_query,
    load_index_model,
    open_index,
    parse_weights,
)
from vmfmir_cli.index.ranking import (
    DEFAULT_RERANK,
    DEFAULT_SCORE,
    DEFAULT_TARGET,
    TARGETS,
    _check_rank_args,
    _first_stage_info,
    faiss_available,  # noqa: F401  (re-exported)
    rank,
    require_faiss,
    score_rows,
)


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
    if use_faiss:
        require_faiss()  # the clear error, before any model work
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
