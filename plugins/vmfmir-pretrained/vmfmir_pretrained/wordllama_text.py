r"""Text encoder ``wordllama-text``: WordLlama's pretrained token embeddings + a small trainable pooling.

WordLlama (``wordllama`` on PyPI, MIT) ships inside its wheel a 32,000 x 256 float16 token-embedding
matrix distilled from large language models (``wordllama/weights/l2_supercat_256.safetensors``)
and the matching LLaMA-2 tokenizer as a standard Hugging Face ``tokenizers`` JSON
(``wordllama/tokenizers/l2_supercat_tokenizer_config.json``). Both files are read directly, with
``safetensors`` and ``tokenizers``; the package itself is never imported (its own loader looks in
another folder and then tries to download).

Per text (``[<s>] t_1 ... t_{L-1}``, at most ``max_length`` ids)::

    e_i = E[t_i]                         (L, 256)   pretrained, frozen unless finetune_embeddings
    h_i = e_i                            (layers = 0, the default)
        | Transformer(W e_i + p_i)       (layers >= 1: d_model wide, learnt positions p_i)
    a   = softmax_i(w . h_i)             attention pooling (pooling = "attention"; w starts at 0,
                                         so training starts from WordLlama's own mean pooling)
        | 1 / L                          (pooling = "mean")
    f   = Linear(dropout(sum_i a_i h_i)) (dim,)

Saved with a run: only the trainable part (pooling, projection, and the transformer when
``layers >= 1``). The frozen matrix is a non-persistent buffer, so it is in no ``state_dict``,
no checkpoint and no optimiser; the config records the package version and the sha256 of both
files, and loading the run checks them (one line naming the ``pip install`` to run when they
differ or the package is missing). With ``finetune_embeddings = true`` the matrix is a float32
parameter that is trained and saved (32 MB) like any other weight.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from vmfmir_cli.encoders.base import Encoder
from vmfmir_cli.errors import ConfigError, PluginError
from vmfmir_pretrained.assets import BundledFile, distribution_version

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # DataLoader workers fork after tokenising

WORDLLAMA_VERSION = "0.4.0.post1"  # the version these files were tested with
EMBEDDINGS = BundledFile(
    "wordllama", "wordllama", "weights/l2_supercat_256.safetensors", WORDLLAMA_VERSION, "wordllama-text"
)
TOKENIZER = BundledFile(
    "wordllama", "wordllama", "tokenizers/l2_supercat_tokenizer_config.json", WORDLLAMA_VERSION, "wordllama-text"
)
POOLINGS = ("attention", "mean")


def read_embeddings(path: str) -> torch.Tensor:
    """The (vocab, 256) float16 matrix of a WordLlama safetensors file (one tensor; no pickle)."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        keys = list(f.keys())
        if len(keys) != 1:
            raise PluginError(f"{path} should hold one embedding matrix, it holds {keys[:5]}")
        matrix = f.get_tensor(keys[0])
    if matrix.dim() != 2:
        raise PluginError(f"{path}: expected a (vocab, dim) matrix, got shape {tuple(matrix.shape)}")
    return matrix


