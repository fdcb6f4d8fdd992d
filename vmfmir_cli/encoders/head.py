r"""The vMF head: encoder features -> (mu, kappa), shared by every encoder of every plugin.

    mu    = normalize(W_mu LayerNorm(f) - m)                              (B, embed_dim), |mu| = 1

(``m``: the mean direction, see ``center`` below) and ``kappa`` (B,) from a small MLP ``g`` on the
same normalised features, in one of two forms:

* ``kappa_head="exp"`` (default): log-linear and unbounded inside a wide safety range,
  ``log kappa = log k_max - softplus(log k_max - t)``, ``t = log k_min + softplus(g(f))``, i.e.
  ``log kappa ~ g(f)`` in the interior: d log kappa / d g = 1 wherever kappa is more than a factor
  of ~e away from a bound, bent smoothly into ``[k_min, k_max]`` within about one unit of log kappa
  of the ends (slope 1/2 at ``t = log k_max``). The wide default range [1, 1e4] is a numerical
  safety net, not a prior. Reference implementations use this kind of head (an exp or softplus of
  a linear layer, calibrated at initialisation).
* ``kappa_head="sigmoid"``: the earlier head, ``kappa = exp(log k_min + (log k_max - log k_min)
  sigmoid(g(f)))``. Its gradient vanishes at both bounds, so an item pushed towards a bound stays
  there (measured on ``benchmarks/controlled.py``; see the README).

``center=True`` (default) subtracts the mean direction shared by all items before normalising:

    mu    = normalize(W_mu LayerNorm(f) - m)

with ``m`` the batch mean while training (gradient through it, as in batch normalisation) and the
running mean of those batch means at inference (buffers ``running_center`` and ``center_updates``,
saved with the weights; the plain mean of the first ``1 / center_momentum`` batches, then an
exponential average). A training batch of fewer than 8 rows is centred with the running mean.
Under DDP the trainer passes the sums over every rank (:meth:`project` / :meth:`finish`).

Without centring a common offset lets every mu drift into one cap of the sphere while kappa grows
to keep the items apart: a compressed, over-confident embedding that the contrastive loss scores
almost as well as the truth, and that training falls into (measured on ``benchmarks/controlled.py``,
README "Learning kappa"). The centre carries no information about any item, so removing it costs
nothing; it also removes each modality's own offset (the "modality gap").

The last layer of ``g`` starts at zero with a bias chosen so that every item starts at
``kappa_init`` (~ tens, a moderately confident distribution). Both outputs are computed in float32
even under autocast (normalisation and exp are the places where half precision loses the most).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

KAPPA_HEADS = ("exp", "sigmoid")
#: fewer rows than this in a training batch: centre with the running mean (a batch mean of a few
#: rows is mostly the rows themselves)
CENTER_MIN_ROWS = 8


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
        kappa_head: str = "exp",
        center: bool = True,
        center_momentum: float = 0.05,
    ) -> None:
        super().__init__()
        if in_dim < 1 or embed_dim < 2:
            raise ValueError(f"need in_dim >= 1 and embed_dim >= 2, got {in_dim}, {embed_dim}")
        if not (0 < kappa_min < kappa_max):
            raise ValueError(f"need 0 < kappa_min < kappa_max, got {kappa_min}, {kappa_max}")
        if kappa_head not in KAPPA_HEADS:
            raise ValueError(f"kappa_head must be one of {', '.join(KAPPA_HEADS)}, got {kappa_head!r}")
        # Start kappa inside its range, away from the ends: at an end the sigmoid saturates and
        # kappa would stay frozen there (e.g. kappa_min raised above the default kappa_init).
        lo_ok, hi_ok = kappa_min * 1.5, kappa_max / 1.5
        if not (lo_ok <= kappa_init <= hi_ok):
            kappa_init = math.sqrt(kappa_min * kappa_max)
        self.in_dim, self.embed_dim = int(in_dim), int(embed_dim)
        self.kappa_min, self.kappa_max = float(kappa_min), float(kappa_max)
        self.kappa_head = kappa_head
        if not 0.0 < center_momentum <= 1.0:
            raise ValueError(f"center_momentum must lie in (0, 1], got {center_momentum!r}")
        self.center, self.center_momentum = bool(center), float(center_momentum)
        if self.center:  # only then, so that a head without centring keeps its state_dict keys
            self.register_buffer("running_center", torch.zeros(embed_dim))
            self.register_buffer("center_updates", torch.zeros((), dtype=torch.long))
        self.norm = nn.LayerNorm(in_dim)
        self.mu = nn.Linear(in_dim, embed_dim)
        self.kappa_net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
        last = self.kappa_net[-1]
        nn.init.zeros_(last.weight)
        lo, hi, k0 = math.log(kappa_min), math.log(kappa_max), math.log(kappa_init)
        if kappa_head == "sigmoid":
            frac = (k0 - lo) / (hi - lo)
            nn.init.constant_(last.bias, math.log(frac / (1.0 - frac)))
        else:
            # invert both soft bounds so that kappa(g = bias) = kappa_init exactly
            t = hi - _softplus_inv(hi - k0)
            nn.init.constant_(last.bias, _softplus_inv(t - lo))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.finish(*self.project(features))

    def project(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The first half of :meth:`forward`: ``(direction (B, embed_dim) before centring and
        normalising, h (B, in_dim) the normalised features)``. Split so that a distributed trainer
        can centre with the mean over every rank's rows (:meth:`finish` with ``stats``)."""
        h = self.norm(features)
        return self.mu(h), h

    def finish(
        self, direction: torch.Tensor, h: torch.Tensor, stats: Optional[tuple[torch.Tensor, float]] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, kappa)`` from :meth:`project`'s output. ``stats = (sum of the directions, number of
        rows)`` over the whole (distributed) batch replaces this batch's own while training."""
        if self.center:
            direction = self._centred(direction, stats)
        with torch.autocast(device_type=direction.device.type, enabled=False):
            mu = F.normalize(direction.float(), dim=-1, eps=1e-12)
            z = self.kappa_net(h.float()).squeeze(-1)
            lo, hi = math.log(self.kappa_min), math.log(self.kappa_max)
            if self.kappa_head == "sigmoid":
                log_kappa = lo + (hi - lo) * torch.sigmoid(z)
            else:
                log_kappa = hi - F.softplus(hi - (lo + F.softplus(z)))
            kappa = torch.exp(log_kappa)
            kappa = kappa.clamp(self.kappa_min, self.kappa_max)  # exp/log round-off at the ends
        return mu, kappa

    def _centred(self, direction: torch.Tensor, stats=None) -> torch.Tensor:
        """Subtract the mean direction shared by all items: the batch mean while training (with its
        gradient, so the loss cannot move the items through a common offset), the running mean of
        the batch means otherwise (an item's embedding never depends on its batch at inference)."""
        if self.training:
            total, rows = stats if stats is not None else (direction.sum(0), direction.shape[0])
            if rows >= CENTER_MIN_ROWS:
                mean = total.to(direction.dtype) / rows
                with torch.no_grad():  # the plain mean of the first batches, then an exponential average
                    # (a tensor weight: no host sync on a GPU)
                    updates = (self.center_updates + 1).to(self.running_center.dtype)
                    weight = updates.reciprocal().clamp_min(self.center_momentum)
                    self.running_center.lerp_(mean.detach().to(self.running_center.dtype), weight)
                    self.center_updates += 1
                return direction - mean
        return direction - self.running_center.to(direction.dtype)

    def extra_repr(self) -> str:
        return (f"kappa_head={self.kappa_head}, kappa in [{self.kappa_min:g}, {self.kappa_max:g}], "
                f"center={self.center}")


def _softplus_inv(y: float) -> float:
    """x with softplus(x) = y > 0."""
    return y + math.log(-math.expm1(-y))


__all__ = ["KAPPA_HEADS", "VMFHead"]
