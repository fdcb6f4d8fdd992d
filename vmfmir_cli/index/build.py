"""``vmfmir embed`` as a library call: a collection + a trained run -> an index folder.

Every item is embedded in every modality the run was trained on (items lacking a modality have no
row for it). The index is keyed by content: each (modality, sha256 of the media bytes or text) is
encoded once, so

* re-running on a grown or edited collection encodes only new or changed content and copies the
  rest from the existing index (which must have been built by the same model);
* identical media shared by several items (the score image of a piece's performances) are encoded
  once and get identical rows.

Items no longer in the collection are dropped: the index always mirrors the collection it was
last built from.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from vmfmir_cli.data.manifest import Item
from vmfmir_cli.errors import CheckpointError, DataError
from vmfmir_cli.index import store

#: ``on_progress(done, total, modality)``: called after every batch of new encodings
EmbedProgress = Callable[[int, int, str], None]
SPLIT_CHOICES = ("train", "val", "test", "all")


@dataclass
class EmbedReport:
    """What an embed did (returned to the CLI, printed as a summary or JSON)."""

    out: str
    run: str
    model_hash: str
    items: int
    rows: dict[str, int]
    encoded: dict[str, int]
    reused: dict[str, int]
    new_items: int = 0
    changed_items: int = 0
    unchanged_items: int = 0
    removed_items: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_device(device: Optional[str]) -> torch.device:
    """``None``/"auto": CUDA when available, else CPU; otherwise the named device, checked to exist
    (:func:`vmfmir_cli.device.resolve_device`, shared by every command)."""
    from vmfmir_cli.device import resolve_device as resolve

    return resolve(device)


def resolve_run(run: str | Path) -> Path:
    """A run folder from ``runs/latest`` (symlink or ``runs/LATEST``), a runs folder or a run folder."""
    from vmfmir_cli.training.runs import resolve_run_dir

    return resolve_run_dir(run)


def run_model_hash(run_dir: Path, config: dict) -> str:
    """The run's weights hash (from config.json, else computed from model.safetensors)."""
    h = config.get("hash")
    if h:
        return str(h)
    from vmfmir_cli.model import WEIGHTS_FILE

    return store.hash_file(run_dir / WEIGHTS_FILE)


def content_hashes(item: Item, modalities: Sequence[str]) -> dict[str, str]:
    """sha256 per modality the item has: of the media file's bytes, or of the text."""
    hashes: dict[str, str] = {}
    for m in modalities:
        value = getattr(item, m, None)
        if value is None:
            continue
        if m == "text":
            hashes[m] = store.hash_text(value)
            continue
        try:
            hashes[m] = store.hash_file(value)
        except OSError as exc:
            raise DataError(f"{value}: cannot read the {m} file of item {item.id!r} ({exc.strerror})") from None
    return hashes


