"""``vmfmir prepare``: build a dataset (the built-in music21 benchmark, or the user's own manifest).

Both subcommands write the same contract, which every later command reads:
``DIR/manifest.jsonl``, ``DIR/dataset.json``, media under ``DIR/audio/`` and ``DIR/image/``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from vmfmir_cli.cli.common import err, out, plural, progress, user_errors

HELP = (
    "Build a dataset: audio, score images and texts of the same music, with train/val/test splits.\n\n"
    "[bold]music21[/]: the built-in benchmark, made offline from the scores bundled with music21. "
    "[bold]manifest[/]: your own collection from a CSV or JSONL file."
)


def _parse_pieces(value: str) -> Optional[int]:
    v = value.strip().lower()
    if v == "all":
        return None
    try:
        n = int(v)
    except ValueError:
        raise typer.BadParameter(f"expected a number or 'all', got {value!r}") from None
    if n < 1:
        raise typer.BadParameter(f"expected a positive number or 'all', got {value!r}")
    return n


class _Bar:
    """A rich progress bar driven by (done, total) callbacks, with items/s in the rate column."""

    def __init__(self, description: str, quiet: bool) -> None:
        self.progress = progress(quiet)
        self.description = description
        self.task = None
        self.t0 = time.perf_counter()
        self.first_done: Optional[int] = None

    def __enter__(self) -> "_Bar":
        self.progress.__enter__()
        self.task = self.progress.add_task(self.description, total=None, rate="")
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if self.first_done is None:
            # pieces found finished on disk (resume) do not count towards the rate
            self.first_done, self.t0 = done, now
        elapsed = now - self.t0
        rate = (done - self.first_done) / elapsed if elapsed > 0 else 0.0
        self.progress.update(self.task, completed=done, total=total, rate=f"{rate:.1f}/s" if rate else "")


def register(app: typer.Typer) -> None:
    prepare_app = typer.Typer(
        name="prepare",
        help=HELP,
        no_args_is_help=True,
        rich_markup_mode="rich",
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @prepare_app.command("music21")
    def music21_cmd(
        out_dir: Annotated[
            Path, typer.Option("--out", "-o", help="Dataset folder to create (or resume).")
        ] = Path("data"),
        pieces: Annotated[
            str,
            typer.Option(
                "--pieces",
                "-n",
                help="How many pieces to keep, sampled evenly across collections with --seed, or 'all' "
                "(about 15,000). Skipped pieces are replaced by the next ones.",
            ),
        ] = "2000",
        variants: Annotated[
            int,
            typer.Option(
                "--variants",
                "-k",
                min=1,
                max=8,
                help="Performances per piece (instrument and tempo differ; they share the score image).",
            ),
        ] = 2,
        bars: Annotated[
            int, typer.Option("--bars", min=1, max=32, help="Excerpt length in bars (a pickup bar is not counted).")
        ] = 4,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the sample, the performances, texts and splits.")] = 0,
        workers: Annotated[
            Optional[int], typer.Option("--workers", "-j", min=1, help="Worker processes (default: all cores).")
        ] = None,
        collections: Annotated[
            Optional[str],
            typer.Option(
                "--collections",
                help="Comma-separated collection keys to sample from, e.g. essen,oneills,bach (default: all).",
            ),
        ] = None,
        sample_rate: Annotated[
            int, typer.Option("--sample-rate", min=4000, max=96000, help="Audio sample rate in Hz.")
        ] = 16000,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        """Build the music21 benchmark offline: each item is a piece excerpt as audio, score image and text.

        Scores come from the corpus bundled with music21 (Essen folk songs, O'Neill's, Aird's and Ryan's tunes, Bach chorales, Palestrina, ...). The excerpt (the first --bars bars) is engraved with verovio (grayscale PNG, 256 px high) and synthesised from MIDI with the TimGM6mb General MIDI SoundFont (mono FLAC) in --variants performances that differ in instrument and tempo; the texts describe the piece and the performance. Splits are 80/10/10 by piece.

        Rerunning with the same options resumes: finished pieces are kept.
        """
        n_pieces = _parse_pieces(pieces)
        with user_errors():
            from vmfmir_cli.data.recipes.music21 import Music21Options, build_music21_benchmark

            opts = Music21Options(
                out=out_dir,
                pieces=n_pieces,
                variants=variants,
                bars=bars,
                seed=seed,
                workers=workers,
                sample_rate=sample_rate,
                collections=tuple(c.strip() for c in collections.split(",") if c.strip()) if collections else None,
            )
            from vmfmir_cli.locks import folder_lock

            with folder_lock(out_dir, "dataset", "vmfmir prepare music21"), _Bar("rendering pieces", quiet or as_json) as bar:
                summary = build_music21_benchmark(opts, on_progress=bar)
        if as_json:
            typer.echo(json.dumps(summary.to_json(), indent=2, ensure_ascii=False))
            return
        _print_music21_summary(summary)

    @prepare_app.command("manifest")
    def manifest_cmd(
        file: Annotated[
            Path,
            typer.Argument(
                help="CSV or JSONL file: one row per item with id, any of audio/image/text, optional group, split, meta."
            ),
        ],
        out_dir: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to create.")] = Path("data"),
        sample_rate: Annotated[
            int, typer.Option("--sample-rate", min=4000, max=96000, help="Audio is resampled to this rate (Hz).")
        ] = 16000,
        skip_invalid: Annotated[
            bool,
            typer.Option(
                "--skip-invalid",
                help="Import the valid rows and write a report of the invalid ones (DIR/skipped.jsonl) instead of stopping.",
            ),
        ] = False,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the 80/10/10 split of rows without a split.")] = 0,
        name: Annotated[
            Optional[str], typer.Option("--name", help="Dataset name (default: the file name).")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        """Import your own collection from a CSV or JSONL manifest.

        Columns: [bold]id[/] (unique), [bold]audio[/] and [bold]image[/] (paths relative to FILE; WAV, FLAC, OGG, MP3 / PNG, JPEG, WebP), [bold]text[/] (the text itself, or a .txt file), optional [bold]group[/] (items of a group never straddle splits), [bold]split[/] (train, val, test; otherwise 80/10/10 by group) and [bold]meta[/] (a JSON object).

        Every row is checked first; all problems are reported with file and line. Audio is decoded, mixed to mono and resampled to --sample-rate (FLAC, full length); images are stored as PNG.
        """
        with user_errors():
            from vmfmir_cli.data.recipes.manifest import (
                ManifestOptions,
                ManifestValidationError,
                import_manifest,
            )

            opts = ManifestOptions(
                file=file, out=out_dir, sample_rate=sample_rate, skip_invalid=skip_invalid, seed=seed, name=name
            )
            try:
                with _Bar("importing rows", quiet or as_json) as bar:
                    summary = import_manifest(opts, on_progress=bar)
            except ManifestValidationError as exc:
                _print_problems([str(p) for p in exc.problems])
                raise
        if summary.problems:
            _print_problems(summary.problems, skipped=True)
        if as_json:
            typer.echo(json.dumps(summary.to_json(), indent=2, ensure_ascii=False))
            return
        _print_manifest_summary(summary)

    app.add_typer(prepare_app, name="prepare", help=HELP)


def _print_problems(problems: list[str], skipped: bool = False, limit: int = 50) -> None:
    from rich.markup import escape

    for line in problems[:limit]:
        err.print(f"[yellow]{'skipped' if skipped else 'invalid'}:[/] {escape(line)}", highlight=False)
    if len(problems) > limit:
        err.print(f"[yellow]... and {len(problems) - limit} more[/]")


def _print_music21_summary(summary) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"music21 benchmark in {escape(summary.out)}", title_justify="left")
    table.add_column("collection")
    table.add_column("kept", justify="right")
    table.add_column("skipped", justify="right")
    table.add_column("why skipped")
    for key, c in sorted(summary.collections.items(), key=lambda kv: -kv[1]["kept"]):
        why = ", ".join(f"{r.replace('_', ' ')} {n}" for r, n in sorted(c["reasons"].items()))
        table.add_row(escape(key), str(c["kept"]), str(c["skipped"]), escape(why))
    out.print(table)
    s = summary.splits
    out.print(
        f"{plural(summary.items, 'item')} from {plural(summary.pieces_kept, 'piece')} ({summary.pieces_skipped} skipped, "
        f"{summary.pieces_reused} reused from an earlier run) in {summary.seconds:.0f} s; "
        f"train {s['train']}, val {s['val']}, test {s['test']}",
        highlight=False,
    )
    for ex in summary.examples[:2]:
        out.print(f"[dim]{escape(ex['id'])}:[/] {escape(ex['text'])}", highlight=False)


def _print_manifest_summary(summary) -> None:
    from rich.markup import escape

    s, m = summary.splits, summary.modalities
    out.print(
        f"{plural(summary.items, 'item')} in {escape(summary.out)} (train {s['train']}, val {s['val']}, test {s['test']}; "
        f"audio {m['audio']}, image {m['image']}, text {m['text']}) in {summary.seconds:.1f} s",
        highlight=False,
    )
    if summary.skipped_rows:
        out.print(
            f"{plural(summary.skipped_rows, 'invalid row')} skipped; report: {escape(summary.report or '')}", highlight=False
        )
