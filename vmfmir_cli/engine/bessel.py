"""Modified Bessel functions of the first kind, in the form the vMF distribution needs.

Everything here works in log space and in float64, for orders ``nu = d/2 - 1`` with ``d`` from 2 to
many thousands and arguments ``kappa`` from 1e-4 to 1e5 and beyond, where ``scipy.special.ive``
underflows (``ive`` is 0 at d >= 512 with small kappa, which makes log C infinite and A_d = 0/0).

Method
------
* Orders ``nu >= NU_OLVER``: Olver's uniform asymptotic expansion (DLMF 10.41.3)

      I_nu(nu z) ~ exp(nu eta) / ((2 pi nu)^{1/2} (1 + z^2)^{1/4}) * sum_k U_k(p) / nu^k,
      s = sqrt(1 + z^2),  p = 1 / s,  eta = s + log(z / (1 + s)),

  with the Debye polynomials U_k built exactly (rational arithmetic) from the recurrence
  U_{k+1}(p) = p^2 (1 - p^2) U_k'(p) / 2 + (1/8) int_0^p (1 - 5 t^2) U_k(t) dt.
  The number of terms is picked per order from a bound on max |U_k| over [0, 1], so the truncation
  error is below float64 round-off. The expansion is uniform in z: one formula for every kappa, so
  there is no seam in kappa at all (no jump in value or slope).
* Small orders: start at an order ``mu >= NU_OLVER`` with the same integer/half-integer parity and
  walk down with the ratio recurrence r_j = I_j / I_{j-1} = x / (2 j + x r_{j+1}) (the stable
  direction of Gauss' continued fraction), so log I_nu = log I_mu - sum_j log r_j.

The functions below return pieces of the vMF log-normaliser directly, rearranged so that the large
terms cancel analytically rather than numerically:

    log C_d(kappa) = nu (log nu + log1p(s) - s) + (1/2) log s + (1/2) log(2 pi nu)
                     - (d/2) log(2 pi) - log sum_k U_k(p) / nu^k,   s = sqrt(1 + (kappa/nu)^2).
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import torch

NU_OLVER = 24.0
_MAX_TERMS = 14


def _debye_polynomials(count: int) -> list[list[Fraction]]:
    """Coefficient lists (by power of p) of U_0 .. U_{count-1}, exact."""
    polys = [[Fraction(1)]]
    for _ in range(count - 1):
        u = polys[-1]
        deriv = [i * c for i, c in enumerate(u)][1:]  # U'(p), coefficient of p^(i-1)
        # p^2 (1 - p^2) U'(p) / 2
        term1 = [Fraction(0)] * (len(deriv) + 4)
        for i, c in enumerate(deriv):
            term1[i + 2] += c / 2
            term1[i + 4] -= c / 2
        # (1/8) int_0^p (1 - 5 t^2) U(t) dt
        prod = [Fraction(0)] * (len(u) + 2)
        for i, c in enumerate(u):
            prod[i] += c
            prod[i + 2] -= 5 * c
        term2 = [Fraction(0)] + [c / (8 * (i + 1)) for i, c in enumerate(prod)]
        size = max(len(term1), len(term2))
        new = [Fraction(0)] * size
        for i, c in enumerate(term1):
            new[i] += c
        for i, c in enumerate(term2):
            new[i] += c
        while len(new) > 1 and new[-1] == 0:
            new.pop()
        polys.append(new)
    return polys


_U = _debye_polynomials(_MAX_TERMS + 1)
_U_FLOAT = [[float(c) for c in poly] for poly in _U]


def _poly_sup(poly: list[float]) -> float:
    grid = [i / 2000 for i in range(2001)]
    return max(abs(sum(c * p**i for i, c in enumerate(poly))) for p in grid)


_U_SUP = [_poly_sup(poly) for poly in _U_FLOAT]


@lru_cache(maxsize=None)
def olver_terms(nu: float, tol: float) -> int:
    """Smallest K such that the first omitted term of the expansion is below ``tol``."""
    for k in range(1, _MAX_TERMS + 1):
        if _U_SUP[k] / nu**k < tol:
            return k
    return _MAX_TERMS


def _horner(coeffs: list[float], p: torch.Tensor) -> torch.Tensor:
    out = torch.full_like(p, coeffs[-1])
    if p.requires_grad and torch.is_grad_enabled():
        for c in reversed(coeffs[:-1]):
            out = out * p + c
        return out
    for c in reversed(coeffs[:-1]):  # the same operations in place: no temporary per coefficient
        out.mul_(p).add_(c)
    return out


@lru_cache(maxsize=256)
def _series_coefficients(nu: float, terms: int) -> tuple[float, ...]:
    """c_j of sum_{1 <= k < terms} U_k(p) / nu^k = sum_j c_j p^j (one polynomial: one Horner pass)."""
    degree = 3 * (terms - 1)
    coeffs = [0.0] * (degree + 1)
    for k in range(1, terms):
        scale = 1.0 / nu**k
        for j, c in enumerate(_U_FLOAT[k]):
            coeffs[j] += c * scale
    return tuple(coeffs)


def debye_log_series(p: torch.Tensor, nu: float, terms: int) -> torch.Tensor:
    """log sum_{k < terms} U_k(p) / nu^k (the correction factor of Olver's expansion)."""
    if terms <= 1:
        return torch.zeros_like(p)
    coeffs = _series_coefficients(float(nu), int(terms))
    # U_k(p) has p^k as lowest power: the constant term is zero, so Horner on the rest, times p
    poly = _horner(list(coeffs[1:]), p)
    if poly.requires_grad:
        return torch.log1p(poly * p)
    return poly.mul_(p).log1p_()


def log_normalizer_olver(kappa: torch.Tensor, dim: int, tol: float = 1e-17) -> torch.Tensor:
    """log C_d(kappa) by Olver's expansion; valid for nu = d/2 - 1 >= NU_OLVER. kappa > 0."""
    nu = dim / 2.0 - 1.0
    z = kappa / nu
    s = torch.sqrt(1.0 + z * z)
    const = 0.5 * math.log(2.0 * math.pi * nu) - (dim / 2.0) * math.log(2.0 * math.pi) + nu * math.log(nu)
    terms = olver_terms(nu, tol)
    series = debye_log_series(1.0 / s, nu, terms)
    return nu * (torch.log1p(s) - s) + 0.5 * torch.log(s) + const - series


def log_ratio_olver(kappa: torch.Tensor, dim: int, log_c: torch.Tensor | None = None) -> torch.Tensor:
    """log A_d(kappa) = log I_{d/2}(kappa) - log I_{d/2-1}(kappa), both orders >= NU_OLVER.

    log I_nu(kappa) = nu log kappa - (nu + 1) log(2 pi) - log C_{2 nu + 2}(kappa), hence
    log A_d = log kappa - log(2 pi) + log C_d - log C_{d+2}. ``log_c``: log C_d if already known.
    """
    if log_c is None:
        log_c = log_normalizer_olver(kappa, dim)
    return torch.log(kappa) - math.log(2.0 * math.pi) + log_c - log_normalizer_olver(kappa, dim + 2)


def _top_dim(dim: int) -> int:
    """The smallest dimension D = dim + 2m whose order D/2 - 1 reaches NU_OLVER."""
    m = max(0, math.ceil((2.0 * (NU_OLVER + 1.0) - dim) / 2.0))
    return dim + 2 * m


def log_normalizer_and_ratio(kappa: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(log C_d(kappa), A_d(kappa)) in float64 for kappa > 0 and any dim >= 2.

    For small dims: with D = dim + 2m the top dimension, r_j = I_j / I_{j-1} for orders
    j = nu+1 .. nu+m (nu = d/2 - 1), and the identity I_{nu} = I_{nu+m} / prod_j r_j,

        log C_d = log C_D - m (log kappa - log 2 pi) + sum_j log r_j,

    where r_{nu+m} = A_D-2... is obtained from Olver and the rest by downward recurrence
    r_j = kappa / (2 j + kappa r_{j+1}).
    """
    if dim - 2 >= 2 * NU_OLVER:
        log_c = log_normalizer_olver(kappa, dim)
        return log_c, torch.exp(log_ratio_olver(kappa, dim, log_c))
    top = _top_dim(dim)
    nu = dim / 2.0 - 1.0
    m = (top - dim) // 2
    # r at the top order nu + m + 1 = top/2 is A_top; walk down to r_{nu+1} = A_dim.
    log_c_top = log_normalizer_olver(kappa, top)
    r = torch.exp(log_ratio_olver(kappa, top, log_c_top))
    sum_log_r = torch.zeros_like(kappa)
    for j_index in range(m, 0, -1):
        order = nu + j_index  # r_{order} = I_order / I_{order-1}
        r = kappa / (2.0 * order + kappa * r)
        sum_log_r = sum_log_r + torch.log(r)
    log_c = log_c_top - m * (torch.log(kappa) - math.log(2.0 * math.pi)) + sum_log_r
    return log_c, r


def log_normalizer_only(kappa: torch.Tensor, dim: int) -> torch.Tensor:
    """log C_d(kappa) (float64, kappa > 0) without A_d: one expansion when the order is large."""
    if dim - 2 >= 2 * NU_OLVER:
        return log_normalizer_olver(kappa, dim)
    return log_normalizer_and_ratio(kappa, dim)[0]


def log_normalizer_at_zero(dim: int) -> float:
    """log C_d(0) = log Gamma(d/2) - log 2 - (d/2) log pi (one over the sphere's area)."""
    return math.lgamma(dim / 2.0) - math.log(2.0) - (dim / 2.0) * math.log(math.pi)


__all__ = [
    "NU_OLVER",
    "debye_log_series",
    "log_normalizer_and_ratio",
    "log_normalizer_at_zero",
    "log_normalizer_olver",
    "log_normalizer_only",
    "olver_terms",
]
