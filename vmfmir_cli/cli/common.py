"""Shared CLI plumbing: consoles, the user-error convention, progress bars.

Convention: library code raises :class:`vmfmir_cli.errors.VmfmirError`; commands run their work
inside ``with user_errors():`` which prints one red line on stderr and exits with code 1 (so do
OSErrors of a read-only or full disk, see :data:`vmfmir_cli.utils_io.DISK_ERRNOS`).
Progress and diagnostics go to stderr, results to stdout.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from vmfmir_cli.errors import VmfmirError

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(message: str) -> None:
    """Print one red error line on stderr and exit with code 1."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(1)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn VmfmirError (a user mistake) into one line on stderr and exit code 1."""
    try:
        yield
    except VmfmirError as exc:
        fail(_escape(str(exc)))
    except OSError as exc:  # a read-only or full disk, a file in the way: the machine, not a bug
        from vmfmir_cli.utils_io import DISK_ERRNOS, describe_os_error

        if exc.errno not in DISK_ERRNOS:
            raise
        fail(_escape(describe_os_error(exc)))
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 item``, ``2 items`` (``many``: an irregular plural)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def progress(quiet: bool = False, transient: bool = False) -> Progress:
    """A rich progress display on stderr with rate and ETA (disabled when ``quiet``)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}", justify="right"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err,
        disable=quiet,
        transient=transient,
    )


__all__ = ["out", "err", "fail", "plural", "user_errors", "progress"]
