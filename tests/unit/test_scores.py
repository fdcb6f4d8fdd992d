"""All-pairs scores against the per-pair closed forms of the engine."""

from __future__ import annotations

import pytest
import torch

from vmfmir_cli.engine.scores import SCORE_KINDS, prepare_terms, score, score_prepared
from vmfmir_cli.engine.vmf import (
    VonMisesFisher,
    expected_cosine,
    kl_divergence,
    log_bhattacharyya,
    log_expected_likelihood,
)

REFERENCE = {
    "elk": log_expected_likelihood,
    "bhattacharyya": log_bhattacharyya,
    "kl": lambda p, q: -kl_divergence(p, q),
    "expected_cosine": expected_cosine,
    "cosine": lambda p, q: (p.loc * q.loc).sum(-1),
}


def _dists(n_q: int, n_i: int, d: int, dtype=torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q_mu = torch.nn.functional.normalize(torch.randn(n_q, d, generator=g, dtype=torch.float64), dim=-1)
    i_mu = torch.nn.functional.normalize(torch.randn(n_i, d, generator=g, dtype=torch.float64), dim=-1)
    i_mu[0] = q_mu[0]  # an exact match: k3 = k_q + k_i
    i_mu[1] = -q_mu[0]  # an antipodal pair: k3 = |k_q - k_i|
    q_k = torch.exp(torch.rand(n_q, generator=g, dtype=torch.float64) * 9.0)
    i_k = torch.exp(torch.rand(n_i, generator=g, dtype=torch.float64) * 9.0)
    i_k[1] = q_k[0]  # antipodal with equal kappa: k3 = 0
    return (
        VonMisesFisher(q_mu.to(dtype), q_k.to(dtype)),
        VonMisesFisher(i_mu.to(dtype), i_k.to(dtype)),
        (q_mu, q_k, i_mu, i_k),
    )


@pytest.mark.parametrize("kind", SCORE_KINDS)
@pytest.mark.parametrize("d", [3, 16, 64, 256])
def test_score_matches_closed_forms(kind, d):
    n_q, n_i = 5, 9
    q64, i64, (q_mu, q_k, i_mu, i_k) = _dists(n_q, n_i, d)
    pairs_q = VonMisesFisher(q_mu[:, None].expand(n_q, n_i, d), q_k[:, None].expand(n_q, n_i))
    pairs_i = VonMisesFisher(i_mu[None].expand(n_q, n_i, d), i_k[None].expand(n_q, n_i))
    ref = REFERENCE[kind](pairs_q, pairs_i)
    out64 = score(q64, i64, kind, chunk_size=4)
    assert out64.shape == (n_q, n_i) and out64.dtype == torch.float64
    assert torch.isfinite(out64).all()
    assert torch.allclose(out64, ref, rtol=1e-10, atol=1e-10)
    q32, i32, _ = _dists(n_q, n_i, d, dtype=torch.float32)
    out32 = score(q32, i32, kind)
    assert out32.dtype == torch.float32
    assert ((out32.double() - ref).abs() <= 1e-4 * ref.abs().clamp_min(1.0)).all()


def test_chunking_does_not_change_scores():
    q, items, _ = _dists(7, 1000, 128, dtype=torch.float32)
    full = score(q, items, "elk", chunk_size=1000)
    # float32 log C terms are O(kappa) (kappa up to 8e3 here) and the BLAS blocking differs by chunk
    tol = 1e-6 * (q.concentration[:, None] + items.concentration[None, :]) + 4e-6 * full.abs()
    for chunk in (1, 33, 999):
        assert ((score(q, items, "elk", chunk_size=chunk) - full).abs() <= tol).all()


def test_identical_distribution_ranks_first_for_divergence_scores():
    """-KL and Bhattacharyya peak at the identical distribution (ELK need not: it favours low kappa)."""
    q, items, _ = _dists(1, 50, 64)
    same = VonMisesFisher(q.loc, q.concentration)
    for kind in ("bhattacharyya", "kl"):
        scores = score(same, VonMisesFisher(torch.cat([items.loc, q.loc]), torch.cat([items.concentration, q.concentration])), kind)
        assert scores.argmax().item() == 50, kind


def test_bad_arguments():
    q, items, _ = _dists(2, 3, 8)
    with pytest.raises(ValueError, match="unknown score kind"):
        score(q, items, "euclid")
    other, _, _ = _dists(2, 3, 9)
    with pytest.raises(ValueError, match="dimension"):
        score(other, items)


@pytest.mark.parametrize("kind", SCORE_KINDS)
@pytest.mark.parametrize("d", [16, 128])
def test_the_kernel_gives_the_same_scores_fused_or_not_and_on_rows(kind, d):
    """score() is the kernel on fused (augmented) terms; the unfused form (mu itself plus per-row
    columns, as an index keeps it) and row subsets give the same numbers up to float32 round-off."""
    q, items, _ = _dists(3, 400, d, dtype=torch.float32)
    fused = score(q, items, kind)
    sides = [
        prepare_terms(dist.loc, dist.concentration, kind, side, fused=False)
        for dist, side in ((q, "query"), (items, "item"))
    ]
    unfused = score_prepared(*sides, chunk_size=77)
    tol = 2e-6 * (q.concentration[:, None] + items.concentration[None, :]) + 4e-6 * fused.abs().clamp_min(1.0)
    assert ((unfused - fused).abs() <= tol).all()
    rows = torch.tensor([399, 0, 5, 5, 200])
    assert torch.allclose(score_prepared(*sides, rows=rows), unfused[:, rows], rtol=1e-6, atol=1e-5)


def test_the_kernel_refuses_mismatched_terms():
    q, items, _ = _dists(2, 3, 64)
    elk_q = prepare_terms(q.loc, q.concentration, "elk", "query")
    with pytest.raises(ValueError, match="item terms for 'kl'"):
        score_prepared(elk_q, prepare_terms(items.loc, items.concentration, "kl", "item"))
    with pytest.raises(ValueError, match="fused"):
        score_prepared(elk_q, prepare_terms(items.loc, items.concentration, "elk", "item", fused=False))
    with pytest.raises(ValueError, match="need query terms and item terms"):
        score_prepared(elk_q, elk_q)
    with pytest.raises(ValueError, match="side must be"):
        prepare_terms(q.loc, q.concentration, "elk", "key")


@pytest.mark.parametrize("terms", [2, 3, 5, 14])
def test_debye_series_in_place_equals_the_differentiable_form(terms):
    """debye_log_series runs its Horner steps in place when no gradient is needed: same numbers."""
    from vmfmir_cli.engine import bessel

    p = torch.linspace(0.01, 1.0, 1000, dtype=torch.float64)
    fast = bessel.debye_log_series(p, 63.0, terms)
    tracked = bessel.debye_log_series(p.clone().requires_grad_(True), 63.0, terms)
    assert tracked.requires_grad and torch.equal(fast, tracked.detach())
