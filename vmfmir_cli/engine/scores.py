"""All-pairs similarity scores between vMF queries and vMF items (higher = more similar).

Every score is a function of the dot products mu_q.mu_i and the two concentrations, so scoring
Q queries against N items costs one (Q x d)(d x N) matmul plus O(QN) elementwise work. The work
is chunked over items so peak memory is O(Q * chunk) whatever N is.

Kinds (k_q, k_i concentrations, c = mu_q.mu_i, k3 = sqrt(k_q^2 + k_i^2 + 2 k_q k_i c)):

* ``elk``              log int p_q p_i       = log C(k_q) + log C(k_i) - log C(k3)
* ``bhattacharyya``    log int sqrt(p_q p_i) = (log C(k_q) + log C(k_i)) / 2 - log C(k3 / 2)
* ``kl``               -KL(p_q || p_i)       = -(log C(k_q) - log C(k_i) + A(k_q) (k_q - k_i c))
* ``expected_cosine``  E[x.y]                = A(k_q) A(k_i) c
* ``cosine``           c (the deterministic baseline; ignores kappa)

The elementwise log C(k3) uses Olver's expansion evaluated directly from k3^2 (no square root of a
near-cancelling quantity), in the input dtype, with as many Debye terms as that dtype can resolve;
per-row and per-column terms are computed once in float64. Small dimensions (d < 50), where the
expansion needs the recurrence of :mod:`bessel`, fall back to the exact float64 path.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from vmfmir_cli.engine import bessel
from vmfmir_cli.engine.vmf import VonMisesFisher, log_normalizer, mean_resultant_length

SCORE_KINDS = ("elk", "kl", "bhattacharyya", "expected_cosine", "cosine")
_TARGET_CHUNK_ELEMENTS = 1 << 20


def score(
    queries: VonMisesFisher,
    items: VonMisesFisher,
    kind: str = "elk",
    chunk_size: Optional[int] = None,
) -> torch.Tensor:
    """Scores of shape (Q, N) between queries (batch shape (Q,)) and items (batch shape (N,)).

    ``chunk_size`` is the number of items scored at once (default: about 1M scores per chunk).
    The result has the dtype of the queries' loc.
    """
    if kind not in SCORE_KINDS:
        raise ValueError(f"unknown score kind {kind!r}; choose one of {', '.join(SCORE_KINDS)}")
    if len(queries.batch_shape) != 1 or len(items.batch_shape) != 1:
        raise ValueError(
            "score expects queries of batch shape (Q,) and items of batch shape (N,), got "
            f"{tuple(queries.batch_shape)} and {tuple(items.batch_shape)}"
        )
    if queries.dim != items.dim:
        raise ValueError(f"queries live in dimension {queries.dim} but items in {items.dim}")
    q_mu, i_mu = queries.loc, items.loc.to(queries.loc.dtype)
    dtype = q_mu.dtype
    d = queries.dim
    n_q, n_i = q_mu.shape[0], i_mu.shape[0]
    if chunk_size is None:
        chunk_size = max(256, _TARGET_CHUNK_ELEMENTS // max(n_q, 1))
    kq = queries.concentration.to(torch.float64)
    ki = items.concentration.to(torch.float64)

    if kind == "cosine":
        return q_mu @ i_mu.T
    if kind == "expected_cosine":
        aq = mean_resultant_length(kq, d).to(dtype)
        ai = mean_resultant_length(ki, d).to(dtype)
        return (aq.unsqueeze(-1) * q_mu) @ (ai.unsqueeze(-1) * i_mu).T
    if kind == "kl":
        aq = mean_resultant_length(kq, d)
        row = (log_normalizer(kq, d) + aq * kq).to(dtype)  # -KL = -row + col + A(k_q) k_i c
        col = log_normalizer(ki, d).to(dtype)
        out = (aq.to(dtype).unsqueeze(-1) * q_mu) @ (ki.to(dtype).unsqueeze(-1) * i_mu).T
        return out.add_(col.unsqueeze(0)).sub_(row.unsqueeze(-1))

    rho = 1.0 if kind == "elk" else 0.5
    row_const = rho * log_normalizer(kq, d)
    col_const = rho * log_normalizer(ki, d)
    nu = d / 2.0 - 1.0
    if nu < bessel.NU_OLVER:
        return _score_exact_small_dim(q_mu, i_mu, kq, ki, row_const, col_const, d, rho, chunk_size)
    return _score_olver(q_mu, i_mu, kq, ki, row_const, col_const, d, rho, chunk_size)


def _score_exact_small_dim(q_mu, i_mu, kq, ki, row_const, col_const, d, rho, chunk_size):
    """log C(k_q) + log C(k_i) - log C(rho k3) with the exact float64 normaliser (d < 50)."""
    out = torch.empty((q_mu.shape[0], i_mu.shape[0]), dtype=q_mu.dtype, device=q_mu.device)
    for start in range(0, i_mu.shape[0], chunk_size):
        stop = min(start + chunk_size, i_mu.shape[0])
        cos = (q_mu @ i_mu[start:stop].T).double()
        k_i = ki[start:stop]
        k3 = torch.sqrt((kq[:, None] ** 2 + k_i[None, :] ** 2 + 2.0 * kq[:, None] * k_i[None, :] * cos).clamp_min(0))
        block = row_const[:, None] + col_const[None, start:stop] - log_normalizer(rho * k3, d)
        out[:, start:stop] = block.to(out.dtype)
    return out


def _score_olver(q_mu, i_mu, kq, ki, row_const, col_const, d, rho, chunk_size):
    """The fast path: log C(rho k3) from Olver's expansion written in s^2 = 1 + (rho k3 / nu)^2.

    s^2 = [rho^2 k_q^2 / nu^2] + [1 + rho^2 k_i^2 / nu^2] + (2 rho^2 k_q / nu^2) (k_i) mu_q.mu_i is one
    ``mm`` of augmented matrices, and
    log C(rho k3) = nu (log1p(s) - s) + log(s^2) / 4 + const - log(1 + sum_k U_k(1/s) / nu^k).
    """
    dtype = q_mu.dtype
    nu = d / 2.0 - 1.0
    scale = rho * rho / (nu * nu)
    # s^2 = q_aug . i_aug: [2 scale k_q mu_q, scale k_q^2, 1] . [k_i mu_i, 1, 1 + scale k_i^2] (no bias pass)
    ones_q = torch.ones((q_mu.shape[0], 1), dtype=dtype, device=q_mu.device)
    ones_i = torch.ones((i_mu.shape[0], 1), dtype=dtype, device=i_mu.device)
    q_aug = torch.cat([q_mu * (2.0 * scale * kq).to(dtype).unsqueeze(-1), (scale * kq * kq).to(dtype).unsqueeze(-1), ones_q], 1)
    i_aug = torch.cat([i_mu * ki.to(dtype).unsqueeze(-1), ones_i, (1.0 + scale * ki * ki).to(dtype).unsqueeze(-1)], 1)
    const = 0.5 * math.log(2.0 * math.pi * nu) - (d / 2.0) * math.log(2.0 * math.pi) + nu * math.log(nu)
    row = row_const.to(dtype).unsqueeze(-1)
    col = (col_const - const).to(dtype).unsqueeze(0)
    # float32: every term of the score (log C_d of each side) is at least ~|log C_d(0)| >= 100 in
    # magnitude for d >= 128, so its round-off is >= 1e-5; Debye terms below that are noise (this
    # keeps just U_1 for d >= 128: the omitted U_2 / nu^2 is < 8.3e-6 there)
    terms = bessel.olver_terms(nu, 1e-17 if dtype == torch.float64 else 1e-5)
    out = torch.empty((q_mu.shape[0], i_mu.shape[0]), dtype=dtype, device=q_mu.device)
    # Few full passes over each (Q x chunk) block: the elementwise part is memory-bound on CPU. The
    # block is accumulated divided by nu, -log C(rho k3) + const = nu * acc, with
    #   acc = s - log1p(s) - log(s^2) / (4 nu) + U_1(1/s) / nu^2 [+ higher Debye terms]
    inv_nu = 1.0 / nu
    for start in range(0, i_mu.shape[0], chunk_size):
        stop = min(start + chunk_size, i_mu.shape[0])
        s2 = torch.mm(q_aug, i_aug[start:stop].T).clamp_min_(1.0)
        s = torch.sqrt(s2)
        acc = torch.log1p(s)
        torch.sub(s, acc, out=acc)  # s >= 1: no cancellation
        if terms == 2:  # U_1(p) / nu with p = 1/s: (3 s^2 - 5) / (24 nu s^3); next terms < 1e-6
            acc.addcdiv_(torch.sub(s2, 5.0 / 3.0), s.mul_(s2), value=3.0 * inv_nu * inv_nu / 24.0)
        elif terms > 2:
            acc.add_(bessel.debye_log_series(s.reciprocal_(), nu, terms), alpha=inv_nu)
        acc.add_(s2.log_(), alpha=-0.25 * inv_nu)
        torch.add(torch.add(col[:, start:stop], acc, alpha=nu), row, out=out[:, start:stop])
    return out
    return out


__all__ = ["SCORE_KINDS", "score"]
