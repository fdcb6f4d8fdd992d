"""Training callbacks: how the trainer reports progress (the library never prints).

Torch-free, so a command can subclass :class:`Callback` at import time.
"""

from __future__ import annotations

from pathlib import Path


class Callback:
    """Hooks the trainer calls on rank 0; override what you need (all are no-ops)."""

    def on_train_start(self, info: dict) -> None:
        """``info``: run_dir, resumed, start_step, total_steps, steps_per_epoch, epochs, global_batch,
        modalities, encoders, loss, device, precision, world_size, train_items, val_items."""

    def on_epoch_start(self, epoch: int, info: dict) -> None:
        """Before the first batch of ``epoch`` (0-based)."""

    def on_step(self, record: dict) -> None:
        """After every optimiser step: step, epoch, loss terms, kappa per modality, lr, items_per_s,
        ``logged`` (whether the record went to metrics.jsonl)."""

    def on_validation(self, record: dict) -> None:
        """After validation: step, epoch, mrr, pairs, kappa, best."""

    def on_checkpoint(self, step: int, path: Path) -> None:
        """After a checkpoint was written."""

    def on_message(self, text: str) -> None:
        """A notice for the user (a dropped modality, a reduced batch, ...)."""

    def on_train_end(self, summary: dict) -> None:
        """At the end: run_dir, steps, best_mrr, best_step, final_mrr, seconds."""


__all__ = ["Callback"]
