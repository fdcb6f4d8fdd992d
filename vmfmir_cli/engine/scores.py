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

One kernel, two callers
-----------------------
Each side of a score (the queries, the items) is reduced to a :class:`ScoreTerms` by
:func:`prepare_terms`: the expensive per-row work (log C_d, A_d in float64) happens there, once.
:func:`score_prepared` is the kernel; per block of items it forms

    lin = (q.mat @ i.mat.T) * i.scale * q.scale + i.shift + q.shift

which is the score itself for cosine, expected_cosine and kl, and s^2 = 1 + (rho k3 / nu)^2 for
elk and bhattacharyya, then finished elementwise by Olver's expansion (plus the const terms).

* ``fused=True`` folds the per-row factors into augmented matrices, so ``lin`` is one ``mm`` with no
  elementwise pass (the fastest form for many queries; it copies the matrix). :func:`score` uses it.
* ``fused=False`` keeps ``mat`` = the mean directions themselves and O(n) per-row columns: nothing
  of size (n, d) is copied, which is what a fixed collection scored by few queries wants
  (:class:`vmfmir_cli.index.scoring.PreparedItems` caches the item side in this form).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from vmfmir_cli.engine import bessel
from vmfmir_cli.engine.vmf import VonMisesFisher, log_normalizer, mean_resultant_length

SCORE_KINDS = ("elk", "kl", "bhattacharyya", "expected_cosine", "cosine")
_TARGET_CHUNK_ELEMENTS = 1 << 20
_LINEAR_KINDS = ("cosine", "expected_cosine", "kl")
_RHO = {"elk": 1.0, "bhattacharyya": 0.5}
_SIDES = ("query", "item")


@dataclass(frozen=True)
class ScoreTerms:
    """The prepared terms of one side (``"query"`` or ``"item"``) of one score kind.

    All tensors have one row per distribution (n). ``mat`` (n, m) enters the product; ``scale`` and
    ``shift`` (n,) multiply and add to it (None: nothing to do); ``const`` (n,) is added to the
    finished elk/bhattacharyya score; ``kappa`` (n,) is the float64 concentration, kept only by the
    exact small-dimension path (``method == "exact"``, where ``const`` is float64 too).
    """

    kind: str
    side: str
    dim: int
    method: str  # "linear" (the product is the score), "olver" (fast elementwise), "exact" (d < 50)
    fused: bool
    mat: torch.Tensor
    scale: Optional[torch.Tensor] = None
    shift: Optional[torch.Tensor] = None
    const: Optional[torch.Tensor] = None
    kappa: Optional[torch.Tensor] = None

    @property
    def rho(self) -> float:
        """The exponent of the probability product kernel (1: ELK, 1/2: Bhattacharyya)."""
        return _RHO.get(self.kind, 1.0)

    @property
    def nu(self) -> float:
        return self.dim / 2.0 - 1.0

    def __len__(self) -> int:
        return int(self.mat.shape[0])


def _method(kind: str, dim: int) -> str:
    if kind in _LINEAR_KINDS:
        return "linear"
    return "olver" if dim / 2.0 - 1.0 >= bessel.NU_OLVER else "exact"


def _olver_const(dim: int) -> float:
    """The kappa-free part of Olver's log C_d: log C = nu (log1p(s) - s) + log(s^2)/4 + this - log(series)."""
    nu = dim / 2.0 - 1.0
    return 0.5 * math.log(2.0 * math.pi * nu) - (dim / 2.0) * math.log(2.0 * math.pi) + nu * math.log(nu)


def _debye_terms(nu: float, dtype: torch.dtype) -> int:
    # float32: every term of the score (log C_d of each side) is at least ~|log C_d(0)| >= 100 in
    # magnitude for d >= 128, so its round-off is >= 1e-5; Debye terms below that are noise (this
    # keeps just U_1 for d >= 128: the omitted U_2 / nu^2 is < 8.3e-6 there)
    return bessel.olver_terms(nu, 1e-17 if dtype == torch.float64 else 1e-5)


