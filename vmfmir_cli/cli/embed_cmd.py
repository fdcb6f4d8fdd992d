"""``vmfmir embed``: encode a collection into an index of vMF distributions (mu, kappa)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from vmfmir_cli.cli.common import err, fail, out, plural, progress, user_errors

SPLITS = ("train", "val", "test", "all")


def register(app: typer.Typer) -> None:
    @app.command("embed")
    def embed(
        paths: Annotated[
            Optional[list[str]],
            typer.Argument(help="More files, folders or glob patterns to embed (with --files).", show_default=False),
        ] = None,
        run: Annotated[str, typer.Option("--run", help="Trained run folder (runs/latest: the newest run).")] = "runs/latest",
        data: Annotated[
            Optional[str], typer.Option("--data", help="Prepared dataset folder with manifest.jsonl (default: data).")
        ] = None,
        split: Annotated[str, typer.Option("--split", help="Which split to embed: train, val, test or all.")] = "all",
        files: Annotated[
            Optional[list[str]],
            typer.Option(
                "--files",
                help="Embed a plain folder, file or glob of audio/image/text files instead of a dataset "
                "(repeatable; one item per file, modality by extension).",
            ),
        ] = None,
        out_dir: Annotated[str, typer.Option("--out", help="Index folder to write (updated incrementally).")] = "index",
        batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Items per forward pass.")] = 32,
        device: Annotated[str, typer.Option("--device", help="auto (CUDA when available), cpu or cuda[:N].")] = "auto",
        rebuild: Annotated[
            bool, typer.Option("--rebuild", help="Re-encode everything, replacing an index built by another model.")
        ] = False,
        skip_invalid: Annotated[
            bool,
            typer.Option("--skip-invalid", help="With --files: leave out (and count) files that do not decode instead of stopping."),
        ] = False,
        follow_symlinks: Annotated[
            bool,
            typer.Option("--follow-symlinks", help="With --files: also embed symlinks in a folder that lead out of it."),
        ] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    ) -> None:
        """Encode every item, in every modality the run was trained on, into its vMF (mu, kappa).

        Writes [bold]index/[/]: index.safetensors (per modality mu, kappa), items.jsonl (id, text, media paths, meta, content hashes) and index.json (run, model hash, dim, counts).

        Re-running on a grown or edited collection encodes only new or changed content (sha256 of the media bytes / text) and reuses the rest; an index built by another model is refused (use --rebuild or another --out).

        Examples: [bold]vmfmir embed --data data --split test[/]; [bold]vmfmir embed --files ~/music/ --out my-index[/]
        """
        file_args = list(files or []) + list(paths or [])
        if paths and not files:
            fail("extra arguments are files to embed: put --files before them (vmfmir embed --files DIR_OR_GLOB ...)")
        if (skip_invalid or follow_symlinks) and not file_args:
            fail("--skip-invalid and --follow-symlinks go with --files (a prepared dataset was checked by vmfmir prepare)")
        if file_args and data is not None:
            fail("use either --data (a prepared dataset) or --files (plain media files), not both")
        if split not in SPLITS:
            fail(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        with user_errors():
            from vmfmir_cli.index.build import embed_dataset, embed_files

            with progress(quiet=quiet or as_json, transient=False) as bar:
                task = None

                def on_progress(done: int, total: int, modality: str) -> None:
                    nonlocal task
                    if task is None:
                        task = bar.add_task("embedding", total=total, rate="")
                    elapsed = bar.tasks[task].elapsed or 0.0
                    rate = f"{done / elapsed:.1f} items/s" if elapsed > 0 else ""
                    bar.update(task, completed=done, description=f"embedding {modality}", rate=rate)

                kwargs = dict(batch_size=batch_size, device=device, rebuild=rebuild, on_progress=on_progress)
                if file_args:
                    report = embed_files(
                        run, file_args, out_dir, skip_invalid=skip_invalid, follow_symlinks=follow_symlinks, **kwargs
                    )
                else:
                    report = embed_dataset(run, data or "data", split, out_dir, **kwargs)
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2))
            return
        _print_summary(report)


def _print_summary(report) -> None:
    from rich.markup import escape

    for note in report.notes:
        err.print(f"[yellow]note:[/] {escape(note)}")
    skipped = {k: v for k, v in report.skipped.items() if v}
    if skipped:
        labels = {
            "unknown": "not audio/image/text",
            "empty": "empty text",
            "duplicate": "named twice",
            "invalid": "undecodable",
            "outside": "symlinked from outside the folder (--follow-symlinks embeds them)",
        }
        parts = []
        for key, n in sorted(skipped.items()):
            label = labels.get(key) or (f"no {key.split(':', 1)[1]} encoder in the run" if key.startswith("no_encoder:") else key)
            parts.append(f"{n} {label}")
        err.print(f"[yellow]skipped files:[/] {escape(', '.join(parts))}")
    rows = ", ".join(f"{m} {n} ({report.encoded.get(m, 0)} encoded, {report.reused.get(m, 0)} reused)" for m, n in report.rows.items())
    changes = (
        f"{report.new_items} new, {report.changed_items} changed, {report.unchanged_items} unchanged, "
        f"{report.removed_items} removed"
    )
    out.print(f"[bold green]index[/] {escape(report.out)}: {plural(report.items, 'item')}; {escape(rows)}", highlight=False)
    out.print(f"  {changes}; model {escape(report.run)} ({report.model_hash[:19]}); {report.seconds:.1f} s", highlight=False)
