"""What software made a file: the versions a dataset or a run was written with.

Two runs of the same code, config and seed on the same data reproduced each other bit for bit on one
machine, but not across environments (measured once: the music21 benchmark's proposed run, seed 0,
moved its audio R-AUROC from 0.645 to 0.547 on a fresh machine and virtual environment with the
code of the first run, README). The likely causes, package versions (of the renderers or of the
arithmetic) and the CPU's vector instructions or thread count, were not recorded then, so
``dataset.json`` and a run's ``config.json`` record an ``environment``: Python, the platform and
the versions of the packages that matter, read from the installed distributions' metadata (nothing
is imported for it; a package that is not installed is ``null``), and, where torch is already
loaded (always in training), its full version string (with the build tag, e.g. ``+cu130``), the
CPU capability its kernels dispatch to and its thread count.
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
    """``{"python", "platform", "packages": {name: version or None}, "torch": {"version",
    "cpu_capability", "threads"}}`` for :data:`CORE_PACKAGES` plus ``packages`` (in that order,
    each once); ``torch`` only where torch is imported already."""
    if isinstance(packages, str):
        raise TypeError(f"packages must be a sequence of distribution names, not the string {packages!r}")
    names = list(dict.fromkeys([*CORE_PACKAGES, *packages]))
    env = {
        "python": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine()}",
        "packages": {name: package_version(name) for name in names},
    }
    torch = sys.modules.get("torch")
    if torch is not None:  # the float results of CPU kernels can depend on all three
        env["torch"] = {
            "version": str(torch.__version__),
            "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),  # e.g. AVX2, AVX512
            "threads": int(torch.get_num_threads()),
        }
    return env


__all__ = ["CORE_PACKAGES", "environment", "package_version"]
