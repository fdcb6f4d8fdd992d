"""``vmfmir plugins``: the installed plugins, their versions and the encoders they register."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from vmfmir_cli.cli.common import out, user_errors


def register(app: typer.Typer) -> None:
    @app.command("plugins")
    def plugins(
        as_json: Annotated[
            bool, typer.Option("--json", help="Print a JSON list (name, version, package, builtin, encoders, error).")
        ] = False,
    ) -> None:
        """List plugins and the encoders (id, modality, feature dim) each one registers.

        Plugins are packages with an entry point in the [bold]vmfmir[/] group. A plugin that fails to load is reported on stderr and listed with its error.

        Environment: VMFMIR_LOAD_PLUGINS="" loads no plugin, VMFMIR_LOAD_PLUGINS=a,b only those; VMFMIR_STRICT_PLUGINS=1 makes a broken plugin an error.
        """
        with user_errors():
            from vmfmir_cli.plugins.manager import list_plugins

            rows = list_plugins()
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        _print_table(rows)


def _print_table(rows: list[dict]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="vmfmir plugins", title_justify="left")
    for column in ("plugin", "version", "encoder", "aliases", "modality", "dim"):
        table.add_column(column, justify="right" if column == "dim" else "left")
    for row in rows:
        name = escape(row["name"])
        version = escape(str(row.get("version") or "-"))
        if row.get("error"):
            table.add_row(name, version, f"[red]failed: {escape(row['error'])}[/]", "", "", "")
            continue
        if not row["encoders"]:
            table.add_row(name, version, "[dim](no encoders)[/]", "", "", "")
        for i, enc in enumerate(row["encoders"]):
            table.add_row(
                name if i == 0 else "",
                version if i == 0 else "",
                escape(enc["id"]),
                escape(", ".join(enc["aliases"])),
                enc["modality"],
                str(enc["dim"] if enc["dim"] is not None else "-"),
            )
    out.print(table)
