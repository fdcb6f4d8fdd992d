"""A vmfmir model: one encoder and one vMF head per modality (:class:`MultimodalModel`).

The composition sits above ``plugins/``: rebuilding a model from its config looks the encoder ids
up in the plugin registry, which is why this package is not part of ``encoders/`` (encoders and the
head know nothing of plugins). Saving and loading a run: :mod:`vmfmir_cli.model.store`.

Windowed inputs (a batch with an ``"owner"`` row -> item map, e.g. long audio cut into windows) are
fused per item as a product of experts: natural parameters add, eta = sum_r kappa_r mu_r, the
item's vMF is (eta / |eta|, |eta|), floored at the head's ``kappa_min``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import nn

from vmfmir_cli.encoders.base import MODALITIES, Encoder, batch_to
from vmfmir_cli.encoders.head import VMFHead
from vmfmir_cli.errors import CheckpointError, ConfigError, PluginError


def fuse_rows(
    mu: torch.Tensor, kappa: torch.Tensor, owner: torch.Tensor, num_items: Optional[int] = None, kappa_min: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Product of experts over the rows of each owner: (R, d), (R,), owner (R,) -> (N, d), (N,)."""
    owner = owner.to(device=mu.device, dtype=torch.long)
    n = int(num_items) if num_items is not None else int(owner.max()) + 1
    eta = torch.zeros(n, mu.shape[-1], dtype=mu.dtype, device=mu.device)
    eta = eta.index_add(0, owner, kappa.unsqueeze(-1) * mu)
    norm = eta.norm(dim=-1)
    fused_mu = eta / norm.clamp_min(torch.finfo(eta.dtype).tiny).unsqueeze(-1)
    fused_kappa = norm.clamp_min(kappa_min)
    return fused_mu, fused_kappa


