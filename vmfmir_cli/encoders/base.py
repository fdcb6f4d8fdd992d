"""The Encoder base class: the whole contract between vmfmir and an encoder plugin.

An encoder turns one decoded item of its modality into a feature vector. It knows nothing about
von Mises-Fisher distributions: the core puts a :class:`~vmfmir_cli.encoders.head.VMFHead` on top.

Life cycle of an encoder inside vmfmir::

    enc = MyEncoder(**config)              # defaults for missing keys, unknown keys rejected
    enc.fit_preprocessing(train_raws)      # optional (e.g. train a tokenizer); state goes to config()
    x = [enc.preprocess(raw) for raw in items]   # CPU, deterministic, in DataLoader workers
    batch = enc.collate(x)                 # dict of tensors (may hold "owner" for windowed items)
    features = enc(batch)                  # (R, enc.dim), R rows (R > B when rows are windows)
    saved = enc.config(), enc.state_dict_for_saving()
    MyEncoder.from_config(saved_config).load_saved_state(saved_weights)   # rebuilt bit-exactly

Raw inputs: audio is a float32 tensor ``(T,)`` at the encoder's ``sample_rate``; image is a
``PIL.Image.Image`` (mode "L" or "RGB"); text is a ``str``.
"""

from __future__ import annotations

import copy
import json
from typing import Any, ClassVar, Iterable, Mapping

import torch
from torch import nn

from vmfmir_cli.errors import CheckpointError, ConfigError

MODALITIES = ("audio", "image", "text")


class Encoder(nn.Module):
    """Base class of every encoder (built-in or plugin).

    Subclasses set the class attributes ``encoder_id`` (unique), ``modality`` and
    ``default_config`` (every accepted config key with its default; ``dim`` is the output feature
    size), call ``super().__init__(**config)`` first and then read the resolved values from
    ``self.cfg``. They implement :meth:`preprocess` and :meth:`forward`, and :meth:`collate` when the
    default (stack, or pad the first axis with a ``mask``) does not fit.
    """

    encoder_id: ClassVar[str] = ""
    modality: ClassVar[str] = ""
    default_config: ClassVar[dict[str, Any]] = {"dim": 256}
    #: default output feature size; the instance attribute set from ``cfg["dim"]`` wins
    dim: int = 256

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if isinstance(cls.__dict__.get("default_config"), dict) and "dim" in cls.default_config:
            cls.dim = int(cls.default_config["dim"])

    def __init__(self, **config: Any) -> None:
        super().__init__()
        defaults = copy.deepcopy(dict(type(self).default_config))
        unknown = sorted(set(config) - set(defaults))
        if unknown:
            raise ConfigError(
                f"encoder {self.encoder_id!r} got unknown config key(s) {', '.join(unknown)}; "
                f"known keys: {', '.join(sorted(defaults))}"
            )
        defaults.update(copy.deepcopy(config))
        try:
            json.dumps(defaults)
        except TypeError as exc:
            raise ConfigError(f"encoder {self.encoder_id!r}: config must be JSON-serialisable ({exc})") from None
        self.cfg: dict[str, Any] = defaults
        self.dim = int(defaults.get("dim", type(self).dim))
        if self.dim <= 0:
            raise ConfigError(f"encoder {self.encoder_id!r}: dim must be a positive integer, got {self.dim}")

    # -- configuration ----------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The JSON-able config that rebuilds this encoder with :meth:`from_config`."""
        return copy.deepcopy(self.cfg)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Encoder":
        return cls(**dict(config))

    def fit_preprocessing(self, raws: Iterable[Any]) -> None:
        """Fit data-dependent preprocessing on the training items (default: nothing to fit).

        Whatever is learnt here must be stored in ``self.cfg`` so that :meth:`config` carries it.
        """

    # -- data -------------------------------------------------------------------------------------
    def preprocess(self, raw: Any) -> torch.Tensor:
        """One decoded item -> tensor (deterministic; runs on CPU in DataLoader workers)."""
        raise NotImplementedError(f"{type(self).__name__}.preprocess")

    def collate(self, items: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Preprocessed items -> batch: ``{"x": (B, ...)}``, padded on axis 0 with ``"mask"`` if ragged."""
        if not items:
            raise ValueError("collate needs at least one item")
        if all(t.shape == items[0].shape for t in items):
            return {"x": torch.stack(items)}
        return pad_sequences(items)

    # -- weights ----------------------------------------------------------------------------------
    def state_dict_for_saving(self) -> dict[str, torch.Tensor]:
        """The tensors saved with a trained model (default: the full state dict).

        Encoders that wrap a frozen pretrained backbone return only their trainable parts; the
        backbone is then named in :meth:`config` and reloaded from there.
        """
        return self.state_dict()

    def load_saved_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load what :meth:`state_dict_for_saving` returned (strict: every key must match)."""
        result = self.load_state_dict(dict(state), strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise CheckpointError(
                f"weights of encoder {self.encoder_id!r} do not match its config "
                f"(missing: {result.missing_keys[:5]}, unexpected: {result.unexpected_keys[:5]})"
            )

    # -- helpers ----------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def extra_repr(self) -> str:
        return f"encoder_id={self.encoder_id!r}, modality={self.modality!r}, dim={self.dim}"


def pad_sequences(items: list[torch.Tensor], pad_value: float = 0.0) -> dict[str, torch.Tensor]:
    """Pad tensors of shape ``(L_i, ...)`` to ``(B, L_max, ...)``; ``mask`` (B, L_max) is True on data."""
    lengths = torch.tensor([t.shape[0] for t in items], dtype=torch.long)
    longest = int(lengths.max())
    x = items[0].new_full((len(items), longest, *items[0].shape[1:]), pad_value)
    for i, t in enumerate(items):
        x[i, : t.shape[0]] = t
    mask = torch.arange(longest)[None, :] < lengths[:, None]
    return {"x": x, "mask": mask}


def window_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """Start offsets of the fixed windows covering ``num_samples`` (last one end-aligned)."""
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] + window < num_samples:
        starts.append(num_samples - window)
    return starts


def windowed_collate(items: list[torch.Tensor]) -> dict[str, Any]:
    """Items of shape ``(W_i, ...)`` (W_i windows each) -> all windows plus their ``owner`` item."""
    if not items:
        raise ValueError("collate needs at least one item")
    counts = torch.tensor([t.shape[0] for t in items], dtype=torch.long)
    if bool((counts < 1).any()):
        raise ValueError("every item needs at least one window")
    owner = torch.repeat_interleave(torch.arange(len(items)), counts)
    return {"x": torch.cat(items, dim=0), "owner": owner, "num_items": len(items)}


def batch_to(batch: Mapping[str, Any], device: torch.device | str) -> dict[str, Any]:
    """Move every tensor of a batch dict to ``device`` (other values unchanged)."""
    device = torch.device(device)
    non_blocking = device.type == "cuda"
    return {k: (v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v) for k, v in batch.items()}


__all__ = ["Encoder", "MODALITIES", "batch_to", "pad_sequences", "window_starts", "windowed_collate"]
