"""The one device resolver of every command (train, embed, query, eval): a name -> torch.device.

``auto`` is CUDA when available (rank ``local_rank``'s GPU under torchrun), else MPS, else the CPU.
Explicit names (``cpu``, ``cuda``, ``cuda:N``, ``mps``) are checked against this machine, so a
missing GPU is one :class:`~vmfmir_cli.errors.ConfigError` line before anything is loaded, not a
traceback from deep inside torch.
"""

from __future__ import annotations

from typing import Optional, Union

import torch

from vmfmir_cli.errors import ConfigError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def resolve_device(name: Union[str, torch.device, None] = "auto", local_rank: int = 0, default: str = "auto") -> torch.device:
    """``name`` (None: ``default``) -> the torch.device to use, checked to exist on this machine."""
    if isinstance(name, torch.device):
        name = str(name)
    text = (name or default).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        index: Optional[int] = None
        if text != "cuda":
            try:
                index = int(text.split(":", 1)[1])
            except ValueError:
                raise ConfigError(f"--device {name}: not a device; use {DEVICE_CHOICES}") from None
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: CUDA is not available on this machine (no GPU or no driver); use --device cpu or auto")
        count = torch.cuda.device_count()
        if index is None:
            return torch.device("cuda", local_rank % count)
        if not 0 <= index < count:
            raise ConfigError(f"--device {name}: only {count} CUDA device(s) here (cuda:0..cuda:{count - 1})")
        return torch.device("cuda", index)
    if text == "mps":
        if not _mps_available():
            raise ConfigError("--device mps: MPS is not available on this machine; use --device cpu or auto")
        return torch.device("mps")
    raise ConfigError(f"unknown --device {name!r}; use {DEVICE_CHOICES}")


__all__ = ["DEVICE_CHOICES", "resolve_device"]
