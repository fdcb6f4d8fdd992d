"""Built-in text encoder ``text-transformer``: a byte-level BPE tokenizer + a small transformer.

The tokenizer (Hugging Face ``tokenizers``) is trained on the training texts by
:meth:`TextTransformer.fit_preprocessing` and stored as its JSON string in the encoder config, so a
saved model restores exactly the same tokenization. Byte-level BPE never produces an unknown token
(any UTF-8 text, any language). Without fitting, the tokenizer is the bare byte alphabet (a
deterministic fallback that already works, just with longer sequences).

Each text becomes ``[CLS] t_1 ... t_{L-1}`` (at most ``max_length`` ids); the transformer output is
mean-pooled over the real tokens and projected to ``dim``.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

import torch
from torch import nn

from vmfmir_cli.encoders.base import Encoder
from vmfmir_cli.errors import ConfigError

# Training the tokenizer uses threads; DataLoader workers fork afterwards. Without this the tokenizers
# library prints a warning and disables its parallelism in every worker anyway.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PAD, CLS = "[PAD]", "[CLS]"
SPECIAL_TOKENS = [PAD, CLS]


def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2, lowercase: bool = True):
    """A byte-level BPE :class:`tokenizers.Tokenizer` trained on ``texts`` (ids 0/1 = [PAD]/[CLS])."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=int(vocab_size),
        min_frequency=int(min_frequency),
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator((t for t in texts if isinstance(t, str) and t), trainer=trainer)
    return tokenizer


class TextTransformer(Encoder):
    """Token + position embeddings, a 2-layer pre-norm transformer (d_model 128), masked mean pooling."""

    encoder_id = "text-transformer"
    modality = "text"
    default_config = {
        "dim": 256,
        "vocab_size": 4096,
        "max_length": 64,
        "d_model": 128,
        "layers": 2,
        "heads": 4,
        "ff_dim": 256,
        "dropout": 0.1,
        "lowercase": True,
        "min_frequency": 2,
        "tokenizer": None,
    }

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.cfg
        if c["d_model"] % c["heads"]:
            raise ConfigError(f"text-transformer: d_model ({c['d_model']}) must be divisible by heads ({c['heads']})")
        if c["vocab_size"] < 260:
            raise ConfigError("text-transformer: vocab_size must be at least 260 (bytes + special tokens)")
        if c["max_length"] < 2:
            raise ConfigError("text-transformer: max_length must be at least 2")
        self._tokenizer = None
        self._load_tokenizer()
        d = c["d_model"]
        self.token_embedding = nn.Embedding(c["vocab_size"], d, padding_idx=0)
        self.position_embedding = nn.Embedding(c["max_length"], d)
        layer = nn.TransformerEncoderLayer(
            d, c["heads"], c["ff_dim"], c["dropout"], activation="gelu", batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, c["layers"], enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.proj = nn.Linear(d, self.dim)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.02)
        with torch.no_grad():
            self.token_embedding.weight[0].zero_()

    # -- tokenizer --------------------------------------------------------------------------------
    def _load_tokenizer(self) -> None:
        from tokenizers import Tokenizer

        c = self.cfg
        if c["tokenizer"]:
            try:
                self._tokenizer = Tokenizer.from_str(c["tokenizer"])
            except Exception as exc:
                raise ConfigError(f"text-transformer: the saved tokenizer cannot be read ({exc})") from None
        else:
            self._tokenizer = train_tokenizer([], c["vocab_size"], c["min_frequency"], c["lowercase"])
        if self._tokenizer.get_vocab_size() > c["vocab_size"]:
            raise ConfigError(
                f"text-transformer: the tokenizer has {self._tokenizer.get_vocab_size()} tokens, more than "
                f"vocab_size={c['vocab_size']}"
            )
        self._cls_id = self._tokenizer.token_to_id(CLS)

    @property
    def tokenizer(self):
        return self._tokenizer

    def fit_preprocessing(self, raws: Iterable[Any]) -> None:
        """Train the BPE tokenizer on the training texts and store it in the config."""
        c = self.cfg
        tokenizer = train_tokenizer(raws, c["vocab_size"], c["min_frequency"], c["lowercase"])
        c["tokenizer"] = tokenizer.to_str()
        self._load_tokenizer()

    # -- data -------------------------------------------------------------------------------------
    def preprocess(self, raw: Any) -> torch.Tensor:
        if raw is None:
            raw = ""
        if not isinstance(raw, str):
            raise TypeError(f"text-transformer expects a str, got {type(raw).__name__}")
        ids = self._tokenizer.encode(raw).ids[: self.cfg["max_length"] - 1]
        return torch.tensor([self._cls_id, *ids], dtype=torch.long)

    def collate(self, items: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        lengths = torch.tensor([len(t) for t in items], dtype=torch.long)
        ids = torch.zeros(len(items), int(lengths.max()), dtype=torch.long)
        for i, t in enumerate(items):
            ids[i, : len(t)] = t
        mask = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
        return {"input_ids": ids, "mask": mask}

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        ids, mask = batch["input_ids"], batch["mask"]
        positions = torch.arange(ids.shape[1], device=ids.device)
        h = self.token_embedding(ids) + self.position_embedding(positions)[None]
        h = self.transformer(h, src_key_padding_mask=~mask)
        h = self.norm(h).masked_fill(~mask[..., None], 0.0)
        pooled = h.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp_min(1).to(h.dtype)
        return self.proj(pooled)


__all__ = ["TextTransformer", "train_tokenizer"]