def check_kind(kind: str) -> None:
    """ValueError naming the choices unless ``kind`` is one of :data:`SCORE_KINDS`."""
    if kind not in SCORE_KINDS:
        raise ValueError(f"unknown score kind {kind!r}; choose one of {', '.join(SCORE_KINDS)}")


def prepare_terms(
    loc: torch.Tensor,
    kappa: torch.Tensor,
    kind: str,
    side: str,
    *,
    fused: bool = True,
    log_c: Optional[torch.Tensor] = None,
    a: Optional[torch.Tensor] = None,
) -> ScoreTerms:
    """The :class:`ScoreTerms` of mean directions ``loc`` (n, d) and concentrations ``kappa`` (n,).

    The elementwise work of the kernel runs in ``loc``'s dtype (both sides must share it); the
    per-row terms are computed in float64 from ``kappa`` and then cast. ``log_c`` (log C_d(kappa))
    and ``a`` (A_d(kappa)) may be given when already known: they are the expensive part.
    ``fused``: see the module docstring (both sides of one call must agree).
    """
    check_kind(kind)
    if side not in _SIDES:
        raise ValueError(f"side must be 'query' or 'item', got {side!r}")
    if loc.dim() != 2 or kappa.shape != loc.shape[:1]:
        raise ValueError(f"need loc (n, d) and kappa (n,), got {tuple(loc.shape)} and {tuple(kappa.shape)}")
    d = int(loc.shape[1])
    dtype = loc.dtype
    method = _method(kind, d)
    terms = dict(kind=kind, side=side, dim=d, method=method, fused=fused)
    if kind == "cosine":
        return ScoreTerms(mat=loc, **terms)
    k64 = kappa.to(torch.float64)

    def log_c64() -> torch.Tensor:
        return log_normalizer(k64, d) if log_c is None else log_c.to(torch.float64)

    def a64() -> torch.Tensor:
        return mean_resultant_length(k64, d) if a is None else a

    if kind == "expected_cosine":  # A(k_q) A(k_i) c
        factor = a64().to(dtype)
        return _scaled(loc, factor, None, fused, terms)
    if kind == "kl":  # -KL = -[log C(k_q) + A(k_q) k_q] + log C(k_i) + A(k_q) k_i c
        if side == "query":
            aq = a64().to(torch.float64)
            return _scaled(loc, aq.to(dtype), -(log_c64() + aq * k64).to(dtype), fused, terms)
        return _scaled(loc, kappa.to(dtype), log_c64().to(dtype), fused, terms)

    rho = _RHO[kind]
    if method == "exact":  # rho (log C(k_q) + log C(k_i)) - log C(rho k3), all in float64
        return ScoreTerms(mat=loc, const=rho * log_c64(), kappa=k64, **terms)
    # s^2 = 1 + (rho k3 / nu)^2 = [scale k_q^2] + [1 + scale k_i^2] + (2 scale k_q) (k_i) mu_q.mu_i
    nu = d / 2.0 - 1.0
    scale = rho * rho / (nu * nu)
    if side == "query":  # fused: [2 scale k_q mu_q, scale k_q^2, 1]
        factor, shift = (2.0 * scale * k64).to(dtype), (scale * k64 * k64).to(dtype)
        const = (rho * log_c64()).to(dtype)
    else:  # fused: [k_i mu_i, 1, 1 + scale k_i^2] (so that q_aug . i_aug = s^2: no bias pass)
        factor, shift = kappa.to(dtype), (1.0 + scale * k64 * k64).to(dtype)
        const = (rho * log_c64() - _olver_const(d)).to(dtype)
    if not fused:
        return ScoreTerms(mat=loc, scale=factor, shift=shift, const=const, **terms)
    ones = torch.ones((loc.shape[0], 1), dtype=dtype, device=loc.device)
    extra = [shift.unsqueeze(-1), ones] if side == "query" else [ones, shift.unsqueeze(-1)]
    return ScoreTerms(mat=torch.cat([loc * factor.unsqueeze(-1), *extra], 1), const=const, **terms)


