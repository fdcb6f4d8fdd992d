"""The vMF engine against high-precision references, Monte Carlo and scipy (seeded)."""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
import torch

from vmfmir_cli.engine.vmf import (
    VonMisesFisher,
    expected_cosine,
    fuse,
    kl_divergence,
    log_bhattacharyya,
    log_expected_likelihood,
    log_normalizer,
    mean_resultant_length,
)

DIMS = [2, 3, 4, 5, 7, 16, 31, 49, 50, 51, 52, 64, 128, 300, 512, 1024, 2048, 4096]
KAPPAS = [1e-4, 1e-3, 0.01, 0.1, 0.5, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e3, 3e3, 1e4, 3e4, 1e5]


def _reference(kappa: float, d: int) -> tuple[float, float]:
    with mp.workdps(40):
        nu = mp.mpf(d) / 2 - 1
        k = mp.mpf(kappa)
        i_nu = mp.besseli(nu, k, maxterms=10**6)
        log_c = nu * mp.log(k) - mp.mpf(d) / 2 * mp.log(2 * mp.pi) - mp.log(i_nu)
        ratio = mp.besseli(nu + 1, k, maxterms=10**6) / i_nu
        return float(log_c), float(ratio)


def _unit(n: int, d: int, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, dtype=dtype, generator=g), dim=-1)


@pytest.mark.parametrize("d", DIMS)
def test_log_normalizer_and_ratio_match_mpmath(d):
    kappa = torch.tensor(KAPPAS, dtype=torch.float64)
    log_c = log_normalizer(kappa, d)
    ratio = mean_resultant_length(kappa, d)
    assert torch.isfinite(log_c).all() and torch.isfinite(ratio).all()
    for i, k in enumerate(KAPPAS):
        ref_c, ref_a = _reference(k, d)
        assert abs(log_c[i].item() - ref_c) <= 1e-8 * max(abs(ref_c), 1.0), (d, k, log_c[i].item(), ref_c)
        assert abs(ratio[i].item() - ref_a) <= 1e-8 * ref_a, (d, k, ratio[i].item(), ref_a)


def test_closed_forms_at_d3_and_kappa_zero():
    kappa = torch.tensor([1e-3, 0.7, 5.0, 40.0], dtype=torch.float64)
    expected = torch.log(kappa / (4 * math.pi * torch.sinh(kappa)))
    assert torch.allclose(log_normalizer(kappa, 3), expected, rtol=1e-12, atol=0)
    for d in (2, 3, 10, 1024):
        zero = log_normalizer(torch.zeros(1, dtype=torch.float64), d).item()
        area = math.lgamma(d / 2) - math.log(2) - d / 2 * math.log(math.pi)
        assert zero == pytest.approx(area, rel=1e-12)
        assert mean_resultant_length(torch.zeros(1, dtype=torch.float64), d).item() == 0.0


@pytest.mark.parametrize("d", [2, 3, 10, 48, 50, 128, 1024])
def test_derivatives_are_consistent_and_smooth(d):
    """d log C / dk = -A and dA/dk = A' everywhere on a dense grid (no seam, no jump in slope)."""
    kappa = torch.logspace(-4, 5, 400, dtype=torch.float64).requires_grad_(True)
    log_c = log_normalizer(kappa, d)
    (grad,) = torch.autograd.grad(log_c.sum(), kappa)
    ratio = mean_resultant_length(kappa, d)
    assert torch.allclose(grad, -ratio.detach(), rtol=1e-12)
    # finite differences in log kappa agree with the analytic slope (smoothness across the grid)
    h = 1e-5
    k = kappa.detach()
    numeric = (log_normalizer(k * math.exp(h), d) - log_normalizer(k * math.exp(-h), d)) / (2 * h)
    roundoff = (1e-14 * log_c.detach().abs() + 2e-13) / h  # what the finite difference can resolve
    assert ((numeric + ratio.detach() * k).abs() <= 1e-5 * (ratio.detach() * k) + roundoff + 1e-12).all()
    (a_grad,) = torch.autograd.grad(ratio.sum(), kappa)
    numeric_a = (mean_resultant_length(k * math.exp(h), d) - mean_resultant_length(k * math.exp(-h), d)) / (2 * h)
    # A' = 1 - A^2 - (d-1) A / k cancels to ~(d-1)/(2 k^2) at large kappa: compare where both
    # the finite difference and the formula resolve it, and require A' >= 0 everywhere
    moderate = k <= 1e3
    assert torch.allclose(numeric_a[moderate], (a_grad * k)[moderate], rtol=1e-4, atol=1e-9)
    assert (a_grad >= 0).all()


