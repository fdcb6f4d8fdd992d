"""Retrieval metrics of every direction of a split, from per-media embeddings (no model, no I/O).

:func:`evaluate_embeddings` takes the items of a split and, per modality, the vMF (mu, kappa) of
every distinct media (see :mod:`.tasks` for what "distinct" means), scores every query against every
candidate of its target modality with :func:`vmfmir_cli.engine.scores.score`, and turns the ranks of
the relevant candidates into MRR, R@1/5/10 and the median rank, plus the kappa analysis of
:mod:`.uncertainty`. Multimodal queries fuse their two vMFs (product of experts) before scoring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import torch

from vmfmir_cli.data.manifest import MODALITIES, Item
from vmfmir_cli.engine.metrics import ranks_from_scores, summarize
from vmfmir_cli.engine.scores import SCORE_KINDS, score
from vmfmir_cli.engine.vmf import VonMisesFisher, fuse
from vmfmir_cli.errors import ConfigError
from vmfmir_cli.evaluation.tasks import RELEVANCE_CONVENTION, RetrievalTask, build_task, directions_for
from vmfmir_cli.evaluation.uncertainty import DEFAULT_BINS, uncertainty_report
from vmfmir_cli.utils_io import json_safe

#: metrics of every direction, in report order (``mr`` is lower-is-better)
METRICS = ("mrr", "r1", "r5", "r10", "mr")
METRIC_LABELS = {"mrr": "MRR", "r1": "R@1", "r5": "R@5", "r10": "R@10", "mr": "MR"}
LOWER_IS_BETTER = frozenset({"mr"})


@dataclass
class ModalityEmbeddings:
    """The vMF of every distinct media of one modality: ``keys[i]`` -> ``mu[i]`` (d,), ``kappa[i]``."""

    keys: list[str]
    mu: torch.Tensor
    kappa: torch.Tensor

    def __post_init__(self) -> None:
        if self.mu.ndim != 2 or self.kappa.shape != (self.mu.shape[0],) or len(self.keys) != self.mu.shape[0]:
            raise ValueError(
                f"embeddings need mu (N, d), kappa (N,) and N keys; got {tuple(self.mu.shape)}, "
                f"{tuple(self.kappa.shape)} and {len(self.keys)} keys"
            )
        self._row = {k: i for i, k in enumerate(self.keys)}

    def rows(self, keys: Sequence[str]) -> torch.Tensor:
        try:
            return torch.tensor([self._row[k] for k in keys], dtype=torch.long)
        except KeyError as exc:
            raise ValueError(f"no embedding for media {exc.args[0]!r}") from None

    def take(self, keys: Sequence[str], dtype: torch.dtype = torch.float64) -> VonMisesFisher:
        idx = self.rows(keys)
        return VonMisesFisher(self.mu[idx].to(dtype), self.kappa[idx].to(dtype), validate_args=False)


@dataclass
class DirectionResult:
    """Metrics of one direction plus what the plots need (ranks and the query concentrations)."""

    name: str
    sources: tuple[str, ...]
    target: str
    metrics: dict[str, Any]
    ranks: torch.Tensor
    query_kappa: torch.Tensor
    n_candidates: int


@dataclass
class EvalResult:
    """Everything ``vmfmir eval`` reports for one run, split and score."""

    run: str
    split: str
    score: str
    n_items: int
    modalities: list[str]
    directions: dict[str, DirectionResult]
    uncertainty: dict
    kappas: dict[str, torch.Tensor]
    loss: Optional[str] = None
    run_dir: Optional[str] = None
    data: Optional[str] = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    ambiguity: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document (NaN written as null)."""
        from vmfmir_cli._version import __version__

        doc = {
            "run": self.run,
            "split": self.split,
            "score": self.score,
            "n_items": self.n_items,
            "directions": {name: dict(d.metrics) for name, d in self.directions.items()},
            "uncertainty": self.uncertainty,
            "ambiguity": self.ambiguity,
            "candidates": {name: d.n_candidates for name, d in self.directions.items()},
            "relevance": RELEVANCE_CONVENTION,
            "loss": self.loss,
            "modalities": list(self.modalities),
            "run_dir": self.run_dir,
            "data": self.data,
            "notes": list(self.notes),
            "vmfmir_version": __version__,
            **self.extra,
        }
        return json_safe(doc)


def query_distribution(task: RetrievalTask, embeddings: Mapping[str, ModalityEmbeddings]) -> VonMisesFisher:
    """The query vMFs of ``task`` (fused across its source modalities when there are several)."""
    parts = [embeddings[m].take([q[i] for q in task.queries]) for i, m in enumerate(task.sources)]
    return parts[0] if len(parts) == 1 else fuse(*parts)


def rank_task(
    task: RetrievalTask, embeddings: Mapping[str, ModalityEmbeddings], kind: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(1-based ranks (Q,), query kappa (Q,)) of ``task`` under the score ``kind``."""
    queries = query_distribution(task, embeddings)
    items = embeddings[task.target].take(task.candidates)
    scores = score(queries, items, kind=kind)
    return ranks_from_scores(scores, task.relevant), queries.concentration.detach().to(torch.float64)


def evaluate_embeddings(
    items: Sequence[Item],
    embeddings: Mapping[str, ModalityEmbeddings],
    kind: str,
    *,
    modalities: Optional[Sequence[str]] = None,
    run: str = "",
    split: str = "",
    uncertainty: bool = True,
    bins: int = DEFAULT_BINS,
    ks: Sequence[int] = (1, 5, 10),
) -> EvalResult:
    """Metrics of every direction between ``modalities`` (default: those in ``embeddings``).

    Directions without any query in ``items`` are left out with a note. With ``uncertainty=False``
    the kappa analysis is skipped (e.g. for deterministic InfoNCE runs, whose kappa is untrained).
    """
    if kind not in SCORE_KINDS:
        raise ConfigError(f"unknown score {kind!r}; choose one of {', '.join(SCORE_KINDS)}")
    mods = [m for m in MODALITIES if m in (modalities if modalities is not None else embeddings)]
    notes: list[str] = []
    results: dict[str, DirectionResult] = {}
    for sources, target in directions_for(mods):
        task = build_task(items, sources, target)
        if task.n_queries == 0:
            notes.append(f"{task.name}: no item of the split has {' and '.join(sources + (target,))}; skipped")
            continue
        ranks, kappa = rank_task(task, embeddings, kind)
        results[task.name] = DirectionResult(
            task.name, task.sources, task.target, summarize(ranks, ks), ranks, kappa, task.n_candidates
        )
    report: dict = {}
    if uncertainty:
        single = {n: (d.sources[0], d.query_kappa, d.ranks) for n, d in results.items() if len(d.sources) == 1}
        report = uncertainty_report(single, bins=bins, modalities=mods)
        flat = [m for m, r in report.items() if r["spearman"] is None]
        if flat:
            notes.append(
                f"kappa is constant over the {', '.join(flat)} queries (an untrained head?): no correlation to report"
            )
    kappas = {m: embeddings[m].kappa.detach().to(torch.float64) for m in mods}
    return EvalResult(
        run=run,
        split=split,
        score=kind,
        n_items=len(items),
        modalities=mods,
        directions=results,
        uncertainty=report,
        kappas=kappas,
        notes=notes,
    )


__all__ = [
    "DirectionResult",
    "EvalResult",
    "LOWER_IS_BETTER",
    "METRICS",
    "METRIC_LABELS",
    "ModalityEmbeddings",
    "evaluate_embeddings",
    "query_distribution",
    "rank_task",
]
