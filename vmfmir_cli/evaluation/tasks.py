"""Retrieval tasks of a split: who queries, which candidates, and which candidates are correct.

Relevance convention (COCO-style, stated in every report as :data:`RELEVANCE_CONVENTION`):

* identical media are one candidate and one query: the variants of a music21 piece share their score
  image, so an image->X task has one query per image file and an X->image task one candidate per
  image file; texts are compared by their string, audio and images by their file path;
* a candidate is relevant to a query when some item of the split pairs them: the same item (same
  id), or an item with the same query media and the same target media. So the shared score image
  of a piece is *the* answer for every performance of it (audio->image), and every performance is a
  correct answer for the score image (image->audio); audio and texts of different performances are
  different media, so for them only the item itself counts.

For a multimodal query (e.g. image+text->audio) the query is the pair of media, fused at scoring
time (product of experts, :func:`vmfmir_cli.engine.vmf.fuse`).

Candidates are all media of the target modality in the split (also of items that lack the query
modality); queries are the items that have every query modality and the target modality.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from vmfmir_cli.data.manifest import Item

RELEVANCE_CONVENTION = (
    "identical media are one query / one candidate (variants of a piece share their score image); a candidate "
    "is relevant when an item of the split pairs it with the query (same item id, or same query media and same "
    "target media: file path for audio/image, string for text)"
)

#: pairwise directions, in report order
PAIR_DIRECTIONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("audio",), "image"),
    (("image",), "audio"),
    (("audio",), "text"),
    (("text",), "audio"),
    (("image",), "text"),
    (("text",), "image"),
)
#: multimodal queries (two query modalities fused)
FUSED_DIRECTIONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("image", "text"), "audio"),
    (("audio", "text"), "image"),
    (("audio", "image"), "text"),
)


def direction_name(sources: Sequence[str], target: str) -> str:
    """``("image", "text"), "audio"`` -> ``"image+text->audio"``."""
    return "+".join(sources) + "->" + target


def parse_direction(name: str) -> tuple[tuple[str, ...], str]:
    """Inverse of :func:`direction_name`."""
    left, _, target = name.partition("->")
    return tuple(left.split("+")), target


def directions_for(modalities: Sequence[str]) -> list[tuple[tuple[str, ...], str]]:
    """Every pairwise and fused direction whose modalities are all in ``modalities``."""
    have = set(modalities)
    return [(s, t) for s, t in PAIR_DIRECTIONS + FUSED_DIRECTIONS if set(s) <= have and t in have]


def media_key(item: Item, modality: str) -> Optional[str]:
    """What makes two items' media of ``modality`` the same: normalised path, or the text itself."""
    value = getattr(item, modality)
    if value is None:
        return None
    if modality == "text":
        return value
    return os.path.normpath(str(value))


@dataclass
class RetrievalTask:
    """One direction over one split.

    ``queries[q]`` is a tuple of media keys (one per source modality), ``candidates[c]`` a media key
    of the target modality, ``relevant`` a ``(Q, C)`` bool mask with at least one True per row.
    """

    sources: tuple[str, ...]
    target: str
    queries: list[tuple[str, ...]]
    candidates: list[str]
    relevant: torch.Tensor

    @property
    def name(self) -> str:
        return direction_name(self.sources, self.target)

    @property
    def n_queries(self) -> int:
        return len(self.queries)

    @property
    def n_candidates(self) -> int:
        return len(self.candidates)


def unique_media(items: Sequence[Item], modality: str) -> list[str]:
    """The distinct media keys of ``modality`` among ``items``, in first-seen order."""
    seen: dict[str, None] = {}
    for it in items:
        key = media_key(it, modality)
        if key is not None:
            seen.setdefault(key, None)
    return list(seen)


def build_task(items: Sequence[Item], sources: Sequence[str], target: str) -> RetrievalTask:
    """The queries, candidates and relevance mask of ``sources -> target`` over ``items``."""
    sources = tuple(sources)
    candidates = unique_media(items, target)
    cand_index = {k: i for i, k in enumerate(candidates)}
    query_index: dict[tuple[str, ...], int] = {}
    pairs: list[tuple[int, int]] = []
    for it in items:
        t_key = media_key(it, target)
        q_key = tuple(media_key(it, m) for m in sources)
        if t_key is None or any(k is None for k in q_key):
            continue
        q = query_index.setdefault(q_key, len(query_index))
        pairs.append((q, cand_index[t_key]))
    relevant = torch.zeros((len(query_index), len(candidates)), dtype=torch.bool)
    if pairs:
        idx = torch.tensor(pairs, dtype=torch.long)
        relevant[idx[:, 0], idx[:, 1]] = True
    return RetrievalTask(sources, target, list(query_index), candidates, relevant)


__all__ = [
    "FUSED_DIRECTIONS",
    "PAIR_DIRECTIONS",
    "RELEVANCE_CONVENTION",
    "RetrievalTask",
    "build_task",
    "direction_name",
    "directions_for",
    "media_key",
    "parse_direction",
    "unique_media",
]
