"""The resumable checkpoint of a run: safetensors for tensors, JSON for the rest, no pickle.

Layout of ``runs/<name>/checkpoint/``::

    model.safetensors      the model's weights, same keys as the run's model.safetensors
    training.safetensors   optimizer state tensors (``optimizer.<param index>.<name>``), trainable
                           loss parameters (``loss.<name>``) and RNG states (``rng.torch``,
                           ``rng.cuda.<i>``, uint8)
    state.json             step, epoch, position in the epoch, resolved train config, model config,
                           optimizer param groups and scalar state, scheduler state, Python and NumPy
                           RNG states, best validation MRR, the sha256 of both safetensors files

Atomicity: a checkpoint is written to ``checkpoint.tmp-<random>/`` (every file fsync'ed,
``state.json`` last), the current ``checkpoint/`` is renamed to ``checkpoint.old-<random>``, the new
folder is renamed to ``checkpoint/`` and the old one deleted. A process killed at any moment leaves
at least one complete checkpoint: :func:`find_checkpoint` takes ``checkpoint/`` if it is complete,
else the newest complete leftover (``state.json`` present, hashes matching), and
:func:`cleanup_leftovers` removes the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch

from vmfmir_cli._version import __version__
from vmfmir_cli.errors import CheckpointError
from vmfmir_cli.utils_io import current_umask

CHECKPOINT_DIR = "checkpoint"
MODEL_FILE = "model.safetensors"
TRAINING_FILE = "training.safetensors"
STATE_FILE = "state.json"
FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------------
# Optimizer and RNG state <-> (tensors, JSON)
# --------------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if torch.is_tensor(value) and value.numel() == 1:
        return value.item()
    raise CheckpointError(f"cannot store a value of type {type(value).__name__} in a checkpoint")


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """``optimizer.state_dict()`` -> (tensors keyed ``optimizer.<index>.<name>``, JSON part)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, state in sd["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = _jsonable(value)
    groups = [_jsonable(g) for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_flat(optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], meta: Mapping) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if not key.startswith("optimizer."):
            continue
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value.clone()  # never alias the caller's tensors
    for index, values in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g and isinstance(g["betas"], list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"the optimizer state in the checkpoint does not fit this model ({exc})") from None


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """Every RNG the training touches: torch CPU/CUDA (tensors), Python and NumPy (JSON)."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    py = random.getstate()
    np_state = np.random.get_state()
    meta = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, meta


def set_rng_state(tensors: Mapping[str, torch.Tensor], meta: Mapping) -> None:
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"].to(torch.uint8).cpu())
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available():
        states = [tensors[k].to(torch.uint8).cpu() for k in cuda][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)
    if "python" in meta:
        version, internal, gauss = meta["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in meta:
        name, keys, pos, has_gauss, cached = meta["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tensor_bytes(tensors: Mapping[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    return save(plain, metadata={"format": "pt", "vmfmir_version": __version__})


def _write_synced(path: Path, data: bytes) -> None:
    try:
        with open(path, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        if exc.filename is None:  # write() / fsync() errors name no file: name it (a full disk, ...)
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def save_checkpoint(
    run_dir: str | Path,
    model_tensors: Mapping[str, torch.Tensor],
    training_tensors: Mapping[str, torch.Tensor],
    state: Mapping[str, Any],
) -> Path:
    """Atomically replace ``run_dir/checkpoint/`` with a new checkpoint; returns its path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{CHECKPOINT_DIR}.tmp-", dir=run_dir))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private; a checkpoint is an ordinary folder
        model_bytes = _tensor_bytes(model_tensors)
        training_bytes = _tensor_bytes(training_tensors)
        _write_synced(tmp / MODEL_FILE, model_bytes)
        _write_synced(tmp / TRAINING_FILE, training_bytes)
        full_state = {
            "format_version": FORMAT_VERSION,
            "vmfmir_version": __version__,
            **_jsonable(dict(state)),
            "hashes": {MODEL_FILE: _sha256(model_bytes), TRAINING_FILE: _sha256(training_bytes)},
        }
        full_state["state_hash"] = state_digest(full_state)
        _write_synced(tmp / STATE_FILE, (json.dumps(full_state, indent=1) + "\n").encode("utf-8"))
        _fsync_dir(tmp)
        final = run_dir / CHECKPOINT_DIR
        old: Optional[Path] = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{CHECKPOINT_DIR}.old-", dir=run_dir))
            old.rmdir()
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(run_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return final
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class Checkpoint:
    path: Path
    state: dict
    model_tensors: dict
    training_tensors: dict

    @property
    def step(self) -> int:
        return int(self.state["step"])


def state_digest(state: Mapping[str, Any]) -> str:
    """sha256 of ``state`` minus its ``state_hash``, as canonical JSON (what seals state.json)."""
    rest = {k: v for k, v in state.items() if k != "state_hash"}
    return _sha256(json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _check_sealed(state: dict, path: Path) -> None:
    from vmfmir_cli.model import ALLOW_EDITED_ENV

    if os.environ.get(ALLOW_EDITED_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return
    if state.get("state_hash") != state_digest(state):
        raise CheckpointError(
            f"{path} does not match its state_hash: it was edited after vmfmir wrote it (or is damaged). "
            f"Restore it or start a new run; if you edited it on purpose, run again with {ALLOW_EDITED_ENV}=1"
        )


def _read_state(folder: Path) -> Optional[dict]:
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and "step" in state else None


def _load_folder(folder: Path) -> Checkpoint:
    from safetensors.torch import load

    state = _read_state(folder)
    if state is None:
        raise CheckpointError(f"{folder / STATE_FILE} is missing or unreadable; the checkpoint is incomplete")
    _check_sealed(state, folder / STATE_FILE)
    tensors = {}
    for name in (MODEL_FILE, TRAINING_FILE):
        try:
            data = (folder / name).read_bytes()
        except OSError:
            raise CheckpointError(f"{folder / name} is missing; the checkpoint is incomplete") from None
        expected = state.get("hashes", {}).get(name)
        if expected and _sha256(data) != expected:
            raise CheckpointError(f"{folder / name} does not match the hash in {STATE_FILE}: the checkpoint is corrupt")
        try:
            tensors[name] = load(data)
        except Exception as exc:
            raise CheckpointError(f"{folder / name} is not a valid safetensors file ({exc})") from None
    return Checkpoint(folder, state, tensors[MODEL_FILE], tensors[TRAINING_FILE])


def _candidates(run_dir: Path) -> list[Path]:
    main = run_dir / CHECKPOINT_DIR
    others = sorted(run_dir.glob(f"{CHECKPOINT_DIR}.tmp-*")) + sorted(run_dir.glob(f"{CHECKPOINT_DIR}.old-*"))
    return ([main] if main.is_dir() else []) + [p for p in others if p.is_dir()]


def find_checkpoint(run_dir: str | Path, problems: Optional[list[str]] = None) -> Optional[Checkpoint]:
    """The checkpoint to resume from: ``checkpoint/`` if complete, else the newest complete leftover.

    ``problems`` (a list) receives why each rejected candidate folder was rejected."""
    run_dir = Path(run_dir)
    main = run_dir / CHECKPOINT_DIR
    problems = [] if problems is None else problems
    if main.is_dir():
        try:
            return _load_folder(main)
        except CheckpointError as exc:
            problems.append(str(exc))
    best: Optional[Checkpoint] = None
    for folder in _candidates(run_dir):
        if folder == main:
            continue
        try:
            ckpt = _load_folder(folder)
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        if best is None or ckpt.step > best.step:
            best = ckpt
    return best


def no_checkpoint_error(run_dir: str | Path, problems: list[str]) -> CheckpointError:
    """The error for a run without a usable checkpoint, naming the first bad file if there is one."""
    why = f": {problems[0]}" if problems else ""
    return CheckpointError(f"{run_dir} has no complete checkpoint to resume from{why}; start a new run")


def cleanup_leftovers(run_dir: str | Path, keep: Path) -> Path:
    """Make ``keep`` the run's ``checkpoint/`` and delete every other checkpoint folder."""
    run_dir = Path(run_dir)
    main = run_dir / CHECKPOINT_DIR
    if keep != main:
        if main.exists():
            shutil.rmtree(main, ignore_errors=True)
        os.replace(keep, main)
    for folder in _candidates(run_dir):
        if folder != main:
            shutil.rmtree(folder, ignore_errors=True)
    return main


__all__ = [
    "CHECKPOINT_DIR",
    "Checkpoint",
    "MODEL_FILE",
    "STATE_FILE",
    "TRAINING_FILE",
    "cleanup_leftovers",
    "find_checkpoint",
    "no_checkpoint_error",
    "state_digest",
    "optimizer_from_flat",
    "optimizer_to_flat",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]
