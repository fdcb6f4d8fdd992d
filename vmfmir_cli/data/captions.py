"""Captions of graded specificity: several texts per item, each with a level and the facts it states.

A caption is ``{"text": str, "level": int | None, "facts": {name: value}}``:

* ``level`` 3 is a full description (it names the piece), 2 states musical facts without naming the
  piece, 1 is a short query as a person would type it (one or two facts), 0 says nothing ("a piece
  of music"). ``None``: unknown (a user manifest may leave it out).
* ``facts`` names the metadata the caption states, so :func:`n_compatible` can count the items of a
  split that the caption describes equally well: 1 or a few at level 3, many at level 1, all at 0.
  A fact ``name: value`` holds for an item whose :func:`item_facts` maps ``name`` to ``value``.

An item without a ``captions`` list has one caption: its ``text`` (level 3 when the dataset's
captions carry levels, else unknown). The training set samples one caption per item and epoch
(:func:`sample_caption`, deterministic in seed, epoch and item); evaluation reads them by level.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence

LEVELS = (0, 1, 2, 3)
LEVEL_NAMES = {0: "uninformative", 1: "vague", 2: "facts", 3: "full"}


@dataclass(frozen=True)
class Caption:
    """One text of an item, with its specificity level and the facts it states."""

    text: str
    level: Optional[int] = None
    facts: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "level": self.level, "facts": dict(self.facts)}


def parse_captions(value: Any) -> list[Caption]:
    """Captions from a manifest value: a list of strings or of ``{"text", "level"?, "facts"?}``.

    Raises ``ValueError`` / ``TypeError`` naming what is wrong (the manifest readers turn them into
    one line naming the file and row).
    """
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise TypeError("captions must be a list of strings or of {text, level, facts} objects")
    out: list[Caption] = []
    for i, entry in enumerate(value):
        if isinstance(entry, str):
            entry = {"text": entry}
        if not isinstance(entry, Mapping):
            raise TypeError(f"caption {i} must be a string or an object with a 'text'")
        text = entry.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"caption {i} needs a non-empty 'text'")
        level = entry.get("level")
        if level is not None:
            if isinstance(level, bool) or not isinstance(level, int) or level not in LEVELS:
                raise ValueError(f"caption {i}: level must be one of 0, 1, 2, 3 (or left out), got {level!r}")
        facts = entry.get("facts") or {}
        if not isinstance(facts, Mapping):
            raise TypeError(f"caption {i}: facts must be an object mapping a fact name to its value")
        out.append(Caption(text.strip(), level, dict(facts)))
    return out


def item_captions(item: Any) -> list[Caption]:
    """The captions of ``item`` (a manifest Item); its ``text`` alone when it has no caption list."""
    captions = list(getattr(item, "captions", None) or [])
    if captions:
        return captions
    text = getattr(item, "text", None)
    return [Caption(text, None, {})] if text else []


def has_levels(items: Iterable[Any]) -> bool:
    """Whether some item has a caption with a known level other than its own text."""
    return any(c.level is not None for it in items for c in (getattr(it, "captions", None) or []))


def item_facts(item: Any) -> dict[str, Any]:
    """What an item's metadata says, as fact values: ``meta`` itself overlaid with ``meta["facts"]``."""
    meta = dict(getattr(item, "meta", None) or {})
    facts = meta.pop("facts", None)
    if isinstance(facts, Mapping):
        meta.update(facts)
    return meta


def is_compatible(caption: Caption, facts: Mapping[str, Any]) -> bool:
    """Whether every fact the caption states holds for an item with fact values ``facts``."""
    return all(name in facts and facts[name] == value for name, value in caption.facts.items())


def n_compatible(captions: Sequence[Caption], items: Sequence[Any]) -> list[int]:
    """For each caption, how many of ``items`` it describes (all of them for a caption without facts)."""
    values = [item_facts(it) for it in items]
    cache: dict[tuple, int] = {}
    out = []
    for c in captions:
        key = tuple(sorted((k, repr(v)) for k, v in c.facts.items()))
        if key not in cache:
            cache[key] = sum(1 for f in values if is_compatible(c, f))
        out.append(cache[key])
    return out


def parse_level_weights(value: Any) -> dict[int, float]:
    """``caption_levels`` of the training config: ``{level: weight}`` (a list means equal weights).

    Accepts a mapping with int or str keys (TOML tables have str keys) or a list of levels.
    """
    if value is None:
        return {}
    if isinstance(value, (list, tuple)):
        value = {lvl: 1.0 for lvl in value}
    if not isinstance(value, Mapping):
        raise ValueError("caption_levels must be a table {level = weight} or a list of levels")
    out: dict[int, float] = {}
    for k, w in value.items():
        try:
            lvl = int(k)
        except (TypeError, ValueError):
            raise ValueError(f"caption_levels: {k!r} is not a level (use 0, 1, 2 or 3)") from None
        if lvl not in LEVELS:
            raise ValueError(f"caption_levels: level {lvl} does not exist (use 0, 1, 2 or 3)")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
            raise ValueError(f"caption_levels: the weight of level {lvl} must be a number >= 0, got {w!r}")
        out[lvl] = float(w)
    if out and sum(out.values()) <= 0:
        raise ValueError("caption_levels: at least one level needs a positive weight")
    return out


def sample_caption(
    item: Any, seed: int, epoch: int, weights: Optional[Mapping[int, float]] = None
) -> Optional[str]:
    """The caption ``item`` trains with in ``epoch``: a level drawn by ``weights`` (default: uniform
    over the levels the item has), then a caption of that level, both deterministic in (seed, epoch,
    item id). Captions of unknown level count as level 3. Falls back to ``item.text``."""
    captions = item_captions(item)
    if not captions:
        return getattr(item, "text", None)
    if len(captions) == 1:
        return captions[0].text
    by_level: dict[int, list[Caption]] = {}
    for c in captions:
        by_level.setdefault(3 if c.level is None else c.level, []).append(c)
    levels = sorted(by_level)
    if weights:
        w = [float(weights.get(lvl, 0.0)) for lvl in levels]
        if sum(w) <= 0:  # none of the item's levels is wanted: train on its main text
            return getattr(item, "text", None) or captions[0].text
    else:
        w = [1.0] * len(levels)
    digest = hashlib.blake2b(f"{seed}:{epoch}:{getattr(item, 'id', '')}".encode(), digest_size=8).digest()
    rng = random.Random(int.from_bytes(digest, "little"))
    level = rng.choices(levels, weights=w)[0]
    return rng.choice(by_level[level]).text


__all__ = [
    "Caption",
    "LEVELS",
    "LEVEL_NAMES",
    "has_levels",
    "is_compatible",
    "item_captions",
    "item_facts",
    "n_compatible",
    "parse_captions",
    "parse_level_weights",
    "sample_caption",
]