def _scaled(loc, factor, shift, fused, terms) -> ScoreTerms:
    """A linear-kind side: ``factor`` folded into the matrix (fused) or kept as the row scale."""
    if fused:
        return ScoreTerms(mat=factor.unsqueeze(-1) * loc, shift=shift, **terms)
    return ScoreTerms(mat=loc, scale=factor, shift=shift, **terms)


def score_prepared(
    queries: ScoreTerms,
    items: ScoreTerms,
    chunk_size: Optional[int] = None,
    rows: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The kernel: scores (Q, N) of prepared queries against prepared items, or (Q, R) against the
    item ``rows`` (a 1-D index tensor). ``chunk_size``: items per block (default ~1M scores)."""
    _check_pair(queries, items)
    n_q = len(queries)
    n = len(items) if rows is None else int(rows.shape[0])
    if queries.method == "linear" and queries.scale is None and items.scale is None:
        # every factor is in the matrices: the product is the score (no temporaries to bound)
        out = queries.mat @ (items.mat if rows is None else items.mat[rows]).T
        if items.shift is not None:
            out.add_((items.shift if rows is None else items.shift[rows]).unsqueeze(0))
        if queries.shift is not None:
            out.add_(queries.shift.unsqueeze(-1))
        return out
    if chunk_size is None:
        chunk_size = max(256, _TARGET_CHUNK_ELEMENTS // max(n_q, 1))
    out = torch.empty((n_q, n), dtype=queries.mat.dtype, device=queries.mat.device)
    work = _Workspace(n_q, min(chunk_size, n), out)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        idx = slice(start, stop) if rows is None else rows[start:stop]
        if queries.method == "exact":
            out[:, start:stop] = _exact_block(queries, items, idx).to(out.dtype)
        elif queries.method == "olver":
            s2 = _product(queries, items, idx, work.block(0, stop - start))
            _olver_block(s2, queries, items.const[idx], out[:, start:stop], work)
        else:
            out[:, start:stop] = _product(queries, items, idx, work.block(0, stop - start))
    return out


class _Workspace:
    """(rows, cols) block buffers reused by every chunk of one call: no allocation per chunk and
    pass (on CPU, fresh multi-MB temporaries cost page faults and made timings depend on the heap)."""

    def __init__(self, rows: int, cols: int, like: torch.Tensor) -> None:
        self.rows, self.cols, self.like = rows, cols, like
        self.buffers: dict[int, torch.Tensor] = {}

    def block(self, slot: int, cols: int) -> torch.Tensor:
        """Buffer ``slot`` viewed as a contiguous (rows, cols) block, cols <= the chunk size."""
        if slot not in self.buffers:
            self.buffers[slot] = torch.empty(self.rows * self.cols, dtype=self.like.dtype, device=self.like.device)
        return self.buffers[slot][: self.rows * cols].view(self.rows, cols)


def _check_pair(queries: ScoreTerms, items: ScoreTerms) -> None:
    if queries.side != "query" or items.side != "item":
        raise ValueError(f"need query terms and item terms, got {queries.side} and {items.side}")
    if queries.kind != items.kind:
        raise ValueError(f"query terms are for {queries.kind!r} but item terms for {items.kind!r}")
    if queries.dim != items.dim:
        raise ValueError(f"queries live in dimension {queries.dim} but items in {items.dim}")
    if queries.fused != items.fused or queries.mat.dtype != items.mat.dtype:
        raise ValueError("query and item terms must share fused and the dtype")


def _product(queries: ScoreTerms, items: ScoreTerms, idx, out: torch.Tensor) -> torch.Tensor:
    """lin = (q.mat @ i.mat[idx].T) * i.scale * q.scale + i.shift + q.shift, into ``out``."""
    lin = torch.mm(queries.mat, items.mat[idx].T, out=out)
    if items.scale is not None:
        lin.mul_(items.scale[idx].unsqueeze(0))
    if queries.scale is not None:
        lin.mul_(queries.scale.unsqueeze(-1))
    if items.shift is not None:
        lin.add_(items.shift[idx].unsqueeze(0))
    if queries.shift is not None:
        lin.add_(queries.shift.unsqueeze(-1))
    return lin


def _olver_block(
    s2: torch.Tensor, queries: ScoreTerms, item_const: torch.Tensor, out: torch.Tensor, work: _Workspace
) -> None:
    """out = q.const + i.const + nu * acc with -log C(rho k3) + const = nu * acc, from s2 (consumed).

    log C(rho k3) = nu (log1p(s) - s) + log(s^2) / 4 + const - log(1 + sum_k U_k(1/s) / nu^k), so
        acc = s - log1p(s) - log(s^2) / (4 nu) + U_1(1/s) / nu^2 [+ higher Debye terms].
    Few full passes over the block: the elementwise part is memory-bound on CPU.
    """
    nu = queries.nu
    inv_nu = 1.0 / nu
    terms = _debye_terms(nu, s2.dtype)
    cols = s2.shape[1]
    s2 = s2.clamp_min_(1.0)
    s = torch.sqrt(s2, out=work.block(1, cols))
    acc = torch.log1p(s, out=work.block(2, cols))
    torch.sub(s, acc, out=acc)  # s >= 1: no cancellation
    spare = work.block(3, cols)
    if terms == 2:  # U_1(p) / nu with p = 1/s: (3 s^2 - 5) / (24 nu s^3); next terms < 1e-6
        acc.addcdiv_(torch.sub(s2, 5.0 / 3.0, out=spare), s.mul_(s2), value=3.0 * inv_nu * inv_nu / 24.0)
    elif terms > 2:
        acc.add_(bessel.debye_log_series(s.reciprocal_(), nu, terms), alpha=inv_nu)
    acc.add_(s2.log_(), alpha=-0.25 * inv_nu)
    torch.add(torch.add(item_const.unsqueeze(0), acc, alpha=nu, out=spare), queries.const.unsqueeze(-1), out=out)


def _exact_block(queries: ScoreTerms, items: ScoreTerms, idx) -> torch.Tensor:
    """rho (log C(k_q) + log C(k_i)) - log C(rho k3) with the exact float64 normaliser (d < 50)."""
    cos = (queries.mat @ items.mat[idx].T).double()
    kq, ki = queries.kappa[:, None], items.kappa[idx][None, :]
    k3 = torch.sqrt((kq**2 + ki**2 + 2.0 * kq * ki * cos).clamp_min(0))
    return queries.const[:, None] + items.const[idx][None, :] - log_normalizer(queries.rho * k3, queries.dim)


def score(
    queries: VonMisesFisher,
    items: VonMisesFisher,
    kind: str = "elk",
    chunk_size: Optional[int] = None,
) -> torch.Tensor:
    """Scores of shape (Q, N) between queries (batch shape (Q,)) and items (batch shape (N,)).

    ``chunk_size`` is the number of items scored at once (default: about 1M scores per chunk).
    The result has the dtype of the queries' loc. Prepares both sides (fused) and calls
    :func:`score_prepared`.
    """
    check_kind(kind)
    if len(queries.batch_shape) != 1 or len(items.batch_shape) != 1:
        raise ValueError(
            "score expects queries of batch shape (Q,) and items of batch shape (N,), got "
            f"{tuple(queries.batch_shape)} and {tuple(items.batch_shape)}"
        )
    if queries.dim != items.dim:
        raise ValueError(f"queries live in dimension {queries.dim} but items in {items.dim}")
    q_mu, i_mu = queries.loc, items.loc.to(queries.loc.dtype)
    q_terms = prepare_terms(q_mu, queries.concentration, kind, "query")
    i_terms = prepare_terms(i_mu, items.concentration, kind, "item")
    return score_prepared(q_terms, i_terms, chunk_size)


__all__ = ["SCORE_KINDS", "ScoreTerms", "check_kind", "prepare_terms", "score", "score_prepared"]
