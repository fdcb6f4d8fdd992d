"""The module DDP wraps: the model plus the trainable loss parameters, one forward per step."""

from __future__ import annotations

from typing import Mapping, Optional

import torch
from torch import nn


class TrainModule(nn.Module):
    """Model + trainable loss parameters; ``forward(inputs, masks)`` encodes every modality of a
    batch (one forward per step, as DDP wants) into rows aligned by item."""

    def __init__(self, model, logit_scale: Optional[float] = None, center_sync=None) -> None:
        super().__init__()
        self.model = model
        # under DDP with a centred head: {m: direction rows} -> {m: (sum, rows) over every rank}
        self.center_sync = center_sync
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale))) if logit_scale is not None else None

    def forward(self, inputs: Mapping[str, dict], masks: Mapping[str, torch.Tensor]):
        out = {}
        d = self.model.embed_dim
        staged = {m: self.model.stage(m, inputs[m]) for m in self.model.modalities if m in inputs}
        stats = self.center_sync({m: s["direction"] for m, s in staged.items()}) if self.center_sync else {}
        for m in self.model.modalities:
            mask = masks[m]
            rows = mask.shape[0]
            mu = torch.zeros(rows, d, dtype=torch.float32, device=mask.device)
            mu[:, 0] = 1.0  # placeholder direction for items without m (masked out of every loss)
            kappa = torch.ones(rows, dtype=torch.float32, device=mask.device)
            if m in staged:
                mu_m, kappa_m = self.model.finish(staged[m], stats.get(m))
                idx = torch.nonzero(mask).flatten()
                mu = mu.index_copy(0, idx, mu_m.float())
                kappa = kappa.index_copy(0, idx, kappa_m.float())
            out[m] = (mu, kappa)
        return out, self.logit_scale


__all__ = ["TrainModule"]
