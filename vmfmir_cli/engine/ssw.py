r"""Spherical sliced-Wasserstein (SSW) discrepancy between point clouds on :math:`S^{d-1}`.

Definition (Bonet et al., 2023)
-------------------------------
A slice is a matrix :math:`U \in \mathbb{R}^{d \times 2}` with orthonormal columns. It maps a point
:math:`x \in S^{d-1}` to the circle of length 1 through

.. math::
    t_U(x) = \frac{\operatorname{atan2}(u_2^\top x,\ u_1^\top x)}{2\pi} + \frac{1}{2} \pmod 1,

(the angle of the projection :math:`U^\top x / \|U^\top x\|`; the fixed half-turn rotation changes
no distance). With :math:`L` slices drawn uniformly on the Stiefel manifold (QR of a ``d x 2``
standard normal matrix),

.. math::
    \mathrm{SSW}_p^p(\mu, \nu) = \frac{1}{L} \sum_{l=1}^{L} W_p^p\big((t_{U_l})_\# \mu,\ (t_{U_l})_\# \nu\big),

where :math:`W_p` is the Wasserstein distance on the circle for the geodesic cost
:math:`d(a, b) = \min(|a - b|, 1 - |a - b|)`. This module returns the p-th power (no root): the root
has an infinite derivative where the two clouds coincide.

Exact transport on the circle
-----------------------------
*Equal sizes, uniform weights* (the training case): with both clouds sorted,

.. math::
    W_p^p = \min_{k \in \{0, \dots, n-1\}} \frac{1}{n} \sum_{i=1}^{n} d\big(a_{(i)}, b_{((i + k) \bmod n)}\big)^p ,

an ``(n, n)`` table per slice built with one gather, reduced by a mean and a min. This is exact (the
optimal plan between two uniform n-point measures on the circle is a cyclic shift of the sorted
order) and costs O(n^2) per slice after sorting, fully batched.

*General sizes or weights* (Delon, Salomon & Sobolevski, 2010): with :math:`F, G` the cumulative
distribution functions on :math:`[0, 1)`, extended to :math:`\mathbb{R}` by
:math:`F(t + 1) = F(t) + 1`, and :math:`F^{-1}, G^{-1}` their (extended) quantile functions,

.. math::
    W_p^p(\mu, \nu) = \min_{\theta \in \mathbb{R}} C(\theta), \qquad
    C(\theta) = \int_0^1 \big|F^{-1}(t) - G^{-1}(t + \theta)\big|^p \, dt .

For discrete measures :math:`C` is convex (p >= 1) and piecewise linear, with breakpoints where a
shifted level of :math:`G` meets a level of :math:`F`: :math:`\theta \in \{G_j - F_i + k\}`, and its
minimiser lies in :math:`[-1, 1]`. Its one-sided slope is

.. math::
    C'(\theta^+) = \sum_{j=1}^{m} \Big[ \big|x_{i(j)} - y_{J+1}\big|^p - \big|x_{i(j)} - y_J\big|^p \Big],

where the breakpoint of level :math:`G_J` sits at :math:`t_j = G_J - \theta \in (0, 1]` and
:math:`x_{i(j)}` is the atom of :math:`\mu` just left of it (lifted atoms: :math:`y_{J + m} = y_J + 1`).
A binary search for the sign change of the slope over the breakpoints (on the grid :math:`r / \mathrm{lcm}(n, m)`
for uniform weights; over the sorted set :math:`\{G_j - F_i\}` otherwise) finds the exact minimising
breakpoint, where :math:`C` is then evaluated by merging the two level sets. Gradients flow through
the evaluation (envelope theorem: the minimising shift depends on the weights only).

Cost: uniform weights O((n + m) log(n + m) log(nm)) per slice; weighted O(nm log(nm)) time and
O(nm) memory per slice (the breakpoint set is sorted).

References
----------
- C. Bonet, P. Berg, N. Courty, F. Septier, L. Drumetz, M.-T. Pham. *Spherical Sliced-Wasserstein*.
  ICLR 2023.
- J. Delon, J. Salomon, A. Sobolevski. *Fast transport optimization for Monge costs on the circle*.
  SIAM J. Appl. Math. 70(7), 2010.
- J. Rabin, J. Delon, Y. Gousseau. *Transportation distances on the circle*. J. Math. Imaging Vis.
  41, 2011.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

__all__ = ["spherical_sliced_wasserstein", "debiased_spherical_sliced_wasserstein", "random_projections", "circle_wasserstein"]

# Equal-size uniform clouds up to this size use the O(n^2) cyclic-shift table; larger ones use the
# O(n log^2 n) shift search (same result, less memory).
_SHIFT_TABLE_MAX_N = 64


def random_projections(
    d: int,
    num_projections: int,
    generator: Optional[torch.Generator] = None,
    device=None,
    dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """Random slices for SSW: ``(num_projections, d, 2)`` matrices with orthonormal columns.

    Each slice is the Q factor of the QR decomposition of a ``d x 2`` standard normal matrix
    (uniform on the Stiefel manifold V_{d,2} up to the sign convention of QR, which does not change
    circle distances). Draws from ``generator`` when given (on the generator's device, then moved
    to ``device``).
    """
    if int(d) != d or d < 2:
        raise ValueError(f"random_projections: d must be an integer >= 2, got {d!r}")
    if int(num_projections) != num_projections or num_projections < 1:
        raise ValueError(f"random_projections: num_projections must be an integer >= 1, got {num_projections!r}")
    dtype = dtype or torch.get_default_dtype()
    if not dtype.is_floating_point:
        raise ValueError(f"random_projections: dtype must be floating point, got {dtype}")
    draw_device = generator.device if generator is not None else device
    z = torch.randn(int(num_projections), int(d), 2, generator=generator, device=draw_device, dtype=dtype)
    q, _ = torch.linalg.qr(z)
    return q.to(device) if device is not None else q


# ---------------------------------------------------------------------------------------------
# Circle transport
# ---------------------------------------------------------------------------------------------


def _cost(delta: torch.Tensor, p: float) -> torch.Tensor:
    a = delta.abs()
    if p == 1:
        return a
    if p == 2:
        return a * a
    return a.pow(p)


_TABLE_CHUNK_ELEMENTS = 1 << 17  # cache-sized blocks of the (B, n, n) table


def _circle_equal_shift_table(u: torch.Tensor, v: torch.Tensor, p: float) -> torch.Tensor:
    """W_p^p between uniform clouds u, v of equal size n on [0, 1): (B, n) -> (B,).

    The (B, n, n) table of shift costs is built without autograd (a strided window view of the
    doubled sorted ``v``; ``r - round(r)`` is the signed geodesic offset); the gradient is that of
    the minimising shift's cost (envelope theorem), recomputed on (B, n) tensors only.
    """
    us, _ = torch.sort(u, dim=-1)
    vs, _ = torch.sort(v, dim=-1)
    return _circle_equal_sorted(us, vs, p)


def _circle_equal_sorted(us: torch.Tensor, vs: torch.Tensor, p: float) -> torch.Tensor:
    """:func:`_circle_equal_shift_table` on clouds already sorted along the last dimension."""
    bsz, n = us.shape
    with torch.no_grad():
        ud, vd = us.detach(), vs.detach()
        windows = torch.cat([vd, vd], dim=1).unfold(1, n, 1)[:, :n]  # [b, k, i] = v[b, (i + k) mod n]
        best = torch.empty(bsz, dtype=torch.long, device=us.device)
        step = max(1, _TABLE_CHUNK_ELEMENTS // (n * n))
        for start in range(0, bsz, step):
            stop = min(bsz, start + step)
            r = ud[start:stop, None, :] - windows[start:stop]
            r.sub_(torch.round(r))  # signed geodesic offsets, in [-1/2, 1/2]
            # argmin_k sum_i |r_ki|^p = argmin_k ||r_k||_p (one fused reduction)
            best[start:stop] = torch.linalg.vector_norm(r, ord=p, dim=-1).argmin(dim=-1)
    idx = torch.arange(n, device=us.device) + best[:, None]
    idx = torch.where(idx >= n, idx - n, idx)
    r = us - vs.gather(1, idx)
    r = r - torch.round(r.detach())
    return _cost(r, p).mean(dim=-1)


class _CircleAngle(torch.autograd.Function):
    """t = atan2(c1, c0) / (2 pi) + 1/2 with a gradient that stays finite at the origin."""

    @staticmethod
    def forward(ctx, c0, c1):
        ctx.save_for_backward(c0, c1)
        return torch.atan2(c1, c0).mul_(0.5 / math.pi).add_(0.5)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        c0, c1 = ctx.saved_tensors
        tiny = torch.finfo(c0.dtype).tiny
        scale = grad * (0.5 / math.pi) / (c0 * c0 + c1 * c1).clamp_min(tiny)
        return -c1 * scale, c0 * scale


def _slope(theta, xs, F, ys, G, p):
    """Right slope C'(theta+) of the shift cost; theta (B,), xs/F (B, n), ys/G (B, m) -> (B,)."""
    n = xs.shape[-1]
    q = torch.floor(theta[:, None] - G) + 1.0
    t = G + q - theta[:, None]  # position of the breakpoint of level G_J, in (0, 1]
    i = torch.searchsorted(F, t.contiguous(), side="left").clamp_(max=n - 1)
    xi = xs.gather(1, i)
    y_here = ys + q
    y_next = torch.cat([ys[:, 1:], ys[:, :1] + 1.0], dim=1) + q
    return (_cost(xi - y_next, p) - _cost(xi - y_here, p)).sum(dim=1)


