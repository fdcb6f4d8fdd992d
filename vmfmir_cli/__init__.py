"""vmfmir: probabilistic multimodal music retrieval on the hypersphere.

Every content item (audio, image, text) is encoded as a von Mises-Fisher distribution.
The public API is imported lazily so that ``import vmfmir_cli`` (and ``vmfmir --help``) does not
import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from vmfmir_cli._version import __version__

_LAZY = {
    "VonMisesFisher": "vmfmir_cli.engine.vmf",
    "fuse": "vmfmir_cli.engine.vmf",
    "spherical_sliced_wasserstein": "vmfmir_cli.engine.ssw",
    "score": "vmfmir_cli.engine.scores",
    "Encoder": "vmfmir_cli.encoders.base",
    "VMFHead": "vmfmir_cli.encoders.head",
    "hookimpl": "vmfmir_cli.plugins.hookspecs",
    "hookspec": "vmfmir_cli.plugins.hookspecs",
    "VmfmirError": "vmfmir_cli.errors",
    "DataError": "vmfmir_cli.errors",
    "PluginError": "vmfmir_cli.errors",
    "CheckpointError": "vmfmir_cli.errors",
    "ConfigError": "vmfmir_cli.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vmfmir_cli' has no attribute {name!r}")
