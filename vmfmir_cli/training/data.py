"""Training data: dataset checks, deterministic batches, preprocessing cache and per-modality collate.

Batches are a pure function of ``(seed, epoch, position)``: the permutation of the training items in
epoch ``e`` comes from ``torch.Generator().manual_seed(mix(seed, e))`` and global batch ``k`` is
``perm[k * B:(k + 1) * B]`` (the last incomplete batch is dropped, as usual for contrastive
training). Under DDP rank ``r`` of ``W`` takes rows ``[r * B / W, (r + 1) * B / W)`` of every global
batch, so the gathered batch is exactly the single-process batch, and a resumed run restarts at
batch ``k`` without replaying the data loader.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import torch
import torch.utils.data

from vmfmir_cli.data.augment import Augmenter, augment_config
from vmfmir_cli.data.captions import has_levels, item_captions, parse_level_weights, sample_caption
from vmfmir_cli.data.datasets import MultimodalDataset
from vmfmir_cli.data.manifest import Item, read_dataset_info, read_manifest, split_items
from vmfmir_cli.errors import DataError

_MASK64 = (1 << 63) - 1


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix64-style), so (seed, epoch) pairs never collide by addition."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (int(p) & ((1 << 64) - 1))) * 0xBF58476D1CE4E5B9 & ((1 << 64) - 1)
        x ^= x >> 31
        x = x * 0x94D049BB133111EB & ((1 << 64) - 1)
        x ^= x >> 29
    return x & _MASK64


# --------------------------------------------------------------------------------------------------
# The dataset and its checks
# --------------------------------------------------------------------------------------------------


@dataclass
class TrainingData:
    """The items to train and validate on, for the modalities that will be trained."""

    info: dict
    train: list[Item]
    val: list[Item]
    modalities: list[str]
    dropped: list[str]  # requested modalities the dataset lacks
    partial: bool  # some training item lacks one of the modalities

    def counts(self, split: str) -> dict[str, int]:
        items = self.train if split == "train" else self.val
        return {m: sum(it.has(m) for it in items) for m in self.modalities}


def load_training_data(data_dir: str, modalities: Sequence[str]) -> TrainingData:
    """Read the dataset and check it can train ``modalities`` (DataError naming what is wrong)."""
    items = read_manifest(data_dir)
    info = read_dataset_info(data_dir)
    train_all = split_items(items, "train")
    val_all = split_items(items, "val")
    if not train_all:
        raise DataError(
            f"the train split of {data_dir} is empty; rebuild the dataset with vmfmir prepare (or check the "
            "'split' field of manifest.jsonl)"
        )
    if not val_all:
        raise DataError(
            f"the val split of {data_dir} is empty; validation picks the best checkpoint, so the dataset needs "
            "items with split 'val' (vmfmir prepare makes one)"
        )
    present = [m for m in modalities if any(it.has(m) for it in train_all)]
    dropped = [m for m in modalities if m not in present]
    if len(present) < 2:
        have = [m for m in ("audio", "image", "text") if any(it.has(m) for it in train_all)]
        raise DataError(
            f"the train split of {data_dir} has {len(present)} of the requested modalities "
            f"({', '.join(modalities)}); training needs at least two. The dataset has: {', '.join(have) or 'none'}"
        )
    train = [it for it in train_all if any(it.has(m) for m in present)]
    pairs = sum(1 for it in train if sum(it.has(m) for m in present) >= 2)
    if pairs < 2:
        raise DataError(
            f"the train split of {data_dir} has {pairs} item(s) with two or more of {', '.join(present)}; "
            "contrastive training needs at least two such items"
        )
    val = [it for it in val_all if any(it.has(m) for m in present)]
    val_pairs = sum(1 for it in val if sum(it.has(m) for m in present) >= 2)
    if val_pairs < 1:
        raise DataError(
            f"the val split of {data_dir} has no item with two or more of {', '.join(present)}; nothing to validate"
        )
    partial = any(not it.has(m) for it in train for m in present)
    return TrainingData(info=info, train=train, val=val, modalities=present, dropped=dropped, partial=partial)


class PreprocessedDataset(torch.utils.data.Dataset):
    """Decoded and preprocessed items (``{"index", "id", "group", <modality>: tensor | None}``).

    Items are preprocessed once and kept in memory until the cache holds ``cache_bytes`` (later
    items are preprocessed on every access); preprocessing is deterministic, so the cache changes
    nothing but speed. It lives in the process that reads the items, so it only helps with
    ``num_workers=0``.

    ``augment(raw, modality, epoch, item_id)``, when given, changes each decoded media before it
    is preprocessed (:class:`vmfmir_cli.data.augment.Augmenter`); the cache then holds the decoded
    media, and preprocessing runs on every access.

    ``text_for(item, epoch)``, when given, picks the text an item trains with in the current
    :attr:`epoch` (e.g. one of its captions, :func:`vmfmir_cli.data.captions.sample_caption`); set
    :attr:`epoch` before each epoch's loader is made. Those texts are tokenised on access (cached by
    string), the other modalities as above.
    """

    def __init__(
        self,
        items: Sequence[Item],
        modalities: Sequence[str],
        preprocess: Mapping[str, Callable[[Any], torch.Tensor]],
        sample_rate: int,
        cache_bytes: int = 0,
        text_for: Optional[Callable[[Item, int], Optional[str]]] = None,
        augment: Optional[Callable[[Any, str, int, str], Any]] = None,
    ) -> None:
        self.text_for = text_for if "text" in modalities else None
        self.augment = augment
        self.preprocess = dict(preprocess)
        inner_modalities = [m for m in modalities if not (m == "text" and self.text_for is not None)]
        # the augmented modalities are cached decoded and preprocessed on every access; the others as usual
        self.augmented = set() if augment is None else set(getattr(augment, "modalities", modalities))
        self.inner = MultimodalDataset(
            list(items),
            None,
            inner_modalities,
            transforms={m: f for m, f in preprocess.items() if m not in self.augmented},
            sample_rate=sample_rate,
            require=False,
        )
        self._text_preprocess = preprocess.get("text")
        self._text_cache: dict[str, torch.Tensor] = {}
        self.epoch = 0
        self.cache_bytes = int(cache_bytes)
        self.cached_bytes = 0
        self._cache: dict[int, dict] = {}

    @property
    def items(self) -> list[Item]:
        return self.inner.items

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> dict:
        out = self._cache.get(index)
        if out is None:
            out = self.inner[index]
            if self.cached_bytes < self.cache_bytes:
                self._cache[index] = out
                self.cached_bytes += sum(_nbytes(v) for k, v in out.items() if k not in ("index", "id", "group"))
        if self.text_for is None and not self.augmented:
            return out
        item = self.inner.items[index]
        res = dict(out)
        for m in self.inner.modalities:
            raw = out.get(m)
            if m in self.augmented and raw is not None:
                res[m] = self.preprocess[m](self.augment(raw, m, self.epoch, item.id))
        if self.text_for is not None:
            text = self.text_for(item, self.epoch)
            if text is not None and "text" in self.augmented:
                text = self.augment(text, "text", self.epoch, item.id)
            res["text"] = None if text is None else self._tokens(text)
        return res

    def _tokens(self, text: str) -> torch.Tensor:
        hit = self._text_cache.get(text)
        if hit is None:
            hit = self._text_preprocess(text) if self._text_preprocess is not None else text
            self._text_cache[text] = hit
        return hit


def epoch_caption(item: Item, epoch: int, *, seed: int, weights: Mapping[int, float]) -> Optional[str]:
    """The caption ``item`` trains with in ``epoch`` (a module-level function: DataLoader workers pickle it)."""
    return sample_caption(item, seed, epoch, weights)


def build_datasets(data: "TrainingData", model: Any, modalities: Sequence[str], cfg: Any, sample_rate: int):
    """The training and validation datasets of a run: the train set draws captions per epoch (when the
    dataset has caption levels and ``cfg.captions``) and augments (``cfg.augment``); validation uses
    each item's main text and no augmentation. The cache budget ``cfg.cache_gb`` is shared by size."""
    preprocess = {m: model.encoders[m].preprocess for m in modalities}
    budget = int(cfg.cache_gb * 1e9) if cfg.num_workers == 0 else 0
    share = len(data.train) / max(1, len(data.train) + len(data.val))
    text_for = None
    if cfg.captions and "text" in modalities and has_levels(data.train):
        text_for = partial(epoch_caption, seed=cfg.seed, weights=parse_level_weights(cfg.caption_levels))
    augmenter = Augmenter(cfg.seed, augment_config(cfg.augment_options)) if cfg.augment else None
    train = PreprocessedDataset(
        data.train, modalities, preprocess, sample_rate, int(budget * share), text_for=text_for, augment=augmenter
    )
    val = PreprocessedDataset(data.val, modalities, preprocess, sample_rate, budget - int(budget * share))
    return train, val


