"""PreparedItems (per-item terms computed once) against the engine's all-pairs ``score``."""

from __future__ import annotations

import pytest
import torch

from vmfmir_cli.engine.scores import SCORE_KINDS, score
from vmfmir_cli.engine.vmf import VonMisesFisher
from vmfmir_cli.index.scoring import PreparedItems


def _set(n: int, d: int, seed: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    mu = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    kappa = torch.exp(torch.rand(n, generator=g, dtype=torch.float64) * 8.0)  # 1 .. 3000
    return mu.to(dtype), kappa.to(dtype)


@pytest.mark.parametrize("d", [16, 128, 512])
@pytest.mark.parametrize("kind", SCORE_KINDS)
def test_prepared_scores_match_the_engine(d, kind):
    n = 150 if d < 50 else 700  # small d: the engine's exact (slow) path
    mu, kappa = _set(n, d, seed=d)
    q_mu, q_kappa = _set(3, d, seed=d + 1)
    q_mu[0] = mu[5]  # a query identical in direction to an item
    reference = score(
        VonMisesFisher(q_mu.double(), q_kappa.double(), validate_args=False),
        VonMisesFisher(mu.double(), kappa.double(), validate_args=False),
        kind,
    )
    items = PreparedItems(mu, kappa)
    got = items.scores(VonMisesFisher(q_mu, q_kappa, validate_args=False), kind)
    assert got.dtype == torch.float32 and got.shape == (3, n)
    # as accurate as the engine's own float32 path (round-off of intermediate values up to ~kappa)
    engine32 = score(VonMisesFisher(q_mu, q_kappa, validate_args=False), VonMisesFisher(mu, kappa, validate_args=False), kind)
    engine_err = (engine32.double() - reference).abs().max().item()
    tol = 4.0 * engine_err + 1e-6 * (1.0 + reference.abs().max().item())
    assert (got.double() - reference).abs().max().item() < tol
    # the same ranking as the float64 reference (up to near-ties)
    assert torch.equal(got[0].argmax(), reference[0].argmax()) or (
        reference[0].max() - reference[0][got[0].argmax()] < tol
    )


@pytest.mark.parametrize("kind", SCORE_KINDS)
def test_scores_of_a_row_subset_are_the_same_numbers(kind):
    mu, kappa = _set(300, 128, seed=3)
    items = PreparedItems(mu, kappa)
    query = VonMisesFisher(mu[:2], kappa[:2] * 2, validate_args=False)
    rows = torch.tensor([299, 0, 17, 17, 150])
    full = items.scores(query, kind)
    assert torch.allclose(items.scores(query, kind, rows=rows), full[:, rows], rtol=1e-6, atol=1e-5)


def test_chunking_does_not_change_the_result(monkeypatch):
    import vmfmir_cli.index.scoring as scoring

    mu, kappa = _set(5000, 128, seed=4)
    query = VonMisesFisher(mu[:2], kappa[:2], validate_args=False)
    whole = PreparedItems(mu, kappa).scores(query, "elk")
    monkeypatch.setattr(scoring, "_CHUNK_ELEMENTS", 2048)
    chunked = PreparedItems(mu, kappa).scores(query, "elk")
    assert torch.allclose(whole, chunked, rtol=1e-6, atol=1e-5)


def test_expected_cosine_vectors_give_the_expected_cosine_ranking():
    mu, kappa = _set(400, 128, seed=5)
    items = PreparedItems(mu, kappa)
    query = VonMisesFisher(mu[:1], kappa[:1], validate_args=False)
    inner = items.expected_cosine_vectors() @ mu[0]
    assert torch.equal(inner.argsort(descending=True)[:20], items.scores(query, "expected_cosine")[0].argsort(descending=True)[:20])


def test_bad_inputs():
    with pytest.raises(ValueError, match="need mu"):
        PreparedItems(torch.zeros(3), torch.zeros(3))
    items = PreparedItems(*_set(10, 64, seed=6))
    with pytest.raises(ValueError, match="unknown score"):
        items.scores(VonMisesFisher(*_set(1, 64, seed=7), validate_args=False), "dot")
    with pytest.raises(ValueError, match="dimension"):
        items.scores(VonMisesFisher(*_set(1, 32, seed=7), validate_args=False), "elk")


@pytest.mark.parametrize("kind", SCORE_KINDS)
def test_given_terms_give_the_same_scores(kind):
    from vmfmir_cli.engine.vmf import log_normalizer, mean_resultant_length

    mu, kappa = _set(200, 128, seed=8)
    query = VonMisesFisher(mu[:2], kappa[:2], validate_args=False)
    given = PreparedItems(mu, kappa, log_c=log_normalizer(kappa.double(), 128), a=mean_resultant_length(kappa.double(), 128))
    assert torch.equal(given.scores(query, kind), PreparedItems(mu, kappa).scores(query, kind))
    with pytest.raises(ValueError, match="log_c must have shape"):
        PreparedItems(mu, kappa, log_c=torch.zeros(3))


@pytest.mark.parametrize("d", [16, 128])
@pytest.mark.parametrize("kind", SCORE_KINDS)
def test_the_item_side_is_prepared_once_and_copies_no_matrix(d, kind):
    """The engine's kernel on the cached, unfused item side: mu itself, O(N) columns, built once."""
    mu, kappa = _set(50, d, seed=9)
    items = PreparedItems(mu, kappa)
    side = items.prepare(kind)._side(kind)
    assert side.mat is items.mu and not side.fused and side.side == "item"
    assert all(t.shape == (50,) for t in items._terms.values())
    query = VonMisesFisher(mu[:2], kappa[:2], validate_args=False)
    items.scores(query, kind)
    assert items._side(kind) is side
