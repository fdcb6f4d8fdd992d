"""Training: the loop (callbacks, no printing), the checkpoint store (safetensors) and the DDP glue.

Python API::

    from vmfmir_cli.training import TrainConfig, load_config, train
    run_dir = train(load_config("examples/proposed.toml", overrides={"epochs": 3}))

Modules: ``config`` (TrainConfig, TOML + flags), ``trainer`` (``train``, ``Callback``), ``setup``
(what a run builds before its first step), ``objective``
(the three losses on a batch), ``data`` (deterministic batches), ``validation`` (val MRR),
``checkpoint`` (atomic safetensors + JSON checkpoints), ``distributed`` (torchrun / DDP),
``runs`` (run folders and ``runs/latest``), ``synthetic`` (a tiny dataset for tests).
Attributes are imported lazily, so ``import vmfmir_cli.training`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TrainConfig": "vmfmir_cli.training.config",
    "load_config": "vmfmir_cli.training.config",
    "train": "vmfmir_cli.training.trainer",
    "resume_config": "vmfmir_cli.training.trainer",
    "Callback": "vmfmir_cli.training.trainer",
    "NonFiniteLossError": "vmfmir_cli.training.trainer",
    "resolve_run_dir": "vmfmir_cli.training.runs",
    "find_checkpoint": "vmfmir_cli.training.checkpoint",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vmfmir_cli.training' has no attribute {name!r}")
