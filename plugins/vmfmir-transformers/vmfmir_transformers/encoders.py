"""Encoders wrapping Hugging Face models: a (frozen) backbone, pooling, a trainable projection."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from vmfmir_cli.encoders.base import Encoder
from vmfmir_cli.encoders.safety import check_permissions, granted
from vmfmir_cli.errors import CheckpointError, ConfigError, PluginError

POOLINGS = ("mean", "cls", "pooler")

COMMON_CONFIG: dict[str, Any] = {
    "dim": 256,
    "model": None,
    "pooling": "mean",
    "freeze": True,
    "allow_download": False,
    "revision": None,
    "trust_remote_code": False,
    "backbone_sha256": None,
}


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and info/warning logs while loading, then restore them."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def fingerprint(state: Mapping[str, torch.Tensor], skip: set[str] = frozenset()) -> str:
    """sha256 over the names, shapes, dtypes and bytes of ``state`` (minus ``skip``)."""
    h = hashlib.sha256()
    for name in sorted(state):
        if name in skip:
            continue
        t = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _hidden_size(config: Any) -> int:
    for attr in ("hidden_size", "d_model", "embed_dim", "dim"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    sizes = getattr(config, "hidden_sizes", None)
    if sizes:
        return int(sizes[-1])
    raise PluginError(f"cannot tell the feature size of {type(config).__name__}; this backbone is not supported")


class HFEncoder(Encoder):
    """Shared machinery; subclasses choose the modality, the processor and the tower to keep."""

    #: for two-tower models (CLIP, CLAP, ...) the attribute holding this modality's tower
    towers: tuple[str, ...] = ()

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.cfg
        # trust_remote_code / allow_download are only honoured when the person running the command
        # grants them (VMFMIR_TRUST_REMOTE_CODE=1 / VMFMIR_ALLOW_DOWNLOAD=1), never on a config's say-so
        check_permissions(self.encoder_id, c)
        if not c["model"]:
            raise ConfigError(
                f"{self.encoder_id}: set 'model' in the encoder config to a local directory or a Hugging Face hub id"
            )
        if c["pooling"] not in POOLINGS:
            raise ConfigError(f"{self.encoder_id}: pooling must be one of {', '.join(POOLINGS)}, got {c['pooling']!r}")
        local = Path(str(c["model"])).expanduser()
        if local.exists():
            c["model"] = str(local.resolve())
        self.backbone, self._random_keys = self._load_backbone()
        self.backbone.float()
        self.processor = self._load_processor()
        hidden = _hidden_size(self.backbone.config)
        self.proj = nn.Linear(hidden, self.dim)
        if c["freeze"]:
            self.backbone.requires_grad_(False)
            self.backbone.eval()
            digest = fingerprint(self.backbone.state_dict(), self._random_keys)
            if c["backbone_sha256"] is None:
                c["backbone_sha256"] = digest
            elif c["backbone_sha256"] != digest:
                raise CheckpointError(
                    f"{self.encoder_id}: the backbone at {c['model']!r} is not the one this model was trained with "
                    "(its weights differ); point 'model' at the original checkpoint"
                )

    # -- loading ----------------------------------------------------------------------------------
    def _pretrained_kwargs(self) -> dict[str, Any]:
        c = self.cfg
        download = bool(c["allow_download"]) and granted("allow_download")
        kwargs: dict[str, Any] = {"local_files_only": not download}
        if c["revision"]:
            kwargs["revision"] = c["revision"]
        # always explicit: None would let transformers ask (or decide) by itself
        kwargs["trust_remote_code"] = bool(c["trust_remote_code"]) and granted("trust_remote_code")
        return kwargs

    def _fail(self, what: str, exc: Exception) -> PluginError:
        c = self.cfg
        hint = (
            " It is not in the local Hugging Face cache: download it first (`hf download "
            f"{c['model']}`) or set allow_download = true in the encoder config and run with VMFMIR_ALLOW_DOWNLOAD=1."
            if not c["allow_download"] and not Path(str(c["model"])).exists()
            else ""
        )
        reason = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
        return PluginError(f"{self.encoder_id}: cannot load the {what} of {c['model']!r}: {reason}.{hint}")

    def _load_backbone(self) -> tuple[nn.Module, set[str]]:
        from transformers import AutoModel

        try:
            with _quiet_transformers():
                model, info = AutoModel.from_pretrained(
                    self.cfg["model"], dtype=torch.float32, output_loading_info=True, **self._pretrained_kwargs()
                )
        except Exception as exc:
            raise self._fail("model", exc) from None
        missing = set(info.get("missing_keys", ()) or ())
        prefix = ""
        for attr in self.towers:
            tower = getattr(model, attr, None)
            if isinstance(tower, nn.Module):
                prefix = next((name + "." for name, module in model.named_modules() if module is tower), "")
                model = tower
                break
        else:
            if getattr(model.config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
                encoder = model.get_encoder()
                prefix = next((name + "." for name, module in model.named_modules() if module is encoder), "")
                model = encoder
        own = set(model.state_dict())
        random_keys = {k[len(prefix) :] for k in missing if k.startswith(prefix) and k[len(prefix) :] in own}
        return model, random_keys

    def _load_processor(self) -> Any:
        raise NotImplementedError

    # -- training mode and saving ------------------------------------------------------------------
    def train(self, mode: bool = True) -> "HFEncoder":
        super().train(mode)
        if self.cfg["freeze"]:
            self.backbone.eval()  # no dropout in a frozen backbone
        return self

    def state_dict_for_saving(self) -> dict[str, torch.Tensor]:
        state = self.state_dict()
        if not self.cfg["freeze"]:
            return state
        keep = {f"backbone.{k}" for k in self._random_keys}
        return {k: v for k, v in state.items() if not k.startswith("backbone.") or k in keep}

    def load_saved_state(self, state: Mapping[str, torch.Tensor]) -> None:
        if not self.cfg["freeze"]:
            return super().load_saved_state(state)
        result = self.load_state_dict(dict(state), strict=False)
        expected = set(self.state_dict_for_saving())
        missing = [k for k in result.missing_keys if k in expected]
        if missing or result.unexpected_keys:
            raise CheckpointError(
                f"weights of encoder {self.encoder_id!r} do not match its config "
                f"(missing: {missing[:5]}, unexpected: {result.unexpected_keys[:5]})"
            )

    # -- forward ----------------------------------------------------------------------------------
    def _run_backbone(self, **inputs: torch.Tensor) -> Any:
        frozen = self.cfg["freeze"]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            return self.backbone(**inputs, return_dict=True)

    def _pool(self, outputs: Any, mask: torch.Tensor | None) -> torch.Tensor:
        pooling = self.cfg["pooling"]
        if pooling == "pooler":
            pooled = getattr(outputs, "pooler_output", None)
            if pooled is None:
                raise ConfigError(f"{self.encoder_id}: this model has no pooler output; use pooling 'mean' or 'cls'")
            return pooled.flatten(1)
        h = outputs.last_hidden_state
        if h.dim() == 4:  # convolutional backbones: (B, C, H, W)
            if pooling == "cls":
                raise ConfigError(f"{self.encoder_id}: a convolutional backbone has no CLS token; use 'mean' or 'pooler'")
            return h.mean(dim=(2, 3))
        if pooling == "cls":
            return h[:, 0]
        if mask is None:
            return h.mean(dim=1)
        mask = mask.to(device=h.device, dtype=torch.bool)
        h = h.masked_fill(~mask[..., None], 0.0)
        return h.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp_min(1).to(h.dtype)


# ------------------------------------------------------------------------------------------------
# Audio
# ------------------------------------------------------------------------------------------------


class HFAudioEncoder(HFEncoder):
    """AST / wav2vec2 / HuBERT / Whisper-encoder style models on fixed windows of the waveform."""

    encoder_id = "hf-audio"
    modality = "audio"
    towers = ("audio_model",)
    default_config = {
        **COMMON_CONFIG,
        "sample_rate": 16000,
        "window_seconds": 10.0,
        "window_hop_seconds": 10.0,
    }

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        fe = self.processor
        self.model_rate = int(getattr(fe, "sampling_rate", None) or self.cfg["sample_rate"])
        names = list(getattr(fe, "model_input_names", None) or ["input_values"])
        self.input_name = next((n for n in names if n != "attention_mask"), "input_values")
        self.pass_mask = bool(getattr(fe, "return_attention_mask", False))
        self.window = max(1, int(round(self.cfg["window_seconds"] * self.model_rate)))
        self.hop = max(1, int(round(self.cfg["window_hop_seconds"] * self.model_rate)))

    def _load_processor(self) -> Any:
        from transformers import AutoFeatureExtractor

        try:
            with _quiet_transformers():
                return AutoFeatureExtractor.from_pretrained(self.cfg["model"], **self._pretrained_kwargs())
        except Exception as exc:
            raise self._fail("feature extractor", exc) from None

    def preprocess(self, raw: Any) -> torch.Tensor:
        from vmfmir_cli.encoders.audio import to_mono, window_starts

        wav = to_mono(raw)
        if self.cfg["sample_rate"] != self.model_rate:
            import torchaudio.functional as AF

            wav = AF.resample(wav, int(self.cfg["sample_rate"]), self.model_rate)
        if wav.shape[0] == 0:
            wav = torch.zeros(self.model_rate // 10)
        starts = window_starts(wav.shape[0], self.window, self.hop)
        windows = [wav[s : s + self.window].numpy() for s in starts]
        features = self.processor(windows, sampling_rate=self.model_rate, return_tensors="pt")
        return features[self.input_name].to(torch.float32).contiguous()

    def collate(self, items: list[torch.Tensor]) -> dict[str, Any]:
        counts = torch.tensor([t.shape[0] for t in items], dtype=torch.long)
        owner = torch.repeat_interleave(torch.arange(len(items)), counts)
        rows = [row for t in items for row in t]
        longest = max(r.shape[0] for r in rows)
        mask = None
        if any(r.shape != rows[0].shape for r in rows):
            pad = float(getattr(self.processor, "padding_value", 0.0) or 0.0)
            x = rows[0].new_full((len(rows), longest, *rows[0].shape[1:]), pad)
            for i, r in enumerate(rows):
                x[i, : r.shape[0]] = r
            lengths = torch.tensor([r.shape[0] for r in rows])
            mask = (torch.arange(longest)[None, :] < lengths[:, None]).long()
        else:
            x = torch.stack(rows)
        batch: dict[str, Any] = {"x": x, "owner": owner, "num_items": len(items)}
        if mask is not None:
            batch["attention_mask"] = mask
        return batch

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        inputs = {self.input_name: batch["x"]}
        mask = batch.get("attention_mask")
        if mask is not None and self.pass_mask:
            inputs["attention_mask"] = mask
        outputs = self._run_backbone(**inputs)
        frame_mask = None
        if mask is not None and outputs.last_hidden_state.dim() == 3:
            frames = outputs.last_hidden_state.shape[1]
            lengths = mask.sum(dim=1).to(torch.float64)
            valid = torch.ceil(lengths * frames / mask.shape[1]).clamp(1, frames).long()
            frame_mask = torch.arange(frames, device=valid.device)[None, :] < valid[:, None]
        return self.proj(self._pool(outputs, frame_mask))


# ------------------------------------------------------------------------------------------------
# Image
# ------------------------------------------------------------------------------------------------


class HFImageEncoder(HFEncoder):
    """ViT / CLIP vision / ConvNeXt / DINOv2 style models with their own image processor."""

    encoder_id = "hf-image"
    modality = "image"
    towers = ("vision_model",)
    default_config = {**COMMON_CONFIG, "pad_to_square": False}

    def _load_processor(self) -> Any:
        from transformers import AutoImageProcessor

        try:
            with _quiet_transformers():
                return AutoImageProcessor.from_pretrained(self.cfg["model"], **self._pretrained_kwargs())
        except Exception as exc:
            raise self._fail("image processor", exc) from None

    def preprocess(self, raw: Any) -> torch.Tensor:
        from PIL import Image

        from vmfmir_cli.encoders.image import flatten_alpha

        image = flatten_alpha(raw).convert("RGB")
        if self.cfg["pad_to_square"]:  # keep the aspect ratio of wide score excerpts (white margins)
            side = max(image.size)
            canvas = Image.new("RGB", (side, side), (255, 255, 255))
            canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
            image = canvas
        pixels = self.processor(images=[image], return_tensors="pt")["pixel_values"]
        return pixels[0].to(torch.float32).contiguous()

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        outputs = self._run_backbone(pixel_values=batch["x"])
        return self.proj(self._pool(outputs, None))


# ------------------------------------------------------------------------------------------------
# Text
# ------------------------------------------------------------------------------------------------


class HFTextEncoder(HFEncoder):
    """BERT / RoBERTa / CLIP-text style models with their own tokenizer."""

    encoder_id = "hf-text"
    modality = "text"
    towers = ("text_model",)
    default_config = {**COMMON_CONFIG, "max_length": 128}

    def _load_processor(self) -> Any:
        from transformers import AutoTokenizer

        try:
            with _quiet_transformers():
                return AutoTokenizer.from_pretrained(self.cfg["model"], **self._pretrained_kwargs())
        except Exception as exc:
            raise self._fail("tokenizer", exc) from None

    @property
    def max_length(self) -> int:
        limit = getattr(self.backbone.config, "max_position_embeddings", None)
        wanted = int(self.cfg["max_length"])
        return min(wanted, int(limit)) if isinstance(limit, int) and limit > 0 else wanted

    def preprocess(self, raw: Any) -> torch.Tensor:
        text = "" if raw is None else str(raw)
        ids = self.processor(text, truncation=True, max_length=self.max_length)["input_ids"]
        return torch.tensor(ids, dtype=torch.long)

    def collate(self, items: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        pad_id = self.processor.pad_token_id
        pad_id = 0 if pad_id is None else int(pad_id)
        lengths = torch.tensor([len(t) for t in items], dtype=torch.long)
        ids = torch.full((len(items), int(lengths.max())), pad_id, dtype=torch.long)
        for i, t in enumerate(items):
            ids[i, : len(t)] = t
        mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
        return {"input_ids": ids, "attention_mask": mask}

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        outputs = self._run_backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return self.proj(self._pool(outputs, batch["attention_mask"]))


__all__ = ["HFAudioEncoder", "HFEncoder", "HFImageEncoder", "HFTextEncoder", "fingerprint"]
