"""Small building blocks shared by the built-in encoders (plain PyTorch, batch-size independent)."""

from __future__ import annotations

import torch
from torch import nn


def conv_block(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv2d -> GroupNorm -> ReLU. GroupNorm (not BatchNorm) so train and eval compute the same
    function and a row's output never depends on the other rows of its batch."""
    groups = 8 if out_channels % 8 == 0 else 1
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.GroupNorm(groups, out_channels),
        nn.ReLU(inplace=True),
    )


class MeanMaxPool(nn.Module):
    """(R, C, H, W) -> (R, 2C): mean over H, then [mean, max] over W."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mean(dim=2)
        return torch.cat([x.mean(dim=-1), x.amax(dim=-1)], dim=-1)


def cnn_trunk(in_channels: int, channels: list[int], stem_stride: int = 1) -> nn.Sequential:
    """A VGG-style trunk: one conv block per entry of ``channels``, each followed by 2x2 max pooling
    (the first conv uses ``stem_stride`` and a 5x5 kernel when strided)."""
    layers: list[nn.Module] = []
    previous = in_channels
    for i, width in enumerate(channels):
        if i == 0 and stem_stride > 1:
            layers.append(conv_block(previous, width, kernel_size=5, stride=stem_stride))
        else:
            layers.append(conv_block(previous, width))
        layers.append(nn.MaxPool2d(2, ceil_mode=True))
        previous = width
    return nn.Sequential(*layers)


__all__ = ["MeanMaxPool", "cnn_trunk", "conv_block"]
