"""DDP glue: process-group setup from torchrun's environment and a gradient-carrying all-gather.

``torchrun --nproc-per-node N -m vmfmir_cli train ...`` sets ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them and joins
the process group (NCCL on CUDA, gloo otherwise). Without them everything here degrades to a
single process (rank 0 of 1) and the collectives are identities.

Contrastive negatives span the global batch: every rank all-gathers ``mu`` and ``kappa`` with
:func:`all_gather_with_grad` (as open_clip gathers features with ``gather_with_grad``), computes the
loss for its own anchors (``anchor_slice``) against every rank's items, and DDP averages the
gradients. The backward of the gather sums the incoming gradients over ranks and keeps this rank's
rows, so the averaged gradient is exactly the gradient of the mean of the per-rank losses, i.e. of
the full-batch loss when the ranks hold equally many anchors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` (``local_rank`` on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group described by torchrun's environment (no-op for a single process)."""
    world = env_world_size()
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


class _AllGatherWithGrad(torch.autograd.Function):
    """Concatenate a tensor from every rank along dim 0; backward: sum over ranks, own rows."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        world = dist.get_world_size(group)
        ctx.group, ctx.rank, ctx.rows = group, dist.get_rank(group), tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous(), group=group)
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        # all_reduce works on every backend (gloo has no reduce_scatter)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = ctx.rank * ctx.rows
        return grad[start : start + ctx.rows], None


def all_gather_with_grad(tensor: torch.Tensor, info: DistInfo, group=None) -> torch.Tensor:
    """``(b, ...)`` on each rank -> ``(world * b, ...)`` in rank order, differentiable (identity for one process).

    Every rank must pass the same number of rows.
    """
    if not info.enabled:
        return tensor
    return _AllGatherWithGrad.apply(tensor, group)


class PackedGather:
    """All-gather every modality's ``(mu, kappa)`` in ONE gradient-carrying collective on a process
    group of its own, so the backward collectives of the gather can never interleave differently
    with DDP's gradient all-reduces across ranks (even when a rank's batch lacks a modality)."""

    def __init__(self, info: DistInfo) -> None:
        self.info = info
        self.group = dist.new_group(backend=dist.get_backend()) if info.enabled else None

    def __call__(self, params):
        """``{m: (mu (b, d), kappa (b,))}`` -> the same for the gathered batch ``(world * b, ...)``."""
        if not self.info.enabled:
            return dict(params)
        names = list(params)
        d = params[names[0]][0].shape[1]
        packed = torch.cat([torch.cat([mu, kappa.unsqueeze(1)], dim=1) for mu, kappa in params.values()], dim=1)
        gathered = all_gather_with_grad(packed, self.info, self.group)
        out = {}
        for i, m in enumerate(names):
            block = gathered[:, i * (d + 1) : (i + 1) * (d + 1)]
            out[m] = (block[:, :d], block[:, d])
        return out


class _AllReduceSumWithGrad(torch.autograd.Function):
    """Sum a tensor over the ranks; backward: the sum over the ranks of the incoming gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        out = tensor.contiguous().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


class CenterSync:
    """The batch statistics of a centred head over every rank: ``{m: direction rows (r_m, d)}`` ->
    ``{m: (sum (d,), rows)}`` summed over the ranks, so that DDP centres with the mean of the whole
    batch, as one process would. Every modality of the model goes into ONE differentiable
    all-reduce on a process group of its own (zeros for a modality this rank's batch lacks), so
    every rank takes part in the forward and the backward collective exactly once per step."""

    def __init__(self, info: DistInfo, modalities, dim: int, device=None) -> None:
        self.info, self.modalities, self.dim, self.device = info, list(modalities), int(dim), device
        self.group = dist.new_group(backend=dist.get_backend()) if info.enabled else None

    def __call__(self, directions):
        if not self.info.enabled:
            return {m: (x.sum(0), x.shape[0]) for m, x in directions.items()}
        ref = next(iter(directions.values()), None)
        if ref is None:  # this rank's batch has no modality at all: it still joins the collective
            ref = torch.zeros(1, device=self.device)
        parts = []
        for m in self.modalities:
            x = directions.get(m)
            if x is None:
                parts.append(ref.new_zeros(self.dim + 1))
            else:
                parts.append(torch.cat([x.sum(0), x.new_full((1,), float(x.shape[0]))]))
        total = _AllReduceSumWithGrad.apply(torch.stack(parts), self.group)
        return {m: (total[i, : self.dim], float(total[i, self.dim].detach())) for i, m in enumerate(self.modalities)}


def all_gather_nograd(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if not info.enabled:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(info.world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def all_reduce_mean(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean over ranks of a (detached) tensor (identity for one process)."""
    if not info.enabled:
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / info.world_size


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank (JSON-like values: run names, model configs)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def anchor_slice(info: DistInfo, local_rows: int) -> slice:
    """This rank's rows in the gathered batch."""
    return slice(info.rank * local_rows, (info.rank + 1) * local_rows)


__all__ = [
    "DistInfo",
    "PackedGather",
    "CenterSync",
    "all_gather_nograd",
    "all_gather_with_grad",
    "all_reduce_mean",
    "anchor_slice",
    "barrier",
    "broadcast_object",
    "cleanup",
    "env_world_size",
    "init_distributed",
]
