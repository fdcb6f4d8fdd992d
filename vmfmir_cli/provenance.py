"""What software made a file: the versions a dataset or a run was written with.

Two runs of the same config and seed on the same data reproduce each other only where the packages
that render the media and do the arithmetic are the same versions (measured: the music21 benchmark's
proposed run, seed 0, moved its audio R-AUROC by 0.1 between two virtual environments installed a
day apart, README). So ``dataset.json`` and a run's ``config.json`` record an ``environment``:
Python, the platform and the versions of the packages that matter, read from the installed
distributions' metadata (nothing is imported for it). A package that is not installed is ``null``.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from typing import Iterable, Optional

#: the packages behind every dataset and run: arithmetic and media decoding
CORE_PACKAGES = ("torch", "torchaudio", "numpy", "pillow", "soundfile")


def package_version(name: str) -> Optional[str]:
    """The installed version of the distribution ``name``, or None where it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(packages: Iterable[str] = ()) -> dict:
    """``{"python", "platform", "packages": {name: version or None}}`` for :data:`CORE_PACKAGES`
    plus ``packages`` (in that order, each once)."""
    names = list(dict.fromkeys([*CORE_PACKAGES, *packages]))
    return {
        "python": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine()}",
        "packages": {name: package_version(name) for name in names},
    }


__all__ = ["CORE_PACKAGES", "environment", "package_version"]
