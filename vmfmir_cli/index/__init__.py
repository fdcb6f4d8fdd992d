"""Index of distributions: embed a collection, store/load it, search it with multimodal queries.

Modules: :mod:`~vmfmir_cli.index.encode` (items -> (mu, kappa)), :mod:`~vmfmir_cli.index.store`
(the ``index/`` folder), :mod:`~vmfmir_cli.index.build` (``vmfmir embed``, incremental),
:mod:`~vmfmir_cli.index.files` (a plain folder of media as a collection),
:mod:`~vmfmir_cli.index.scoring` (per-item terms computed once), :mod:`~vmfmir_cli.index.search`
(``vmfmir query``: encode, fuse, score, top-k) with its two halves :mod:`~vmfmir_cli.index.query`
(check, encode and fuse the query) and :mod:`~vmfmir_cli.index.ranking` (exact scores, the faiss
first stage, top-k).

The package exports the calls a script needs::

    from vmfmir_cli.index import embed_dataset, load_index, search
    embed_dataset("runs/latest", "data", split="test", out="index")
    result = search(load_index("index"), image="score.png", text="a slow melody", target="audio", k=5)
    for hit in result.hits:
        print(hit.rank, hit.id, hit.score, hit.path)

Note: ``vmfmir_cli.index.search`` is the function; its module is imported as
``from vmfmir_cli.index.search import DEFAULT_SCORE`` (a ``from`` import reads the module).
"""

from __future__ import annotations

from vmfmir_cli.index.build import EmbedReport, embed_dataset, embed_files, embed_items
from vmfmir_cli.index.encode import encode_items
from vmfmir_cli.index.search import DEFAULT_SCORE, Hit, SearchResult, search
from vmfmir_cli.index.store import Index, load_index, save_index

__all__ = [
    "DEFAULT_SCORE",
    "EmbedReport",
    "Hit",
    "Index",
    "SearchResult",
    "embed_dataset",
    "embed_files",
    "embed_items",
    "encode_items",
    "load_index",
    "save_index",
    "search",
]
