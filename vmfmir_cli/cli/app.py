"""The ``vmfmir`` Typer application.

Each command lives in its own module of this package and exposes ``register(app)``. Command modules
import torch and the library lazily, inside the command body, so ``vmfmir --help`` and shell
completion stay fast and never import torch.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Annotated, Optional

import typer

from vmfmir_cli._version import __version__

COMMAND_MODULES = ("prepare", "train", "embed", "query", "eval", "plugins")

app = typer.Typer(
    name="vmfmir",
    help=(
        "Probabilistic multimodal music retrieval. Every audio clip, score image and text becomes a "
        "von Mises-Fisher distribution (direction mu, concentration kappa) on the hypersphere.\n\n"
        "Pipeline: vmfmir prepare -> vmfmir train -> vmfmir embed -> vmfmir query / vmfmir eval."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"vmfmir {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Probabilistic multimodal music retrieval on the hypersphere."""


for _name in COMMAND_MODULES:
    _qualified = f"vmfmir_cli.cli.{_name}_cmd"
    if importlib.util.find_spec(_qualified) is not None:
        importlib.import_module(_qualified).register(app)


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
