"""Built-in audio encoder ``mel-cnn``: log-mel spectrogram windows -> compact CNN -> features.

Preprocessing (deterministic, CPU): a mono waveform ``(T,)`` at ``sample_rate`` is cut into windows of
``window_seconds`` every ``window_hop_seconds`` (the last window is aligned with the end of the
signal, so nothing is dropped and no silence is appended; a clip shorter than one window is
zero-padded to one window). Each window becomes a log-mel spectrogram ``(n_mels, frames)``
(torchaudio), standardised per window (loudness-invariant). ``preprocess`` returns ``(W, n_mels,
frames)`` for an item with W windows.

Batching: :meth:`collate` concatenates every window of every item and adds ``owner`` (window ->
item); the core turns each window into a vMF and fuses an item's windows (product of experts), so a
track's embedding uses all of it and is the same every time (no random crops).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from vmfmir_cli.encoders.base import Encoder, window_starts, windowed_collate
from vmfmir_cli.encoders.layers import MeanMaxPool, cnn_trunk
from vmfmir_cli.errors import ConfigError


@functools.lru_cache(maxsize=8)
def _mel_transform(sample_rate: int, n_fft: int, hop_length: int, n_mels: int, f_min: float, f_max: float):
    import torchaudio

    return torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate,
        n_fft=n_fft,
        hop_length=hop_length,
        n_mels=n_mels,
        f_min=f_min,
        f_max=f_max,
        power=2.0,
        center=True,
        pad_mode="constant",
        norm="slaney",
        mel_scale="slaney",
    )


def frame_windows(wav: torch.Tensor, window: int, hop: int) -> torch.Tensor:
    """(T,) -> (W, window): the windows of :func:`window_starts` (zero-padded if T < window)."""
    if wav.shape[0] < window:
        wav = torch.nn.functional.pad(wav, (0, window - wav.shape[0]))
    return torch.stack([wav[s : s + window] for s in window_starts(wav.shape[0], window, hop)])


def to_mono(raw: Any) -> torch.Tensor:
    """A float32 ``(T,)`` waveform from a tensor/array of shape (T,) or (channels, T)."""
    wav = torch.as_tensor(raw, dtype=torch.float32)
    if wav.dim() == 2:
        wav = wav.mean(dim=0)
    if wav.dim() != 1:
        raise ValueError(f"audio must have shape (T,) or (channels, T), got {tuple(wav.shape)}")
    return torch.nan_to_num(wav, nan=0.0, posinf=0.0, neginf=0.0)


class MelCNN(Encoder):
    """Log-mel spectrogram + a 4-block CNN (~0.4 M parameters), one feature vector per window."""

    encoder_id = "mel-cnn"
    modality = "audio"
    default_config = {
        "dim": 256,
        "sample_rate": 16000,
        "n_fft": 1024,
        "hop_length": 320,
        "n_mels": 64,
        "f_min": 20.0,
        "f_max": None,
        "window_seconds": 4.0,
        "window_hop_seconds": 4.0,
        "channels": [32, 64, 128, 192],
        "dropout": 0.1,
    }

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.cfg
        if c["window_seconds"] <= 0 or c["window_hop_seconds"] <= 0:
            raise ConfigError("mel-cnn: window_seconds and window_hop_seconds must be positive")
        if not c["channels"]:
            raise ConfigError("mel-cnn: channels must list at least one width")
        self.window = int(round(c["window_seconds"] * c["sample_rate"]))
        self.hop = int(round(c["window_hop_seconds"] * c["sample_rate"]))
        if self.window < c["n_fft"]:
            raise ConfigError("mel-cnn: window_seconds must span at least n_fft samples")
        self.trunk = cnn_trunk(1, list(c["channels"]))
        self.pool = MeanMaxPool()
        self.dropout = nn.Dropout(c["dropout"])
        self.proj = nn.Linear(2 * c["channels"][-1], self.dim)

    @property
    def frames_per_window(self) -> int:
        return self.window // self.cfg["hop_length"] + 1

    def _mel(self):
        c = self.cfg
        f_max = float(c["f_max"]) if c["f_max"] else c["sample_rate"] / 2.0
        return _mel_transform(c["sample_rate"], c["n_fft"], c["hop_length"], c["n_mels"], float(c["f_min"]), f_max)

    def preprocess(self, raw: Any) -> torch.Tensor:
        wav = to_mono(raw)
        windows = frame_windows(wav, self.window, self.hop)
        with torch.no_grad():
            mel = self._mel()(windows)  # (W, n_mels, frames)
        logmel = torch.log(mel + 1e-6)
        mean = logmel.mean(dim=(1, 2), keepdim=True)
        std = logmel.std(dim=(1, 2), keepdim=True)
        return ((logmel - mean) / (std + 1e-5)).contiguous()

    def collate(self, items: list[torch.Tensor]) -> dict[str, Any]:
        return windowed_collate(items)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        x = batch["x"].unsqueeze(1)  # (R, 1, n_mels, frames)
        h = self.pool(self.trunk(x))
        return self.proj(self.dropout(h))

    def num_windows(self, num_samples: int) -> int:
        return len(window_starts(num_samples, self.window, self.hop))


__all__ = ["MelCNN", "frame_windows", "to_mono", "window_starts"]