def _shift_cost(theta, xs, F, ys, G, p):
    """C(theta) = int_0^1 |F^{-1}(t) - G^{-1}(t + theta)|^p dt, differentiable in xs, ys, F, G."""
    n, m = xs.shape[-1], ys.shape[-1]
    zeros = torch.zeros_like(F[:, :1])
    s = torch.remainder(G - theta[:, None], 1.0)  # breakpoints of G in t-space
    levels, _ = torch.sort(torch.cat([zeros, F, s], dim=1), dim=1)
    lengths = levels[:, 1:] - levels[:, :-1]
    mid = 0.5 * (levels[:, 1:] + levels[:, :-1])
    i = torch.searchsorted(F, mid.detach().contiguous(), side="left").clamp_(max=n - 1)
    u = mid.detach() + theta[:, None]
    lift = torch.floor(u)
    j = torch.searchsorted(G, (u - lift).contiguous(), side="left").clamp_(max=m - 1)
    delta = xs.gather(1, i) - (ys.gather(1, j) + lift)
    return (lengths * _cost(delta, p)).sum(dim=1)


def _circle_general(u, v, a, b, p):
    """Exact W_p^p on the circle (Delon-Salomon-Sobolevski). u (B, n), v (B, m) in [0, 1);
    a (B, n) / b (B, m) nonnegative weights or None for uniform."""
    bsz, n = u.shape
    m = v.shape[1]
    xs, order_x = torch.sort(u, dim=1)
    ys, order_y = torch.sort(v, dim=1)
    uniform = a is None and b is None
    if a is None:
        a = torch.full((1, n), 1.0 / n, dtype=u.dtype, device=u.device).expand(bsz, n)
    if b is None:
        b = torch.full((1, m), 1.0 / m, dtype=v.dtype, device=v.device).expand(bsz, m)
    a = a.gather(1, order_x)
    b = b.gather(1, order_y)
    F = torch.cumsum(a, dim=1)
    G = torch.cumsum(b, dim=1)
    F = F / F[:, -1:]  # last level exactly 1
    G = G / G[:, -1:]
    # the search runs in float64 whatever the input dtype (breakpoint grids can be fine)
    f64 = torch.float64
    Fd, Gd = F.detach().to(f64).contiguous(), G.detach().to(f64).contiguous()
    xd, yd = xs.detach().to(f64), ys.detach().to(f64)

    with torch.no_grad():
        if uniform:
            # Breakpoints lie on the grid r / lcm(n, m); search r in [-L, L] for the first r with
            # C'(((r + 1/2) / L)) >= 0 (midpoints are far from every breakpoint).
            grid = n * m // math.gcd(n, m)
            lo = torch.full((bsz,), -grid, dtype=torch.long, device=u.device)
            hi = torch.full((bsz,), grid, dtype=torch.long, device=u.device)
            for _ in range(math.ceil(math.log2(2 * grid + 1)) + 1):
                mid = torch.div(lo + hi, 2, rounding_mode="floor")
                ok = _slope((mid.to(f64) + 0.5) / grid, xd, Fd, yd, Gd, p) >= 0
                hi = torch.where(ok, mid, hi)
                lo = torch.where(ok, lo, mid + 1)
            theta = lo.to(f64) / grid
        else:
            f0 = torch.cat([torch.zeros_like(Fd[:, :1]), Fd[:, :-1]], dim=1)  # F_0 .. F_{n-1}
            base = torch.remainder(Gd[:, None, :] - f0[:, :, None], 1.0).reshape(bsz, n * m)
            base, _ = torch.sort(base, dim=1)
            cand = torch.cat([base - 1.0, base, torch.ones_like(base[:, :1])], dim=1)  # sorted, [-1, 1]
            k_max = cand.shape[1] - 1
            mids = 0.5 * (cand[:, :-1] + cand[:, 1:])
            lo = torch.zeros(bsz, dtype=torch.long, device=u.device)
            hi = torch.full((bsz,), k_max, dtype=torch.long, device=u.device)
            for _ in range(math.ceil(math.log2(k_max + 1)) + 1):
                mid = torch.div(lo + hi, 2, rounding_mode="floor")
                th = mids.gather(1, mid.clamp(max=k_max - 1)[:, None]).squeeze(1)
                ok = (_slope(th, xd, Fd, yd, Gd, p) >= 0) | (mid >= k_max)
                hi = torch.where(ok, mid, hi)
                lo = torch.where(ok, lo, mid + 1)
            theta = cand.gather(1, lo[:, None]).squeeze(1)
    return _shift_cost(theta.to(u.dtype), xs, F, ys, G, p)


