"""Scores of queries against a fixed collection, with the per-item work done once.

:func:`vmfmir_cli.engine.scores.score` is the reference: it takes two sets of distributions and
recomputes every per-item quantity (log C_d(kappa_i) in float64, A_d(kappa_i), the augmented item
matrix) on each call. An index answers many queries against the same items, so
:class:`PreparedItems` computes those per-item terms once (lazily, per score kind) and then scores a
query with one matrix-vector product ``c = mu_items @ mu_q`` plus O(N) elementwise work:

* ``cosine``           c
* ``expected_cosine``  A(k_q) A(k_i) c
* ``kl``               -KL(q || i) = -[log C(k_q) + A(k_q) k_q] + log C(k_i) + A(k_q) k_i c
* ``elk``, ``bhattacharyya`` (rho = 1, 1/2)
                       rho (log C(k_q) + log C(k_i)) - log C(rho k3),  k3^2 = k_q^2 + k_i^2 + 2 k_q k_i c

with log C(rho k3) from Olver's expansion written in s^2 = 1 + (rho k3 / nu)^2 (no square root of
a cancelling quantity), as in the engine; the elementwise part runs in the items' dtype (float32)
with the Debye terms that dtype resolves, the per-item and per-query constants in float64.
Dimensions below the Olver range (d < 50) fall back to the engine on the requested rows.

The tests check these scores against :func:`~vmfmir_cli.engine.scores.score`.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from vmfmir_cli.engine import bessel
from vmfmir_cli.engine.scores import SCORE_KINDS
from vmfmir_cli.engine.vmf import VonMisesFisher, log_normalizer, mean_resultant_length

_CHUNK_ELEMENTS = 1 << 22

#: the inner-product first stage used for each score kind: exact (same ranking) for cosine,
#: expected_cosine and kl; for elk and bhattacharyya the expected-cosine ranking is a proxy whose
#: candidates are re-ranked (benchmarks/query.py reports its recall)
FIRST_STAGE = {"cosine": "mu", "expected_cosine": "a_mu", "kl": "kl", "elk": "a_mu", "bhattacharyya": "a_mu"}


class PreparedItems:
    """A fixed set of item vMFs (mu (N, d), kappa (N,)) ready to be scored against queries."""

    def __init__(
        self,
        mu: torch.Tensor,
        kappa: torch.Tensor,
        log_c: Optional[torch.Tensor] = None,
        a: Optional[torch.Tensor] = None,
    ) -> None:
        """``log_c`` (log C_d(kappa_i), float64) and ``a`` (A_d(kappa_i)) may be given when known
        (an index stores them): they are the expensive per-item terms (float64 Bessel work)."""
        if mu.dim() != 2 or kappa.shape != mu.shape[:1]:
            raise ValueError(f"need mu (N, d) and kappa (N,), got {tuple(mu.shape)} and {tuple(kappa.shape)}")
        for name, value in (("log_c", log_c), ("a", a)):
            if value is not None and value.shape != kappa.shape:
                raise ValueError(f"{name} must have shape {tuple(kappa.shape)}, got {tuple(value.shape)}")
        self.mu = mu if mu.is_floating_point() else mu.float()
        self.kappa = kappa.to(self.mu.dtype)
        self.dim = int(mu.shape[1])
        self.nu = self.dim / 2.0 - 1.0
        self._k64 = kappa.to(torch.float64)
        self._given = {"log_c": log_c, "a": a}
        self._terms: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return int(self.mu.shape[0])

    # -- per-item terms (computed once) -----------------------------------------------------------
    def _log_c64(self) -> torch.Tensor:
        if self._given["log_c"] is None:
            self._given["log_c"] = log_normalizer(self._k64, self.dim)
        return self._given["log_c"].to(torch.float64)

    def _term(self, name: str) -> torch.Tensor:
        if name not in self._terms:
            k, d, dtype = self._k64, self.dim, self.mu.dtype
            if name == "log_c":
                value = self._log_c64()
            elif name == "a":
                value = self._given["a"] if self._given["a"] is not None else mean_resultant_length(k, d)
            elif name.startswith("s2_col:"):  # 1 + rho^2 k_i^2 / nu^2
                rho = float(name.split(":")[1])
                value = 1.0 + (rho * rho / (self.nu * self.nu)) * k * k
            elif name.startswith("olver_col:"):  # rho log C(k_i) - the constant of Olver's log C
                rho = float(name.split(":")[1])
                value = rho * self._log_c64() - _olver_const(d)
            else:  # pragma: no cover - internal names only
                raise KeyError(name)
            self._terms[name] = value.to(dtype)
        return self._terms[name]

    def prepare(self, kind: str) -> "PreparedItems":
        """Compute the per-item terms of ``kind`` now (else on the first query)."""
        _check_kind(kind)
        if kind == "expected_cosine":
            self._term("a")
        elif kind == "kl":
            self._term("log_c")
        elif kind in ("elk", "bhattacharyya"):
            if self.nu >= bessel.NU_OLVER:
                self._term(f"s2_col:{_rho(kind)}")
                self._term(f"olver_col:{_rho(kind)}")
        return self

    def expected_cosine_vectors(self) -> torch.Tensor:
        """A(k_i) mu_i (N, d): an inner product with A(k_q) mu_q is the expected cosine."""
        return self._term("a").unsqueeze(-1) * self.mu

    # -- inner-product first stage ----------------------------------------------------------------
    def first_stage_vectors(self, family: str) -> torch.Tensor:
        """Item vectors whose inner product with :meth:`first_stage_queries` ranks like ``family``.

        ``"mu"``: mu_i (cosine); ``"a_mu"``: A(k_i) mu_i (expected cosine); ``"kl"``:
        [k_i mu_i, log C(k_i)] (-KL(q || i) up to a per-query constant). See :data:`FIRST_STAGE`.
        """
        if family == "mu":
            return self.mu
        if family == "a_mu":
            return self.expected_cosine_vectors()
        if family == "kl":
            return torch.cat([self.kappa.unsqueeze(-1) * self.mu, self._term("log_c").unsqueeze(-1)], dim=1)
        raise ValueError(f"unknown first-stage family {family!r}")

    def first_stage_queries(self, queries: VonMisesFisher, family: str) -> torch.Tensor:
        """Query vectors (Q, d or d + 1) matching :meth:`first_stage_vectors`."""
        q_mu = queries.loc.to(self.mu.dtype)
        if family == "mu":
            return q_mu
        a_q = mean_resultant_length(queries.concentration.to(torch.float64), self.dim).to(self.mu.dtype)
        if family == "a_mu":
            return a_q.unsqueeze(-1) * q_mu
        if family == "kl":
            return torch.cat([a_q.unsqueeze(-1) * q_mu, torch.ones_like(a_q).unsqueeze(-1)], dim=1)
        raise ValueError(f"unknown first-stage family {family!r}")

    # -- scoring ----------------------------------------------------------------------------------
    def scores(self, queries: VonMisesFisher, kind: str, rows: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Scores (Q, N) of queries (batch shape (Q,)) against all items, or (Q, R) against ``rows``."""
        _check_kind(kind)
        if len(queries.batch_shape) != 1:
            raise ValueError(f"queries must have batch shape (Q,), got {tuple(queries.batch_shape)}")
        if queries.dim != self.dim:
            raise ValueError(f"queries live in dimension {queries.dim} but the items in {self.dim}")
        if kind in ("elk", "bhattacharyya") and self.nu < bessel.NU_OLVER:
            from vmfmir_cli.engine.scores import score

            mu, kappa = (self.mu, self.kappa) if rows is None else (self.mu[rows], self.kappa[rows])
            q = VonMisesFisher(queries.loc.to(self.mu.dtype), queries.concentration.to(self.mu.dtype), validate_args=False)
            return score(q, VonMisesFisher(mu, kappa, validate_args=False), kind)
        self.prepare(kind)
        n = len(self) if rows is None else int(rows.shape[0])
        q_mu = queries.loc.to(self.mu.dtype)
        n_q = int(q_mu.shape[0])
        out = torch.empty((n_q, n), dtype=self.mu.dtype, device=self.mu.device)
        chunk = max(1024, _CHUNK_ELEMENTS // max(n_q, 1))
        ctx = _QueryTerms(self, queries, kind)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            idx = slice(start, stop) if rows is None else rows[start:stop]
            cos = q_mu @ self.mu[idx].T  # (Q, B)
            out[:, start:stop] = ctx.block(cos, idx)
        return out


class _QueryTerms:
    """Per-query constants of one scoring call, and the elementwise formula of each kind."""

    def __init__(self, items: PreparedItems, queries: VonMisesFisher, kind: str) -> None:
        self.items, self.kind = items, kind
        d, dtype = items.dim, items.mu.dtype
        kq = queries.concentration.to(torch.float64)
        self.dtype = dtype
        if kind == "expected_cosine":
            self.aq = mean_resultant_length(kq, d).to(dtype).unsqueeze(-1)
        elif kind == "kl":
            aq = mean_resultant_length(kq, d)
            self.aq = aq.to(dtype).unsqueeze(-1)
            self.row = (log_normalizer(kq, d) + aq * kq).to(dtype).unsqueeze(-1)
        elif kind in ("elk", "bhattacharyya"):
            rho = _rho(kind)
            nu = items.nu
            scale = rho * rho / (nu * nu)
            self.rho, self.nu = rho, nu
            self.s2_row = (scale * kq * kq).to(dtype).unsqueeze(-1)
            self.cross = (2.0 * scale * kq).to(dtype).unsqueeze(-1)
            self.row = (rho * log_normalizer(kq, d)).to(dtype).unsqueeze(-1)
            # float32 carries ~1e-7 relative round-off of values up to ~kappa: Debye terms below 1e-6
            # are noise there (the engine's rule)
            self.terms = bessel.olver_terms(nu, 1e-17 if dtype == torch.float64 else 1e-6)

    def block(self, cos: torch.Tensor, idx) -> torch.Tensor:
        items, kind = self.items, self.kind
        if kind == "cosine":
            return cos
        if kind == "expected_cosine":
            return cos.mul_(items._term("a")[idx].unsqueeze(0)).mul_(self.aq)
        if kind == "kl":
            ki = items.kappa[idx].unsqueeze(0)
            col = items._term("log_c")[idx].unsqueeze(0)
            return cos.mul_(ki).mul_(self.aq).add_(col).sub_(self.row)
        # elk / bhattacharyya
        ki = items.kappa[idx].unsqueeze(0)
        s2 = cos.mul_(ki).mul_(self.cross).add_(items._term(f"s2_col:{self.rho}")[idx].unsqueeze(0))
        s2 = s2.add_(self.s2_row).clamp_min_(1.0)
        s = torch.sqrt(s2)
        # -log C(rho k3) + const = nu (s - log(1 + s)) - log(s^2) / 4 + log(series)
        neg_log_c = torch.add(s, 1.0).log_().sub_(s).mul_(-self.nu).sub_(s2.log_(), alpha=0.25)
        if self.terms > 1:
            neg_log_c.add_(_debye_log_series_inplace(s.reciprocal_(), self.nu, self.terms))
        return neg_log_c.add_(self.row).add_(items._term(f"olver_col:{self.rho}")[idx].unsqueeze(0))


def _debye_log_series_inplace(p: torch.Tensor, nu: float, terms: int) -> torch.Tensor:
    """log sum_{k < terms} U_k(p) / nu^k, as :func:`bessel.debye_log_series` but with in-place
    Horner steps on two buffers (no temporary per coefficient: ~2x faster at N = 1e6)."""
    out = torch.zeros_like(p)
    poly = torch.empty_like(p)
    for k in range(terms - 1, 0, -1):
        coeffs = bessel._U_FLOAT[k]  # the Debye polynomial U_k by power of p (exact rationals as floats)
        poly.fill_(coeffs[-1])
        for c in reversed(coeffs[:-1]):
            poly.mul_(p).add_(c)
        out.add_(poly).div_(nu)
    return out.log1p_()


def _olver_const(d: int) -> float:
    """The kappa-free part of Olver's log C_d: log C = nu (log1p(s) - s) + log(s)/2 + this - log(series)."""
    nu = d / 2.0 - 1.0
    return 0.5 * math.log(2.0 * math.pi * nu) - (d / 2.0) * math.log(2.0 * math.pi) + nu * math.log(nu)


def _rho(kind: str) -> float:
    return 1.0 if kind == "elk" else 0.5


def _check_kind(kind: str) -> None:
    if kind not in SCORE_KINDS:
        raise ValueError(f"unknown score kind {kind!r}; choose one of {', '.join(SCORE_KINDS)}")


__all__ = ["FIRST_STAGE", "PreparedItems"]
