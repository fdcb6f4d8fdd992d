"""Evaluate a trained run on a split of a prepared dataset (what ``vmfmir eval`` calls).

    result = evaluate_run(EvalOptions(run="runs/latest", data="data", split="test"))
    result.to_json()          # {"run", "split", "score", "n_items", "directions": {...}, "uncertainty": {...}}

The run is loaded with :func:`vmfmir_cli.model.load_model`; every distinct media of the
split (one per score image, not one per variant) is encoded once per modality with
:func:`vmfmir_cli.index.encode.encode_items`, and :func:`.retrieval.evaluate_embeddings` does the
rest. Several score kinds reuse the same embeddings (:func:`evaluate_run_scores`).

Runs trained with the deterministic InfoNCE loss have no trained concentration: by default they
are scored with ``cosine`` and the kappa analysis is skipped (with a note).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import torch

from vmfmir_cli.data.manifest import MODALITIES, Item, read_manifest, split_items
from vmfmir_cli.engine.scores import SCORE_KINDS
from vmfmir_cli.errors import ConfigError, DataError
from vmfmir_cli.evaluation.retrieval import EvalResult, ModalityEmbeddings, evaluate_embeddings
from vmfmir_cli.evaluation.tasks import media_key
from vmfmir_cli.index.search import DEFAULT_SCORE as _QUERY_DEFAULT_SCORE

if TYPE_CHECKING:  # pragma: no cover
    from vmfmir_cli.evaluation.graded import GradedEmbeddings

#: the score ``vmfmir eval`` uses by default for probabilistic runs: the same as ``vmfmir query``
#: (one constant, :data:`vmfmir_cli.index.search.DEFAULT_SCORE`, set from the reproduction's val results)
DEFAULT_SCORE = _QUERY_DEFAULT_SCORE
#: what deterministic (InfoNCE) runs are scored with: their kappa is not trained
DETERMINISTIC_SCORE = "cosine"
DETERMINISTIC_LOSSES = frozenset({"infonce"})
EVAL_SPLITS = ("test", "val", "train", "all")

#: ``on_progress(modality, done, total)``: media encoded so far
ProgressFn = Callable[[str, int, int], None]


@dataclass
class EvalOptions:
    """Options of ``vmfmir eval`` (see the command's help)."""

    run: str = "runs/latest"
    data: str = "data"
    split: str = "test"
    score: Optional[str] = None  # None: DEFAULT_SCORE, or cosine for infonce runs
    batch_size: int = 32
    device: Optional[str] = None
    bins: int = 10
    ambiguity: bool = True  # graded views and captions (the ``ambiguity`` section)

    def validate(self) -> None:
        if self.split not in EVAL_SPLITS:
            raise ConfigError(f"unknown split {self.split!r}; use one of {', '.join(EVAL_SPLITS)}")
        if self.score is not None and self.score not in SCORE_KINDS and self.score != "all":
            raise ConfigError(f"unknown score {self.score!r}; use one of {', '.join(SCORE_KINDS)} or all")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.bins < 1:
            raise ConfigError(f"the number of kappa bins must be at least 1, got {self.bins}")
        from vmfmir_cli.device import resolve_device

        resolve_device(self.device, default="cpu")  # a missing GPU: one line, before any work


# --------------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------------


def resolve_run(run: str | Path) -> Path:
    """A run folder from ``runs/latest`` (symlink or ``runs/LATEST``), a runs folder or a run folder."""
    from vmfmir_cli.training.runs import resolve_run_dir

    return resolve_run_dir(run)


def run_loss(config: dict) -> Optional[str]:
    """The loss a run was trained with, from its config.json (``train.loss``), or None if unknown."""
    for section in ("train", "training", "config"):
        value = config.get(section)
        if isinstance(value, dict) and isinstance(value.get("loss"), str):
            return value["loss"]
    value = config.get("loss")
    return value if isinstance(value, str) else None


def is_deterministic(loss: Optional[str]) -> bool:
    return loss in DETERMINISTIC_LOSSES


def default_score(loss: Optional[str]) -> str:
    """The score a run is evaluated with unless one is asked for."""
    return DETERMINISTIC_SCORE if is_deterministic(loss) else DEFAULT_SCORE


# --------------------------------------------------------------------------------------------------
# Data and encoding
# --------------------------------------------------------------------------------------------------


def load_split(data: str | Path, split: str) -> list[Item]:
    """The items of ``split`` ("all": every item); DataError when there are none."""
    items = read_manifest(data)
    selected = split_items(items, None if split == "all" else split)
    if not selected:
        raise DataError(
            f"the {split} split of {data} has no items; pick another --split (train, val, test, all) or "
            "rebuild the dataset with vmfmir prepare"
        )
    return selected


def representatives(items: Sequence[Item], modality: str) -> list[Item]:
    """One item per distinct media of ``modality`` (first seen), e.g. one per shared score image."""
    seen: dict[str, Item] = {}
    for it in items:
        key = media_key(it, modality)
        if key is not None and key not in seen:
            seen[key] = it
    return list(seen.values())


def encode_media(
    model,
    items: Sequence[Item],
    modalities: Sequence[str],
    batch_size: int = 32,
    device: Optional[str] = None,
    on_progress: Optional[ProgressFn] = None,
    sample_rate: Optional[int] = None,
) -> dict[str, ModalityEmbeddings]:
    """The vMF of every distinct media of each modality among ``items`` (``sample_rate``: audio
    decoding rate, default the audio encoder's)."""
    from vmfmir_cli.index.encode import encode_items

    out: dict[str, ModalityEmbeddings] = {}
    for modality in modalities:
        reps = representatives(items, modality)
        if not reps:
            continue
        callback = None
        if on_progress is not None:
            total = len(reps)

            def callback(done, *_args, _m=modality, _t=total):
                on_progress(_m, int(done), _t)

            on_progress(modality, 0, total)
        mu, kappa = encode_items(
            model, reps, modality, batch_size=batch_size, device=device, on_progress=callback, sample_rate=sample_rate
        )
        mu = torch.as_tensor(mu).detach().cpu()
        kappa = torch.as_tensor(kappa).detach().cpu()
        out[modality] = ModalityEmbeddings([media_key(it, modality) for it in reps], mu, kappa)
    return out


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


@dataclass
class LoadedRun:
    """A run ready to evaluate: its folder, config, loss, modalities and split embeddings."""

    run_dir: Path
    config: dict
    loss: Optional[str]
    modalities: list[str]
    items: list[Item]
    embeddings: dict[str, ModalityEmbeddings]
    graded: Optional["GradedEmbeddings"] = None


def load_and_encode(
    options: EvalOptions,
    on_progress: Optional[ProgressFn] = None,
    select: Optional[Callable[[list[Item]], list[Item]]] = None,
) -> LoadedRun:
    """Load the run of ``options``, read the split and encode its media (the slow part).
    ``select`` picks the items to keep from the split's (e.g. a sample of the train split, so that
    its gallery is the size of the test split's)."""
    from vmfmir_cli.model import load_model

    from vmfmir_cli.device import resolve_device

    options.validate()
    device = resolve_device(options.device, default="cpu")  # one line for a missing GPU
    run_dir = resolve_run(options.run)
    items = load_split(options.data, options.split)
    if select is not None:
        items = list(select(items))
    model, config = load_model(run_dir, map_location=device)
    loss = run_loss(config)
    modalities = [m for m in MODALITIES if m in model.modalities]
    embeddings = encode_media(model, items, modalities, options.batch_size, device, on_progress)
    if len(embeddings) < 2:
        have = f"only {' and '.join(embeddings)}" if embeddings else "none"
        raise DataError(
            f"the {options.split} split of {options.data} has {have} of the run's modalities "
            f"({', '.join(modalities)}); evaluation retrieves one modality from another, so it needs items "
            "with at least two of them"
        )
    graded = None
    if options.ambiguity:
        from vmfmir_cli.evaluation.graded import encode_graded

        graded = encode_graded(model, items, embeddings, options.batch_size, options.device, on_progress)
    return LoadedRun(run_dir, config, loss, modalities, items, embeddings, graded)


def evaluate_loaded(loaded: LoadedRun, options: EvalOptions, score: Optional[str] = None) -> EvalResult:
    """Metrics of an encoded run under one score (default: the run's default score)."""
    kind = score or (options.score if options.score not in (None, "all") else None) or default_score(loaded.loss)
    deterministic = is_deterministic(loaded.loss)
    result = evaluate_embeddings(
        loaded.items,
        loaded.embeddings,
        kind,
        modalities=loaded.modalities,
        run=loaded.run_dir.name,
        split=options.split,
        uncertainty=not deterministic,
        bins=options.bins,
    )
    if loaded.graded is not None:
        from vmfmir_cli.evaluation.graded import ambiguity_report

        result.ambiguity = ambiguity_report(loaded.items, loaded.embeddings, loaded.graded, kind, not deterministic)
        bounds = kappa_at_bounds(loaded.config, result.kappas) if not deterministic else None
        if bounds is not None and result.ambiguity:
            result.ambiguity["kappa_at_bounds"] = bounds
    result.loss = loaded.loss
    result.run_dir = str(loaded.run_dir)
    result.data = str(Path(options.data).expanduser().resolve())
    if deterministic:
        result.notes.insert(
            0,
            f"{loaded.loss} run: kappa is not trained, so the uncertainty analysis is skipped"
            + (" and queries are scored with cosine" if kind == DETERMINISTIC_SCORE else ""),
        )
    missing = [m for m in loaded.modalities if m not in loaded.embeddings]
    if missing:
        result.notes.append(f"the {options.split} split has no {', '.join(missing)} media")
    return result


def kappa_at_bounds(config: dict, kappas: dict, margin: float = 0.05) -> Optional[dict]:
    """Per modality, the share of media whose kappa lies within ``margin`` of the head's bounds
    (``config.json`` ``model.kappa_min`` / ``kappa_max``; a fused multi-window audio above the upper
    bound counts as at it). None when the run does not record its bounds."""
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    lo, hi = model.get("kappa_min"), model.get("kappa_max")
    if not isinstance(lo, (int, float)) or not isinstance(hi, (int, float)) or not 0 < lo < hi:
        return None
    out = {}
    for m, k in kappas.items():
        k = torch.as_tensor(k, dtype=torch.float64)
        if k.numel():
            out[m] = float(((k <= lo * (1 + margin)) | (k >= hi * (1 - margin))).to(torch.float64).mean())
    return out


def evaluate_run(options: EvalOptions, on_progress: Optional[ProgressFn] = None) -> EvalResult:
    """Evaluate one run with one score (``options.score``, or the run's default)."""
    return evaluate_loaded(load_and_encode(options, on_progress), options)


def evaluate_run_scores(
    options: EvalOptions, kinds: Sequence[str] = SCORE_KINDS, on_progress: Optional[ProgressFn] = None
) -> list[EvalResult]:
    """Evaluate one run under several scores, encoding the split once."""
    loaded = load_and_encode(options, on_progress)
    return [evaluate_loaded(loaded, options, kind) for kind in kinds]


__all__ = [
    "DEFAULT_SCORE",
    "DETERMINISTIC_SCORE",
    "EVAL_SPLITS",
    "EvalOptions",
    "LoadedRun",
    "default_score",
    "encode_media",
    "evaluate_loaded",
    "evaluate_run",
    "evaluate_run_scores",
    "is_deterministic",
    "kappa_at_bounds",
    "load_and_encode",
    "load_split",
    "representatives",
    "resolve_run",
    "run_loss",
]
