"""Scores of queries against a fixed collection, with the per-item work done once.

:func:`vmfmir_cli.engine.scores.score` prepares both sides of a score on every call (log C_d(kappa_i)
in float64, A_d(kappa_i), the augmented item matrix). An index answers many queries against the
same items, so :class:`PreparedItems` prepares the item side once per score kind (lazily) with
:func:`~vmfmir_cli.engine.scores.prepare_terms` and hands both sides to the same kernel,
:func:`~vmfmir_cli.engine.scores.score_prepared`. The item side is kept unfused: the matrix is the
index's own mean directions and the per-item terms are O(N) columns (nothing of size N x d is
copied), so a query costs one matrix-vector product ``mu_items @ mu_q`` plus O(N) elementwise work.
The formulas are those of :mod:`vmfmir_cli.engine.scores`; this module adds the cache, the row
subsets of a re-ranking and the vectors of the inner-product first stage.
"""

from __future__ import annotations

from typing import Optional

import torch

from vmfmir_cli.engine.scores import ScoreTerms, check_kind, prepare_terms, score_prepared
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
        self._kappa_given = kappa
        self._log_c = log_c
        self._a = a
        self._sides: dict[str, ScoreTerms] = {}

    def __len__(self) -> int:
        return int(self.mu.shape[0])

    # -- per-item terms (computed once) -----------------------------------------------------------
    def _side(self, kind: str) -> ScoreTerms:
        """The item side of ``kind`` for :func:`~vmfmir_cli.engine.scores.score_prepared` (cached)."""
        if kind not in self._sides:
            if kind in ("kl", "elk", "bhattacharyya") and self._log_c is None:
                # shared by these kinds: the float64 Bessel work is done once
                self._log_c = log_normalizer(self._kappa_given.to(torch.float64), self.dim)
            self._sides[kind] = prepare_terms(
                self.mu, self._kappa_given, kind, "item", fused=False, log_c=self._log_c, a=self._a
            )
        return self._sides[kind]

    @property
    def _terms(self) -> dict[str, torch.Tensor]:
        """The per-item tensors prepared so far beyond mu and kappa (benchmarks/query.py counts them)."""
        out = {}
        for kind, side in self._sides.items():
            for field in ("mat", "scale", "shift", "const", "kappa"):
                value = getattr(side, field)
                if value is not None and value is not self.mu and value is not self.kappa:
                    out[f"{kind}.{field}"] = value
        return out

    def prepare(self, kind: str) -> "PreparedItems":
        """Compute the per-item terms of ``kind`` now (else on the first query)."""
        check_kind(kind)
        self._side(kind)
        return self

    def expected_cosine_vectors(self) -> torch.Tensor:
        """A(k_i) mu_i (N, d): an inner product with A(k_q) mu_q is the expected cosine."""
        return self._side("expected_cosine").scale.unsqueeze(-1) * self.mu

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
            side = self._side("kl")
            return torch.cat([side.scale.unsqueeze(-1) * self.mu, side.shift.unsqueeze(-1)], dim=1)
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
        check_kind(kind)
        if len(queries.batch_shape) != 1:
            raise ValueError(f"queries must have batch shape (Q,), got {tuple(queries.batch_shape)}")
        if queries.dim != self.dim:
            raise ValueError(f"queries live in dimension {queries.dim} but the items in {self.dim}")
        items = self._side(kind)
        q_terms = prepare_terms(queries.loc.to(self.mu.dtype), queries.concentration, kind, "query", fused=False)
        chunk = max(1024, _CHUNK_ELEMENTS // max(int(queries.loc.shape[0]), 1))
        return score_prepared(q_terms, items, chunk_size=chunk, rows=rows)


__all__ = ["FIRST_STAGE", "PreparedItems"]
