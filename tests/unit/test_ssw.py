"""Spherical sliced-Wasserstein: exact against the transport LP (POT), properties, gradients."""

import math

import numpy as np
import ot
import pytest
import torch

from vmfmir_cli.engine.ssw import circle_wasserstein, random_projections, spherical_sliced_wasserstein


def _sphere(n, d, gen, dtype=torch.float64):
    return torch.nn.functional.normalize(torch.randn(n, d, generator=gen, dtype=dtype), dim=-1)


def _angles_np(x, proj):
    """Positions on the circle of length 1 for each slice: (L, n)."""
    c = np.einsum("nd,ldk->lnk", x, proj)
    return (np.arctan2(c[..., 1], c[..., 0]) / (2 * np.pi)) % 1.0


def _circle_lp(u, v, p, a=None, b=None):
    a = np.full(len(u), 1.0 / len(u)) if a is None else a / a.sum()
    b = np.full(len(v), 1.0 / len(v)) if b is None else b / b.sum()
    diff = np.abs(u[:, None] - v[None, :])
    cost = np.minimum(diff, 1.0 - diff) ** p
    return ot.emd2(a, b, cost, numItermax=10**7)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("sizes", [(12, 12), (7, 7), (9, 14), (16, 5), (1, 4), (70, 70)])
def test_ssw_matches_per_slice_exact_lp(p, sizes):
    n, m = sizes
    gen = torch.Generator().manual_seed(100 * n + m + p)
    x, y = _sphere(n, 5, gen), _sphere(m, 5, gen)
    proj = random_projections(5, 6, generator=gen, dtype=torch.float64)
    ours = spherical_sliced_wasserstein(x, y, p=p, projections=proj).item()
    tx, ty = _angles_np(x.numpy(), proj.numpy()), _angles_np(y.numpy(), proj.numpy())
    ref = np.mean([_circle_lp(tx[l], ty[l], p) for l in range(proj.shape[0])])
    assert abs(ours - ref) < 1e-8


@pytest.mark.parametrize("p", [1, 2, 1.5, 3])
def test_circle_wasserstein_random_against_lp(p):
    rng = np.random.default_rng(int(10 * p))
    for trial in range(60):
        n, m = int(rng.integers(1, 10)), int(rng.integers(1, 10))
        if trial % 3 == 0:
            m = n
        u, v = rng.random(n), rng.random(m)
        if trial % 4 == 0:  # coincident and antipodal points, ties everywhere
            u, v = np.round(u * 4) / 4 % 1.0, np.round(v * 4) / 4 % 1.0
        wa = rng.random(n) if trial % 2 else None
        wb = rng.random(m) if trial % 2 else None
        if wa is not None and n > 1 and trial % 7 == 1:
            wa[0] = 0.0  # an atom of zero mass
        ref = _circle_lp(u, v, p, wa, wb)
        got = circle_wasserstein(
            torch.tensor(u), torch.tensor(v), p,
            None if wa is None else torch.tensor(wa), None if wb is None else torch.tensor(wb),
        ).item()
        assert abs(got - ref) < 1e-8, (trial, n, m, got, ref)


def test_large_equal_clouds_take_the_general_path_and_agree_with_lp():
    rng = np.random.default_rng(3)
    u, v = rng.random(90), rng.random(90)  # above the shift-table size
    for p in (1, 2):
        got = circle_wasserstein(torch.tensor(u), torch.tensor(v), p).item()
        assert abs(got - _circle_lp(u, v, p)) < 1e-8


