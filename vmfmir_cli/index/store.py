"""An index of distributions on disk: ``index/`` = three files, written atomically.

``index.safetensors``
    per modality m of the model: ``{m}.mu`` (N_m, d) float32 unit rows, ``{m}.kappa`` (N_m,)
    float32, and ``{m}.item`` (N_m,) int64: the line of ``items.jsonl`` each row belongs to (items
    lacking modality m have no row in it). Also ``{m}.log_c`` (float64 log C_d(kappa)) and
    ``{m}.a`` (float32 A_d(kappa)): per-row terms of the scores, stored so that a query does not
    redo the float64 Bessel work for every row (optional for readers).
``items.jsonl``
    one JSON object per item: ``id``, ``group``, ``split``, ``text``, ``audio`` / ``image`` (absolute
    media paths or null), ``meta`` and ``hash`` (per modality, ``"sha256:<hex>"`` of the media
    file's bytes, or of the text's UTF-8 bytes).
``index.json``
    ``format_version``, ``vmfmir_version``, ``run`` (absolute run folder), ``model_hash`` (the
    run's ``config.json`` hash of its weights), ``dim``, ``modalities``, ``counts`` (items and rows
    per modality), ``source`` (the data folder and split, or the file patterns) and ``checksums``
    of the other two files.

Each file is replaced atomically and ``index.json`` is written last, so an interrupted write leaves
an ``index.json`` whose checksums do not match: :func:`load_index` then refuses the folder (and
``vmfmir embed`` rebuilds it) instead of serving a mix of two indexes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import torch

from vmfmir_cli._version import __version__
from vmfmir_cli.errors import CheckpointError
from vmfmir_cli.utils_io import atomic_path, write_bytes, write_json

TENSORS_FILE = "index.safetensors"
ITEMS_FILE = "items.jsonl"
INFO_FILE = "index.json"
FORMAT_VERSION = 1
MODALITIES = ("audio", "image", "text")
#: optional per-row scoring terms stored as ``{m}.<name>``: log C_d(kappa) and A_d(kappa)
TERMS = {"log_c": torch.float64, "a": torch.float32}


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hash_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """``"sha256:<hex>"`` of a file's bytes (read in chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return "sha256:" + h.hexdigest()


def hash_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


@dataclass
class Index:
    """An index in memory: item rows, per-modality vMF parameters and the build information."""

    info: dict[str, Any]
    items: list[dict[str, Any]]
    mu: dict[str, torch.Tensor] = field(default_factory=dict)
    kappa: dict[str, torch.Tensor] = field(default_factory=dict)
    rows: dict[str, torch.Tensor] = field(default_factory=dict)  # modality -> item position per row
    #: per modality, per-item scoring terms stored with the index: "log_c" (log C_d(kappa), float64)
    #: and "a" (A_d(kappa), float32); optional (computed when the index is searched if absent)
    terms: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    path: Optional[Path] = None
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    @property
    def modalities(self) -> list[str]:
        """Modalities with at least one row."""
        return [m for m in MODALITIES if m in self.mu and self.mu[m].shape[0] > 0]

    @property
    def dim(self) -> int:
        return int(self.info["dim"])

    @property
    def model_hash(self) -> Optional[str]:
        return self.info.get("model_hash")

    @property
    def run(self) -> Optional[str]:
        return self.info.get("run")

    def __len__(self) -> int:
        return len(self.items)

    def count(self, modality: str) -> int:
        return int(self.mu[modality].shape[0]) if modality in self.mu else 0

    def distribution(self, modality: str):
        """The rows of ``modality`` as a :class:`VonMisesFisher` of batch shape (N_m,)."""
        from vmfmir_cli.engine.vmf import VonMisesFisher

        return VonMisesFisher(self.mu[modality], self.kappa[modality], validate_args=False)

    def cached(self, key: Any, build):
        """Per-index cache for derived structures (prepared scorers, faiss indexes)."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]


def _items_bytes(items: Iterable[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items).encode("utf-8")


def save_index(index: Index, out_dir: str | Path) -> dict[str, Any]:
    """Write the three files of ``index`` into ``out_dir`` (atomically, ``index.json`` last)."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    tensors: dict[str, torch.Tensor] = {}
    for m in MODALITIES:
        if m not in index.mu:
            continue
        tensors[f"{m}.mu"] = index.mu[m].detach().to("cpu", torch.float32).contiguous()
        tensors[f"{m}.kappa"] = index.kappa[m].detach().to("cpu", torch.float32).contiguous()
        tensors[f"{m}.item"] = index.rows[m].detach().to("cpu", torch.int64).contiguous()
        for name, dtype in TERMS.items():
            value = index.terms.get(m, {}).get(name)
            if value is not None:
                tensors[f"{m}.{name}"] = value.detach().to("cpu", dtype).contiguous()
    item_bytes = _items_bytes(index.items)
    items_sum = sha256_bytes(item_bytes)
    model_hash = str(index.info.get("model_hash") or "")
    meta = {"format": "pt", "vmfmir_version": __version__, "items_sha256": items_sum, "model_hash": model_hash}
    info = dict(index.info)
    info.update(
        {
            "format_version": FORMAT_VERSION,
            "vmfmir_version": __version__,
            "modalities": [m for m in MODALITIES if m in index.mu],
            "counts": {"items": len(index.items), **{m: int(index.mu[m].shape[0]) for m in MODALITIES if m in index.mu}},
            "checksums": {ITEMS_FILE: items_sum},
        }
    )
    with atomic_path(out_dir / TENSORS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    write_bytes(out_dir / ITEMS_FILE, item_bytes)
    write_json(out_dir / INFO_FILE, info)
    index.info = info
    index.path = out_dir
    return info


def index_exists(path: str | Path) -> bool:
    return (Path(path) / INFO_FILE).is_file()


def read_index_info(path: str | Path) -> dict[str, Any]:
    """``index.json`` of the index at ``path`` (CheckpointError when missing or unreadable)."""
    path = Path(path).expanduser()
    info_path = path / INFO_FILE
    if not info_path.is_file():
        if path.is_dir() or path.exists():
            raise CheckpointError(f"{path} is not a vmfmir index ({INFO_FILE} is missing); build one with `vmfmir embed`")
        raise CheckpointError(f"no index at {path}: build one with `vmfmir embed --out {path}` or pass --index")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{info_path} is not valid JSON ({exc}); rebuild the index with `vmfmir embed`") from None
    if not isinstance(info, dict) or "dim" not in info:
        raise CheckpointError(f"{info_path} was not written by vmfmir embed; rebuild the index")
    if int(info.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} uses index format {info.get('format_version')}, newer than this vmfmir understands "
            f"({FORMAT_VERSION}); upgrade vmfmir or rebuild the index"
        )
    return info


