"""The training loop: ``train(config, callbacks) -> run_dir``.

One step: (re)seed from ``(seed, step)`` -> encode the local batch per modality -> all-gather
``mu``/``kappa`` with gradients (DDP) -> :func:`~vmfmir_cli.training.objective.training_loss` for
this rank's anchors -> check every term is finite (all ranks agree) -> backward, clip, optimiser
step with the scheduled learning rate. Each epoch ends with validation (MRR over modality pairs);
the best model is written to ``<run>/model.safetensors`` + ``config.json``, the last one to
``<run>/final/``. A checkpoint (``<run>/checkpoint/``) is written every ``checkpoint_every`` steps,
at the end of every epoch and at the end of the run.

Determinism: everything random in a step is drawn from generators seeded by ``(seed, step)`` (the
Monte Carlo draws and SSW slices, identical on every rank) and ``(seed, step, rank)`` (dropout), and
the batches are a function of ``(seed, epoch, position)``. So a run resumed from any checkpoint
repeats the uninterrupted run exactly (on CPU, bit for bit).

The library never prints: progress goes to :class:`Callback` objects (called on rank 0 only).
What a run builds before its first step (data, model, DDP, optimiser) is :mod:`vmfmir_cli.training.setup`.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch

from vmfmir_cli.errors import ConfigError, VmfmirError, WriteError
from vmfmir_cli.training import checkpoint as ckpt_io
from vmfmir_cli.training.callbacks import Callback
from vmfmir_cli.training.build import group_lr, lr_at, resolve_device
from vmfmir_cli.training.config import RESUMABLE_KEYS, TrainConfig, differences, validate
from vmfmir_cli.training.data import EpochBatchSampler, make_loader, mix_seed
from vmfmir_cli.training.distributed import (
    all_gather_nograd,
    all_reduce_mean,
    anchor_slice,
    barrier,
    broadcast_object,
    cleanup,
    env_world_size,
    init_distributed,
)
from vmfmir_cli.training.module import TrainModule
from vmfmir_cli.training.objective import term_names, training_loss
from vmfmir_cli.training.runs import METRICS_FILE, MetricsLog, default_run_name, new_run_dir, set_latest
from vmfmir_cli.training.setup import prepare_run
from vmfmir_cli.training.validation import encode_split, retrieval_metrics

FINAL_DIR = "final"


class NonFiniteLossError(VmfmirError):
    """A loss term (or the gradient) became NaN or infinite; the last good checkpoint is kept."""


# --------------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------------


def resume_config(run_dir: str | Path, overrides: Optional[Mapping[str, Any]] = None) -> TrainConfig:
    """The saved config of a run with ``overrides`` applied (only :data:`RESUMABLE_KEYS` may change)."""
    problems: list[str] = []
    found = ckpt_io.find_checkpoint(run_dir, problems)
    if found is None:
        raise ckpt_io.no_checkpoint_error(run_dir, problems)
    saved = TrainConfig.from_saved(found.state["config"], source=f"{found.path / ckpt_io.STATE_FILE}")
    config = saved.replace(**{k: v for k, v in (overrides or {}).items() if v is not None})
    changed = [k for k in differences(saved, config) if k not in RESUMABLE_KEYS]
    if changed:
        raise ConfigError(
            f"cannot change {', '.join(changed)} when resuming {run_dir} (the run was trained with other values); "
            f"only {', '.join(sorted(RESUMABLE_KEYS))} may change. Start a new run instead"
        )
    return validate(config)


def train(
    config: Optional[TrainConfig | Mapping[str, Any]] = None,
    callbacks: Sequence[Callback] = (),
    resume: Optional[str | Path] = None,
) -> Path:
    """Train a model as ``config`` says and return its run folder.

    With ``resume`` (a run folder, or ``runs/latest``), continue that run from its last checkpoint;
    ``config`` is then the saved one (``None``) or must equal it except for :data:`RESUMABLE_KEYS`
    (see :func:`resume_config`).
    """
    if resume is not None:
        from vmfmir_cli.training.runs import resolve_run_dir

        resume = resolve_run_dir(resume)
        if config is None:
            config = resume_config(resume)
    if config is None:
        config = TrainConfig()
    if not isinstance(config, TrainConfig):
        config = TrainConfig.from_dict(config)
    validate(config)
    return Trainer(config, callbacks, resume).run()


class Trainer:
    def __init__(self, config: TrainConfig, callbacks: Sequence[Callback] = (), resume: Optional[str | Path] = None):
        self.config = config
        self.callbacks = list(callbacks)
        self.resume_dir = Path(resume) if resume is not None else None

    # -- plumbing ---------------------------------------------------------------------------------
    def _emit(self, name: str, *args: Any) -> None:
        if self.dist.is_main:
            for cb in self.callbacks:
                getattr(cb, name)(*args)

    def _autocast(self):
        if self.bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> Path:
        cfg = self.config
        local_rank = int(os.environ.get("LOCAL_RANK", "0")) if env_world_size() > 1 else 0
        self.device = resolve_device(cfg.device, local_rank)
        self.dist = init_distributed(self.device.type)
        self._locks = contextlib.ExitStack()  # the run folder's write lock (rank 0), see vmfmir_cli.locks
        try:
            with self._locks:
                return self._run()
        except (OSError, WriteError) as exc:  # a read-only or full disk while training
            raise self._disk_error(exc) from None
        finally:
            cleanup(self.dist)

    def _disk_error(self, exc: Exception) -> Exception:
        from vmfmir_cli.utils_io import DISK_ERRNOS, describe_os_error

        if isinstance(exc, OSError) and exc.errno not in DISK_ERRNOS:
            return exc
        text = str(exc) if isinstance(exc, WriteError) else describe_os_error(exc)
        run_dir = getattr(self, "run_dir", None)
        found = ckpt_io.find_checkpoint(run_dir) if run_dir is not None else None
        if found is not None:
            text += (
                f"; training stopped and the last good checkpoint (step {found.step}) is kept in "
                f"{found.path}: free some space, then continue with `vmfmir train --resume {run_dir}`"
            )
        return WriteError(text)

    def _lock(self, run_dir: Path, command: str) -> None:
        if self.dist.is_main:
            from vmfmir_cli.locks import folder_lock

            self._locks.enter_context(folder_lock(run_dir, "run", command))

    def _prepare(self) -> None:
        """Every check and every build step, before the first optimiser step (see :mod:`.setup`)."""
        parts = prepare_run(self.config, self.device, self.dist, self.resume_dir)
        self.bf16, self.checkpoint, self.data, self.plan = parts.bf16, parts.checkpoint, parts.data, parts.plan
        self.total_steps, self.modalities = parts.total_steps, parts.modalities
        self.model, self.module, self.ddp, self.gather = parts.model, parts.module, parts.ddp, parts.gather
        self.optimizer, self.trainable = parts.optimizer, parts.trainable
        self.train_set, self.val_set, self.collator = parts.train_set, parts.val_set, parts.collator
        self.batch_labels = parts.batch_labels

    def _run(self) -> Path:
        cfg, info = self.config, self.dist
        started = time.perf_counter()
        if self.resume_dir is not None:  # one writer at a time: a second `train --resume` is refused
            self._lock(self.resume_dir, f"vmfmir train --resume {self.resume_dir.name}")
        self._prepare()
        ckpt = self.checkpoint

        # the run folder
        if ckpt is None:
            run_dir = None
            if info.is_main:
                run_dir = str(new_run_dir(cfg.out, cfg.name or default_run_name(cfg.loss)))
                self._lock(Path(run_dir), f"vmfmir train ({Path(run_dir).name})")
            self.run_dir = Path(broadcast_object(run_dir, info))
        else:
            self.run_dir = Path(self.resume_dir)
        self.metrics = MetricsLog(self.run_dir / METRICS_FILE, info.is_main)
        self._last_checkpoint_step = ckpt.step if ckpt is not None else 0

        if ckpt is None:
            self.step, self.epoch, self.pos = 0, 0, 0
            self.best_mrr, self.best_step, self.last_val_step = -1.0, -1, -1
        else:
            s = ckpt.state
            self.step, self.epoch, self.pos = int(s["step"]), int(s["epoch"]), int(s["position"])
            self.best_mrr, self.best_step = float(s["best_mrr"]), int(s["best_step"])
            self.last_val_step = int(s.get("last_val_step", -1))
            ckpt_io.optimizer_from_flat(self.optimizer, ckpt.training_tensors, s["optimizer"])
            ckpt_io.set_rng_state(ckpt.training_tensors, s["rng"])
            barrier(info)  # every rank has read the checkpoint before rank 0 tidies the folder
            if info.is_main:
                ckpt_io.cleanup_leftovers(self.run_dir, ckpt.path)
                self.metrics.truncate_after(self.step)
            barrier(info)

        for note in ([self.plan.note] if self.plan.note else []) + [
            f"the dataset has no {m} items in the train split; training {', '.join(self.modalities)}"
            for m in self.data.dropped
        ]:
            self._emit("on_message", note)
        self._emit("on_train_start", self._start_info(resumed=ckpt is not None))
        if ckpt is None:
            self._save_checkpoint()  # step 0: a run killed before its first checkpoint can resume
            if info.is_main:
                set_latest(self.run_dir)

        last = time.perf_counter()
        first_epoch = True
        while self.step < self.total_steps:
            if self.pos >= self.plan.steps_per_epoch:
                self.epoch, self.pos = self.epoch + 1, 0
            start = {"steps": self.plan.steps_per_epoch, "start": self.pos, "resumed": first_epoch and self.pos > 0}
            self._emit("on_epoch_start", self.epoch, start)
            first_epoch = False
            self.train_set.epoch = self.epoch
            sampler = EpochBatchSampler(
                len(self.train_set), self.plan, cfg.seed, self.epoch, rank=info.rank, start=self.pos,
                labels=self.batch_labels, group_fraction=cfg.batch_group_fraction,
            )
            for batch in make_loader(self.train_set, sampler, self.collator, cfg.num_workers):
                record = self._train_step(batch)
                self.step += 1
                self.pos += 1
                now = time.perf_counter()
                record["items_per_s"] = self.plan.global_batch / max(now - last, 1e-9)
                logged = self.step % cfg.log_every == 0 or self.step == self.total_steps
                if logged:
                    self.metrics.write(record)
                self._emit("on_step", {**record, "logged": logged})
                epoch_end = self.pos >= self.plan.steps_per_epoch
                done = self.step >= self.total_steps
                if epoch_end and (self.epoch + 1) % cfg.val_every == 0:
                    self._validate()
                if done:
                    break
                if epoch_end or (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0):
                    self._save_checkpoint()
                last = time.perf_counter()
        if self.last_val_step != self.step or self.best_step < 0:
            self._validate()
        self._save_checkpoint()
        final = self._save_final()
        summary = {
            "run_dir": str(self.run_dir),
            "steps": self.step,
            "best_mrr": self.best_mrr,
            "best_step": self.best_step,
            "final_mrr": final,
            "seconds": time.perf_counter() - started,
        }
        self._emit("on_train_end", summary)
        barrier(info)
        return self.run_dir

    def _start_info(self, resumed: bool) -> dict:
        cfg = self.config
        return {
            "run_dir": str(self.run_dir),
            "resumed": resumed,
            "start_step": self.step,
            "total_steps": self.total_steps,
            "steps_per_epoch": self.plan.steps_per_epoch,
            "epochs": cfg.epochs,
            "global_batch": self.plan.global_batch,
            "modalities": list(self.modalities),
            "encoders": {m: self.model.encoders[m].encoder_id for m in self.modalities},
            "loss": cfg.loss,
            "device": str(self.device),
            "precision": "bf16" if self.bf16 else "fp32",
            "world_size": self.dist.world_size,
            "train_items": len(self.data.train),
            "val_items": len(self.data.val),
            "parameters": sum(p.numel() for p in self.trainable),
        }

    # -- one step ---------------------------------------------------------------------------------
    def _train_step(self, batch: dict) -> dict:
        from vmfmir_cli.encoders.base import batch_to

        cfg, info = self.config, self.dist
        lr = lr_at(cfg, self.step, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = group_lr(group, lr)
        torch.manual_seed(mix_seed(cfg.seed, self.step, info.rank, 1))  # dropout: per step and rank
        generator = torch.Generator(device=self.device).manual_seed(mix_seed(cfg.seed, self.step, 2))
        inputs = {m: batch_to(b, self.device) for m, b in batch["inputs"].items()}
        masks = {m: t.to(self.device) for m, t in batch["masks"].items()}
        with self._autocast():
            params, logit_scale = self.ddp(inputs, masks)
        params = self.gather(params)
        gmasks = {m: all_gather_nograd(t.to(torch.uint8), info).bool() for m, t in masks.items()}
        anchors = anchor_slice(info, self.plan.local_batch) if info.enabled else None
        loss, terms, pairs = training_loss(params, gmasks, cfg, generator, anchors, logit_scale,
                                           progress=self.step / max(1, self.total_steps))

        names = term_names(cfg)
        stats = all_reduce_mean(torch.stack([terms[k].detach().float() for k in names]), info)
        bad = [k for k, v in zip(names, stats.tolist()) if not math.isfinite(v)]
        if bad:
            raise self._diverged(", ".join(k for k in bad if k != "loss") or "loss", stats.tolist()[0])

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, cfg.grad_clip)
        else:
            grad_norm = torch.linalg.vector_norm(
                torch.stack([p.grad.detach().norm() for p in self.trainable if p.grad is not None])
            )
        if not bool(torch.isfinite(grad_norm)):
            raise self._diverged("gradient", float(grad_norm))
        self.optimizer.step()

        record: dict[str, Any] = {"type": "train", "step": self.step + 1, "epoch": self.epoch}
        record.update({k: v for k, v in zip(names, stats.tolist())})
        pair_stats = all_reduce_mean(torch.stack([v.float() for v in pairs.values()]), info) if pairs else None
        record["pairs"] = dict(zip(pairs, pair_stats.tolist())) if pair_stats is not None else {}
        record["kappa"] = {
            m: float(k.detach()[gmasks[m]].float().mean()) if bool(gmasks[m].any()) else float("nan")
            for m, (_, k) in params.items()
        }
        if logit_scale is not None:
            record["logit_scale"] = float(logit_scale.detach())
        record["lr"] = lr
        record["grad_norm"] = float(grad_norm)
        return record

    def _diverged(self, term: str, value: float) -> NonFiniteLossError:
        what = {"gradient": "the gradient norm", "loss": "the loss"}.get(term, f"the {term} loss term")
        where = self.run_dir / ckpt_io.CHECKPOINT_DIR
        return NonFiniteLossError(
            f"{what} became {value} at step {self.step + 1} (epoch {self.epoch + 1}); training stopped. "
            f"The last good checkpoint is kept in {where} (step {self._last_checkpoint_step}); resume it with "
            f"`vmfmir train --resume {self.run_dir}` after lowering the learning rate (--set lr=...), or start "
            "again with a smaller lr, kappa_max or inv_temperature"
        )

    # -- validation and saving --------------------------------------------------------------------
    def _validate(self) -> None:
        cfg = self.config
        encoded = encode_split(self.model, self.val_set, self.modalities, cfg.batch_size, self._autocast)
        result = retrieval_metrics(encoded, cfg.effective_val_score())
        if not result["finite"]:
            raise NonFiniteLossError(
                f"validation scores became NaN/inf at step {self.step}; training stopped, the last good checkpoint "
                f"is kept in {self.run_dir / ckpt_io.CHECKPOINT_DIR}"
            )
        self.last_val_step = self.step
        improved = result["mrr"] > self.best_mrr
        if improved:
            self.best_mrr, self.best_step = result["mrr"], self.step
            if self.dist.is_main:
                self._save_model(self.run_dir, best=True)
        record = {
            "type": "val",
            "step": self.step,
            "epoch": self.epoch,
            "mrr": result["mrr"],
            "pairs": result["pairs"],
            "kappa": result["kappa"],
            "score": result["score"],
            "best": improved,
        }
        self.metrics.write(record)
        self._last_val = result["mrr"]
        self._emit("on_validation", record)
        barrier(self.dist)

    def _model_extra(self, best: bool) -> dict:
        cfg = self.config
        extra = {
            "train": cfg.to_dict(),
            "modalities": list(self.modalities),
            "loss": cfg.loss,
            "score": cfg.effective_val_score(),
            "step": self.step,
            "epoch": self.epoch,
            "val_mrr": self.best_mrr if best else getattr(self, "_last_val", None),
            "dataset": {"path": str(Path(cfg.data).resolve()), "name": self.data.info.get("name")},
            "world_size": self.dist.world_size,
        }
        if self.module.logit_scale is not None:
            extra["logit_scale"] = float(self.module.logit_scale.detach())
        return extra

    def _save_model(self, folder: Path, best: bool) -> None:
        from vmfmir_cli.model import save_model

        save_model(self.model, folder, extra=self._model_extra(best))

    def _save_final(self) -> Optional[float]:
        if self.dist.is_main:
            self._save_model(self.run_dir / FINAL_DIR, best=False)
        barrier(self.dist)
        return getattr(self, "_last_val", None)

    def _save_checkpoint(self) -> None:
        if self.dist.is_main:
            opt_tensors, opt_meta = ckpt_io.optimizer_to_flat(self.optimizer)
            rng_tensors, rng_meta = ckpt_io.rng_state()
            training = {**opt_tensors, **rng_tensors}
            if self.module.logit_scale is not None:
                training["loss.logit_scale"] = self.module.logit_scale.detach()
            state = {
                "step": self.step,
                "epoch": self.epoch,
                "position": self.pos,
                "steps_per_epoch": self.plan.steps_per_epoch,
                "global_batch": self.plan.global_batch,
                "total_steps": self.total_steps,
                "best_mrr": self.best_mrr,
                "best_step": self.best_step,
                "last_val_step": self.last_val_step,
                "config": self.config.to_dict(),
                "model_config": self.model.config(),
                "optimizer": opt_meta,
                "scheduler": {"kind": self.config.schedule, "step": self.step, "total_steps": self.total_steps},
                "rng": rng_meta,
                "world_size": self.dist.world_size,
            }
            path = ckpt_io.save_checkpoint(self.run_dir, self.model.state_dict_for_saving(), training, state)
            self._emit("on_checkpoint", self.step, path)
        self._last_checkpoint_step = self.step
        barrier(self.dist)


__all__ = ["Callback", "METRICS_FILE", "NonFiniteLossError", "TrainModule", "Trainer", "resume_config", "train"]