class AttentionPool(nn.Module):
    """(B, L, D) + mask (B, L) -> (B, D): softmax(w . h) over the real tokens (w = 0 at init: the mean)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.score = nn.Linear(width, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(h).squeeze(-1).float().masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1).to(h.dtype)
        return torch.einsum("bl,bld->bd", weights, h)


class WordLlamaText(Encoder):
    """WordLlama token embeddings (frozen) -> optional transformer -> attention pooling -> dim."""

    encoder_id = "wordllama-text"
    modality = "text"
    default_config = {
        "dim": 256,
        "max_length": 64,
        "pooling": "attention",
        "layers": 0,
        "d_model": 128,
        "heads": 4,
        "ff_dim": 256,
        "dropout": 0.1,
        "finetune_embeddings": False,
        "wordllama_version": None,
        "embeddings_sha256": None,
        "tokenizer_sha256": None,
    }

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.cfg
        if c["pooling"] not in POOLINGS:
            raise ConfigError(f"wordllama-text: pooling must be one of {', '.join(POOLINGS)}, got {c['pooling']!r}")
        if not 0 <= int(c["layers"]) <= 4:
            raise ConfigError(f"wordllama-text: layers must be between 0 and 4, got {c['layers']}")
        if c["max_length"] < 2:
            raise ConfigError("wordllama-text: max_length must be at least 2")
        if c["layers"] and c["d_model"] % c["heads"]:
            raise ConfigError(f"wordllama-text: d_model ({c['d_model']}) must be divisible by heads ({c['heads']})")
        # check both files against what a saved run recorded before reading either
        recorded = c["wordllama_version"]
        emb_path, emb_hash = EMBEDDINGS.check(c["embeddings_sha256"], recorded)
        tok_path, tok_hash = TOKENIZER.check(c["tokenizer_sha256"], recorded)
        c["embeddings_sha256"], c["tokenizer_sha256"] = emb_hash, tok_hash
        c["wordllama_version"] = recorded or distribution_version("wordllama")
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(tok_path))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        matrix = read_embeddings(str(emb_path))
        if self._tokenizer.get_vocab_size() > matrix.shape[0]:
            raise PluginError(
                f"wordllama-text: the tokenizer has {self._tokenizer.get_vocab_size()} tokens but the matrix "
                f"{matrix.shape[0]} rows; reinstall wordllama (`pip install {EMBEDDINGS.install}`)"
            )
        if c["finetune_embeddings"]:
            self.embedding = nn.Parameter(matrix.float())
        else:
            self.register_buffer("embedding", matrix, persistent=False)  # float16: 16 MB, never saved
        width = int(matrix.shape[1])
        self.layers = int(c["layers"])
        if self.layers:
            d = int(c["d_model"])
            self.inp = nn.Linear(width, d)
            self.position = nn.Embedding(int(c["max_length"]), d)
            nn.init.normal_(self.position.weight, std=0.02)
            layer = nn.TransformerEncoderLayer(
                d, c["heads"], c["ff_dim"], c["dropout"], activation="gelu", batch_first=True, norm_first=True
            )
            self.transformer = nn.TransformerEncoder(layer, self.layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(d)
            width = d
        self.pool = AttentionPool(width) if c["pooling"] == "attention" else None
        self.dropout = nn.Dropout(c["dropout"])
        self.proj = nn.Linear(width, self.dim)

    @property
    def tokenizer(self):
        return self._tokenizer

    @property
    def frozen(self) -> bool:
        return not self.cfg["finetune_embeddings"]

    # -- data -------------------------------------------------------------------------------------
    def preprocess(self, raw: Any) -> torch.Tensor:
        if raw is None:
            raw = ""
        if not isinstance(raw, str):
            raise TypeError(f"wordllama-text expects a str, got {type(raw).__name__}")
        ids = self._tokenizer.encode(raw).ids[: self.cfg["max_length"]]
        return torch.tensor(ids, dtype=torch.long)

    def collate(self, items: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        if not items:
            raise ValueError("collate needs at least one item")
        lengths = torch.tensor([max(1, len(t)) for t in items], dtype=torch.long)
        ids = torch.zeros(len(items), int(lengths.max()), dtype=torch.long)  # 0 = <unk>, masked out
        for i, t in enumerate(items):
            ids[i, : len(t)] = t
        mask = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
        return {"input_ids": ids, "mask": mask}

    # -- model ------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        ids, mask = batch["input_ids"], batch["mask"].to(torch.bool)
        h = F.embedding(ids, self.embedding).float()  # (B, L, 256)
        if self.layers:
            positions = torch.arange(ids.shape[1], device=ids.device)
            h = self.inp(h) + self.position(positions)[None]
            h = self.norm(self.transformer(h, src_key_padding_mask=~mask))
        if self.pool is not None:
            pooled = self.pool(h, mask)
        else:
            h = h.masked_fill(~mask[..., None], 0.0)
            pooled = h.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp_min(1).to(h.dtype)
        return self.proj(self.dropout(pooled))


__all__ = ["AttentionPool", "EMBEDDINGS", "TOKENIZER", "WordLlamaText", "read_embeddings"]
