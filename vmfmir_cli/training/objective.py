"""The training objective of each ``--loss``, on a (gathered) batch of per-modality vMF parameters.

* ``proposed``: MCInfoNCE over every ordered modality pair + ``ssw_lambda`` x SSW alignment of the
  two vMFs of each item (the SSW term draws its own ``ssw_samples``, or shares the contrastive
  draws when ``ssw_samples == mc_samples``);
* ``baseline``: MCInfoNCE alone;
* ``infonce``: CLIP-style InfoNCE on the mean directions with a learned temperature (kappa unused).

``kappa_prior_weight > 0`` adds that weight times :func:`kl_to_uniform` (reported as ``kappa_prior``)
to ``proposed`` and ``baseline``.

Pure tensor code: the trainer and ``benchmarks/train.py`` call the same function.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

import torch

from vmfmir_cli.engine.losses import draw_samples, infonce_loss, mc_infonce_loss, ssw_alignment_loss
from vmfmir_cli.engine.vmf import VonMisesFisher

#: the loss terms each loss reports (the first is the total)
TERMS = {
    "proposed": ("loss", "contrastive", "ssw"),
    "baseline": ("loss", "contrastive"),
    "infonce": ("loss", "infonce"),
}


def training_loss(
    params: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    masks: Mapping[str, torch.Tensor],
    config,
    generator: Optional[torch.Generator] = None,
    anchor_slice: Optional[slice] = None,
    logit_scale: Optional[torch.Tensor] = None,
    progress: Optional[float] = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(loss, terms, pairs)``: the scalar to minimise, ``{term: value}`` (``TERMS[config.loss]``)
    and the detached per-modality-pair breakdown.

    ``params[m] = (mu (B, d), kappa (B,))`` with rows aligned by item; ``masks[m]`` (bool ``(B,)``)
    marks the items that have ``m``. ``config`` needs ``loss``, ``mc_samples``,
    ``inv_temperature``, ``ssw_lambda``, ``ssw_p`` and ``ssw_projections``; the recipe keys
    ``denominator``, ``mc_positive``, ``mc_negatives``, ``mc_sample_mean``, ``mc_bias_correction``, ``ssw_samples``, ``ssw_debias`` and
    ``kappa_detach_fraction`` take the engine's defaults when ``config`` lacks them.
    ``progress`` (share of the run's steps done, in [0, 1)) drives the phased schedule: while it is
    below ``kappa_detach_fraction`` kappa is detached (only mu learns).
    """
    masks = dict(masks)
    if config.loss == "infonce":
        if logit_scale is None:
            raise ValueError("the infonce loss needs a logit_scale parameter")
        mus = {m: mu for m, (mu, _) in params.items()}
        loss, pairs = infonce_loss(mus, logit_scale, masks, anchor_slice=anchor_slice, return_breakdown=True)
        return loss, {"loss": loss, "infonce": loss}, pairs
    detach_until = float(getattr(config, "kappa_detach_fraction", 0.0))
    if detach_until > 0 and progress is not None and progress < detach_until:
        params = {m: (mu, kappa.detach()) for m, (mu, kappa) in params.items()}
    dists = {m: VonMisesFisher(mu, kappa, validate_args=False) for m, (mu, kappa) in params.items()}
    samples = draw_samples(dists, config.mc_samples, generator)
    contrastive, pairs = mc_infonce_loss(
        dists,
        inv_temperature=config.inv_temperature,
        masks=masks,
        samples=samples,
        anchor_slice=anchor_slice,
        return_breakdown=True,
        denominator=getattr(config, "denominator", "sum"),
        positive=getattr(config, "mc_positive", "analytic"),
        bias_correction=getattr(config, "mc_bias_correction", "none"),
        negatives=getattr(config, "mc_negatives", None),  # None: the engine's default for the positive
        sample_mean=getattr(config, "mc_sample_mean", "probability"),
    )
    terms = {"loss": contrastive, "contrastive": contrastive}
    prior_weight = float(getattr(config, "kappa_prior_weight", 0.0))
    if config.loss == "proposed":
        ssw_samples = int(getattr(config, "ssw_samples", config.mc_samples))
        shared = samples if ssw_samples == config.mc_samples else draw_samples(dists, ssw_samples, generator)
        ssw, ssw_pairs = ssw_alignment_loss(
            None,
            p=config.ssw_p,
            num_projections=config.ssw_projections,
            masks=masks,
            generator=generator,
            samples=shared,
            anchor_slice=anchor_slice,
            return_breakdown=True,
            debias=bool(getattr(config, "ssw_debias", True)),
        )
        loss = contrastive + config.ssw_lambda * ssw
        terms = {"loss": loss, "contrastive": contrastive, "ssw": ssw}
        pairs = {**pairs, **ssw_pairs}
    if prior_weight > 0:
        prior = kl_to_uniform(dists, masks, anchor_slice)
        terms = {**terms, "loss": terms["loss"] + prior_weight * prior, "kappa_prior": prior}
    return terms["loss"], terms, pairs


def term_names(config) -> list[str]:
    """The terms :func:`training_loss` reports for ``config`` (the first is the total)."""
    names = list(TERMS[config.loss])
    if config.loss != "infonce" and float(getattr(config, "kappa_prior_weight", 0.0)) > 0:
        names.append("kappa_prior")
    return names


def kl_to_uniform(
    dists: Mapping[str, VonMisesFisher], masks: Mapping[str, torch.Tensor], anchor_slice: Optional[slice] = None
) -> torch.Tensor:
    """The mean over modalities of the mean over their (anchor) items of KL(vMF || uniform on the
    sphere) = log |S^{d-1}| - H(vMF): 0 at kappa = 0, about ((d - 1) / 2) log kappa for large kappa.
    As a loss term (``kappa_prior_weight``) it is the variational-information-bottleneck prior of
    PCME, for vMFs: a gentle pull of every kappa towards the uniform where the contrastive loss is
    flat in kappa."""
    per_modality = []
    for m, dist in dists.items():
        keep = masks[m].bool()
        if anchor_slice is not None:
            keep = keep.clone()
            outside = torch.ones_like(keep)
            outside[anchor_slice] = False
            keep[outside] = False
        if not bool(keep.any()):
            continue
        d = dist.dim
        log_area = math.log(2.0) + 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d)
        kl = log_area - dist.entropy()[keep]
        per_modality.append(kl.float().mean())
    if not per_modality:
        return next(iter(dists.values())).concentration.sum() * 0.0
    return torch.stack(per_modality).mean()


__all__ = ["TERMS", "kl_to_uniform", "term_names", "training_loss"]
