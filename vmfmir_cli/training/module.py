"""The module DDP wraps: the model plus the trainable loss parameters, one forward per step."""

from __future__ import annotations

from typing import Mapping, Optional

import torch
from torch import nn


class TrainModule(nn.Module):
    """Model + trainable loss parameters; ``forward(inputs, masks)`` encodes every modality of a
    batch (one forward per step, as DDP wants) into rows aligned by item."""

    def __init__(self, model, logit_scale: Optional[float] = None) -> None:
        super().__init__()
        self.model = model
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale))) if logit_scale is not None else None

    def forward(self, inputs: Mapping[str, dict], masks: Mapping[str, torch.Tensor]):
        out = {}
        d = self.model.embed_dim
        for m in self.model.modalities:
            mask = masks[m]
            rows = mask.shape[0]
            mu = torch.zeros(rows, d, dtype=torch.float32, device=mask.device)
            mu[:, 0] = 1.0  # placeholder direction for items without m (masked out of every loss)
            kappa = torch.ones(rows, dtype=torch.float32, device=mask.device)
            if m in inputs:
                mu_m, kappa_m = self.model.encode_params(m, inputs[m])
                idx = torch.nonzero(mask).flatten()
                mu = mu.index_copy(0, idx, mu_m.float())
                kappa = kappa.index_copy(0, idx, kappa_m.float())
            out[m] = (mu, kappa)
        return out, self.logit_scale


__all__ = ["TrainModule"]