def test_float32_in_float32_out_accurate():
    kappa = torch.logspace(-4, 5, 50)
    for d in (3, 256, 2048):
        out32 = log_normalizer(kappa, d)
        out64 = log_normalizer(kappa.double(), d)
        assert out32.dtype == torch.float32
        assert torch.allclose(out32.double(), out64, rtol=1e-6, atol=1e-6)
        assert mean_resultant_length(kappa, d).dtype == torch.float32


@pytest.mark.parametrize("d", [3, 128, 256, 512, 1024])
def test_sampler_mean_matches_a_d(d):
    kappa_values = torch.tensor([1.0, 10.0, 100.0, 1e3, 1e4], dtype=torch.float64)
    n = 4000
    torch.manual_seed(d)
    kappa = kappa_values.repeat_interleave(n)  # per-row kappa, one batched call
    mu = _unit(kappa.numel(), d, seed=d)
    x = VonMisesFisher(mu, kappa).rsample()
    assert x.shape == (kappa.numel(), d)
    assert torch.allclose(x.norm(dim=-1), torch.ones((), dtype=x.dtype), atol=1e-12)
    w = (x * mu).sum(-1).view(len(kappa_values), n)
    expected = mean_resultant_length(kappa_values, d)
    se = w.std(dim=1) / math.sqrt(n)
    assert ((w.mean(dim=1) - expected).abs() <= 4.5 * se + 1e-12).all(), (w.mean(dim=1), expected)


@pytest.mark.parametrize("d,k", [(3, 2.0), (5, 2.0), (16, 5.0), (128, 50.0), (256, 500.0), (1024, 30.0)])
def test_rsample_gradient_wrt_kappa_is_unbiased(d, k):
    """dE[mu.x]/dkappa from rsample equals A_d'(kappa) within Monte Carlo error."""
    torch.manual_seed(1)
    n = 6000
    kappa = torch.full((n,), k, dtype=torch.float64, requires_grad=True)
    mu = _unit(1, d).expand(n, d)
    x = VonMisesFisher(mu, kappa).rsample()
    (grad,) = torch.autograd.grad((x * mu).sum(), kappa)  # per-sample dw/dkappa
    kk = torch.tensor(k, dtype=torch.float64, requires_grad=True)
    (expected,) = torch.autograd.grad(mean_resultant_length(kk, d), kk)
    se = grad.std() / math.sqrt(n)
    assert abs(grad.mean() - expected) <= 4.5 * se, (grad.mean().item(), expected.item(), se.item())


def test_rsample_gradient_wrt_loc_and_shapes():
    torch.manual_seed(2)
    loc = _unit(3, 8).requires_grad_(True)
    kappa = torch.tensor([1.0, 5.0, 50.0], dtype=torch.float64, requires_grad=True)
    x = VonMisesFisher(loc, kappa).rsample((4, 2))
    assert x.shape == (4, 2, 3, 8)
    x.sum().backward()
    assert torch.isfinite(loc.grad).all() and loc.grad.abs().sum() > 0
    assert torch.isfinite(kappa.grad).all()
    # E[x] = A mu: gradient of E[x . c] w.r.t. loc is A c (tangent part after normalisation aside)
    with pytest.raises(ValueError):
        VonMisesFisher(_unit(2, 2), torch.ones(2)).rsample()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rsample_gradient_wrt_loc_is_unbiased_in_the_tangent_plane(dtype):
    # E[c . x] = A(kappa) c . mu, so its tangent gradient at mu is A (c - (c . mu) mu)
    torch.manual_seed(3)
    d, kappa, n = 8, 5.0, 40000
    mu = _unit(1, d)[0].to(dtype).requires_grad_(True)
    c = torch.randn(d, dtype=dtype)
    x = VonMisesFisher(mu, torch.tensor(kappa, dtype=dtype)).rsample((n,))
    (x @ c).mean().backward()
    with torch.no_grad():
        m = mu.double()
        tangent = lambda g: g - (g @ m) * m
        a = mean_resultant_length(torch.tensor(kappa, dtype=torch.float64), d)
        expected = a * tangent(c.double())
        got = tangent(mu.grad.double())
    assert torch.allclose(got, expected, atol=0.03 * c.norm().item()), (got, expected)


