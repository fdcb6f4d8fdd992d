"""Atomic file writes: a killed process never leaves a half-written file behind.

Every file vmfmir writes (manifests, checkpoints, indexes, configs) goes through these helpers:
the content is written to a temporary file in the destination folder, flushed and fsync'ed, then
renamed over the destination (``os.replace`` is atomic on POSIX and Windows). A read-only or
full disk is a :class:`~vmfmir_cli.errors.WriteError` (one line for the user), never a half file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional

from vmfmir_cli.errors import WriteError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed to ``path``.

    A read-only file system, a full disk or a file in the way becomes a
    :class:`~vmfmir_cli.errors.WriteError` naming ``path`` and the cause; ``path`` keeps its old
    content and no temporary file is left behind.
    """
    path = Path(path)
    tmp_path: Optional[Path] = None
    try:
        if path.is_dir():
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.errno not in DISK_ERRNOS:
            raise
        raise WriteError(describe_os_error(exc, path, target=path)) from None
    finally:
        if tmp_path is not None and tmp_path.exists():
            with contextlib.suppress(OSError):
                tmp_path.unlink()


def ensure_writable(path: str | os.PathLike, kind: str = "file") -> None:
    """Check, before any long work, that ``path`` (a "file" or a "folder") can be written.

    Nothing is created: a temporary file is made and removed in the nearest existing folder.
    WriteError (one line naming the path and the cause) when it cannot be written.
    """
    path = Path(path).expanduser()
    if kind == "file" and path.is_dir():
        raise WriteError(f"{path} is a folder; give the name of a file to write")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise WriteError(f"{path} is a file, not a folder; choose another path (or remove the file)")
    probe = path.parent if kind == "file" else path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise WriteError(f"cannot write {path}: {probe} is a file, not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".vmfmir-probe-", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise WriteError(describe_os_error(exc, path, target=path)) from None


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where the platform tells it (Linux:
    ``/proc/self/status``). Elsewhere it is set and put back under a lock, so that two threads of
    this package cannot leave it at the temporary value."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def json_safe(obj: Any) -> Any:
    """``obj`` ready for JSON, recursively: a one-element tensor becomes its number and every NaN /
    infinite float None (JSON has no NaN)."""
    if isinstance(obj, Mapping):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and hasattr(obj, "numel"):  # a tensor (torch is not imported here)
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


# --------------------------------------------------------------------------------------------------
# Disk errors as one line (the CLI prints them; a full disk is not a bug)
# --------------------------------------------------------------------------------------------------

_CAUSES = {
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "the disk is full",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EEXIST: "a file is in the way",
    errno.ENOTDIR: "a file is in the way of a folder",
    errno.EISDIR: "it is a folder, not a file",
}
if hasattr(errno, "EDQUOT"):
    _CAUSES[errno.EDQUOT] = "the disk quota is exhausted"
#: OSError numbers that come from the machine or the user's paths, not from a bug
DISK_ERRNOS = frozenset(_CAUSES)


def describe_os_error(exc: OSError, path: Optional[str | os.PathLike] = None, target: Optional[str | os.PathLike] = None) -> str:
    """``cannot write PATH: the disk is full (No space left on device)``; ``target`` (the file the
    user knows) wins over the temporary file the error may name."""
    where = target or exc.filename or path or "a file"
    cause = _CAUSES.get(exc.errno or 0)
    detail = exc.strerror or str(exc)
    reason = f"{cause} ({detail})" if cause else detail
    return f"cannot write {where}: {reason}"


__all__ = ["DISK_ERRNOS", "atomic_path", "current_umask", "describe_os_error", "ensure_writable", "json_safe", "write_bytes", "write_text", "write_json", "write_jsonl", "read_jsonl"]
