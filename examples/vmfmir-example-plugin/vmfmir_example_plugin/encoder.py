"""``char-bow``: hashed character n-gram counts -> a two-layer MLP -> features (B, dim)."""

from __future__ import annotations

import math
import zlib
from typing import Any

import torch
from torch import nn

from vmfmir_cli.encoders.base import Encoder


class CharBowEncoder(Encoder):
    encoder_id = "char-bow"  # unique across all plugins
    modality = "text"  # "audio", "image" or "text"
    # every config key with its default; "dim" is the size of the features forward() returns
    default_config = {"dim": 64, "buckets": 512, "ngram": 3, "hidden": 128}

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)  # merges defaults, rejects unknown keys, sets self.cfg and self.dim
        c = self.cfg
        self.mlp = nn.Sequential(nn.Linear(c["buckets"], c["hidden"]), nn.GELU(), nn.Linear(c["hidden"], self.dim))

    def preprocess(self, raw: str) -> torch.Tensor:
        """Text -> (buckets,) log counts of its character n-grams (crc32 hashing: stable across runs)."""
        c = self.cfg
        text = f" {raw.lower()} "
        counts = torch.zeros(c["buckets"])
        for n in range(1, c["ngram"] + 1):
            for i in range(len(text) - n + 1):
                counts[zlib.crc32(text[i : i + n].encode("utf-8")) % c["buckets"]] += 1.0
        return torch.log1p(counts) / math.sqrt(max(len(text), 1))

    # the default collate stacks equal-shaped tensors into {"x": (B, buckets)}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.mlp(batch["x"])