def test_sample_is_seeded_by_generator():
    dist = VonMisesFisher(_unit(5, 16), torch.full((5,), 20.0, dtype=torch.float64))
    a = dist.sample((3,), generator=torch.Generator().manual_seed(7))
    b = dist.sample((3,), generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_log_prob_entropy_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    for d, k in [(3, 0.5), (3, 20.0), (5, 3.0), (10, 40.0)]:
        mu = _unit(1, d, seed=d)[0]
        x = _unit(6, d, seed=d + 1)
        ref = stats.vonmises_fisher(mu.numpy(), k)
        ours = VonMisesFisher(mu, torch.tensor(k, dtype=torch.float64))
        assert np.allclose(ours.log_prob(x).numpy(), ref.logpdf(x.numpy()), rtol=1e-9, atol=1e-9)
        assert ours.entropy().item() == pytest.approx(float(ref.entropy()), rel=1e-9, abs=1e-9)


def test_divergences_against_monte_carlo():
    torch.manual_seed(3)
    d = 16
    mu = _unit(2, d, seed=5)
    p = VonMisesFisher(mu[0], torch.tensor(8.0, dtype=torch.float64))
    q = VonMisesFisher(mu[1], torch.tensor(5.0, dtype=torch.float64))
    n = 200_000
    x = p.sample((n,))
    lp, lq = p.log_prob(x), q.log_prob(x)
    kl_mc = (lp - lq).mean()
    assert abs(kl_divergence(p, q) - kl_mc) < 4 * (lp - lq).std() / math.sqrt(n)
    elk_mc = torch.logsumexp(lq, 0) - math.log(n)
    assert log_expected_likelihood(p, q).item() == pytest.approx(elk_mc.item(), abs=0.02)
    bc_mc = torch.logsumexp(0.5 * (lq - lp), 0) - math.log(n)
    assert log_bhattacharyya(p, q).item() == pytest.approx(bc_mc.item(), abs=0.01)
    y = q.sample((n,))
    cos_mc = (x * y).sum(-1).mean()
    assert abs(expected_cosine(p, q) - cos_mc) < 4 * (x * y).sum(-1).std() / math.sqrt(n)
    assert kl_divergence(p, p).item() == pytest.approx(0.0, abs=1e-10)
    assert log_bhattacharyya(p, p).item() == pytest.approx(0.0, abs=1e-10)
    assert torch.distributions.kl_divergence(p, q).item() == pytest.approx(kl_divergence(p, q).item())


def test_kl_against_scipy_entropy_identity():
    stats = pytest.importorskip("scipy.stats")
    # KL(p || p') with equal mu reduces to -H(p) - E_p[log p'] ; check the self-entropy part
    d, k = 5, 7.0
    mu = _unit(1, d, seed=11)[0]
    p = VonMisesFisher(mu, torch.tensor(k, dtype=torch.float64))
    assert (-p.entropy()).item() == pytest.approx(-float(stats.vonmises_fisher(mu.numpy(), k).entropy()), rel=1e-9)


def test_fuse_is_the_normalised_product():
    d = 12
    mu = _unit(2, d, seed=9)
    p1 = VonMisesFisher(mu[0], torch.tensor(6.0, dtype=torch.float64))
    p2 = VonMisesFisher(mu[1], torch.tensor(15.0, dtype=torch.float64))
    p3 = fuse(p1, p2)
    x = _unit(10, d, seed=10)
    lhs = p1.log_prob(x) + p2.log_prob(x)
    rhs = log_expected_likelihood(p1, p2) + p3.log_prob(x)
    assert torch.allclose(lhs, rhs, rtol=1e-11, atol=1e-11)
    weighted = fuse(p1, p2, weights=[1.0, 0.0])
    assert torch.allclose(weighted.loc, p1.loc) and weighted.concentration.item() == pytest.approx(6.0)
    with pytest.raises(ValueError):
        fuse(p1, p2, weights=[1.0])


def test_batch_broadcasting_of_closed_forms():
    a = VonMisesFisher(_unit(4, 6)[:, None, :], torch.rand(4, 1, dtype=torch.float64) * 10 + 1)
    b = VonMisesFisher(_unit(5, 6, seed=1)[None, :, :], torch.rand(1, 5, dtype=torch.float64) * 10 + 1)
    for fn in (kl_divergence, log_expected_likelihood, log_bhattacharyya, expected_cosine):
        assert fn(a, b).shape == (4, 5)


def test_gradients_finite_over_kappa_range():
    kappa = torch.logspace(-3, 4, 30, dtype=torch.float32).requires_grad_(True)
    mu = _unit(30, 64, dtype=torch.float32)
    p = VonMisesFisher(mu, kappa)
    q = VonMisesFisher(mu.flip(0), kappa.flip(0))
    total = (kl_divergence(p, q) + log_expected_likelihood(p, q) + p.entropy() + p.rsample((2,)).sum((0, -1))).sum()
    total.backward()
    assert torch.isfinite(kappa.grad).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_sampling_and_normaliser():
    dev = torch.device("cuda")
    kappa = torch.logspace(0, 4, 64, device=dev, dtype=torch.float64)
    mu = _unit(64, 256).to(dev)
    x = VonMisesFisher(mu, kappa).rsample((32,))
    assert x.device.type == "cuda" and x.shape == (32, 64, 256)
    w = (x * mu).sum(-1).mean(0)
    assert torch.allclose(w, mean_resultant_length(kappa, 256), atol=0.05)
    assert torch.allclose(log_normalizer(kappa, 256).cpu(), log_normalizer(kappa.cpu(), 256))
