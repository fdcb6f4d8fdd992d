"""The dataset contract: ``DIR/manifest.jsonl`` + ``DIR/dataset.json`` + media under ``DIR``.

Every producer (``vmfmir prepare music21``, ``vmfmir prepare manifest``) writes exactly this, and
every consumer (train, embed, eval) reads only this, through :func:`read_manifest` and
:func:`read_dataset_info`.

``manifest.jsonl`` holds one JSON object per item::

    {"id": "essen-kinder0-50-v0", "group": "essen-kinder0-50", "split": "train",
     "audio": "audio/essen-kinder0-50-v0.flac", "image": "image/essen-kinder0-50.png",
     "text": "A German folk song ...", "captions": [{"text": ..., "level": 3, "facts": {...}}, ...],
     "meta": {...}}

Media paths are stored relative to ``DIR`` (so a dataset folder can be moved) and resolved to
absolute paths by :func:`read_manifest`. ``audio``/``image``/``text`` may be ``null`` for an item
that lacks the modality. Items of one ``group`` are always in the same split. ``captions`` is
optional: texts of graded specificity (:mod:`vmfmir_cli.data.captions`), ``text`` being one of them.

``dataset.json`` holds the name, counts per split and modality, the sample rate, the vmfmir version
and the options used to build the dataset.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from vmfmir_cli.data.captions import Caption, parse_captions
from vmfmir_cli.errors import DataError
from vmfmir_cli.utils_io import write_json, write_jsonl

MANIFEST_NAME = "manifest.jsonl"
DATASET_INFO_NAME = "dataset.json"
SPLITS = ("train", "val", "test")
MODALITIES = ("audio", "image", "text")
DEFAULT_SAMPLE_RATE = 16000
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
FORMAT_VERSION = 1


@dataclass
class Item:
    """One retrieval item: up to three views (audio, image, text) of the same music."""

    id: str
    group: str
    split: str
    audio: Path | None = None
    image: Path | None = None
    text: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    captions: list[Caption] = field(default_factory=list)

    def has(self, modality: str) -> bool:
        """Whether the item has ``modality`` ("audio", "image" or "text")."""
        return getattr(self, modality) is not None


def _no_dataset(data_dir: Path) -> DataError:
    return DataError(
        f"no dataset in '{data_dir}' ({MANIFEST_NAME} not found); build one with "
        "'vmfmir prepare music21' or 'vmfmir prepare manifest FILE', or pass the right --data folder"
    )


def read_manifest(data_dir: str | Path) -> list[Item]:
    """Read ``DIR/manifest.jsonl`` into :class:`Item` objects with absolute media paths."""
    data_dir = Path(data_dir).expanduser()
    path = data_dir / MANIFEST_NAME
    if not path.is_file():
        raise _no_dataset(data_dir)
    base = data_dir.resolve()
    items: list[Item] = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                items.append(row_to_item(row, base))
            except (ValueError, KeyError, TypeError) as exc:
                raise DataError(
                    f"{path}:{line_no}: invalid manifest row ({exc}); rebuild the dataset with vmfmir prepare"
                ) from None
    return items


def row_to_item(row: Mapping[str, Any], base: Path) -> Item:
    """Turn one manifest row (paths relative to ``base``) into an :class:`Item`."""
    if not isinstance(row, Mapping):
        raise TypeError("a row must be a JSON object")
    split = row["split"]
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")

    def resolve(value: Any) -> Path | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise TypeError("media paths must be non-empty strings")
        p = Path(value)
        return p if p.is_absolute() else base / p

    text = row.get("text")
    if text is not None and not isinstance(text, str):
        raise TypeError("text must be a string or null")
    return Item(
        id=str(row["id"]),
        group=str(row.get("group") or row["id"]),
        split=split,
        audio=resolve(row.get("audio")),
        image=resolve(row.get("image")),
        text=text,
        meta=dict(row.get("meta") or {}),
        captions=parse_captions(row.get("captions")),
    )


def item_to_row(item: Item, base: Path) -> dict[str, Any]:
    """Inverse of :func:`row_to_item`: media paths become relative to ``base`` when inside it."""

    def rel(p: Path | None) -> str | None:
        if p is None:
            return None
        try:
            return Path(p).resolve().relative_to(Path(base).resolve()).as_posix()
        except ValueError:
            return str(p)

    row = {
        "id": item.id,
        "group": item.group,
        "split": item.split,
        "audio": rel(item.audio),
        "image": rel(item.image),
        "text": item.text,
    }
    if item.captions:
        row["captions"] = [c.to_json() for c in item.captions]
    row["meta"] = item.meta
    return row


def read_dataset_info(data_dir: str | Path) -> dict[str, Any]:
    """Read ``DIR/dataset.json`` (name, counts, ``sample_rate``, version, options)."""
    data_dir = Path(data_dir).expanduser()
    path = data_dir / DATASET_INFO_NAME
    if not path.is_file():
        if (data_dir / MANIFEST_NAME).is_file():
            raise DataError(f"'{path}' is missing; rebuild the dataset with vmfmir prepare")
        raise _no_dataset(data_dir)
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); rebuild the dataset with vmfmir prepare") from None
    if not isinstance(info, dict):
        raise DataError(f"{path}: expected a JSON object; rebuild the dataset with vmfmir prepare")
    info.setdefault("sample_rate", DEFAULT_SAMPLE_RATE)
    return info


def split_items(items: Sequence[Item], split: str | None) -> list[Item]:
    """The items of one split (all items when ``split`` is None)."""
    if split is None:
        return list(items)
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'; use one of {', '.join(SPLITS)}")
    return [it for it in items if it.split == split]


def count_items(items: Iterable[Item]) -> dict[str, dict[str, int]]:
    """Counts per split: ``{"train": {"items": n, "groups": g, "audio": a, "image": i, "text": t}, ...}``."""
    counts = {s: {"items": 0, "groups": 0, **{m: 0 for m in MODALITIES}} for s in SPLITS}
    groups: dict[str, set[str]] = {s: set() for s in SPLITS}
    for it in items:
        c = counts[it.split]
        c["items"] += 1
        groups[it.split].add(it.group)
        for m in MODALITIES:
            c[m] += int(it.has(m))
    for s in SPLITS:
        counts[s]["groups"] = len(groups[s])
    return counts


def _group_hash(group: str, seed: int) -> str:
    return hashlib.sha1(f"{seed}\x00{group}".encode("utf-8")).hexdigest()


def assign_splits(
    groups: Iterable[str], seed: int, fractions: Sequence[float] = SPLIT_FRACTIONS
) -> dict[str, str]:
    """Assign each group to train/val/test, deterministically in ``seed``.

    Groups are ordered by a hash of (seed, group) and cut at the cumulative fractions, so the split
    sizes follow ``fractions`` exactly (up to rounding) even for small collections: with three or
    more groups, val and test each get at least one group.
    """
    unique = sorted(set(groups), key=lambda g: (_group_hash(g, seed), g))
    n = len(unique)
    if n == 0:
        return {}
    f_train, f_val, f_test = fractions
    total = f_train + f_val + f_test
    n_val = int(math.floor(n * f_val / total + 0.5))
    n_test = int(math.floor(n * f_test / total + 0.5))
    if n >= 3:
        n_val, n_test = max(n_val, 1 if f_val > 0 else 0), max(n_test, 1 if f_test > 0 else 0)
    n_val = min(n_val, n)
    n_test = min(n_test, n - n_val)
    n_train = n - n_val - n_test
    out: dict[str, str] = {}
    for i, g in enumerate(unique):
        out[g] = "train" if i < n_train else ("val" if i < n_train + n_val else "test")
    return out


def write_dataset(
    data_dir: str | Path,
    items: Sequence[Item],
    *,
    name: str,
    sample_rate: int,
    source: str,
    options: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    packages: Sequence[str] = (),
) -> dict[str, Any]:
    """Write ``manifest.jsonl`` and ``dataset.json`` atomically; returns the dataset info.

    ``dataset.json`` records the ``environment`` (:func:`vmfmir_cli.provenance.environment`): the
    core packages plus ``packages``, those that made the media (e.g. the renderers of a recipe)."""
    from vmfmir_cli._version import __version__
    from vmfmir_cli.provenance import environment

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    for it in items:
        if it.id in seen:
            raise DataError(f"duplicate item id '{it.id}' while writing {data_dir / MANIFEST_NAME}")
        seen.add(it.id)
    counts = count_items(items)
    totals = {k: sum(counts[s][k] for s in SPLITS) for k in ("items", "groups", *MODALITIES)}
    info: dict[str, Any] = {
        "name": name,
        "format_version": FORMAT_VERSION,
        "source": source,
        "vmfmir_version": __version__,
        "sample_rate": int(sample_rate),
        "counts": {**counts, "total": totals},
        "options": dict(options),
        "environment": environment(packages),
    }
    if extra:
        info.update(extra)
    # manifest first, dataset.json last: a complete dataset.json means a complete dataset
    write_jsonl(data_dir / MANIFEST_NAME, (item_to_row(it, data_dir) for it in items))
    write_json(data_dir / DATASET_INFO_NAME, info)
    return info


__all__ = [
    "Item",
    "MANIFEST_NAME",
    "DATASET_INFO_NAME",
    "SPLITS",
    "MODALITIES",
    "DEFAULT_SAMPLE_RATE",
    "read_manifest",
    "read_dataset_info",
    "row_to_item",
    "item_to_row",
    "split_items",
    "count_items",
    "assign_splits",
    "write_dataset",
]
