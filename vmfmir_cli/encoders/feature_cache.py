"""A disk cache for expensive, deterministic preprocessing (e.g. a frozen pretrained network's features).

An encoder whose ``preprocess`` runs a frozen network (``pitch-cnn`` runs CREPE: about 0.6 s per
10 s clip on one CPU thread, 200x the mel spectrogram) pays that cost for every item of every run,
every validation and every ``vmfmir embed``. :class:`FeatureCache` keeps each result on disk, keyed
by the exact bytes of the decoded input and by the encoder's *signature* (everything the output
depends on: the settings of its preprocessing, the pretrained file's sha256, a code version), so a
second run, a second seed or a re-embed reads the features instead of recomputing them. Inputs that
differ (an augmented waveform, a cropped view) simply miss; nothing is ever served for an input it
was not computed from.

Where: ``$VMFMIR_FEATURE_CACHE`` if set (``off`` turns the cache off), else
``$XDG_CACHE_HOME/vmfmir/features`` (``~/.cache/vmfmir/features``). One folder per encoder and
signature (``<root>/<encoder>/<signature hash>/``, with ``signature.json`` saying what produced it),
one safetensors file per input. Deleting the folder is always safe.

The files are untrusted input: they are read with safetensors (no code runs), and a file that does
not hold exactly one tensor under the expected key, with this cache's format and the input's key in
its metadata, is ignored and recomputed (then overwritten). Writes go to a temporary file renamed
into place, so concurrent writers (DataLoader workers, two runs) never expose half a file; a write
that fails (read-only or full disk) turns the cache off for the rest of the process with one warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch

from vmfmir_cli.errors import WriteError
from vmfmir_cli.utils_io import write_bytes, write_text

ENV = "VMFMIR_FEATURE_CACHE"
FORMAT = "vmfmir-features-1"
_OFF = {"", "0", "off", "none", "false", "no"}
_TENSOR = "x"


def cache_root() -> Optional[Path]:
    """The cache's root folder from the environment, or None when it is turned off."""
    value = os.environ.get(ENV)
    if value is not None:
        return None if value.strip().lower() in _OFF else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "vmfmir" / "features"


def input_key(raw: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes (equal keys: byte-identical inputs)."""
    t = raw.detach().to("cpu").contiguous()
    h = hashlib.sha256(f"{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class FeatureCache:
    """``cache(raw, compute)``: ``compute(raw)`` once per distinct input tensor, then read from disk.

    ``namespace`` names the encoder (a folder name); ``signature`` (JSON-able) is everything the
    output depends on besides the input. ``root=None`` takes :func:`cache_root`; a cache whose root
    is None (turned off) computes every time. Non-tensor inputs and non-tensor outputs are computed
    and not cached. Picklable (DataLoader workers get their own copy, sharing the folder).
    """

    def __init__(self, namespace: str, signature: Mapping[str, Any], root: Optional[str | os.PathLike] = None):
        self.signature = json.loads(json.dumps(dict(signature), sort_keys=True))
        digest = hashlib.sha256(json.dumps(self.signature, sort_keys=True).encode()).hexdigest()[:20]
        base = Path(root).expanduser() if root is not None else cache_root()
        self.folder: Optional[Path] = None if base is None else base / _safe_name(namespace) / digest
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.folder is not None

    def path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> Optional[torch.Tensor]:
        """The stored tensor for ``key``, or None (absent, unreadable or not what this cache wrote)."""
        if self.folder is None:
            return None
        try:
            from safetensors import safe_open

            with safe_open(str(self.path(key)), framework="pt") as f:
                meta = f.metadata() or {}
                if set(f.keys()) != {_TENSOR} or meta.get("format") != FORMAT or meta.get("key") != key:
                    return None
                return f.get_tensor(_TENSOR)
        except Exception:  # absent, torn or foreign: recompute it
            return None

    def put(self, key: str, value: torch.Tensor) -> None:
        """Store ``value`` for ``key`` (atomically: a temporary file renamed into place)."""
        if self.folder is None:
            return
        from safetensors.torch import save

        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            sig = self.folder / "signature.json"
            if not sig.exists():
                write_text(sig, json.dumps(self.signature, indent=2, sort_keys=True))
            blob = save({_TENSOR: value.detach().to("cpu").contiguous()}, metadata={"format": FORMAT, "key": key})
            write_bytes(path, blob)  # a temporary file renamed into place: readers never see half a file
        except (OSError, WriteError) as exc:
            warnings.warn(
                f"vmfmir: the feature cache at {self.folder} cannot be written ({exc}); "
                f"features are recomputed from now on (set {ENV}=off to silence this, or free some space)",
                RuntimeWarning,
                stacklevel=2,
            )
            self.folder = None

    def __call__(self, raw: Any, compute: Callable[[Any], Any]) -> Any:
        if self.folder is None or not torch.is_tensor(raw):
            return compute(raw)
        key = input_key(raw)
        hit = self.get(key)
        if hit is not None:
            self.hits += 1
            return hit
        self.misses += 1
        out = compute(raw)
        if torch.is_tensor(out):
            self.put(key, out)
        return out


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name)) or "encoder"


__all__ = ["ENV", "FORMAT", "FeatureCache", "cache_root", "input_key"]