def scoring_terms(kappa: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(log C_d(kappa) float64, A_d(kappa) float32): the per-row terms an index stores for scoring."""
    from vmfmir_cli.engine.vmf import log_normalizer, mean_resultant_length

    k64 = kappa.to(torch.float64)
    return log_normalizer(k64, dim), mean_resultant_length(k64, dim).to(torch.float32)


def item_row(item: Item, hashes: dict[str, str]) -> dict[str, Any]:
    return {
        "id": item.id,
        "group": item.group,
        "split": item.split,
        "text": item.text,
        "audio": str(item.audio) if item.audio is not None else None,
        "image": str(item.image) if item.image is not None else None,
        "meta": dict(item.meta or {}),
        "hash": hashes,
    }


def embed_items(items: Sequence[Item], run: str | Path, out: str | Path, **kwargs: Any) -> EmbedReport:
    """Embed ``items`` with the run's model into the index folder ``out`` (incrementally).

    Holds the write lock of ``out`` (:func:`vmfmir_cli.locks.folder_lock`) for the whole call, so a
    second ``vmfmir embed`` into the same folder is refused instead of silently overwriting this
    one. See :func:`_embed_items` for the arguments.
    """
    from vmfmir_cli.errors import WriteError
    from vmfmir_cli.locks import LOCK_FILE, folder_lock

    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise WriteError(f"--out {out} is a file, not an index folder; choose another --out (or remove the file)")
    created = not out.exists()
    try:
        with folder_lock(out, "index", "vmfmir embed"):
            return _embed_items(items, run, out, **kwargs)
    except BaseException:
        if created:  # leave no empty index folder behind
            with contextlib.suppress(OSError):
                (out / LOCK_FILE).unlink(missing_ok=True)
                out.rmdir()
        raise


def _embed_items(
    items: Sequence[Item],
    run: str | Path,
    out: str | Path,
    *,
    source: dict[str, Any],
    batch_size: int = 32,
    device: Optional[str] = None,
    rebuild: bool = False,
    on_progress: Optional[EmbedProgress] = None,
    skipped: Optional[dict[str, int]] = None,
    model: Any = None,
) -> EmbedReport:
    """Embed ``items`` with the run's model into the index folder ``out`` (incrementally).

    Args:
        items: the collection (manifest items, or items made from files).
        run: a run folder (``runs/latest`` works).
        out: the index folder; an index already there is reused when it was built by the same
            model, refused when built by another (unless ``rebuild``), rebuilt when unreadable.
        source: where the items came from (stored in ``index.json``).
        rebuild: ignore an existing index and encode everything.
        model: an already loaded model of ``run`` (else loaded when something must be encoded).
    """
    from vmfmir_cli.model import load_model, read_model_config
    from vmfmir_cli.index.encode import encode_items

    started = time.perf_counter()
    out = Path(out).expanduser()
    run_dir = resolve_run(run)
    config = read_model_config(run_dir)
    model_hash = run_model_hash(run_dir, config)
    model_cfg = config["model"]
    modalities = [m for m in store.MODALITIES if m in (model_cfg.get("encoders") or {})]
    dim = int(model_cfg["embed_dim"])
    if not items:
        raise DataError("the collection is empty: nothing to embed")
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"item id {dup!r} appears twice in the collection; ids must be unique")
    from vmfmir_cli.utils_io import ensure_writable

    ensure_writable(out, "folder")  # a read-only or full disk is found before the encoding, not after
    resolve_device(device)  # and a missing GPU

    notes: list[str] = []
    old: Optional[store.Index] = None
    if store.index_exists(out) and not rebuild:
        try:
            info = store.read_index_info(out)
        except CheckpointError as exc:
            info = None
            notes.append(f"the index in {out} was unreadable ({exc}); rebuilt it from scratch")
        if info is not None:
            store.check_model_hash(
                info, model_hash, run_dir, where=str(out),
                hint="pass --rebuild to replace it with this model's index, or write to another --out folder",
            )
            if info.get("model_hash") != model_hash or int(info.get("dim", -1)) != dim:
                raise CheckpointError(
                    f"the index in {out} does not record the model that built it; pass --rebuild to replace it"
                )
            try:
                old = store.load_index(out)
            except CheckpointError as exc:
                notes.append(f"the index in {out} was unreadable ({exc}); rebuilt it from scratch")

    # content hashes and the reuse table
    hashes = [content_hashes(it, modalities) for it in items]
    reuse: dict[tuple[str, str], tuple[str, int]] = {}  # (modality, hash) -> (modality, old row)
    old_hashes: dict[str, dict[str, str]] = {}
    if old is not None:
        for m in old.modalities:
            rows = old.rows[m].tolist()
            for r, pos in enumerate(rows):
                h = old.items[pos].get("hash", {}).get(m)
                if h:
                    reuse[(m, h)] = (m, r)
        old_hashes = {row["id"]: dict(row.get("hash") or {}) for row in old.items}

    # what must be encoded: one representative item per new (modality, hash)
    todo: dict[str, list[tuple[str, Item]]] = {m: [] for m in modalities}
    queued: set[tuple[str, str]] = set()
    for it, hs in zip(items, hashes):
        for m, h in hs.items():
            if (m, h) not in reuse and (m, h) not in queued:
                queued.add((m, h))
                todo[m].append((h, it))
    total = sum(len(v) for v in todo.values())
    encoded: dict[str, int] = {m: len(todo[m]) for m in modalities}
    fresh: dict[tuple[str, str], int] = {}  # (modality, hash) -> row of fresh_mu[modality]
    fresh_mu: dict[str, torch.Tensor] = {}
    fresh_kappa: dict[str, torch.Tensor] = {}
    if total:
        dev = resolve_device(device)
        if model is None:
            model, _ = load_model(run_dir, map_location=dev)
        done_before = 0
        for m in modalities:
            if not todo[m]:
                continue

            def progress(done: int, _n: int, _m=m, _base=done_before) -> None:
                if on_progress is not None:
                    on_progress(_base + done, total, _m)

            fresh_mu[m], fresh_kappa[m] = encode_items(model, [it for _, it in todo[m]], m, batch_size, dev, progress)
            for j, (h, _) in enumerate(todo[m]):
                fresh[(m, h)] = j
            done_before += len(todo[m])

    # assemble the new index in collection order
    index = store.Index(
        info={"run": str(run_dir), "model_hash": model_hash, "dim": dim, "model_modalities": modalities, "source": source},
        items=[item_row(it, hs) for it, hs in zip(items, hashes)],
    )
    reused: dict[str, int] = {}
    for m in modalities:
        positions = [i for i, hs in enumerate(hashes) if m in hs]
        n = len(positions)
        mu, kappa = torch.zeros(n, dim), torch.zeros(n)
        log_c, a = torch.zeros(n, dtype=torch.float64), torch.zeros(n)
        new_at, new_src, old_at, old_src = [], [], [], []
        for j, i in enumerate(positions):
            key = (m, hashes[i][m])
            if key in fresh:
                new_at.append(j)
                new_src.append(fresh[key])
            else:
                old_at.append(j)
                old_src.append(reuse[key][1])
        missing = torch.tensor(new_at, dtype=torch.int64)  # rows whose scoring terms are computed here
        if new_at:
            src = torch.tensor(new_src, dtype=torch.int64)
            mu[missing], kappa[missing] = fresh_mu[m][src], fresh_kappa[m][src]
        if old_at:
            at, src = torch.tensor(old_at, dtype=torch.int64), torch.tensor(old_src, dtype=torch.int64)
            mu[at], kappa[at] = old.mu[m][src], old.kappa[m][src]
            old_terms = old.terms.get(m, {})
            if "log_c" in old_terms and "a" in old_terms:
                log_c[at], a[at] = old_terms["log_c"][src].to(torch.float64), old_terms["a"][src].to(torch.float32)
            else:
                missing = torch.cat([missing, at])
        if missing.numel():
            log_c[missing], a[missing] = scoring_terms(kappa[missing], dim)
        reused[m] = len(old_at)
        index.mu[m], index.kappa[m] = mu, kappa
        index.rows[m] = torch.tensor(positions, dtype=torch.int64)
        index.terms[m] = {"log_c": log_c, "a": a}
    store.save_index(index, out)

    new = changed = unchanged = 0
    for it, hs in zip(items, hashes):
        before = old_hashes.get(it.id)
        if before is None:
            new += 1
        elif before == hs:
            unchanged += 1
        else:
            changed += 1
    removed = len(set(old_hashes) - set(ids))
    return EmbedReport(
        out=str(out),
        run=str(run_dir),
        model_hash=model_hash,
        items=len(items),
        rows={m: int(index.mu[m].shape[0]) for m in modalities},
        encoded=encoded,
        reused=reused,
        new_items=new,
        changed_items=changed,
        unchanged_items=unchanged,
        removed_items=removed,
        skipped=dict(skipped or {}),
        notes=notes,
        seconds=round(time.perf_counter() - started, 3),
    )


def embed_dataset(
    run: str | Path, data: str | Path, split: str = "all", out: str | Path = "index", **kwargs: Any
) -> EmbedReport:
    """Embed the items of ``split`` ("train", "val", "test" or "all") of a prepared dataset."""
    from vmfmir_cli.data.manifest import read_manifest, split_items

    if split not in SPLIT_CHOICES:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLIT_CHOICES)}")
    data = Path(data).expanduser()
    items = split_items(read_manifest(data), None if split == "all" else split)
    if not items:
        raise DataError(f"the {split} split of {data} has no items; pick another --split")
    return embed_items(items, run, out, source={"data": str(data.resolve()), "split": split}, **kwargs)


def embed_files(
    run: str | Path,
    paths: Sequence[str],
    out: str | Path = "index",
    *,
    skip_invalid: bool = False,
    follow_symlinks: bool = False,
    **kwargs: Any,
) -> EmbedReport:
    """Embed a plain folder / files / glob patterns (one item per file, no manifest).

    ``skip_invalid``: leave out (and count) files that do not decode instead of stopping at the
    first; ``follow_symlinks``: also embed symlinks in a folder that lead out of it."""
    from vmfmir_cli.model import read_model_config
    from vmfmir_cli.index.files import collect_files

    config = read_model_config(resolve_run(run))
    modalities = list((config["model"].get("encoders") or {}).keys())
    items, skipped = collect_files(paths, modalities, follow_symlinks=follow_symlinks, skip_invalid=skip_invalid)
    source = {"files": [str(Path(p).expanduser().resolve()) if Path(p).expanduser().exists() else str(p) for p in paths]}
    return embed_items(items, run, out, source=source, skipped=skipped, **kwargs)


__all__ = ["EmbedReport", "SPLIT_CHOICES", "embed_dataset", "embed_files", "embed_items", "resolve_device", "resolve_run"]