def test_weighted_ssw_matches_lp():
    gen = torch.Generator().manual_seed(5)
    x, y = _sphere(6, 4, gen), _sphere(9, 4, gen)
    a = torch.rand(6, generator=gen, dtype=torch.float64)
    b = torch.rand(9, generator=gen, dtype=torch.float64)
    proj = random_projections(4, 5, generator=gen, dtype=torch.float64)
    tx, ty = _angles_np(x.numpy(), proj.numpy()), _angles_np(y.numpy(), proj.numpy())
    for p in (1, 2):
        ours = spherical_sliced_wasserstein(x, y, p=p, projections=proj, x_weights=a, y_weights=b).item()
        ref = np.mean([_circle_lp(tx[l], ty[l], p, a.numpy(), b.numpy()) for l in range(5)])
        assert abs(ours - ref) < 1e-8


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("m", [20, 13])
def test_matches_pot_sliced_wasserstein_sphere_with_same_projections(p, m):
    gen = torch.Generator().manual_seed(11 + m)
    x, y = _sphere(20, 6, gen), _sphere(m, 6, gen)
    proj = random_projections(6, 10, generator=gen, dtype=torch.float64)
    ours = spherical_sliced_wasserstein(x, y, p=p, projections=proj).item()
    # POT returns the p-th root; its p = 2 circle solver is a tolerance-based binary search, and its
    # n_projections must be repeated when projections are passed.
    pot = ot.sliced_wasserstein_sphere(x.numpy(), y.numpy(), p=p, projections=proj.numpy(), n_projections=10) ** p
    assert abs(ours - pot) < (1e-10 if p == 1 else 1e-7)


def test_batched_equals_loop_symmetric_and_zero_on_identical():
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(3, 4, 8, 16, generator=gen, dtype=torch.float64), dim=-1)
    y = torch.nn.functional.normalize(torch.randn(3, 4, 8, 16, generator=gen, dtype=torch.float64), dim=-1)
    proj = random_projections(16, 12, generator=gen, dtype=torch.float64)
    out = spherical_sliced_wasserstein(x, y, projections=proj)
    assert out.shape == (3, 4)
    loop = torch.stack([torch.stack([spherical_sliced_wasserstein(x[i, j], y[i, j], projections=proj) for j in range(4)]) for i in range(3)])
    torch.testing.assert_close(out, loop, rtol=0, atol=1e-14)
    torch.testing.assert_close(out, spherical_sliced_wasserstein(y, x, projections=proj), rtol=0, atol=1e-14)
    assert spherical_sliced_wasserstein(x, x, projections=proj).abs().max().item() == 0.0
    assert (out > 0).all()
    # broadcasting of batch dimensions
    torch.testing.assert_close(spherical_sliced_wasserstein(x, y[:1], projections=proj), spherical_sliced_wasserstein(x, y[:1].expand_as(y), projections=proj))


@pytest.mark.parametrize("p", [1, 2, 1.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_gradients_when_clouds_coincide(p, dtype):
    gen = torch.Generator().manual_seed(1)
    base = torch.nn.functional.normalize(torch.randn(4, 16, 32, generator=gen, dtype=dtype), dim=-1)
    x = base.clone().requires_grad_(True)
    y = base.clone().requires_grad_(True)
    loss = spherical_sliced_wasserstein(x, y, p=p, num_projections=16, generator=gen).sum()
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()
    # unequal sizes with shared points (general path)
    x2 = base.clone().requires_grad_(True)
    out = spherical_sliced_wasserstein(x2, base[:, :10], p=p, num_projections=16, generator=gen).sum()
    out.backward()
    assert torch.isfinite(x2.grad).all()


def test_gradient_matches_finite_differences():
    gen = torch.Generator().manual_seed(2)
    x = _sphere(6, 5, gen).requires_grad_(True)
    y = _sphere(6, 5, gen)
    proj = random_projections(5, 4, generator=gen, dtype=torch.float64)
    y7 = _sphere(7, 5, gen)
    for target in (y, y7):
        f = lambda v: spherical_sliced_wasserstein(v, target, projections=proj)  # noqa: E731
        g = torch.autograd.grad(f(x), x)[0]
        direction = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        h = 1e-6
        fd = (f(x.detach() + h * direction) - f(x.detach() - h * direction)) / (2 * h)
        assert abs(fd.item() - (g * direction).sum().item()) < 1e-5


def test_generator_reproducible_and_projections_orthonormal():
    p1 = random_projections(10, 7, generator=torch.Generator().manual_seed(4))
    p2 = random_projections(10, 7, generator=torch.Generator().manual_seed(4))
    assert p1.shape == (7, 10, 2) and torch.equal(p1, p2)
    eye = p1.transpose(1, 2) @ p1
    torch.testing.assert_close(eye, torch.eye(2).expand(7, 2, 2), atol=1e-5, rtol=0)
    gen = torch.Generator().manual_seed(9)
    x, y = _sphere(5, 10, gen, torch.float32), _sphere(5, 10, gen, torch.float32)
    a = spherical_sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(3))
    b = spherical_sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(3))
    assert a.dtype == torch.float32 and torch.equal(a, b)


