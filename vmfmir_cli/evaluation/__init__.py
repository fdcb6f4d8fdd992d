"""Evaluation of trained runs: retrieval metrics per direction, kappa analysis, comparisons, plots.

* :mod:`.tasks`        which queries, candidates and relevant pairs a split defines (the convention)
* :mod:`.retrieval`    metrics of every direction from per-media embeddings (pure tensor work)
* :mod:`.uncertainty`  R@1 by kappa decile and Spearman(kappa, 1/rank)
* :mod:`.evaluate`     load a run, encode a split, evaluate (what ``vmfmir eval`` calls)
* :mod:`.compare`      several evaluations side by side, with differences
* :mod:`.plots`        PNG plots (recall@k, R@1 by kappa decile, kappa histograms)
"""

from vmfmir_cli.evaluation.compare import compare_results
from vmfmir_cli.evaluation.evaluate import (
    DEFAULT_SCORE,
    EvalOptions,
    default_score,
    evaluate_run,
    evaluate_run_scores,
)
from vmfmir_cli.evaluation.retrieval import METRICS, EvalResult, ModalityEmbeddings, evaluate_embeddings
from vmfmir_cli.evaluation.tasks import RELEVANCE_CONVENTION, build_task

__all__ = [
    "DEFAULT_SCORE",
    "METRICS",
    "RELEVANCE_CONVENTION",
    "EvalOptions",
    "EvalResult",
    "ModalityEmbeddings",
    "build_task",
    "compare_results",
    "default_score",
    "evaluate_embeddings",
    "evaluate_run",
    "evaluate_run_scores",
]
