"""The vMF head: encoder features -> (mu, kappa), shared by every encoder of every plugin.

    mu    = normalize(W_mu LayerNorm(f))                                  (B, embed_dim), |mu| = 1
    kappa = exp(log k_min + (log k_max - log k_min) sigmoid(g(f)))        (B,), in [k_min, k_max]

``g`` is a small MLP. Interpolating in log space keeps kappa smooth and bounded over four orders of
magnitude; the last layer of ``g`` starts at zero with a bias chosen so that every item starts at
``kappa_init`` (~ tens, a moderately confident distribution). Both outputs are computed in float32
even under autocast (normalisation and exp are the places where half precision loses the most).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class VMFHead(nn.Module):
    """Map ``(B, in_dim)`` features to ``mu`` ``(B, embed_dim)`` (unit norm) and ``kappa`` ``(B,)``."""

    def __init__(
        self,
        in_dim: int,
        embed_dim: int,
        kappa_min: float = 1.0,
        kappa_max: float = 1e4,
        kappa_init: float = 20.0,
        hidden: int = 64,
    ) -> None:
        super().__init__()
        if in_dim < 1 or embed_dim < 2:
            raise ValueError(f"need in_dim >= 1 and embed_dim >= 2, got {in_dim}, {embed_dim}")
        if not (0 < kappa_min < kappa_max):
            raise ValueError(f"need 0 < kappa_min < kappa_max, got {kappa_min}, {kappa_max}")
        # Start kappa inside its range, away from the ends: at an end the sigmoid saturates and
        # kappa would stay frozen there (e.g. kappa_min raised above the default kappa_init).
        lo_ok, hi_ok = kappa_min * 1.5, kappa_max / 1.5
        if not (lo_ok <= kappa_init <= hi_ok):
            kappa_init = math.sqrt(kappa_min * kappa_max)
        self.in_dim, self.embed_dim = int(in_dim), int(embed_dim)
        self.kappa_min, self.kappa_max = float(kappa_min), float(kappa_max)
        self.norm = nn.LayerNorm(in_dim)
        self.mu = nn.Linear(in_dim, embed_dim)
        self.kappa_net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
        last = self.kappa_net[-1]
        nn.init.zeros_(last.weight)
        frac = (math.log(kappa_init) - math.log(kappa_min)) / (math.log(kappa_max) - math.log(kappa_min))
        nn.init.constant_(last.bias, math.log(frac / (1.0 - frac)))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.norm(features)
        direction = self.mu(h)
        with torch.autocast(device_type=features.device.type, enabled=False):
            mu = F.normalize(direction.float(), dim=-1, eps=1e-12)
            z = self.kappa_net(h.float()).squeeze(-1)
            lo, hi = math.log(self.kappa_min), math.log(self.kappa_max)
            kappa = torch.exp(lo + (hi - lo) * torch.sigmoid(z))
            kappa = kappa.clamp(self.kappa_min, self.kappa_max)  # exp/log round-off at the ends
        return mu, kappa

    def extra_repr(self) -> str:
        return f"kappa in [{self.kappa_min:g}, {self.kappa_max:g}]"


__all__ = ["VMFHead"]
