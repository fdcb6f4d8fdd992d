"""A trained model on disk: config.json + model.safetensors, sealed by hashes.

Files of a run directory written by :func:`save_model`::

    model.safetensors   every encoder's ``state_dict_for_saving()`` (prefixed ``encoders.<modality>.``)
                        and every head (``heads.<modality>.``); no pickle
    config.json         {"model": MultimodalModel.config(), "vmfmir_version", "environment" (the
                        versions it was trained with, :mod:`vmfmir_cli.provenance`), "hash": "sha256:<hex of
                        model.safetensors>", **extra, "config_hash": "sha256:<hex of the rest of
                        config.json as canonical JSON>"}

Loading a run never trusts its files blindly: the weights must match ``hash``, the config must match
``config_hash`` (a hand-edited config is refused unless ``VMFMIR_ALLOW_EDITED_RUN=1``), and every
encoder config is checked against its encoder's schema and permissions
(:mod:`vmfmir_cli.encoders.safety`) before anything is built. The two files are written one after
the other (each atomically); a crash between them leaves a pair whose ``hash`` does not match, which
loading refuses with one line, never a silently mixed model.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from vmfmir_cli._version import __version__
from vmfmir_cli.errors import CheckpointError, ConfigError, PluginError
from vmfmir_cli.provenance import environment
from vmfmir_cli.model.multimodal import MultimodalModel
from vmfmir_cli.utils_io import write_bytes, write_json

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
#: set to 1 to load a run whose config.json was edited by hand (its config_hash no longer matches)
ALLOW_EDITED_ENV = "VMFMIR_ALLOW_EDITED_RUN"


def _to_bytes(tensors: Mapping[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    return save(plain, metadata={"format": "pt", "vmfmir_version": __version__})


def sha256_hex(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def config_digest(config: Mapping[str, Any]) -> str:
    """sha256 of ``config`` minus its ``config_hash``, as canonical JSON (sorted keys, no spaces)."""
    rest = {k: v for k, v in config.items() if k != "config_hash"}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return sha256_hex(text.encode("utf-8"))


def check_config_hash(config: Mapping[str, Any], path: Path) -> None:
    """CheckpointError when ``config`` is not what vmfmir wrote (unless ALLOW_EDITED_ENV is set)."""
    if os.environ.get(ALLOW_EDITED_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return
    expected = config.get("config_hash")
    if expected == config_digest(config):
        return
    what = "has no config_hash" if not expected else "does not match its config_hash"
    raise CheckpointError(
        f"{path} {what}: it was edited after vmfmir wrote it (or is damaged), and a run is only loaded as "
        f"written. Restore the file or retrain; if you edited it on purpose, run again with {ALLOW_EDITED_ENV}=1"
    )


def save_model(model: MultimodalModel, run_dir: str | Path, extra: Optional[Mapping[str, Any]] = None) -> dict:
    """Write ``run_dir/model.safetensors`` then ``run_dir/config.json`` (both atomically); return the config."""
    run_dir = Path(run_dir)
    data = _to_bytes(model.state_dict_for_saving())
    config = {"model": model.config(), "vmfmir_version": __version__, "environment": environment(),
              "hash": sha256_hex(data)}
    for key, value in (extra or {}).items():
        if key in config:
            raise ConfigError(f"save_model: extra key {key!r} would overwrite a reserved config key")
        config[key] = value
    config["config_hash"] = config_digest(config)
    write_bytes(run_dir / WEIGHTS_FILE, data)
    write_json(run_dir / CONFIG_FILE, config)
    return config


def read_model_config(run_dir: str | Path) -> dict:
    """``run_dir/config.json`` as a dict, with CheckpointError for a missing or unreadable file."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"no trained model at {run_dir}: train one with `vmfmir train` or point --run at a run")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {run_dir} is not a finished run (train it, or pick another run)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); the run is corrupt, retrain it") from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise CheckpointError(f"{path} has no 'model' section; it was not written by vmfmir train")
    check_config_hash(config, path)
    return config


def load_model(run_dir: str | Path, map_location: str | torch.device = "cpu") -> tuple[MultimodalModel, dict]:
    """Rebuild the model saved by :func:`save_model` (in eval mode) and return it with its config."""
    from safetensors.torch import load

    run_dir = Path(run_dir)
    config = read_model_config(run_dir)
    weights = run_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing: the run is incomplete; retrain it or restore the file")
    data = weights.read_bytes()
    expected = config.get("hash")
    if expected and sha256_hex(data) != expected:
        raise CheckpointError(
            f"{weights} does not match the hash in {run_dir / CONFIG_FILE} (corrupt or replaced); "
            "restore the original file or retrain"
        )
    try:
        model = MultimodalModel.from_config(config["model"])
    except PluginError as exc:
        raise CheckpointError(f"cannot load {run_dir}: {exc}") from None
    try:
        tensors = load(data)
    except Exception as exc:
        raise CheckpointError(f"{weights} is not a valid safetensors file ({exc})") from None
    model.load_saved_state(tensors)
    model.to(map_location)
    model.eval()
    return model, config


__all__ = [
    "ALLOW_EDITED_ENV",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "check_config_hash",
    "config_digest",
    "load_model",
    "read_model_config",
    "save_model",
    "sha256_hex",
]
