"""Everything a run builds before its first optimiser step: :func:`prepare_run` -> :class:`RunParts`.

In order: the precision and determinism switches; when resuming, the checkpoint and the check that
only :data:`~vmfmir_cli.training.config.RESUMABLE_KEYS` changed; the encoders (resolved before any
data or weights are read, so a wrong encoder id fails at once); the dataset and the batch plan; the
model (built and its preprocessing fitted on rank 0, rebuilt from rank 0's config on the others, or
restored from the checkpoint); the training module (with InfoNCE's learned logit scale, and kappa
frozen for InfoNCE), DDP, the optimiser; and the train / val datasets with their collator.

The loop that uses these parts is :mod:`vmfmir_cli.training.trainer`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from vmfmir_cli.errors import CheckpointError, ConfigError
from vmfmir_cli.training import checkpoint as ckpt_io
from vmfmir_cli.training.build import (
    audio_rate,
    build_model,
    kappa_parameters,
    make_optimizer,
    resolve_encoders,
    use_bf16,
)
from vmfmir_cli.training.config import RESUMABLE_KEYS, TrainConfig, differences
from vmfmir_cli.training.data import (
    BatchCollator,
    BatchPlan,
    build_datasets,
    fit_inputs,
    group_label,
    load_training_data,
    mix_seed,
    TrainingData,
    plan_batches,
)
from vmfmir_cli.training.distributed import CenterSync, DistInfo, PackedGather, broadcast_object
from vmfmir_cli.training.module import TrainModule


@dataclass
class RunParts:
    """What :func:`prepare_run` built; the trainer keeps each part as an attribute."""

    bf16: bool
    checkpoint: Optional[ckpt_io.Checkpoint]  # the one resumed from, or None for a new run
    data: TrainingData
    plan: BatchPlan
    total_steps: int
    modalities: list[str]
    model: Any  # vmfmir_cli.model.MultimodalModel, on the run's device, in train mode
    module: TrainModule
    ddp: torch.nn.Module  # the module wrapped in DistributedDataParallel, or the module itself
    gather: PackedGather
    optimizer: torch.optim.Optimizer
    trainable: list[torch.nn.Parameter]
    train_set: Any
    val_set: Any
    collator: BatchCollator
    batch_labels: Optional[list[str]] = None  # each train item's batch_group value (None: random batches)


def prepare_run(
    cfg: TrainConfig, device: torch.device, info: DistInfo, resume_dir: Optional[Path] = None
) -> RunParts:
    """Every check and every build step of a run, before the first optimiser step."""
    bf16 = use_bf16(cfg.precision, device)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    checkpoint = None
    if resume_dir is not None:
        problems: list[str] = []
        checkpoint = ckpt_io.find_checkpoint(resume_dir, problems)
        if checkpoint is None:
            raise ckpt_io.no_checkpoint_error(resume_dir, problems)
        saved = TrainConfig.from_saved(checkpoint.state["config"])
        changed = [k for k in differences(saved, cfg) if k not in RESUMABLE_KEYS]
        if changed:
            raise ConfigError(f"cannot change {', '.join(changed)} when resuming {resume_dir}")
    # checks that need neither data nor weights
    specs = None
    if checkpoint is None:
        specs = resolve_encoders(cfg, [m for m in cfg.modalities])
    data = load_training_data(cfg.data, cfg.modalities)
    if checkpoint is not None:
        trained = list(checkpoint.state["model_config"]["encoders"])
        if sorted(trained) != sorted(data.modalities):
            raise CheckpointError(
                f"the run trains {', '.join(trained)} but the dataset at {cfg.data} gives {', '.join(data.modalities)}"
            )
    elif data.dropped:
        specs = {m: s for m, s in specs.items() if m in data.modalities}
    plan = plan_batches(len(data.train), cfg.batch_size, info.world_size)
    batch_labels = None
    if cfg.batch_group:
        batch_labels = [group_label(it, cfg.batch_group) for it in data.train]
        if not any(batch_labels):
            raise ConfigError(
                f"batch_group {cfg.batch_group!r}: no training item has this field in its metadata or its captions' "
                "facts; name one it has (e.g. collection for the music21 benchmark) or leave batch_group empty"
            )
    epochs_total = cfg.epochs * plan.steps_per_epoch
    total_steps = min(epochs_total, cfg.max_steps) if cfg.max_steps else epochs_total
    modalities = list(data.modalities)

    # the model: built (and its preprocessing fitted) on rank 0; the other ranks rebuild it from
    # rank 0's config and DDP copies rank 0's initial weights to them
    from vmfmir_cli.model import MultimodalModel

    sample_rate = int(data.info.get("sample_rate", 16000))
    torch.manual_seed(mix_seed(cfg.seed, 0x5EED))
    if checkpoint is None:
        model, model_config = None, None
        if info.is_main:
            raws = {m: fit_inputs(data.train, m, sample_rate, captions=cfg.captions) for m in specs}
            model = build_model(specs, cfg, sample_rate, fit_raws=raws)
            model_config = model.config()
        model_config = broadcast_object(model_config, info)
        if model is None:
            model = MultimodalModel.from_config(model_config)
    else:
        model = MultimodalModel.from_config(checkpoint.state["model_config"])
        model.load_saved_state(checkpoint.model_tensors)
    model = model.to(device)
    model.train()
    logit_scale = cfg.logit_scale_init if cfg.loss == "infonce" else None
    center_sync = CenterSync(info, model.modalities, model.embed_dim, device) if info.enabled and model.head_center else None
    module = TrainModule(model, logit_scale, center_sync).to(device)
    if cfg.loss == "infonce":
        for p in kappa_parameters(model):
            p.requires_grad_(False)
    if checkpoint is not None and module.logit_scale is not None:
        with torch.no_grad():
            module.logit_scale.copy_(checkpoint.training_tensors["loss.logit_scale"])
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(
            module,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=data.partial,
        )
    else:
        ddp = module
    optimizer = make_optimizer(cfg, module.named_parameters())
    trainable = [p for p in module.parameters() if p.requires_grad]

    # datasets
    rate = audio_rate(model, sample_rate)
    train_set, val_set = build_datasets(data, model, modalities, cfg, rate)
    collator = BatchCollator({m: model.encoders[m].collate for m in modalities})
    return RunParts(
        bf16=bf16,
        checkpoint=checkpoint,
        data=data,
        plan=plan,
        total_steps=total_steps,
        modalities=modalities,
        model=model,
        module=module,
        ddp=ddp,
        gather=PackedGather(info),
        optimizer=optimizer,
        trainable=trainable,
        train_set=train_set,
        val_set=val_set,
        collator=collator,
        batch_labels=batch_labels,
    )


__all__ = ["RunParts", "prepare_run"]