def test_input_validation():
    x = torch.nn.functional.normalize(torch.randn(4, 3), dim=-1)
    with pytest.raises(ValueError, match="p must"):
        spherical_sliced_wasserstein(x, x, p=0.5)
    with pytest.raises(ValueError, match="same dimension"):
        spherical_sliced_wasserstein(x, torch.randn(4, 5))
    with pytest.raises(ValueError, match=r"\(\.\.\., n, d\)"):
        spherical_sliced_wasserstein(torch.randn(3), x)
    with pytest.raises(ValueError, match="projections must have shape"):
        spherical_sliced_wasserstein(x, x, projections=torch.randn(5, 4, 2))
    with pytest.raises(ValueError, match="do not broadcast"):
        spherical_sliced_wasserstein(torch.randn(2, 4, 3), torch.randn(3, 4, 3))
    with pytest.raises(ValueError, match="floating point"):
        spherical_sliced_wasserstein(x.long(), x)
    with pytest.raises(ValueError, match="nonnegative"):
        spherical_sliced_wasserstein(x, x, x_weights=-torch.ones(4))
    with pytest.raises(ValueError, match="d must"):
        random_projections(1, 3)
    assert math.isfinite(spherical_sliced_wasserstein(x, x[:1]).item())


@pytest.mark.parametrize("n,m", [(32, 32), (16, 16), (7, 9), (200, 200)])
def test_debiased_ssw_equals_its_six_term_definition_with_gradients(n, m):
    """The shared-projection, sort-once estimate equals the six plain calls it is defined by
    (equal halves take the table path, unequal halves and n > 64 the general one)."""
    from vmfmir_cli.engine.ssw import debiased_spherical_sliced_wasserstein

    g = torch.Generator().manual_seed(n * 100 + m)
    d = 6

    def cloud(k):
        return torch.nn.functional.normalize(torch.randn(3, k, d, generator=g, dtype=torch.float64), dim=-1)

    x, y = cloud(n).requires_grad_(True), cloud(m).requires_grad_(True)
    proj = random_projections(d, 24, generator=g, dtype=torch.float64)
    hx, hy = n // 2, m // 2
    x1, x2, y1, y2 = x[:, :hx], x[:, hx : 2 * hx], y[:, :hy], y[:, hy : 2 * hy]
    terms = [spherical_sliced_wasserstein(a, b, projections=proj)
             for a, b in [(x1, y1), (x1, y2), (x2, y1), (x2, y2), (x1, x2), (y1, y2)]]
    want = torch.stack(terms[:4]).mean(0) - 0.5 * (terms[4] + terms[5])
    got = debiased_spherical_sliced_wasserstein(x, y, projections=proj)
    assert got.shape == (3,)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    for a, b in zip(torch.autograd.grad(got.sum(), [x, y]), torch.autograd.grad(want.sum(), [x, y])):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="at least 2 points"):
        debiased_spherical_sliced_wasserstein(x[:, :1], y, projections=proj)
