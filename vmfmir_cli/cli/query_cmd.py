"""``vmfmir query``: rank an index's items for an audio / image / text query (fused)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from vmfmir_cli.cli.common import out, user_errors

# kept in sync with vmfmir_cli.engine.scores.SCORE_KINDS and vmfmir_cli.index.search (a test checks);
# spelled out here so that `vmfmir --help` does not import torch
SCORES = ("elk", "kl", "bhattacharyya", "expected_cosine", "cosine")
TARGETS = ("audio", "image", "text", "all")
TEXT_WIDTH = 60


def register(app: typer.Typer) -> None:
    @app.command("query")
    def query(
        index: Annotated[str, typer.Option("--index", help="Index folder written by vmfmir embed.")] = "index",
        audio: Annotated[Optional[str], typer.Option("--audio", help="Query audio file (WAV, FLAC, OGG, MP3).")] = None,
        image: Annotated[Optional[str], typer.Option("--image", help="Query score image (PNG, JPEG, WebP).")] = None,
        text: Annotated[Optional[str], typer.Option("--text", help="Query text, e.g. 'a slow melody played on flute'.")] = None,
        target: Annotated[str, typer.Option("--target", help="Modality to rank: audio, image, text or all.")] = "audio",
        k: Annotated[int, typer.Option("-k", "--top", min=1, help="Number of results.")] = 10,
        score: Annotated[
            Optional[str],
            typer.Option(
                "--score",
                help="Distribution score: elk, kl, bhattacharyya, expected_cosine or cosine "
                "(default: the one that evaluates best, vmfmir_cli.index.search.DEFAULT_SCORE).",
                show_default=False,
            ),
        ] = None,
        weight: Annotated[
            Optional[str],
            typer.Option("--weight", help="Fusion weights per query modality, e.g. image=1.0,text=0.5 (default 1 each)."),
        ] = None,
        run: Annotated[
            Optional[str],
            typer.Option(
                "--run", help="Run whose model encodes the query (default: the run that built the index).", show_default=False
            ),
        ] = None,
        use_faiss: Annotated[
            bool,
            typer.Option("--faiss", help="Exact inner-product first stage with faiss (the faiss extra), then re-rank."),
        ] = False,
        rerank: Annotated[int, typer.Option("--rerank", min=1, help="Candidates the faiss first stage passes on.")] = 1000,
        device: Annotated[str, typer.Option("--device", help="auto (CUDA when available), cpu or cuda[:N].")] = "auto",
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON (hits, scores, query kappas).")] = False,
    ) -> None:
        """Rank the index's items for a query of any combination of --audio, --image and --text.

        Each query modality becomes a vMF; several are fused as a product of experts (natural parameters add; --weight scales each). The table shows the query's kappa per modality and fused: how certain the model is of the query.

        Scores: kl and bhattacharyya rank an item's own distribution first; elk (expected likelihood) and expected_cosine also reward confident (high-kappa) items.

        Example: [bold]vmfmir query --image score.png --text "a slow melody played on flute" -k 5[/]
        """
        with user_errors():
            from vmfmir_cli.errors import ConfigError
            from vmfmir_cli.index.search import DEFAULT_SCORE, search
            from vmfmir_cli.index.store import load_index

            if target not in TARGETS:
                raise ConfigError(f"unknown --target {target!r}; use one of {', '.join(TARGETS)}")
            if score is not None and score not in SCORES:
                raise ConfigError(f"unknown --score {score!r}; use one of {', '.join(SCORES)}")
            loaded = load_index(index)
            result = search(
                loaded,
                audio=audio,
                image=image,
                text=text,
                target=target,
                k=k,
                score=score or DEFAULT_SCORE,
                weights=weight,
                use_faiss=use_faiss,
                rerank=rerank,
                run=run,
                device=device,
            )
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
            return
        _print_result(result)


def _short(text: Optional[str], width: int = TEXT_WIDTH) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _fmt_kappa(kappa: float) -> str:
    return f"{kappa:.0f}" if kappa >= 100 else f"{kappa:.3g}"


def _tail(text: str, width: int) -> str:
    """Keep the end of a path (the file name) when it is too long."""
    return text if len(text) <= width else "…" + text[-(width - 1):]


def _display_path(path: Optional[str]) -> str:
    import os

    if not path:
        return ""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if not rel.startswith("../../") else path


def _print_result(result) -> None:
    from rich.markup import escape
    from rich.table import Table

    query = ", ".join(
        f"{m} {escape(_short(v, 40) if m == 'text' else _display_path(v))!s}" for m, v in result.query.items() if v
    )
    title = f"{result.target} items for {query} (score {result.score})"
    table = Table(title=title, title_justify="left")
    scores = [f"{h.score:.4g}" for h in result.hits]
    kappas = [_fmt_kappa(h.kappa) for h in result.hits]
    id_width = min(max([len(h.id) for h in result.hits] + [2]), 40)
    fixed = 4 + max([len(x) for x in scores] + [5]) + max([len(x) for x in kappas] + [5])
    fixed += 7 if result.target == "all" else 0
    columns = 6 + (result.target == "all")
    room = out.width - fixed - id_width - 3 * columns - 1
    if room < 30:  # a narrow terminal: shorten long ids before the text
        cut = min(id_width - 12, 30 - room) if id_width > 12 else 0
        id_width, room = id_width - cut, room + cut
    text_width = min(max(room * 3 // 5, 4), TEXT_WIDTH)
    media_width = max(room - text_width, 4)
    table.add_column("rank", justify="right", no_wrap=True)
    table.add_column("id", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    if result.target == "all":
        table.add_column("matched", no_wrap=True)
    table.add_column("kappa", justify="right", no_wrap=True)
    table.add_column("text", no_wrap=True)
    table.add_column("media", no_wrap=True)
    for hit, score_text, kappa_text in zip(result.hits, scores, kappas):
        row = [str(hit.rank), escape(_short(hit.id, id_width)), score_text]
        if result.target == "all":
            row.append(hit.modality)
        path = hit.path if hit.modality != "text" else (hit.audio or hit.image or hit.path)
        row += [kappa_text, escape(_short(hit.text, text_width)), escape(_tail(_display_path(path), media_width))]
        table.add_row(*row)
    out.print(table)
    weights = result.weights
    parts = []
    for m, kappa in result.kappa.items():
        if m == "fused":
            continue
        w = weights.get(m, 1.0)
        parts.append(f"{m} {kappa:.4g}" + (f" (weight {w:g})" if w != 1.0 else ""))
    parts.append(f"fused {result.kappa['fused']:.4g}")
    out.print(f"query kappa: {', '.join(parts)}", highlight=False)
    stage = result.first_stage
    searched = f"{result.searched} {result.target if result.target != 'all' else ''} rows".replace("  ", " ")
    if stage:
        out.print(f"[dim]faiss first stage: {result.candidates} of {searched} re-ranked[/]", highlight=False)
    else:
        out.print(f"[dim]scored {searched} exactly[/]", highlight=False)