def _check_p(p) -> float:
    try:
        pf = float(p)
    except (TypeError, ValueError):
        raise ValueError(f"p must be a real number >= 1, got {p!r}") from None
    if not math.isfinite(pf) or pf < 1:
        raise ValueError(f"p must be a finite number >= 1 (W_p on the circle needs a convex cost), got {p!r}")
    return pf


def _check_weights(w, values: torch.Tensor, name: str):
    if w is None:
        return None
    if not torch.is_tensor(w):
        w = torch.as_tensor(w, dtype=values.dtype, device=values.device)
    if w.shape[-1:] != values.shape[-1:]:
        raise ValueError(f"{name} must have shape (..., {values.shape[-1]}) to match the points, got {tuple(w.shape)}")
    w = w.to(dtype=values.dtype, device=values.device)
    if bool((w < 0).any()) or not bool(torch.isfinite(w).all()) or bool((w.sum(-1) <= 0).any()):
        raise ValueError(f"{name} must be finite, nonnegative and have a positive sum over the last dimension")
    return w


def circle_wasserstein(
    u: torch.Tensor,
    v: torch.Tensor,
    p: float = 2,
    u_weights: Optional[torch.Tensor] = None,
    v_weights: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    r"""Exact :math:`W_p^p` on the circle of length 1 (geodesic cost), batched.

    Args:
        u: ``(..., n)`` positions on the circle (taken modulo 1).
        v: ``(..., m)`` positions on the circle (taken modulo 1).
        p: power, ``>= 1``.
        u_weights / v_weights: optional nonnegative ``(..., n)`` / ``(..., m)`` masses (normalised
            to sum 1 here); uniform when omitted.

    Returns:
        ``(...)`` the p-th power of the Wasserstein distance (batch shapes broadcast).
    """
    pf = _check_p(p)
    if u.ndim < 1 or v.ndim < 1 or u.shape[-1] < 1 or v.shape[-1] < 1:
        raise ValueError(f"u and v need a last dimension of size >= 1, got {tuple(u.shape)} and {tuple(v.shape)}")
    if not (u.dtype.is_floating_point and v.dtype.is_floating_point):
        raise ValueError(f"u and v must be floating point, got {u.dtype} and {v.dtype}")
    u_weights = _check_weights(u_weights, u, "u_weights")
    v_weights = _check_weights(v_weights, v, "v_weights")
    try:
        batch = torch.broadcast_shapes(
            u.shape[:-1],
            v.shape[:-1],
            *([] if u_weights is None else [u_weights.shape[:-1]]),
            *([] if v_weights is None else [v_weights.shape[:-1]]),
        )
    except RuntimeError:
        raise ValueError(
            f"batch shapes do not broadcast: u {tuple(u.shape)}, v {tuple(v.shape)}"
        ) from None
    return _circle_core(torch.remainder(u, 1.0), torch.remainder(v, 1.0), pf, u_weights, v_weights, batch)


def _circle_core(u, v, p: float, u_weights, v_weights, batch) -> torch.Tensor:
    """Dispatch on validated inputs: positions in [0, 1] (1 is the same point as 0)."""
    n, m = u.shape[-1], v.shape[-1]
    u = u.expand(*batch, n).reshape(-1, n)
    v = v.expand(*batch, m).reshape(-1, m)
    if u_weights is None and v_weights is None and n == m and n <= _SHIFT_TABLE_MAX_N:
        out = _circle_equal_shift_table(u, v, p)  # insensitive to the 0/1 identification
    else:
        # the lifted formulation needs positions in [0, 1): map 1 (atan2 = pi, or the round-up of
        # a tiny negative number's remainder) to 0
        u = torch.where(u >= 1.0, u - 1.0, u)
        v = torch.where(v >= 1.0, v - 1.0, v)
        a = None if u_weights is None else u_weights.expand(*batch, n).reshape(-1, n)
        b = None if v_weights is None else v_weights.expand(*batch, m).reshape(-1, m)
        out = _circle_general(u, v, a, b, p)
    return out.reshape(batch)


def _angles(points: torch.Tensor, projections: torch.Tensor) -> torch.Tensor:
    """(..., n, d) points and (L, d, 2) slices -> (..., L, n) positions on the circle in [0, 1].

    One matmul of the stacked first and second columns, (2L, d) @ (..., d, n), so that both
    coordinate blocks come out contiguous in (L, n) (atan2 and sort are much faster on those).
    """
    num = projections.shape[0]
    stacked = torch.cat([projections[..., 0], projections[..., 1]], dim=0)  # (2L, d)
    coords = torch.matmul(stacked, points.mT)  # (..., 2L, n)
    return _CircleAngle.apply(coords[..., :num, :], coords[..., num:, :])


def _prepare_clouds(x, y, p, num_projections, projections, generator):
    """Validate two clouds ``(..., n, d)`` / ``(..., m, d)`` and the slices; returns ``(p, x, y,
    projections, out_dtype)`` with the tensors in the working dtype (at least float32)."""
    pf = _check_p(p)
    if not torch.is_tensor(x) or not torch.is_tensor(y):
        raise ValueError("x and y must be torch tensors of shape (..., n, d) and (..., m, d)")
    if x.ndim < 2 or y.ndim < 2:
        raise ValueError(f"x and y must have shape (..., n, d) and (..., m, d), got {tuple(x.shape)} and {tuple(y.shape)}")
    if not (x.dtype.is_floating_point and y.dtype.is_floating_point):
        raise ValueError(f"x and y must be floating point, got {x.dtype} and {y.dtype}")
    d = x.shape[-1]
    if y.shape[-1] != d:
        raise ValueError(f"x and y must have the same dimension d, got {d} and {y.shape[-1]}")
    if d < 2:
        raise ValueError(f"points must live on S^(d-1) with d >= 2, got d = {d}")
    if x.shape[-2] < 1 or y.shape[-2] < 1:
        raise ValueError(f"x and y need at least one point each, got {tuple(x.shape)} and {tuple(y.shape)}")
    try:
        torch.broadcast_shapes(x.shape[:-2], y.shape[:-2])
    except RuntimeError:
        raise ValueError(f"batch shapes of x {tuple(x.shape[:-2])} and y {tuple(y.shape[:-2])} do not broadcast") from None
    out_dtype = torch.promote_types(x.dtype, y.dtype)
    work = torch.promote_types(out_dtype, torch.float32)  # half precision is too coarse for angles
    if projections is None:
        projections = random_projections(d, num_projections, generator=generator, device=x.device, dtype=work)
    else:
        if not torch.is_tensor(projections) or projections.ndim != 3 or projections.shape[1:] != (d, 2) or projections.shape[0] < 1:
            shape = tuple(projections.shape) if torch.is_tensor(projections) else type(projections).__name__
            raise ValueError(f"projections must have shape (L, {d}, 2) with L >= 1, got {shape}")
        projections = projections.to(device=x.device)
    return pf, x.to(work), y.to(work), projections.to(work), out_dtype


def spherical_sliced_wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    p: float = 2,
    num_projections: int = 64,
    projections: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
    x_weights: Optional[torch.Tensor] = None,
    y_weights: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    r"""Spherical sliced-Wasserstein discrepancy :math:`\mathrm{SSW}_p^p` (p-th power, no root).

    :math:`\mathrm{SSW}_p^p(\mu,\nu) = \frac{1}{L}\sum_l W_p^p(t_{U_l\#}\mu, t_{U_l\#}\nu)`, with
    exact circle transport per slice (see the module docstring for the algorithms).

    Args:
        x: ``(..., n, d)`` points on the unit sphere (only their direction matters: each point is
            mapped to the angle of its projection).
        y: ``(..., m, d)`` points on the unit sphere; batch dimensions broadcast with ``x``'s.
        p: power of the geodesic cost on the circle, ``>= 1``.
        num_projections: number of slices ``L`` to draw when ``projections`` is not given.
        projections: optional ``(L, d, 2)`` slices with orthonormal columns (shared by every batch
            element); see :func:`random_projections`.
        generator: ``torch.Generator`` used to draw the slices when ``projections`` is None.
        x_weights / y_weights: optional nonnegative masses ``(..., n)`` / ``(..., m)``; uniform
            when omitted.

    Returns:
        ``(...)``: mean over slices of :math:`W_p^p` on the circle of length 1. Differentiable in
        ``x`` and ``y`` with finite gradients, also when ``x == y``.

    Raises:
        ValueError: on bad shapes, ``p < 1``, non-float inputs or malformed projections.
    """
    pf, x, y, projections, out_dtype = _prepare_clouds(x, y, p, num_projections, projections, generator)
    tx = _angles(x, projections)  # (..., L, n)
    ty = _angles(y, projections)  # (..., L, m)
    xw = _check_weights(x_weights, x[..., 0], "x_weights")
    yw = _check_weights(y_weights, y[..., 0], "y_weights")
    if xw is not None:
        xw = xw.unsqueeze(-2)
    if yw is not None:
        yw = yw.unsqueeze(-2)
    try:
        batch = torch.broadcast_shapes(
            tx.shape[:-1],
            ty.shape[:-1],
            *([] if xw is None else [xw.shape[:-1]]),
            *([] if yw is None else [yw.shape[:-1]]),
        )
    except RuntimeError:
        raise ValueError("x_weights / y_weights batch shapes do not broadcast with the points' batch shapes") from None
    return _circle_core(tx, ty, pf, xw, yw, batch).mean(dim=-1).to(out_dtype)


def debiased_spherical_sliced_wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    p: float = 2,
    num_projections: int = 64,
    projections: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    r"""The debiased :math:`\mathrm{SSW}_p^p` of two samples: cross terms minus within terms.

    Each cloud is split into two independent halves (``x1, x2`` the first and second ``n // 2``
    points of ``x``; ``y1, y2`` likewise) and, on the same slices,

    .. math::
        \frac{1}{4}\sum_{i,j \in \{1,2\}} \mathrm{SSW}_p^p(x_i, y_j)
        - \frac{1}{2}\big(\mathrm{SSW}_p^p(x_1, x_2) + \mathrm{SSW}_p^p(y_1, y_2)\big),

    whose expectation is exactly 0 when ``x`` and ``y`` are samples of one distribution (the
    plug-in estimate is biased upwards by an amount that depends on the spread; see
    :func:`vmfmir_cli.engine.losses.ssw_alignment_loss`). It equals the six calls of
    :func:`spherical_sliced_wasserstein` it is defined by, but every half-cloud is projected and
    sorted once rather than once per term it appears in (4 instead of 12 projections and sorts).

    Args:
        x: ``(..., n, d)`` points on the sphere, ``n >= 2`` (an odd last point is left out).
        y: ``(..., m, d)``, ``m >= 2``; batch dimensions broadcast with ``x``'s.
        p, num_projections, projections, generator: as in :func:`spherical_sliced_wasserstein`.

    Returns:
        ``(...)``; can be slightly negative in one draw.
    """
    pf, x, y, projections, out_dtype = _prepare_clouds(x, y, p, num_projections, projections, generator)
    hx, hy = x.shape[-2] // 2, y.shape[-2] // 2
    if hx < 1 or hy < 1:
        raise ValueError(
            f"the debiased estimate splits each cloud in two halves and needs at least 2 points each, got "
            f"{x.shape[-2]} and {y.shape[-2]}"
        )
    batch = torch.broadcast_shapes(x.shape[:-2], y.shape[:-2])
    tx = _angles(x[..., : 2 * hx, :], projections).expand(*batch, -1, -1)  # (..., L, 2 hx)
    ty = _angles(y[..., : 2 * hy, :], projections).expand(*batch, -1, -1)
    halves = [tx[..., :hx], tx[..., hx:], ty[..., :hy], ty[..., hy:]]  # x1, x2, y1, y2
    pairs = [(0, 2), (0, 3), (1, 2), (1, 3), (0, 1), (2, 3)]  # 4 cross terms, then the 2 within terms
    if hx == hy and hx <= _SHIFT_TABLE_MAX_N:
        flat = [torch.sort(h.reshape(-1, hx), dim=-1)[0] for h in halves]  # each half sorted once
        left = torch.stack([flat[i] for i, _ in pairs])  # (6, B * L, h)
        right = torch.stack([flat[j] for _, j in pairs])
        w = _circle_equal_sorted(left.reshape(-1, hx), right.reshape(-1, hx), pf)
    else:  # halves of different sizes, or too large for the table: the general transport (it sorts)
        w = torch.stack([
            _circle_core(halves[i], halves[j], pf, None, None, (*batch, tx.shape[-2])).reshape(-1)
            for i, j in pairs
        ])
    w = w.reshape(6, *batch, tx.shape[-2]).mean(dim=-1)  # (6, ...): mean over slices
    return (w[:4].mean(dim=0) - 0.5 * (w[4] + w[5])).to(out_dtype)
