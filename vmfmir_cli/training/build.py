"""Building what a run needs from its config: encoders (registry lookups), model, device, optimiser.

Every check that can fail on a user's input (unknown encoder, an encoder of the wrong modality, an
encoder config key that does not exist, an unavailable device) runs here, before any data is read
or any weight is trained.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Iterable, Mapping, Optional

import torch

from vmfmir_cli.errors import ConfigError, PluginError
from vmfmir_cli.training.config import TrainConfig


# --------------------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------------------


def resolve_encoders(config: TrainConfig, modalities: Iterable[str]) -> dict[str, tuple[str, Any, dict]]:
    """``{m: (encoder id, factory, encoder config)}`` with every id and key checked.

    Encoders configured for modalities that are not trained are ignored (one config file can serve
    ``--modalities audio,text`` and ``--modalities audio,image,text``)."""
    from vmfmir_cli.encoders.safety import validate_encoder_config
    from vmfmir_cli.plugins.manager import default_encoder_id, get_registry

    registry = get_registry()
    out = {}
    for m in modalities:
        encoder_id, enc_config = config.encoder_spec(m)
        encoder_id = encoder_id or default_encoder_id(m)
        if encoder_id not in registry:
            names = [e.encoder_id for e in registry.entries() if e.modality == m]
            close = difflib.get_close_matches(encoder_id, names, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            available = ", ".join(names) or "none"
            raise PluginError(
                f"unknown {m} encoder {encoder_id!r}{hint}; {m} encoders available: {available}. "
                "Install the plugin that provides it (`vmfmir plugins` lists what is installed)."
            )
        entry = registry.get(encoder_id)
        if entry.modality != m:
            raise ConfigError(
                f"encoder {encoder_id!r} encodes {entry.modality}, not {m}; pick a {m} encoder "
                f"(`vmfmir plugins` lists them)"
            )
        # keys, JSON types and permissions (trust_remote_code / allow_download need an env variable)
        enc_config = validate_encoder_config(entry.encoder_id, entry.factory, enc_config, where=f"encoders.{m}")
        out[m] = (entry.encoder_id, entry.factory, dict(enc_config))
    return out


def build_model(
    specs: Mapping[str, tuple[str, Any, dict]],
    config: TrainConfig,
    sample_rate: int,
    fit_raws: Optional[Mapping[str, Iterable[Any]]] = None,
):
    """A fresh :class:`MultimodalModel`; encoders get the dataset's sample rate unless configured,
    and fit their preprocessing on ``fit_raws[m]`` (lazy iterables of raw training items)."""
    from vmfmir_cli.model import MultimodalModel

    encoders = {}
    for m, (encoder_id, factory, enc_config) in specs.items():
        enc_config = dict(enc_config)
        defaults = getattr(factory, "default_config", None)
        if isinstance(defaults, Mapping) and "sample_rate" in defaults and "sample_rate" not in enc_config:
            enc_config["sample_rate"] = int(sample_rate)
        try:
            encoder = factory.from_config(enc_config)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"encoders.{m}: cannot build encoder {encoder_id!r} ({exc})") from None
        if fit_raws is not None and m in fit_raws:
            encoder.fit_preprocessing(fit_raws[m])
        encoders[m] = encoder
    return MultimodalModel(
        encoders,
        embed_dim=config.dim,
        kappa_min=config.kappa_min,
        kappa_max=config.kappa_max,
        kappa_head=config.kappa_head,
        kappa_init=config.kappa_init,
        head_center=config.head_center,
    )


def audio_rate(model, default: int) -> int:
    """The rate the audio encoder wants its input at (its ``sample_rate`` config, else the dataset's)."""
    if "audio" in model.encoders:
        cfg = model.encoders["audio"].config()
        if isinstance(cfg, Mapping) and cfg.get("sample_rate"):
            return int(cfg["sample_rate"])
    return int(default)


def kappa_parameters(model) -> list[torch.nn.Parameter]:
    """The parameters that only shape kappa (frozen for the deterministic infonce loss)."""
    params = []
    for head in model.heads.values():
        net = getattr(head, "kappa_net", None)
        if net is not None:
            params.extend(net.parameters())
    return params


# --------------------------------------------------------------------------------------------------
# Device and precision
# --------------------------------------------------------------------------------------------------


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA if present, else MPS, else CPU; explicit names are checked
    (:func:`vmfmir_cli.device.resolve_device`, shared by every command)."""
    from vmfmir_cli.device import resolve_device as resolve

    return resolve(name, local_rank)


def use_bf16(precision: str, device: torch.device) -> bool:
    if precision == "bf16":
        return device.type in ("cuda", "cpu")
    if precision == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return False


# --------------------------------------------------------------------------------------------------
# Optimiser and learning-rate schedule
# --------------------------------------------------------------------------------------------------


def make_optimizer(config: TrainConfig, named_params: Iterable[tuple[str, torch.nn.Parameter]]) -> torch.optim.Optimizer:
    """Weight decay on matrices and convolution kernels only (not biases, norms or the logit scale).
    With ``kappa_lr_scale != 1`` the kappa heads' MLPs get groups of their own whose ``lr_scale``
    multiplies every learning rate the trainer sets (:func:`group_lr`)."""
    scale = float(getattr(config, "kappa_lr_scale", 1.0))
    buckets: dict[tuple[bool, float], list] = {}
    for name, p in named_params:
        if not p.requires_grad:
            continue
        decays = p.ndim >= 2 and "embedding" not in name
        buckets.setdefault((decays, scale if ".kappa_net." in f".{name}" else 1.0), []).append(p)
    order = [(True, 1.0), (False, 1.0), (True, scale), (False, scale)]
    groups = []
    for key in dict.fromkeys(order):  # the first two as before; the kappa groups only when scaled
        if buckets.get(key):
            decays, lr_scale = key
            groups.append({"params": buckets[key], "weight_decay": config.weight_decay if decays else 0.0,
                           "lr_scale": lr_scale, "lr": config.lr * lr_scale})
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    betas = (float(config.betas[0]), float(config.betas[1]))
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, betas=betas)
    return torch.optim.AdamW(groups, lr=config.lr, betas=betas)


def group_lr(group: dict, lr: float) -> float:
    """The learning rate of one optimiser group when the schedule says ``lr``."""
    return lr * float(group.get("lr_scale", 1.0))


def lr_at(config: TrainConfig, step: int, total_steps: int) -> float:
    """Learning rate of step ``step`` (0-based): linear warmup, then cosine / linear decay or constant."""
    total = max(1, int(total_steps))
    warmup = int(round(config.warmup_fraction * total))
    if warmup > 0 and step < warmup:
        return config.lr * (step + 1) / warmup
    if config.schedule == "constant":
        return config.lr
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    lo = config.min_lr_ratio
    if config.schedule == "linear":
        factor = 1.0 - (1.0 - lo) * progress
    else:
        factor = lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.lr * factor


__all__ = [
    "audio_rate",
    "build_model",
    "group_lr",
    "kappa_parameters",
    "lr_at",
    "make_optimizer",
    "resolve_device",
    "resolve_encoders",
    "use_bf16",
]
