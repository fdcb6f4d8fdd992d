"""The von Mises-Fisher distribution on the unit hypersphere S^{d-1}.

Density with respect to the surface measure (the convention of every formula here):

    f(x; mu, kappa) = C_d(kappa) exp(kappa mu.x),   |mu| = 1, kappa >= 0,
    log C_d(kappa) = (d/2 - 1) log kappa - (d/2) log(2 pi) - log I_{d/2-1}(kappa).

Normalisers are computed in float64 from Olver's uniform expansion (see :mod:`bessel`) and returned in
the input dtype; their derivatives are analytic (d log C / d kappa = -A_d(kappa),
A_d' = 1 - A_d^2 - (d - 1) A_d / kappa), so gradients are exact and cheap.

Sampling is Wood's (1994) rejection sampler, vectorised over every (sample, batch) pair, with exact
gradients: d = 3 uses the closed-form inverse CDF; d > 3 uses implicit reparameterisation of the
marginal of w = mu.x (Figurnov et al. 2018), dw/dkappa = -(dF/dkappa)(w) / f(w), with the tail
integral evaluated by Gauss-Legendre quadrature on the side of w where it has no cancellation.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch.distributions import Distribution, constraints
from torch.distributions.kl import register_kl

from vmfmir_cli.engine import bessel

_GL_NODES = 64


# --------------------------------------------------------------------------------------------------
# Normalising constant and mean resultant length
# --------------------------------------------------------------------------------------------------


def _check_dim(dim: int) -> int:
    if int(dim) != dim or dim < 2:
        raise ValueError(f"dim must be an integer >= 2, got {dim!r}")
    return int(dim)


def _log_c_and_a_f64(kappa64: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(log C_d, A_d) in float64; kappa = 0 gives the exact limits (sphere area, A = 0)."""
    positive = kappa64 > 0
    safe = torch.where(positive, kappa64, torch.ones_like(kappa64))
    log_c, ratio = bessel.log_normalizer_and_ratio(safe, dim)
    log_c = torch.where(positive, log_c, torch.full_like(log_c, bessel.log_normalizer_at_zero(dim)))
    ratio = torch.where(positive, ratio, torch.zeros_like(ratio))
    return log_c, ratio


def _log_c_f64(kappa64: torch.Tensor, dim: int) -> torch.Tensor:
    """log C_d in float64 (the exact limit at kappa = 0)."""
    positive = kappa64 > 0
    safe = torch.where(positive, kappa64, torch.ones_like(kappa64))
    log_c = bessel.log_normalizer_only(safe, dim)
    return torch.where(positive, log_c, torch.full_like(log_c, bessel.log_normalizer_at_zero(dim)))


