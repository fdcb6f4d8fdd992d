"""One writer at a time: an exclusive lock on a run, index or dataset folder.

``with folder_lock(path, "vmfmir train"):`` creates ``path/.vmfmir.lock`` holding the holder's pid,
host, command and start time, and holds an advisory ``flock`` on it for the duration; a second
process that wants to write the same folder gets a :class:`~vmfmir_cli.errors.BusyError` naming
the holder. A lock left by a process that died (SIGKILL, power loss) is stale: the kernel dropped
its ``flock`` (and, where ``flock`` is missing, the recorded pid no longer runs), so the next
writer takes it over without any manual clean-up. The file is removed when the lock is released.

Readers (``vmfmir query``, ``vmfmir eval``) never lock: every file is replaced atomically, so they
see either the old or the new version.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

from vmfmir_cli.errors import BusyError, WriteError
from vmfmir_cli.utils_io import describe_os_error

LOCK_FILE = ".vmfmir.lock"

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: pid files only
    fcntl = None  # type: ignore[assignment]


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return False
    return True


def read_holder(folder: str | os.PathLike) -> Optional[dict]:
    """What the lock file of ``folder`` says about its holder (None without a readable lock file)."""
    try:
        data = json.loads((Path(folder) / LOCK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _describe(holder: Optional[dict]) -> str:
    if not holder:
        return "another vmfmir process"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("started", 0) or 0)))
    return f"`{holder.get('command') or 'vmfmir'}` (pid {holder.get('pid')} on {holder.get('host')}, since {when})"


def _busy(folder: Path, what: str, holder: Optional[dict]) -> BusyError:
    return BusyError(
        f"{folder} is in use: {_describe(holder)} is writing this {what}; wait until it finishes or stop it "
        f"(a lock left by a process that died is taken over by itself: {folder / LOCK_FILE})"
    )


def _command() -> str:
    args = [os.path.basename(sys.argv[0]) if sys.argv else "python"] + sys.argv[1:4]
    return " ".join(args)[:120]


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "folder", command: Optional[str] = None) -> Iterator[Path]:
    """Hold the exclusive write lock of ``folder`` (created if missing) while the block runs."""
    folder = Path(folder)
    path = folder / LOCK_FILE
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise WriteError(f"{folder} is a file, not a folder; choose another path") from None
    except OSError as exc:
        raise WriteError(describe_os_error(exc, folder)) from None
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command or _command(), "started": time.time()}
    fd = _acquire(folder, path, what)
    try:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps(me) + "\n").encode("utf-8"))
        except OSError as exc:
            raise WriteError(describe_os_error(exc, path)) from None
        yield path
    finally:
        with contextlib.suppress(OSError):
            if _same_file(fd, path):
                path.unlink()
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _acquire(folder: Path, path: Path, what: str) -> int:
    for _ in range(50):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise WriteError(describe_os_error(exc, path)) from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise _busy(folder, what, read_holder(folder)) from None
                raise WriteError(describe_os_error(exc, path)) from None
        else:  # pragma: no cover - no flock: trust the recorded pid
            holder = read_holder(folder)
            if holder and holder.get("pid") != os.getpid() and _pid_alive(int(holder.get("pid") or 0)):
                os.close(fd)
                raise _busy(folder, what, holder)
        if _same_file(fd, path):  # not unlinked by a releasing holder in the meantime
            return fd
        os.close(fd)
    raise _busy(folder, what, read_holder(folder))  # pragma: no cover - lock churning


__all__ = ["LOCK_FILE", "folder_lock", "read_holder"]
