"""Losses: formula against a naive reference, matched < shuffled, masks, anchor slices, gradients."""

import math

import pytest
import torch

from vmfmir_cli.engine.losses import draw_samples, infonce_loss, mc_infonce_loss, ssw_alignment_loss
from vmfmir_cli.engine.ssw import random_projections
from vmfmir_cli.engine.vmf import VonMisesFisher

B, D = 24, 16


def _unit(x):
    return torch.nn.functional.normalize(x, dim=-1)


def _paired(seed=0, kappa=60.0, noise=0.3, dtype=torch.float64, modalities=("audio", "text")):
    gen = torch.Generator().manual_seed(seed)
    base = _unit(torch.randn(B, D, generator=gen, dtype=dtype))
    out = {}
    for m in modalities:
        loc = _unit(base + noise * torch.randn(B, D, generator=gen, dtype=dtype))
        out[m] = VonMisesFisher(loc, torch.full((B,), kappa, dtype=dtype))
    return out


def _shuffled(dists, seed=1):
    perm = torch.randperm(B, generator=torch.Generator().manual_seed(seed))
    names = list(dists)
    out = dict(dists)
    last = dists[names[-1]]
    out[names[-1]] = VonMisesFisher(last.loc[perm], last.concentration[perm])
    return out


def _naive_mc_infonce(z, masks, tau, denominator="sum"):
    """Loops straight from the formula (sampled positive), for one ordered pair at a time."""
    names = list(z)
    S, n, _ = z[names[0]].shape
    pair_losses = []
    for a in names:
        for b in names:
            if a == b:
                continue
            losses = []
            for i in range(n):
                if not (masks[a][i] and masks[b][i]):
                    continue
                negs = [j for j in range(n) if j != i and masks[b][j]]
                probs = []
                for s in range(S):
                    pos = math.exp(tau * float(z[a][s, i] @ z[b][s, i]))
                    neg = sum(math.exp(tau * float(z[a][s, i] @ z[b][s, j])) for j in negs)
                    if denominator == "mean":
                        neg /= max(len(negs), 1)
                    probs.append(pos / (pos + neg) if negs else 1.0)
                losses.append(-math.log(sum(probs) / S))
            if losses:
                pair_losses.append(sum(losses) / len(losses))
    return sum(pair_losses) / len(pair_losses)


@pytest.mark.parametrize("denominator", ["sum", "mean"])
def test_mc_infonce_matches_naive_formula_with_masks(denominator):
    dists = _paired(modalities=("audio", "image", "text"), kappa=8.0)
    gen = torch.Generator().manual_seed(3)
    z = {m: v[:, :10] for m, v in draw_samples(dists, 4, generator=gen).items()}
    masks = {
        "audio": torch.tensor([True] * 8 + [False] * 2),
        "image": torch.tensor([True, False] * 5),
        "text": torch.ones(10, dtype=torch.bool),
    }
    got = mc_infonce_loss(None, masks=masks, samples=z, inv_temperature=5.0, positive="sampled", denominator=denominator)
    ref = _naive_mc_infonce(z, masks, 5.0, denominator)
    assert abs(got.item() - ref) < 1e-10


def test_matched_scores_lower_than_shuffled_for_all_three_losses():
    dists = _paired()
    shuffled = _shuffled(dists)
    gen = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    assert mc_infonce_loss(dists, generator=gen()) < mc_infonce_loss(shuffled, generator=gen()) - 1.0
    assert ssw_alignment_loss(dists, generator=gen()) < 0.7 * ssw_alignment_loss(shuffled, generator=gen())
    scale = torch.tensor(math.log(1 / 0.07))
    mus = {m: v.loc for m, v in dists.items()}
    mus_shuffled = {m: v.loc for m, v in shuffled.items()}
    assert infonce_loss(mus, scale) < infonce_loss(mus_shuffled, scale) - 1.0


