"""The training objective of each ``--loss``, on a (gathered) batch of per-modality vMF parameters.

* ``proposed``: MCInfoNCE over every ordered modality pair + ``ssw_lambda`` x SSW alignment of the
  two vMFs of each item (both terms on the same Monte Carlo draws);
* ``baseline``: MCInfoNCE alone;
* ``infonce``: CLIP-style InfoNCE on the mean directions with a learned temperature (kappa unused).

Pure tensor code: the trainer and ``benchmarks/train.py`` call the same function.
"""

from __future__ import annotations

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
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(loss, terms, pairs)``: the scalar to minimise, ``{term: value}`` (``TERMS[config.loss]``)
    and the detached per-modality-pair breakdown.

    ``params[m] = (mu (B, d), kappa (B,))`` with rows aligned by item; ``masks[m]`` (bool ``(B,)``)
    marks the items that have ``m``. ``config`` needs ``loss``, ``mc_samples``,
    ``inv_temperature``, ``ssw_lambda``, ``ssw_p`` and ``ssw_projections``.
    """
    masks = dict(masks)
    if config.loss == "infonce":
        if logit_scale is None:
            raise ValueError("the infonce loss needs a logit_scale parameter")
        mus = {m: mu for m, (mu, _) in params.items()}
        loss, pairs = infonce_loss(mus, logit_scale, masks, anchor_slice=anchor_slice, return_breakdown=True)
        return loss, {"loss": loss, "infonce": loss}, pairs
    dists = {m: VonMisesFisher(mu, kappa, validate_args=False) for m, (mu, kappa) in params.items()}
    samples = draw_samples(dists, config.mc_samples, generator)
    contrastive, pairs = mc_infonce_loss(
        None,
        inv_temperature=config.inv_temperature,
        masks=masks,
        samples=samples,
        anchor_slice=anchor_slice,
        return_breakdown=True,
    )
    terms = {"loss": contrastive, "contrastive": contrastive}
    if config.loss == "proposed":
        ssw, ssw_pairs = ssw_alignment_loss(
            None,
            p=config.ssw_p,
            num_projections=config.ssw_projections,
            masks=masks,
            generator=generator,
            samples=samples,
            anchor_slice=anchor_slice,
            return_breakdown=True,
        )
        loss = contrastive + config.ssw_lambda * ssw
        terms = {"loss": loss, "contrastive": contrastive, "ssw": ssw}
        pairs = {**pairs, **ssw_pairs}
    return terms["loss"], terms, pairs


__all__ = ["TERMS", "training_loss"]