def _safetensors_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file, read from its header only."""
    with open(path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        if not 0 < size < (1 << 27):
            raise ValueError("not a safetensors file")
        header = json.loads(fh.read(size).decode("utf-8"))
    return dict(header.get("__metadata__") or {})


def load_index(path: str | Path, verify: bool = True) -> Index:
    """Read the index at ``path``; with ``verify``, check that its three files belong together.

    ``items.jsonl`` must match the checksum in ``index.json``, and the tensors file must name the
    same items checksum and model hash in its metadata (so a write interrupted between two files
    is detected without hashing the tensors).
    """
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    info = read_index_info(path)
    corrupt = f"rebuild it with `vmfmir embed --out {path}`"
    tensors_path = path / TENSORS_FILE
    try:
        item_bytes = (path / ITEMS_FILE).read_bytes()
        if not tensors_path.is_file():
            raise FileNotFoundError(2, "No such file", str(tensors_path))
    except OSError as exc:
        raise CheckpointError(f"the index at {path} is incomplete ({exc.strerror}: {exc.filename}); {corrupt}") from None
    try:
        meta = _safetensors_metadata(tensors_path)
        tensors = load_file(str(tensors_path))
        items = [json.loads(line) for line in item_bytes.decode("utf-8").splitlines() if line.strip()]
    except Exception as exc:
        raise CheckpointError(f"the index at {path} cannot be read ({exc}); {corrupt}") from None
    if verify:
        items_sum = sha256_bytes(item_bytes)
        expected = (info.get("checksums") or {}).get(ITEMS_FILE)
        if (expected and items_sum != expected) or meta.get("items_sha256", items_sum) != items_sum or (
            meta.get("model_hash") and info.get("model_hash") and meta["model_hash"] != info["model_hash"]
        ):
            raise CheckpointError(
                f"the files of the index at {path} do not belong together (an interrupted write, or files "
                f"from two indexes); {corrupt}"
            )
    index = Index(info=info, items=items, path=path)
    for m in info.get("modalities", []):
        try:
            mu, kappa, rows = tensors[f"{m}.mu"], tensors[f"{m}.kappa"], tensors[f"{m}.item"]
        except KeyError as exc:
            raise CheckpointError(f"the index at {path} lacks the tensor {exc.args[0]!r}; {corrupt}") from None
        n = mu.shape[0]
        if mu.dim() != 2 or mu.shape[1] != index.dim or kappa.shape != (n,) or rows.shape != (n,):
            raise CheckpointError(f"the {m} tensors of the index at {path} have inconsistent shapes; {corrupt}")
        if n and (int(rows.min()) < 0 or int(rows.max()) >= len(items)):
            raise CheckpointError(f"the {m} rows of the index at {path} point past items.jsonl; {corrupt}")
        index.mu[m], index.kappa[m], index.rows[m] = mu, kappa, rows
        terms = {name: tensors[f"{m}.{name}"] for name in TERMS if f"{m}.{name}" in tensors}
        if any(t.shape != (n,) for t in terms.values()):
            raise CheckpointError(f"the {m} scoring terms of the index at {path} have inconsistent shapes; {corrupt}")
        if terms:
            index.terms[m] = terms
    return index


def check_model_hash(
    index_info: dict[str, Any], model_hash: Optional[str], run: str | Path, where: str = "", hint: Optional[str] = None
) -> None:
    """Refuse a model whose weights hash differs from the one the index was built with."""
    expected = index_info.get("model_hash")
    if expected and model_hash and expected != model_hash:
        built = index_info.get("run") or "?"
        place = f" at {where}" if where else ""
        hint = hint or (
            f"query it with the model that built it (--run {built}) or re-embed with "
            f"`vmfmir embed --run {run}` into another --out folder"
        )
        raise CheckpointError(
            f"the index{place} was built by another model ({_short(expected)}, run {built}) than {run} "
            f"({_short(model_hash)}); {hint}"
        )


def _short(h: str) -> str:
    return h[:19] if h.startswith("sha256:") else h[:12]


__all__ = [
    "FORMAT_VERSION",
    "INFO_FILE",
    "ITEMS_FILE",
    "Index",
    "TENSORS_FILE",
    "check_model_hash",
    "hash_file",
    "hash_text",
    "index_exists",
    "load_index",
    "read_index_info",
    "save_index",
    "sha256_bytes",
]