class _LogNormalizer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kappa: torch.Tensor, dim: int) -> torch.Tensor:
        kappa64 = kappa.detach().to(torch.float64)
        if not ctx.needs_input_grad[0]:  # inference (scores, eval): log C alone is cheaper
            return _log_c_f64(kappa64, dim).to(kappa.dtype)
        log_c, ratio = _log_c_and_a_f64(kappa64, dim)
        ctx.save_for_backward(ratio)
        return log_c.to(kappa.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (ratio,) = ctx.saved_tensors
        return -(grad.to(torch.float64) * ratio).to(grad.dtype), None


class _MeanResultantLength(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kappa: torch.Tensor, dim: int) -> torch.Tensor:
        kappa64 = kappa.detach().to(torch.float64)
        _, ratio = _log_c_and_a_f64(kappa64, dim)
        ctx.save_for_backward(kappa64, ratio)
        ctx.dim = dim
        return ratio.to(kappa.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        kappa64, ratio = ctx.saved_tensors
        return (grad.to(torch.float64) * _ratio_derivative(kappa64, ratio, ctx.dim)).to(grad.dtype), None


def _ratio_derivative(kappa64: torch.Tensor, ratio: torch.Tensor, dim: int) -> torch.Tensor:
    """A_d'(kappa) = 1 - A^2 - (d - 1) A / kappa, with the limit 1/d at kappa = 0."""
    safe = torch.where(kappa64 > 0, kappa64, torch.ones_like(kappa64))
    deriv = (1.0 - ratio * ratio - (dim - 1) * ratio / safe).clamp_min(0.0)  # A' > 0; clamp round-off
    return torch.where(kappa64 > 0, deriv, torch.full_like(deriv, 1.0 / dim))


def _as_tensor(kappa) -> torch.Tensor:
    if isinstance(kappa, torch.Tensor):
        return kappa if kappa.is_floating_point() else kappa.to(torch.get_default_dtype())
    return torch.as_tensor(kappa, dtype=torch.float64)


def log_normalizer(kappa, dim: int) -> torch.Tensor:
    """log C_d(kappa), elementwise, for any shape; differentiable (d/dkappa = -A_d(kappa)).

    Relative error below 1e-12 in float64 for d in [2, 4096+] and kappa in [1e-4, 1e5]
    (tested against mpmath); float32 input is computed in float64 and returned in float32.
    """
    return _LogNormalizer.apply(_as_tensor(kappa), _check_dim(dim))


def mean_resultant_length(kappa, dim: int) -> torch.Tensor:
    """A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa) = E[mu.x]; differentiable (analytic A_d')."""
    return _MeanResultantLength.apply(_as_tensor(kappa), _check_dim(dim))


# --------------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def _wood_sample_w(kappa: torch.Tensor, dim: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Draw w = mu.x for each entry of ``kappa`` (float64, any shape) with Wood's algorithm.

    Returns ``1 - w`` (kept separately: near w = 1 it carries the precision that w loses).
    Proposals are drawn in rounds of several candidates per entry; each round is pure tensor work
    on kappa's device, and the loop ends when every entry has accepted (typically after one round).
    """
    flat = kappa.reshape(-1)
    n = flat.numel()
    dm1 = dim - 1.0
    if dim == 3:  # exact inverse CDF: w = 1 + log(u + (1 - u) exp(-2 kappa)) / kappa
        u = torch.rand(n, dtype=torch.float64, device=flat.device, generator=generator)
        one_minus_w = -torch.log(u + (1.0 - u) * torch.exp(-2.0 * flat)) / flat
        return one_minus_w.clamp(0.0, 2.0).reshape(kappa.shape)
    b = dm1 / (2.0 * flat + torch.sqrt(4.0 * flat * flat + dm1 * dm1))
    x0 = (1.0 - b) / (1.0 + b)
    c = flat * x0 + dm1 * torch.log1p(-x0 * x0)
    beta = torch.distributions.Beta(
        torch.tensor(dm1 / 2.0, dtype=torch.float64, device=flat.device),
        torch.tensor(dm1 / 2.0, dtype=torch.float64, device=flat.device),
    )
    result = torch.full_like(flat, float("nan"))
    todo = torch.arange(n, device=flat.device)  # entries still without an accepted proposal
    candidates = 4  # acceptance is high (> 50% per proposal for any kappa, d): one round nearly always does
    for _ in range(64):
        b_t, x0_t, c_t, k_t = b[todo], x0[todo], c[todo], flat[todo]
        m = todo.numel()
        eps = _beta_sample(beta, (candidates, m), generator)
        denom = 1.0 - (1.0 - b_t) * eps
        one_minus_w = 2.0 * b_t * eps / denom  # = 1 - w, computed without cancellation
        w = 1.0 - one_minus_w
        u = torch.rand((candidates, m), dtype=torch.float64, device=flat.device, generator=generator)
        accept = k_t * w + dm1 * torch.log1p(-x0_t * w) - c_t >= torch.log(u)
        first = torch.argmax(accept.to(torch.int8), dim=0)  # first accepted candidate per entry
        any_accept = accept.any(dim=0)
        chosen = one_minus_w.gather(0, first.unsqueeze(0)).squeeze(0)
        result[todo[any_accept]] = chosen[any_accept]
        todo = todo[~any_accept]
        if todo.numel() == 0:
            break
        candidates = 8
    return result.reshape(kappa.shape)


def _beta_sample(beta: torch.distributions.Beta, shape, generator) -> torch.Tensor:
    """Beta draws; torch's gamma sampler takes no generator, so a given generator seeds a forked RNG."""
    if generator is None:
        return beta.sample(shape)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    with torch.random.fork_rng(devices=[] if beta.concentration1.device.type == "cpu" else [beta.concentration1.device]):
        torch.manual_seed(seed)
        return beta.sample(shape)


def _gauss_legendre(n: int, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights of the n-point Gauss-Legendre rule on [0, 1] (Golub-Welsch)."""
    key = (n, dtype, str(device))
    cached = _GL_CACHE.get(key)
    if cached is None:
        k = torch.arange(1, n, dtype=torch.float64)
        off = k / torch.sqrt(4.0 * k * k - 1.0)
        jacobi = torch.diag(off, 1) + torch.diag(off, -1)
        nodes, vecs = torch.linalg.eigh(jacobi)
        weights = 2.0 * vecs[0] ** 2
        cached = ((nodes + 1.0) / 2.0).to(dtype=dtype, device=device), (weights / 2.0).to(dtype=dtype, device=device)
        _GL_CACHE[key] = cached
    return cached


_GL_CACHE: dict = {}


def _implicit_dw_dkappa(kappa: torch.Tensor, one_minus_w: torch.Tensor, dim: int) -> torch.Tensor:
    """dw/dkappa for w ~ f(w) = exp(kappa w) (1 - w^2)^alpha / Z, alpha = (d - 3) / 2 (float64).

    Implicit reparameterisation: dw/dkappa = -(dF/dkappa)(w) / f(w) with
    dF/dkappa(w) = int_{-1}^{w} (t - A) f(t) dt = -int_{w}^{1} (t - A) f(t) dt. On the side of w
    away from the mean A the integrand (t - A) has one sign, so

        w >= A:  dw/dkappa = int_w^1   (t - A) exp(psi(t) - psi(w)) dt,
        w <  A:  dw/dkappa = int_-1^w  (A - t) exp(psi(t) - psi(w)) dt,     psi(t) = kappa t + alpha log(1 - t^2),

    both positive. psi is concave with psi'' <= -2 alpha, so the integrand is negligible
    (< e^-40) beyond a window derived from the slope and curvature of psi; the window is integrated
    with Gauss-Legendre.
    """
    alpha = (dim - 3) / 2.0
    a = bessel.log_normalizer_and_ratio(kappa, dim)[1]
    w = 1.0 - one_minus_w
    one_plus_w = 2.0 - one_minus_w
    upper = w >= a
    # mode of psi on (-1, 1): t_m = kappa / (alpha + sqrt(alpha^2 + kappa^2)); 1 - t_m without cancellation
    root = torch.sqrt(alpha * alpha + kappa * kappa)
    t_mode = kappa / (alpha + root)
    one_minus_mode = (alpha + root - kappa) / (alpha + root)

    def psi_slope_curv(t, one_minus_t, one_plus_t):
        q = one_minus_t * one_plus_t
        slope = kappa - 2.0 * alpha * t / q
        curv = 2.0 * alpha * (1.0 + t * t) / (q * q)
        return slope, curv

    # Upper tail: start of decay is max(w, t_mode); lower tail: w itself (psi' > 0 left of the mode).
    start_upper_is_w = w >= t_mode
    p0 = torch.where(upper & ~start_upper_is_w, t_mode, w)
    p0_om = torch.where(upper & ~start_upper_is_w, one_minus_mode, one_minus_w)
    p0_op = 2.0 - p0_om
    slope, curv = psi_slope_curv(p0, p0_om, p0_op)
    # curvature bound valid along the whole outward direction
    outward_curv = torch.where(upper | (p0 <= 0), curv, torch.full_like(curv, 2.0 * alpha))
    outward_curv = torch.clamp(outward_curv, min=2.0 * alpha)
    span_slope = 42.0 / slope.abs().clamp_min(1e-300)
    span_curv = torch.where(outward_curv > 0, 9.2 / torch.sqrt(outward_curv.clamp_min(1e-300)), torch.full_like(curv, math.inf))
    tail = torch.minimum(span_slope, span_curv)
    rise = torch.where(upper, (one_minus_w - one_minus_mode).clamp_min(0.0), torch.zeros_like(w))
    room = torch.where(upper, one_minus_w, one_plus_w)
    length = torch.minimum(rise + tail, room)

    nodes, weights = _gauss_legendre(_GL_NODES, kappa.dtype, kappa.device)
    shape = (-1,) + (1,) * w.dim()
    u = nodes.view(shape) * length  # distance from w, outward
    direction = torch.where(upper, 1.0, -1.0)
    t = w + direction * u
    one_minus_t = one_minus_w - direction * u
    one_plus_t = one_plus_w + direction * u
    log_ratio = kappa * (t - w) + alpha * (
        torch.log(one_minus_t.clamp_min(1e-300) / one_minus_w.clamp_min(1e-300))
        + torch.log(one_plus_t.clamp_min(1e-300) / one_plus_w.clamp_min(1e-300))
    )
    integrand = direction * (t - a) * torch.exp(log_ratio)
    integrand = torch.where((one_minus_t > 0) & (one_plus_t > 0), integrand, torch.zeros_like(integrand))
    return (weights.view(shape) * integrand).sum(0) * length


class _ImplicitW(torch.autograd.Function):
    """Carries a sample of w forward and its implicit-reparameterisation gradient backward."""

    @staticmethod
    def forward(ctx, kappa: torch.Tensor, one_minus_w: torch.Tensor, dim: int) -> torch.Tensor:
        ctx.save_for_backward(kappa, one_minus_w)
        ctx.dim = dim
        return one_minus_w.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        kappa, one_minus_w = ctx.saved_tensors
        dw = _implicit_dw_dkappa(kappa, one_minus_w, ctx.dim)
        return -grad * dw, None, None  # d(1 - w)/dkappa = -dw/dkappa


def _householder_to(loc: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply the reflection that maps e_1 to ``loc`` (unit vectors, batch shape) to points ``x``.

    ``x`` may have extra leading (sample) dimensions: the reflection vector is computed once per
    distribution and broadcast, and applied in two passes over ``x`` (a dot product and an addcmul).
    """
    u = -loc.clone()
    u[..., 0] += 1.0
    norm = u.norm(dim=-1, keepdim=True)
    # loc ~ e_1: the reflection is the identity (u = 0); elsewhere u is the unit normal of the mirror
    u = torch.where(norm < 1e-6, torch.zeros_like(u), u / norm.clamp_min(1e-6))
    dot = torch.linalg.vecdot(x, u)
    return torch.addcmul(x, dot.unsqueeze(-1), u, value=-2.0)


# --------------------------------------------------------------------------------------------------
# The distribution
# --------------------------------------------------------------------------------------------------


class _UnitVector(constraints.Constraint):
    event_dim = 1

    def check(self, value):
        return (value.norm(dim=-1) - 1.0).abs() < 1e-4


unit_vector = _UnitVector()


class VonMisesFisher(Distribution):
    """vMF(mu, kappa) on S^{d-1}: ``loc`` (..., d) unit vectors, ``concentration`` (...) >= 0.

    ``rsample`` is exactly reparameterised (gradients w.r.t. loc and concentration are unbiased).
    """

    arg_constraints = {"loc": unit_vector, "concentration": constraints.nonnegative}
    support = unit_vector
    has_rsample = True

    def __init__(self, loc: torch.Tensor, concentration, validate_args: Optional[bool] = None):
        if loc.dim() < 1 or loc.shape[-1] < 2:
            raise ValueError(f"loc must have shape (..., d) with d >= 2, got {tuple(loc.shape)}")
        concentration = torch.as_tensor(concentration, dtype=loc.dtype, device=loc.device)
        batch_shape = torch.broadcast_shapes(loc.shape[:-1], concentration.shape)
        self.loc = loc.expand(batch_shape + loc.shape[-1:])
        self.concentration = concentration.expand(batch_shape)
        super().__init__(batch_shape, loc.shape[-1:], validate_args=validate_args)

    @property
    def dim(self) -> int:
        return int(self.loc.shape[-1])

    @property
    def mean(self) -> torch.Tensor:
        return mean_resultant_length(self.concentration, self.dim).unsqueeze(-1) * self.loc

    @property
    def mode(self) -> torch.Tensor:
        return self.loc

    def log_normalizer(self) -> torch.Tensor:
        return log_normalizer(self.concentration, self.dim)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return self.log_normalizer() + self.concentration * (self.loc * value).sum(-1)

    def entropy(self) -> torch.Tensor:
        kappa = self.concentration
        return -log_normalizer(kappa, self.dim) - kappa * mean_resultant_length(kappa, self.dim)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return VonMisesFisher(
            self.loc.expand(batch_shape + self.event_shape), self.concentration.expand(batch_shape), validate_args=False
        )

    def rsample(self, sample_shape: Sequence[int] = torch.Size(), generator: Optional[torch.Generator] = None):
        """Samples of shape sample_shape + batch_shape + (d,), differentiable w.r.t. loc and kappa."""
        sample_shape = torch.Size(sample_shape)
        d = self.dim
        if d < 3:
            raise ValueError("rsample needs d >= 3; for circles use torch.distributions.VonMises")
        shape = sample_shape + self.batch_shape
        kappa64 = self.concentration.to(torch.float64).expand(shape)
        kappa_safe = kappa64.clamp_min(1e-12)
        one_minus_w = _wood_sample_w(kappa_safe.detach(), d, generator)
        if d == 3:  # the inverse CDF is differentiable as written
            one_minus_w = _implicit_w3(kappa_safe, one_minus_w)
        else:
            one_minus_w = _ImplicitW.apply(kappa_safe, one_minus_w, d)
        dtype = self.loc.dtype
        w = (1.0 - one_minus_w).to(dtype)
        radial = torch.sqrt((one_minus_w * (2.0 - one_minus_w)).clamp_min(0.0)).to(dtype)
        # the tangent direction only needs the precision of the output: draw it in loc's dtype
        v = torch.randn(shape + (d - 1,), dtype=dtype, device=self.loc.device, generator=generator)
        tail = v * (radial / torch.linalg.vector_norm(v, dim=-1).clamp_min(torch.finfo(dtype).tiny)).unsqueeze(-1)
        x = torch.cat([w.unsqueeze(-1), tail], dim=-1)
        return _householder_to(self.loc, x)

    def sample(self, sample_shape: Sequence[int] = torch.Size(), generator: Optional[torch.Generator] = None):
        with torch.no_grad():
            return self.rsample(sample_shape, generator=generator)


def _implicit_w3(kappa: torch.Tensor, one_minus_w: torch.Tensor) -> torch.Tensor:
    """d = 3: attach dw/dkappa at fixed u to a sample, by differentiating the CDF identity F(w; k) = u.

    F(w; k) = (e^{k(w-1)} - e^{-2k}) / (1 - e^{-2k}) and f(w; k) = k e^{k(w-1)} / (1 - e^{-2k});
    dw/dk = -(dF/dk) / f. The value is unchanged; only the gradient w.r.t. kappa is added.
    """
    with torch.no_grad():
        k = kappa
        # dF/dk / f with f = k e^{k w} / (e^k - e^-k); dF/dk computed in a stable form
        # F = (e^{k(w-1)} - e^{-2k}) / (1 - e^{-2k})
        e2 = torch.exp(-2.0 * k)
        ew = torch.exp(-k * one_minus_w)
        num_f = ew - e2
        den = -torch.expm1(-2.0 * k)
        dnum = -one_minus_w * ew + 2.0 * e2
        dden = 2.0 * e2
        dF = (dnum * den - num_f * dden) / (den * den)
        f = k * ew / den
        dw = -dF / f
    return one_minus_w + (-(dw) * (kappa - kappa.detach()))


# --------------------------------------------------------------------------------------------------
# Closed forms between two vMFs (broadcasting batch shapes)
# --------------------------------------------------------------------------------------------------


def _pair(p: VonMisesFisher, q: VonMisesFisher):
    if p.dim != q.dim:
        raise ValueError(f"vMFs live on spheres of different dimension: {p.dim} and {q.dim}")
    cos = (p.loc * q.loc).sum(-1)
    return p.concentration, q.concentration, cos


def _combined_concentration(k1: torch.Tensor, k2: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """|k1 mu1 + k2 mu2| = sqrt(k1^2 + k2^2 + 2 k1 k2 cos), clamped at 0 against round-off."""
    return torch.sqrt((k1 * k1 + k2 * k2 + 2.0 * k1 * k2 * cos).clamp_min(0.0))


def kl_divergence(p: VonMisesFisher, q: VonMisesFisher) -> torch.Tensor:
    """KL(p || q) = log C(k1) - log C(k2) + A(k1) (k1 - k2 mu1.mu2)."""
    k1, k2, cos = _pair(p, q)
    d = p.dim
    out = (
        log_normalizer(k1.double(), d)
        - log_normalizer(k2.double(), d)
        + mean_resultant_length(k1.double(), d) * (k1.double() - k2.double() * cos.double())
    )
    return out.clamp_min(0.0).to(p.loc.dtype)


@register_kl(VonMisesFisher, VonMisesFisher)
def _kl_vmf_vmf(p, q):
    return kl_divergence(p, q)


def log_probability_product(p: VonMisesFisher, q: VonMisesFisher, rho: float = 1.0) -> torch.Tensor:
    """log of int p(x)^rho q(x)^rho dx = rho (log C(k1) + log C(k2)) - log C(rho |k1 mu1 + k2 mu2|)."""
    k1, k2, cos = _pair(p, q)
    d = p.dim
    k1, k2, cos = k1.double(), k2.double(), cos.double()
    k3 = _combined_concentration(k1, k2, cos)
    out = rho * (log_normalizer(k1, d) + log_normalizer(k2, d)) - log_normalizer(rho * k3, d)
    return out.to(p.loc.dtype)


def log_expected_likelihood(p: VonMisesFisher, q: VonMisesFisher) -> torch.Tensor:
    """log int p(x) q(x) dx = log C(k1) + log C(k2) - log C(|k1 mu1 + k2 mu2|)."""
    return log_probability_product(p, q, 1.0)


def log_bhattacharyya(p: VonMisesFisher, q: VonMisesFisher) -> torch.Tensor:
    """log of the Bhattacharyya coefficient int sqrt(p q) dx (<= 0, = 0 iff p == q)."""
    return log_probability_product(p, q, 0.5)


def expected_cosine(p: VonMisesFisher, q: VonMisesFisher) -> torch.Tensor:
    """E[x.y] for independent x ~ p, y ~ q: A(k1) A(k2) mu1.mu2."""
    k1, k2, cos = _pair(p, q)
    d = p.dim
    return mean_resultant_length(k1, d) * mean_resultant_length(k2, d) * cos


def fuse(*dists: VonMisesFisher, weights: Optional[Sequence[float]] = None) -> VonMisesFisher:
    """Product of experts: natural parameters add, eta = sum_i w_i kappa_i mu_i.

    The (renormalised) product of vMF densities p_1^{w_1} ... p_n^{w_n} is vMF(eta / |eta|, |eta|).
    """
    if not dists:
        raise ValueError("fuse needs at least one distribution")
    if weights is None:
        weights = [1.0] * len(dists)
    if len(weights) != len(dists):
        raise ValueError(f"got {len(weights)} weights for {len(dists)} distributions")
    if any(w < 0 for w in weights):
        raise ValueError("fusion weights must be >= 0")
    eta = sum(w * d.concentration.unsqueeze(-1) * d.loc for w, d in zip(weights, dists))
    kappa = eta.norm(dim=-1)
    loc = eta / kappa.clamp_min(torch.finfo(eta.dtype).tiny).unsqueeze(-1)
    return VonMisesFisher(loc, kappa)


__all__ = [
    "VonMisesFisher",
    "expected_cosine",
    "fuse",
    "kl_divergence",
    "log_bhattacharyya",
    "log_expected_likelihood",
    "log_normalizer",
    "log_probability_product",
    "mean_resultant_length",
]
