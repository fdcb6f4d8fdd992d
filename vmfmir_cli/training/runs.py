"""Run folders: naming, the ``runs/latest`` pointer, resolving a run argument, ``metrics.jsonl``.

``runs/latest`` is a relative symlink to the newest run (replaced atomically). Platforms without
symlinks get the same information in the text file ``runs/LATEST`` (the run's folder name), which is
written in every case; readers call :func:`resolve_run_dir`, which understands both.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping, Optional

from vmfmir_cli.errors import CheckpointError
from vmfmir_cli.utils_io import json_safe, write_text

METRICS_FILE = "metrics.jsonl"
LATEST_LINK = "latest"
LATEST_FILE = "LATEST"


def default_run_name(loss: str, now: Optional[float] = None) -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"-{loss}"


def new_run_dir(out: str | Path, name: str) -> Path:
    """``out/name`` (``out/name-2``, ``-3``, ... if taken), created."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    candidate, n = out / name, 1
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1
            candidate = out / f"{name}-{n}"


def set_latest(run_dir: str | Path) -> None:
    """Point ``<runs>/latest`` (symlink) and ``<runs>/LATEST`` (text file) at ``run_dir``."""
    run_dir = Path(run_dir)
    parent = run_dir.parent
    write_text(parent / LATEST_FILE, run_dir.name + "\n")
    link = parent / LATEST_LINK
    if link.exists() and not link.is_symlink():
        return  # a real folder named "latest": leave it alone, LATEST still points to the run
    tmp = parent / f".{LATEST_LINK}.{os.getpid()}.tmp"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(run_dir.name, tmp, target_is_directory=True)
        os.replace(tmp, link)
    except (OSError, NotImplementedError):  # no symlinks here (e.g. Windows without privilege)
        try:
            if tmp.is_symlink():
                tmp.unlink()
        except OSError:
            pass


def resolve_run_dir(path: str | Path) -> Path:
    """A run folder from what a user typed: a run folder, ``runs/latest`` (symlink or the
    ``LATEST`` file beside it), or a runs folder (its latest run)."""
    path = Path(path).expanduser()
    if path.is_dir() and not _is_runs_root(path):
        return path.resolve()
    root, wants_latest = (path.parent, True) if path.name == LATEST_LINK else (path, _is_runs_root(path))
    if wants_latest:
        link = root / LATEST_LINK
        if link.is_symlink() and link.exists():
            return link.resolve()
        pointer = root / LATEST_FILE
        if pointer.is_file():
            name = pointer.read_text(encoding="utf-8").strip()
            if name and (root / name).is_dir():
                return (root / name).resolve()
        raise CheckpointError(f"no latest run in {root}: train one with `vmfmir train` or name a run folder")
    raise CheckpointError(f"run folder {path} not found: train one with `vmfmir train` or name a run folder")


class MetricsLog:
    """Append-only ``metrics.jsonl`` (one JSON object per line, flushed per row)."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def truncate_after(self, step: int) -> None:
        """Keep the rows of steps <= ``step`` (a resumed run rewrites what came after)."""
        if not self.enabled or not self.path.exists():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill
            if int(row.get("step", 0)) <= step:
                keep.append(json.dumps(row))
        write_text(self.path, "".join(line + "\n" for line in keep))

    def write(self, row: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(json_safe(row)) + "\n")
                fh.flush()
        except OSError as exc:
            if exc.filename is None:  # a full disk: name the file
                raise OSError(exc.errno, exc.strerror, str(self.path)) from None
            raise


def _is_runs_root(path: Path) -> bool:
    return (path / LATEST_FILE).is_file() or (path / LATEST_LINK).is_symlink()


__all__ = ["LATEST_FILE", "LATEST_LINK", "METRICS_FILE", "MetricsLog", "default_run_name", "new_run_dir", "resolve_run_dir", "set_latest"]