def fit_inputs(items: Sequence[Item], modality: str, sample_rate: int, captions: bool = False) -> Iterator[Any]:
    """Raw training inputs of one modality for an encoder's ``fit_preprocessing`` (e.g. a tokenizer),
    decoded lazily; ``captions``: every caption of every item instead of its main text."""
    if modality == "text" and captions:
        for item in items:
            for caption in item_captions(item):
                yield caption.text
        return
    decoder = MultimodalDataset(list(items), None, [modality], sample_rate=sample_rate, require=False)
    for item in decoder.items:
        if item.has(modality):
            yield decoder.decode(item, modality)


def _nbytes(value: Any) -> int:
    if torch.is_tensor(value):
        return value.element_size() * value.numel()
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, str):
        return len(value)
    if hasattr(value, "getbands") and hasattr(value, "size"):  # a PIL image
        w, h = value.size
        return int(w) * int(h) * len(value.getbands())
    return 64


# --------------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchPlan:
    global_batch: int
    local_batch: int
    steps_per_epoch: int
    note: Optional[str] = None


def plan_batches(num_items: int, batch_size: int, world_size: int) -> BatchPlan:
    """Global batch (a multiple of the world size), per-rank batch and steps per epoch."""
    if batch_size % world_size:
        raise DataError(
            f"batch_size {batch_size} is the global batch and must be divisible by the number of processes "
            f"({world_size}); use e.g. --batch-size {batch_size - batch_size % world_size or world_size}"
        )
    note = None
    global_batch = batch_size
    if num_items < batch_size:
        global_batch = num_items - num_items % world_size
        if global_batch < max(2, world_size):
            raise DataError(
                f"the train split has {num_items} usable item(s), too few for {world_size} process(es); "
                "contrastive training needs at least two items per batch"
            )
        note = (
            f"the train split has only {num_items} items, fewer than batch_size {batch_size}: "
            f"using batches of {global_batch}"
        )
    return BatchPlan(global_batch, global_batch // world_size, num_items // global_batch, note)


def epoch_permutation(num_items: int, seed: int, epoch: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(mix_seed(seed, epoch))
    return torch.randperm(num_items, generator=gen)


def group_label(item: Item, field: str) -> str:
    """``item``'s value of ``field`` for grouped batches: its metadata, else the first of its captions
    that states the fact; ``""`` where neither does."""
    value = (item.meta or {}).get(field)
    if value is None:
        value = next((c.facts[field] for c in item.captions or () if c.facts and c.facts.get(field) is not None), None)
    return "" if value is None else str(value)


def grouped_permutation(
    labels: Sequence[str], global_batch: int, seed: int, epoch: int, fraction: float = 1.0
) -> torch.Tensor:
    """An epoch's order in which ``fraction`` of each global batch holds items of one label where it
    can, and the rest of the batch is drawn at random.

    ``fraction = 1``: the items are shuffled within their label, the labels laid end to end in a
    random order, the sequence cut into global batches (a batch that straddles two labels holds
    both), and the whole batches shuffled, so an epoch does not walk through one label after another.
    ``0 < fraction < 1``: a random ``round(fraction * global_batch)`` items per batch are grouped so,
    and each batch is filled up with items from a uniform shuffle of the others. Every item comes
    once per epoch; the remainder that fills no batch goes last (the sampler drops it).
    Deterministic in (labels, seed, epoch, fraction), so a resumed run sees the same batches."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction {fraction} is not in (0, 1]")
    gen = torch.Generator().manual_seed(mix_seed(seed, epoch))
    n = len(labels)
    steps = n // global_batch
    k = max(1, min(global_batch, round(fraction * global_batch)))
    if k == global_batch:
        grouped_rows, rest = torch.arange(n), torch.zeros(0, dtype=torch.long)
    else:
        pool = torch.randperm(n, generator=gen)
        grouped_rows, rest = pool[: steps * k], pool[steps * k :]
    by_label: dict[str, list[int]] = {}
    for i in grouped_rows.tolist():
        by_label.setdefault(labels[i], []).append(i)
    names = sorted(by_label)
    order = []
    for j in torch.randperm(len(names), generator=gen).tolist():
        rows = torch.tensor(by_label[names[j]], dtype=torch.long)
        order.append(rows[torch.randperm(len(rows), generator=gen)])
    seq = torch.cat(order) if order else torch.zeros(0, dtype=torch.long)
    if k == global_batch:
        full = steps * global_batch
        batches = seq[:full].view(-1, global_batch)[torch.randperm(steps, generator=gen)]
        return torch.cat([batches.reshape(-1), seq[full:]])
    fill = steps * (global_batch - k)
    batches = torch.cat([seq.view(steps, k), rest[:fill].view(steps, global_batch - k)], dim=1)
    batches = batches[torch.randperm(steps, generator=gen)]
    return torch.cat([batches.reshape(-1), rest[fill:]])


class EpochBatchSampler(torch.utils.data.Sampler):
    """This rank's rows of global batches ``start, start + 1, ...`` of one epoch."""

    def __init__(
        self, num_items: int, plan: BatchPlan, seed: int, epoch: int, rank: int = 0, start: int = 0,
        labels: Optional[Sequence[str]] = None, group_fraction: float = 1.0,
    ) -> None:
        self.plan, self.rank, self.start = plan, rank, start
        if labels is None:
            self.perm = epoch_permutation(num_items, seed, epoch)
        else:
            if len(labels) != num_items:
                raise ValueError(f"{len(labels)} batch labels for {num_items} items")
            self.perm = grouped_permutation(labels, plan.global_batch, seed, epoch, group_fraction)

    def __len__(self) -> int:
        return max(0, self.plan.steps_per_epoch - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        g, b = self.plan.global_batch, self.plan.local_batch
        for k in range(self.start, self.plan.steps_per_epoch):
            rows = self.perm[k * g : (k + 1) * g]
            yield rows[self.rank * b : (self.rank + 1) * b].tolist()


class BatchCollator:
    """Item dicts -> ``{"index", "groups", "inputs": {m: encoder batch}, "masks": {m: bool (B,)}}``.

    ``inputs[m]`` holds only the items that have ``m`` (in batch order); ``masks[m]`` says which
    rows those are. A modality no item of the batch has is absent from ``inputs``.
    """

    def __init__(self, collate: Mapping[str, Callable[[list[torch.Tensor]], dict]]) -> None:
        self.collate = dict(collate)

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict:
        inputs, masks = {}, {}
        for m, fn in self.collate.items():
            mask = torch.tensor([r.get(m) is not None for r in rows], dtype=torch.bool)
            masks[m] = mask
            present = [r[m] for r in rows if r.get(m) is not None]
            if present:
                inputs[m] = fn(present)
        return {
            "index": torch.tensor([int(r["index"]) for r in rows], dtype=torch.long),
            "groups": [r["group"] for r in rows],
            "inputs": inputs,
            "masks": masks,
        }


def make_loader(dataset, sampler, collator, num_workers: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collator,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(0),  # never draw the workers' base seed from the global RNG
    )


def chunks(indices: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(indices), size):
        yield list(indices[start : start + size])


__all__ = [
    "BatchCollator",
    "BatchPlan",
    "EpochBatchSampler",
    "PreprocessedDataset",
    "TrainingData",
    "build_datasets",
    "chunks",
    "epoch_caption",
    "epoch_permutation",
    "group_label",
    "grouped_permutation",
    "fit_inputs",
    "load_training_data",
    "make_loader",
    "mix_seed",
    "plan_batches",
]