@pytest.mark.parametrize("kappa", [1e-3, 1.0, 50.0, 1e4])
def test_gradients_finite_across_kappa(kappa):
    gen = torch.Generator().manual_seed(int(math.log10(kappa) + 10))
    raw = {m: torch.randn(B, D, generator=gen, requires_grad=True) for m in ("audio", "text")}
    log_kappa = {m: torch.full((B,), math.log(kappa), requires_grad=True) for m in raw}
    dists = {m: VonMisesFisher(_unit(raw[m]), log_kappa[m].exp()) for m in raw}
    z = draw_samples(dists, 8, generator=gen)
    loss = mc_infonce_loss(dists, samples=z) + 0.5 * ssw_alignment_loss(dists, samples=z, num_projections=16, generator=gen)
    loss = loss + infonce_loss({m: raw[m] for m in raw}, torch.tensor(2.0, requires_grad=True))
    loss.backward()
    assert torch.isfinite(loss)
    for m in raw:
        assert torch.isfinite(raw[m].grad).all()
        assert torch.isfinite(log_kappa[m].grad).all()
        assert log_kappa[m].grad.abs().sum() > 0


def test_masked_items_equal_dropping_them_and_ignore_garbage_rows():
    dists = _paired(modalities=("audio", "image", "text"))
    z = draw_samples(dists, 6, generator=torch.Generator().manual_seed(0))
    keep = torch.ones(B, dtype=torch.bool)
    keep[[3, 5, 17]] = False
    masks = {m: keep for m in z}
    poisoned = {m: v.clone() for m, v in z.items()}
    for v in poisoned.values():
        v[:, ~keep] = float("nan")  # a model may produce anything for absent inputs
    sub = {m: v[:, keep] for m, v in z.items()}
    proj = random_projections(D, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(
        mc_infonce_loss(None, samples=poisoned, masks=masks, positive="sampled"), mc_infonce_loss(None, samples=sub, positive="sampled")
    )
    bad_dists = {m: VonMisesFisher(torch.where(keep[:, None], d.loc, float("nan")), d.concentration, validate_args=False)
                 for m, d in dists.items()}
    sub_dists = {m: VonMisesFisher(d.loc[keep], d.concentration[keep]) for m, d in dists.items()}
    torch.testing.assert_close(
        mc_infonce_loss(bad_dists, samples=poisoned, masks=masks), mc_infonce_loss(sub_dists, samples=sub)
    )
    torch.testing.assert_close(
        ssw_alignment_loss(None, samples=poisoned, masks=masks, projections=proj),
        ssw_alignment_loss(None, samples=sub, projections=proj),
    )
    mus = {m: v[0].clone().requires_grad_(True) for m, v in poisoned.items()}
    loss = infonce_loss(mus, torch.tensor(3.0), masks=masks)
    ref = infonce_loss({m: v[0] for m, v in sub.items()}, torch.tensor(3.0))
    torch.testing.assert_close(loss, ref)
    loss.backward()
    for m in mus:
        assert torch.isfinite(mus[m].grad[keep]).all()


def test_partial_masks_and_pairs_without_anchors():
    dists = _paired(modalities=("audio", "text"))
    masks = {"text": torch.zeros(B, dtype=torch.bool)}
    loss, parts = mc_infonce_loss(dists, masks=masks, return_breakdown=True, generator=torch.Generator().manual_seed(0))
    assert loss.item() == 0.0 and set(parts) == {"audio->text", "text->audio"}
    assert all(math.isnan(v.item()) for v in parts.values())
    loss, parts = ssw_alignment_loss(dists, masks=masks, return_breakdown=True, generator=torch.Generator().manual_seed(0))
    assert loss.item() == 0.0 and set(parts) == {"audio<>text"}
    with pytest.raises(ValueError, match="bool tensor"):
        mc_infonce_loss(dists, masks={"text": torch.ones(B - 1, dtype=torch.bool)})
    with pytest.raises(ValueError, match="not in the batch"):
        mc_infonce_loss(dists, masks={"video": torch.ones(B, dtype=torch.bool)})
    with pytest.raises(ValueError, match="at least two"):
        mc_infonce_loss({"audio": dists["audio"]})


def test_anchor_slice_is_consistent_with_the_full_batch():
    dists = _paired(modalities=("audio", "image", "text"))
    z = draw_samples(dists, 6, generator=torch.Generator().manual_seed(2))
    proj = random_projections(D, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mus = {m: v.loc for m, v in dists.items()}
    scale = torch.tensor(2.5)
    ranks = 3
    size = B // ranks
    slices = [slice(r * size, (r + 1) * size) for r in range(ranks)]

    full, full_parts = mc_infonce_loss(dists, samples=z, return_breakdown=True)
    parts = [mc_infonce_loss(dists, samples=z, anchor_slice=s, return_breakdown=True) for s in slices]
    torch.testing.assert_close(full, torch.stack([p[0] for p in parts]).mean())
    for key in full_parts:
        torch.testing.assert_close(full_parts[key], torch.stack([p[1][key] for p in parts]).mean())

    full = ssw_alignment_loss(None, samples=z, projections=proj)
    torch.testing.assert_close(full, torch.stack([ssw_alignment_loss(None, samples=z, projections=proj, anchor_slice=s) for s in slices]).mean())

    full = infonce_loss(mus, scale)
    torch.testing.assert_close(full, torch.stack([infonce_loss(mus, scale, anchor_slice=s) for s in slices]).mean())
    with pytest.raises(ValueError, match="anchor_slice"):
        infonce_loss(mus, scale, anchor_slice=slice(0, 10, 2))


def test_shared_samples_and_generator_reproducibility():
    dists = _paired()
    a = mc_infonce_loss(dists, num_samples=5, generator=torch.Generator().manual_seed(4))
    z = draw_samples(dists, 5, generator=torch.Generator().manual_seed(4))
    b = mc_infonce_loss(dists, samples=z)
    assert torch.equal(a, b)
    assert z["audio"].shape == (5, B, D)


def test_infonce_is_clip_symmetric_cross_entropy_and_clamps_scale():
    dists = _paired(modalities=("image", "text"))
    img, txt = dists["image"].loc, dists["text"].loc
    scale = torch.tensor(math.log(1 / 0.07))
    logits = scale.exp() * img @ txt.T
    target = torch.arange(B)
    ref = (torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)) / 2
    torch.testing.assert_close(infonce_loss({"image": img, "text": txt}, scale), ref)
    big = torch.tensor(math.log(1000.0), requires_grad=True)
    out = infonce_loss({"image": 3 * img, "text": txt}, big)  # inputs are normalised
    ref100 = infonce_loss({"image": img, "text": txt}, torch.tensor(math.log(100.0)))
    torch.testing.assert_close(out, ref100)
    out.backward()
    assert big.grad.item() == 0.0


# --------------------------------------------------------------------------------------------------
# The recipe of issue 11: analytic positive, jackknife, options, debiased SSW
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d,kappa", [(8, 4.0), (8, 64.0), (64, 200.0)])
def test_analytic_positive_kernel_matches_monte_carlo(d, kappa):
    from vmfmir_cli.engine.losses import _log_kernel

    gen = torch.Generator().manual_seed(d)
    z = _unit(torch.randn(3, 2, d, generator=gen, dtype=torch.float64))
    loc = _unit(z[0] + 0.3 * torch.randn(2, d, generator=gen, dtype=torch.float64))
    k = torch.full((2,), kappa, dtype=torch.float64)
    tau = 20.0
    got = _log_kernel((z * loc.unsqueeze(0)).sum(-1), k, tau, d)
    n = 400_000
    draws = VonMisesFisher(loc, k).sample((n,), generator=gen)  # (n, 2, d)
    vals = torch.exp(tau * torch.einsum("srd,nrd->nsr", z, draws))  # (n, 3, 2)
    mean, se = vals.mean(0), vals.std(0) / math.sqrt(n)
    assert (got.exp() - mean).abs().le(5 * se + 1e-9 * mean).all(), (got.exp(), mean, se)


def test_jackknife_log_mean_matches_leave_one_out_formula():
    from vmfmir_cli.engine.losses import _log_mean_over_samples

    log_p = torch.randn(6, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    log_p[2, 1] = 30.0  # one dominating sample: the leave-one-out term must stay exact
    p = log_p.exp()
    S = p.shape[0]
    full = (p.mean(0)).log()
    loo = torch.stack([torch.cat([p[:k], p[k + 1 :]]).mean(0).log() for k in range(S)])
    torch.testing.assert_close(_log_mean_over_samples(log_p, "jackknife"), S * full - (S - 1) * loo.mean(0))
    torch.testing.assert_close(_log_mean_over_samples(log_p, "none"), full)


def test_mc_infonce_options_are_checked_and_differ():
    dists = _paired(kappa=8.0)
    z = draw_samples(dists, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="needs dists"):
        mc_infonce_loss(None, samples=z)
    for bad in ({"denominator": "avg"}, {"positive": "exact"}, {"bias_correction": "delta"}, {"inv_temperature": 0.0}):
        with pytest.raises(ValueError):
            mc_infonce_loss(dists, samples=z, **bad)
    values = {
        (den, pos, bc): float(mc_infonce_loss(dists, samples=z, denominator=den, positive=pos, bias_correction=bc))
        for den in ("sum", "mean") for pos in ("analytic", "sampled") for bc in ("none", "jackknife")
    }
    assert len(set(values.values())) == len(values)  # every option changes the estimate
    # the sum over B - 1 = 23 negatives makes each probability smaller than the mean does
    assert values[("sum", "sampled", "none")] > values[("mean", "sampled", "none")]


def test_analytic_positive_is_unbiased_for_the_kernel_and_lowers_variance():
    """Rao-Blackwellisation: same expectation of the positive's kernel, less spread across draws."""
    dists = _paired(kappa=16.0, noise=0.2)
    sampled, analytic = [], []
    for seed in range(40):
        z = draw_samples(dists, 4, generator=torch.Generator().manual_seed(seed))
        sampled.append(float(mc_infonce_loss(dists, samples=z, positive="sampled")))
        analytic.append(float(mc_infonce_loss(dists, samples=z, positive="analytic")))
    s, a = torch.tensor(sampled), torch.tensor(analytic)
    assert a.std() < 0.5 * s.std()
    assert a.mean() < s.mean()  # -log of a noisier mean of S samples is larger (Jensen)


@pytest.mark.parametrize("kappa", [10.0, 1000.0])
def test_debiased_ssw_scores_identical_vmfs_zero_within_monte_carlo_error(kappa):
    gen = torch.Generator().manual_seed(int(kappa))
    n, d = 200, 32
    mu = _unit(torch.randn(n, d, generator=gen, dtype=torch.float64))
    k = torch.full((n,), kappa, dtype=torch.float64)
    same = {"a": VonMisesFisher(mu, k), "b": VonMisesFisher(mu, k)}
    groups = torch.tensor(
        [float(ssw_alignment_loss({m: VonMisesFisher(v.loc[i::10], v.concentration[i::10]) for m, v in same.items()},
                                  num_samples=16, generator=gen)) for i in range(10)]
    )
    mean, se = groups.mean(), groups.std() / math.sqrt(10)
    assert abs(mean) < 4 * se + 1e-12
    plain = ssw_alignment_loss(same, num_samples=16, generator=gen, debias=False)
    assert plain > 10 * abs(mean)  # the plug-in estimate is biased upwards
    other = _unit(mu + 0.5 * torch.randn(n, d, generator=gen, dtype=torch.float64))
    apart = {"a": VonMisesFisher(mu, k), "b": VonMisesFisher(other, k)}
    assert ssw_alignment_loss(apart, num_samples=16, generator=gen) > 10 * (abs(mean) + 4 * se)
    with pytest.raises(ValueError, match="at least 2"):
        ssw_alignment_loss(same, num_samples=1, generator=gen)


def _toy_pairs(d=5, B=4, S=3, tau=7.0):
    """Two modalities of B float64 vMFs, S samples each, and ``kernel(z, m, j)`` =
    log E_{z' ~ vMF_m,j} exp(tau z.z') in closed form, for the by-hand checks."""
    from vmfmir_cli.engine.vmf import log_normalizer

    g = torch.Generator().manual_seed(0)
    loc = {m: torch.nn.functional.normalize(torch.randn(B, d, generator=g, dtype=torch.float64), dim=-1) for m in "ab"}
    kap = {m: 1.0 + 20 * torch.rand(B, generator=g, dtype=torch.float64) for m in "ab"}
    dists = {m: VonMisesFisher(loc[m], kap[m]) for m in "ab"}
    samples = {m: dists[m].sample((S,), generator=g) for m in "ab"}

    def kernel(zs, m, j):
        r = torch.linalg.vector_norm(kap[m][j] * loc[m][j] + tau * zs)
        return float(log_normalizer(kap[m][j:j + 1], d) - log_normalizer(r.reshape(1), d))

    return dists, samples, kernel


def test_analytic_negatives_match_the_closed_form_by_hand():
    B, S, tau = 4, 3, 7.0
    dists, samples, kernel = _toy_pairs(B=B, S=S, tau=tau)
    got = mc_infonce_loss(dists, samples=samples, inv_temperature=tau, negatives="analytic")

    total = 0.0
    for a, b in (("a", "b"), ("b", "a")):
        per = []
        for i in range(B):
            probs = []
            for s in range(S):
                logits = [kernel(samples[a][s, i], b, j) for j in range(B)]
                probs.append(math.exp(logits[i] - torch.logsumexp(torch.tensor(logits), 0).item()))
            per.append(-math.log(sum(probs) / S))
        total += sum(per) / B
    assert float(got) == pytest.approx(total / 2, rel=1e-6)  # log C_d to ~1e-9 on either path
    with pytest.raises(ValueError, match="positive"):
        mc_infonce_loss(dists, samples=samples, negatives="analytic", positive="sampled")


def test_score_form_matches_the_formula_by_hand():
    """sample_mean="score": f_ij = log mean_s E_{z'~vMF_j} exp(tau z_s.z'), then cross-entropy over j."""
    B, S, tau = 4, 3, 7.0
    dists, samples, kernel = _toy_pairs(B=B, S=S, tau=tau)
    got = mc_infonce_loss(dists, samples=samples, inv_temperature=tau, sample_mean="score")

    total = 0.0
    for a, b in (("a", "b"), ("b", "a")):
        per = []
        for i in range(B):
            scores = [math.log(sum(math.exp(kernel(samples[a][s, i], b, j)) for s in range(S)) / S) for j in range(B)]
            per.append(-(scores[i] - math.log(sum(math.exp(x) for x in scores))))
        total += sum(per) / B
    assert float(got) == pytest.approx(total / 2, rel=1e-6)
    assert float(got) != pytest.approx(float(mc_infonce_loss(dists, samples=samples, inv_temperature=tau)), rel=1e-3)
    with pytest.raises(ValueError, match="negatives"):
        mc_infonce_loss(dists, samples=samples, sample_mean="score", negatives="sampled")
    with pytest.raises(ValueError, match="jackknife"):
        mc_infonce_loss(dists, samples=samples, sample_mean="score", bias_correction="jackknife")
    with pytest.raises(ValueError, match="sample_mean"):
        mc_infonce_loss(dists, samples=samples, sample_mean="inside")


@pytest.mark.parametrize("setting,factor", [("d8", 2.0), ("d64-kappa16-256", 4.0)])
def test_score_form_is_lowest_at_the_true_kappas(setting, factor):
    """On the controlled process (benchmarks/controlled.py), with mu at the true posterior's mean, the
    score form is lower at the true kappas than at kappa / factor or kappa x factor (at d = 64 the
    curve is flat between 0.5 and 1 x kappa within the noise of two batches)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import controlled

    cfg = {**controlled.BASE, **controlled.SETTINGS[setting]}
    proc = controlled.Process(cfg, 0)
    gen = torch.Generator().manual_seed(3)
    batches = [proc.draw(128, gen) for _ in range(2)]
    curve = []
    for c in (1.0 / factor, 1.0, factor):
        total = 0.0
        for (_, va, ka), (_, vb, kb) in batches:
            dists = {"a": VonMisesFisher(va, ka * c), "b": VonMisesFisher(vb, kb * c)}
            total += float(mc_infonce_loss(dists, 16, cfg["kappa_pos"], generator=torch.Generator().manual_seed(7),
                                           sample_mean="score"))
        curve.append(total / len(batches))
    assert curve[1] < curve[0] and curve[1] < curve[2], curve
