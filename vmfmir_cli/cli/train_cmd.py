"""``vmfmir train``: train one encoder per modality plus the shared vMF heads.

The command parses options into a :class:`~vmfmir_cli.training.config.TrainConfig`, calls
:func:`vmfmir_cli.training.train` and renders its callback events as a rich progress display on
stderr. torch is imported inside the command only.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from vmfmir_cli.cli.common import err, fail, out, user_errors
from vmfmir_cli.training.callbacks import Callback

HELP = """Train the encoders and vMF heads so the vMFs of one item agree across modalities.

Reads the prepared dataset (--data, default data/), trains on its train split and validates on val after every epoch; the best validation MRR (mean over modality pairs) picks runs/<name>/model.safetensors.

Losses: [bold]proposed[/] (probabilistic contrastive MCInfoNCE + lambda * SSW alignment), [bold]baseline[/] (MCInfoNCE alone), [bold]infonce[/] (deterministic CLIP-style InfoNCE on the mean directions).

Hyper-parameters: defaults, then --config FILE.toml (see examples/*.toml), then --set KEY=VALUE, then the flags.

Multi-GPU / multi-node: torchrun --nproc-per-node N -m vmfmir_cli train ... (--batch-size is the global batch).

Resume: vmfmir train --resume \\[RUN] (default: the latest run under --out).
"""


def _split_encoders(values: Optional[list[str]]) -> Optional[dict]:
    if not values:
        return None
    encoders: dict[str, dict] = {}
    for value in values:
        modality, sep, encoder_id = value.partition("=")
        if not sep or not modality.strip() or not encoder_id.strip():
            fail(f"--encoder expects MODALITY=ID (e.g. --encoder text=text-transformer), got {value!r}")
        encoders[modality.strip()] = {"id": encoder_id.strip()}
    return encoders


def register(app: typer.Typer) -> None:
    @app.command("train", help=HELP)
    def train(
        run: Annotated[
            Optional[Path],
            typer.Argument(help="With --resume: the run to continue (default: the latest run under --out).", show_default=False),
        ] = None,
        config: Annotated[
            Optional[Path], typer.Option("--config", "-c", help="TOML config file (examples/*.toml).", show_default=False)
        ] = None,
        data: Annotated[Optional[str], typer.Option("--data", help="Prepared dataset folder (default: data).", show_default=False)] = None,
        out_dir: Annotated[Optional[str], typer.Option("--out", help="Folder of runs (default: runs).", show_default=False)] = None,
        name: Annotated[
            Optional[str], typer.Option("--name", help="Run name (default: <date>-<time>-<loss>).", show_default=False)
        ] = None,
        modalities: Annotated[
            Optional[str],
            typer.Option("--modalities", "-m", help="Comma-separated modalities to train (at least two) (default: audio,image,text).", show_default=False),
        ] = None,
        encoder: Annotated[
            Optional[list[str]],
            typer.Option("--encoder", "-e", help="MODALITY=ENCODER_ID from the plugin registry (repeatable; `vmfmir plugins` lists them).", show_default=False),
        ] = None,
        loss: Annotated[
            Optional[str], typer.Option("--loss", help="proposed | baseline | infonce (default: proposed).", show_default=False)
        ] = None,
        epochs: Annotated[Optional[int], typer.Option("--epochs", help="Epochs (default: 10).", show_default=False)] = None,
        batch_size: Annotated[
            Optional[int], typer.Option("--batch-size", "-b", help="Global batch size (split across DDP ranks) (default: 64).", show_default=False)
        ] = None,
        lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate (default: 1e-3).", show_default=False)] = None,
        dim: Annotated[Optional[int], typer.Option("--dim", help="Embedding dimension d (vMFs on S^(d-1)) (default: 128).", show_default=False)] = None,
        seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed (default: 0).", show_default=False)] = None,
        device: Annotated[
            Optional[str], typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps (default: auto).", show_default=False)
        ] = None,
        max_steps: Annotated[
            Optional[int], typer.Option("--max-steps", help="Stop after this many steps in total (0: no limit).", show_default=False)
        ] = None,
        num_workers: Annotated[
            Optional[int], typer.Option("--num-workers", help="DataLoader worker processes (default: 0).", show_default=False)
        ] = None,
        sets: Annotated[
            Optional[list[str]],
            typer.Option("--set", help="Any config key: KEY=VALUE in TOML syntax, e.g. --set ssw_lambda=0.5 (repeatable).", show_default=False),
        ] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue RUN (default: the latest run) from its last checkpoint.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display; print only the run folder.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary (run_dir, steps, best_mrr, ...).")] = False,
    ) -> None:
        flags: dict[str, Any] = {
            "data": data,
            "out": out_dir,
            "name": name,
            "modalities": modalities,
            "loss": loss,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "dim": dim,
            "seed": seed,
            "device": device,
            "max_steps": max_steps,
            "num_workers": num_workers,
            "encoders": _split_encoders(encoder),
        }
        if run is not None and not resume:
            fail(f"unexpected argument {str(run)!r}: a RUN is only given with --resume (vmfmir train --resume RUN)")
        rank = int(os.environ.get("RANK", "0"))
        quiet = quiet or rank != 0
        with user_errors():
            from vmfmir_cli.training.config import load_config, parse_assignment

            run_dir = None
            if resume:
                if config is not None:
                    fail("--config cannot be combined with --resume: a resumed run keeps its saved config")
                from vmfmir_cli.training.runs import resolve_run_dir
                from vmfmir_cli.training.trainer import resume_config

                run_dir = resolve_run_dir(run if run is not None else Path(out_dir or "runs") / "latest")
                overrides = dict(parse_assignment(s) for s in (sets or []))
                overrides.update({k: v for k, v in flags.items() if v is not None})
                cfg = resume_config(run_dir, overrides)
            else:
                cfg = load_config(config, overrides=flags, sets=sets)

            from vmfmir_cli.training.trainer import train as run_training

            display = _Display(quiet=quiet)
            try:
                result = run_training(cfg, callbacks=[display], resume=run_dir)
            except KeyboardInterrupt:
                display.close()
                where = display.info.get("run_dir")
                if where:
                    err.print(f"[yellow]interrupted[/]; continue with: vmfmir train --resume {where}", highlight=False)
                raise typer.Exit(130) from None
            finally:
                display.close()
        if rank != 0:
            return
        summary = display.summary or {"run_dir": str(result)}
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
        elif quiet:
            typer.echo(str(result))
        else:
            best = summary.get("best_mrr")
            text = f"{result}"
            if best is not None and best >= 0:
                text += f"  best val MRR {best:.4f} (step {summary.get('best_step')})"
            out.print(text, highlight=False, soft_wrap=True)


class _Display(Callback):
    """Renders trainer callbacks: a progress bar with the loss terms, mean kappa and items/s."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.summary: Optional[dict] = None
        self.progress = None
        self.task = None
        self.info: dict = {}
        self.rate: Optional[float] = None

    # the trainer calls these by name
    def on_train_start(self, info: dict) -> None:
        self.info = info
        if self.quiet:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        verb = "resuming" if info["resumed"] else "training"
        err.print(
            f"[bold]{verb}[/] {info['run_dir']}: {info['loss']} loss, {', '.join(f'{m}={e}' for m, e in info['encoders'].items())}; "
            f"{info['train_items']} train / {info['val_items']} val items, batch {info['global_batch']}, "
            f"{info['total_steps']} steps, {info['device']} ({info['precision']})"
            + (f", {info['world_size']} processes" if info["world_size"] > 1 else ""),
            highlight=False,
        )
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[terms]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=err,
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "epoch", total=info["total_steps"], completed=info["start_step"], terms="", rate=""
        )
        self._epoch_desc(0)

    def _epoch_desc(self, epoch: int) -> None:
        if self.progress is not None:
            total_epochs = max(1, -(-self.info["total_steps"] // max(1, self.info["steps_per_epoch"])))
            self.progress.update(self.task, description=f"epoch {epoch + 1}/{total_epochs}")

    def on_epoch_start(self, epoch: int, info: dict) -> None:
        self._epoch_desc(epoch)

    def on_step(self, record: dict) -> None:
        if self.progress is None:
            return
        rate = record.get("items_per_s")
        if rate:
            self.rate = rate if self.rate is None else 0.9 * self.rate + 0.1 * rate
        terms = " ".join(
            f"{k} {record[k]:.3f}" for k in ("loss", "contrastive", "ssw", "infonce") if isinstance(record.get(k), float)
        )
        kappa = " ".join(f"{m[0]}:{v:.0f}" for m, v in record.get("kappa", {}).items() if v == v)
        self.progress.update(
            self.task,
            completed=record["step"],
            terms=f"{terms} | kappa {kappa}",
            rate=f"{self.rate:.1f} it/s" if self.rate else "",
        )

    def on_validation(self, record: dict) -> None:
        if self.quiet:
            return
        pairs = " ".join(f"{k} {v['mrr']:.3f}" for k, v in record["pairs"].items())
        mark = " [green](best)[/]" if record["best"] else ""
        err.print(f"val step {record['step']}: MRR {record['mrr']:.4f}{mark}  [dim]{pairs}[/]", highlight=False)

    def on_checkpoint(self, step: int, path) -> None:
        pass

    def on_message(self, text: str) -> None:
        if not self.quiet:
            from rich.markup import escape

            err.print(f"[yellow]note:[/] {escape(text)}", highlight=False)

    def on_train_end(self, summary: dict) -> None:
        self.summary = summary
        self.close()
        if not self.quiet:
            err.print(
                f"done in {time.strftime('%H:%M:%S', time.gmtime(summary['seconds']))}: {summary['steps']} steps, "
                f"best val MRR {summary['best_mrr']:.4f} at step {summary['best_step']}",
                highlight=False,
            )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