class MultimodalModel(nn.Module):
    """``encoders[modality]`` -> features -> ``heads[modality]`` -> vMF(mu, kappa) on S^{embed_dim-1}."""

    def __init__(
        self,
        encoders: Mapping[str, Encoder],
        embed_dim: int = 128,
        kappa_min: float = 1.0,
        kappa_max: float = 1e4,
        kappa_head: str = "exp",
        kappa_init: float = 20.0,
        head_center: bool = True,
    ) -> None:
        super().__init__()
        if not encoders:
            raise ConfigError("a model needs at least one modality")
        for modality, encoder in encoders.items():
            if modality not in MODALITIES:
                raise ConfigError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
            if getattr(encoder, "modality", modality) != modality:
                raise ConfigError(
                    f"encoder {encoder.encoder_id!r} is a {encoder.modality} encoder, not a {modality} encoder"
                )
        self.embed_dim = int(embed_dim)
        self.kappa_min, self.kappa_max = float(kappa_min), float(kappa_max)
        self.kappa_head, self.kappa_init = str(kappa_head), float(kappa_init)
        self.head_center = bool(head_center)
        self.encoders = nn.ModuleDict(dict(encoders))
        self.heads = nn.ModuleDict(
            {
                m: VMFHead(int(e.dim), self.embed_dim, self.kappa_min, self.kappa_max, kappa_init=self.kappa_init,
                           kappa_head=self.kappa_head, center=self.head_center)
                for m, e in encoders.items()
            }
        )

    @property
    def modalities(self) -> list[str]:
        return list(self.encoders.keys())

    @property
    def device(self) -> torch.device:
        return next(self.heads.parameters()).device

    def encoder(self, modality: str) -> Encoder:
        if modality not in self.encoders:
            raise ConfigError(f"this model has no {modality} encoder (it has: {', '.join(self.modalities)})")
        return self.encoders[modality]

    # -- encoding ---------------------------------------------------------------------------------
    def encode_params(self, modality: str, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """A collated batch -> (mu (N, embed_dim), kappa (N,)), one row per item."""
        return self.finish(self.stage(modality, batch))

    def stage(self, modality: str, batch: Mapping[str, Any]) -> dict[str, Any]:
        """The first half of :meth:`encode_params`: the encoder and the head's projection, before the
        head centres and normalises (``direction`` has one row per input row, windows included).
        A distributed trainer stages every modality, sums the directions over the ranks, then
        calls :meth:`finish` with those sums."""
        batch = batch_to(batch, self.device)
        direction, h = self.heads[modality].project(self.encoder(modality)(batch))
        return {"modality": modality, "direction": direction, "h": h, "owner": batch.get("owner"),
                "num_items": batch.get("num_items")}

    def finish(self, staged: Mapping[str, Any], stats=None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`stage`'s output -> (mu, kappa) per item; ``stats`` see :meth:`VMFHead.finish`."""
        mu, kappa = self.heads[staged["modality"]].finish(staged["direction"], staged["h"], stats)
        if staged["owner"] is not None:
            mu, kappa = fuse_rows(mu, kappa, staged["owner"], staged["num_items"], kappa_min=self.kappa_min)
        return mu, kappa

    def encode(self, modality: str, batch: Mapping[str, Any]):
        """A collated batch -> :class:`~vmfmir_cli.engine.vmf.VonMisesFisher` with batch shape (N,)."""
        from vmfmir_cli.engine.vmf import VonMisesFisher

        mu, kappa = self.encode_params(modality, batch)
        return VonMisesFisher(mu, kappa, validate_args=False)

    def preprocess(self, modality: str, raw: Any) -> torch.Tensor:
        return self.encoder(modality).preprocess(raw)

    def collate(self, modality: str, items: list[torch.Tensor]) -> dict[str, Any]:
        return self.encoder(modality).collate(items)

    def encode_raw(self, modality: str, raws: list[Any]):
        """Convenience: decoded items -> preprocess -> collate -> :meth:`encode`."""
        encoder = self.encoder(modality)
        return self.encode(modality, encoder.collate([encoder.preprocess(r) for r in raws]))

    def forward(self, modality: str, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_params(modality, batch)

    # -- configuration ----------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        encoders = {}
        for modality, encoder in self.encoders.items():
            plugin, package = _plugin_of(encoder.encoder_id)
            encoders[modality] = {
                "id": encoder.encoder_id,
                "config": encoder.config(),
                "dim": int(encoder.dim),
                "plugin": plugin,
                "package": package,
            }
        return {
            "embed_dim": self.embed_dim,
            "kappa_min": self.kappa_min,
            "kappa_max": self.kappa_max,
            "kappa_head": self.kappa_head,
            "kappa_init": self.kappa_init,
            "head_center": self.head_center,
            "encoders": encoders,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "MultimodalModel":
        """Rebuild (untrained weights) from :meth:`config`, looking encoder ids up in the plugin registry."""
        from vmfmir_cli.plugins.manager import get_registry

        from vmfmir_cli.encoders.safety import validate_encoder_config

        try:
            specs = config["encoders"]
            embed_dim = config["embed_dim"]
            kappa_min, kappa_max = config.get("kappa_min", 1.0), config.get("kappa_max", 1e4)
            if not isinstance(specs, Mapping) or not specs:
                raise ConfigError("the model config's encoders must be a non-empty table")
            if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim < 1:
                raise ConfigError(f"the model config's embed_dim must be a positive integer, got {embed_dim!r}")
            for name, value in (("kappa_min", kappa_min), ("kappa_max", kappa_max)):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(f"the model config's {name} must be a number, got {value!r}")
            registry = get_registry()
            # every spec is checked before any encoder is built (building may load files)
            checked = {}
            for modality, spec in specs.items():
                if modality not in MODALITIES or not isinstance(spec, Mapping) or not isinstance(spec.get("id"), str):
                    raise ConfigError(f"the model config's encoders.{modality} is not a valid encoder entry")
                encoder_id = spec["id"]
                if encoder_id not in registry:
                    raise PluginError(_missing_encoder_message(encoder_id, spec, registry))
                factory = registry.get(encoder_id).factory
                where = f"the model config (encoders.{modality})"
                checked[modality] = (factory, validate_encoder_config(encoder_id, factory, spec.get("config", {}), where))
            kappa_head = config.get("kappa_head", "sigmoid")  # models saved before the exp head used the sigmoid head
            kappa_init = config.get("kappa_init", 20.0)
            if kappa_head not in ("exp", "sigmoid"):
                raise ConfigError(f"the model config's kappa_head must be 'exp' or 'sigmoid', got {kappa_head!r}")
            if isinstance(kappa_init, bool) or not isinstance(kappa_init, (int, float)):
                raise ConfigError(f"the model config's kappa_init must be a number, got {kappa_init!r}")
            head_center = config.get("head_center", False)  # models saved before the centred head had none
            if not isinstance(head_center, bool):
                raise ConfigError(f"the model config's head_center must be true or false, got {head_center!r}")
            encoders = {m: factory.from_config(cfg) for m, (factory, cfg) in checked.items()}
            return cls(
                encoders,
                embed_dim=embed_dim,
                kappa_min=kappa_min,
                kappa_max=kappa_max,
                kappa_head=kappa_head,
                kappa_init=kappa_init,
                head_center=head_center,
            )
        except KeyError as exc:
            raise ConfigError(f"model config lacks the key {exc.args[0]!r}") from None

    # -- weights ----------------------------------------------------------------------------------
    def state_dict_for_saving(self) -> dict[str, torch.Tensor]:
        tensors: dict[str, torch.Tensor] = {}
        for modality, encoder in self.encoders.items():
            for key, value in encoder.state_dict_for_saving().items():
                tensors[f"encoders.{modality}.{key}"] = value
        for modality, head in self.heads.items():
            for key, value in head.state_dict().items():
                tensors[f"heads.{modality}.{key}"] = value
        return tensors

    def load_saved_state(self, tensors: Mapping[str, torch.Tensor]) -> None:
        groups: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            part, _, rest = key.partition(".")
            modality, _, name = rest.partition(".")
            if part not in ("encoders", "heads") or modality not in self.encoders or not name:
                raise CheckpointError(f"unexpected tensor {key!r} in the weights (not part of this model)")
            groups.setdefault((part, modality), {})[name] = value
        for modality in self.encoders:
            try:
                self.encoders[modality].load_saved_state(groups.get(("encoders", modality), {}))
                result = self.heads[modality].load_state_dict(groups.get(("heads", modality), {}), strict=False)
            except RuntimeError as exc:  # shape mismatches
                raise CheckpointError(
                    f"the saved {modality} weights do not fit the model in the config ({_first_mismatch(exc)}); "
                    "was config.json edited? Restore it or retrain"
                ) from None
            if result.missing_keys or result.unexpected_keys:
                raise CheckpointError(
                    f"the {modality} head weights do not match the config (missing {result.missing_keys[:5]}, "
                    f"unexpected {result.unexpected_keys[:5]})"
                )


def _first_mismatch(exc: Exception) -> str:
    """torch's multi-line load_state_dict error -> its first "size mismatch" (or first) line."""
    lines = [" ".join(line.split()) for line in str(exc).splitlines() if line.strip()]
    detail = next((line for line in lines if line.startswith("size mismatch")), lines[-1] if lines else "")
    return detail.replace("copying a param with shape", "saved").replace("the shape in current model is", "config builds")[:300]


def _plugin_of(encoder_id: str) -> tuple[Optional[str], Optional[str]]:
    try:
        from vmfmir_cli.plugins.manager import get_registry

        registry = get_registry()
        if encoder_id in registry:
            entry = registry.get(encoder_id)
            return entry.plugin, entry.package
    except Exception:  # a model built by hand outside the registry still saves
        pass
    return None, None


def _missing_encoder_message(encoder_id: str, spec: Mapping[str, Any], registry) -> str:
    available = ", ".join(sorted(f"{e.encoder_id} ({e.modality})" for e in registry.entries())) or "none"
    package, plugin = spec.get("package"), spec.get("plugin")
    if package and package != "vmfmir":
        hint = f"it comes from plugin {plugin!r}: install it with `pip install {package}`"
    elif plugin:
        hint = f"it came from plugin {plugin!r}; install that plugin"
    else:
        hint = "install the plugin that provides it"
    return f"this model uses encoder {encoder_id!r}, which is not registered; {hint}. Available encoders: {available}"


__all__ = ["MultimodalModel", "fuse_rows"]
