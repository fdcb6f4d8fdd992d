"""Training augmentation that keeps the data ambiguous: deterministic in (seed, epoch, item), off at inference.

A model that sees byte-identical inputs every epoch memorises them, and nothing it has memorised
stays ambiguous; so each epoch shows an item differently, and some views are genuinely partial:

* audio: a random view (the fraction ``f`` of the excerpt, uniform in ``[view_min, 1]``, at a random
  start; with probability ``full_view_p`` the whole excerpt), a random gain, additive white noise
  at a random SNR, and masking: one span of time and one band of frequencies set to zero (the band
  removed in the Fourier domain, so it works before any encoder's own front end);
* image: a random view (columns, as for audio), a small shift and a small rescale;
* text: (the caption drawn per epoch, :func:`vmfmir_cli.data.captions.sample_caption`) with word dropout.

``modalities`` limits the augmentation to some of them (e.g. ``["image"]``: the score images are
never seen cropped otherwise); the others are preprocessed once and cached as without augmentation.

Every draw comes from ``random.Random`` seeded by a hash of ``(seed, epoch, item id, modality)``,
so a resumed run and a DDP rank see exactly what a single uninterrupted process sees. Views come
from :mod:`vmfmir_cli.data.views`, the code the evaluation uses.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Mapping

from vmfmir_cli.data.views import audio_view, image_view

if TYPE_CHECKING:  # pragma: no cover
    import torch


#: the modalities the augmenter knows
MODALITIES = ("audio", "image", "text")


@dataclass(frozen=True)
class AugmentConfig:
    """The knobs of :class:`Augmenter` (the training config's ``augment_*`` keys)."""

    view_min: float = 0.25  # smallest view fraction drawn (audio and image)
    full_view_p: float = 0.3  # probability of keeping the whole media
    gain_db: float = 6.0  # gain drawn uniformly in +- gain_db
    noise_p: float = 0.5  # probability of additive noise ...
    snr_db: tuple = (10.0, 40.0)  # ... at an SNR drawn uniformly in this range (dB)
    time_mask: float = 0.1  # longest time span masked, as a share of the (viewed) excerpt
    freq_mask: float = 0.1  # widest frequency band masked, as a share of the spectrum
    shift: float = 0.05  # image shift, as a share of its size (both axes)
    scale: float = 0.1  # image rescale drawn in 1 +- scale
    word_dropout: float = 0.1  # probability of dropping each word of a caption (never all)
    modalities: tuple = MODALITIES  # which modalities are augmented (the others pass through unchanged)

    def validate(self) -> None:
        if not 0.0 < self.view_min <= 1.0:
            raise ValueError(f"augment view_min must be in (0, 1], got {self.view_min}")
        for name in ("full_view_p", "noise_p", "time_mask", "freq_mask", "shift", "word_dropout"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"augment {name} must be in [0, 1], got {v}")
        if self.gain_db < 0 or not 0.0 <= self.scale < 1.0:
            raise ValueError("augment gain_db must be >= 0 and scale in [0, 1)")
        lo, hi = self.snr_db
        if lo > hi:
            raise ValueError(f"augment snr_db must be (low, high), got {self.snr_db}")
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown:
            raise ValueError(f"augment modalities: unknown modality {unknown[0]!r}; known: {', '.join(MODALITIES)}")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["snr_db"] = list(self.snr_db)
        d["modalities"] = list(self.modalities)
        return d


def fast_fft_length(n: int) -> int:
    """The smallest ``m >= n`` of the form 2^a 3^b 5^c (lengths an FFT handles fastest)."""
    best = 1 << max(0, (n - 1).bit_length())  # a power of two >= n
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def item_rng(seed: int, epoch: int, item_id: str, modality: str) -> random.Random:
    """The random stream of one item's ``modality`` in one epoch."""
    digest = hashlib.blake2b(f"aug:{seed}:{epoch}:{item_id}:{modality}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


class Augmenter:
    """``augmenter(raw, modality, epoch, item_id)`` -> the augmented raw media (same kind as ``raw``)."""

    def __init__(self, seed: int, config: AugmentConfig | None = None) -> None:
        self.seed = int(seed)
        self.config = config or AugmentConfig()
        self.config.validate()

    @property
    def modalities(self) -> tuple:
        """The modalities this augmenter changes (the others are returned as they are)."""
        return tuple(self.config.modalities)

    def __call__(self, raw: Any, modality: str, epoch: int, item_id: str) -> Any:
        if modality not in self.config.modalities:
            return raw
        rng = item_rng(self.seed, epoch, item_id, modality)
        if modality == "audio":
            import torch

            return self.audio(torch.as_tensor(raw), rng)
        if modality == "image":
            return self.image(raw, rng)
        if modality == "text":
            return self.text(raw, rng)
        return raw

    def _fraction(self, rng: random.Random) -> tuple[float, float]:
        c = self.config
        if rng.random() < c.full_view_p or c.view_min >= 1.0:
            return 1.0, 0.0
        return rng.uniform(c.view_min, 1.0), rng.random()

    def audio(self, wave: "torch.Tensor", rng: random.Random) -> "torch.Tensor":
        import torch

        c = self.config
        f, start = self._fraction(rng)
        x = audio_view(wave, f, start).to(torch.float32).clone()
        n = x.shape[-1]
        x *= 10.0 ** (rng.uniform(-c.gain_db, c.gain_db) / 20.0)
        if rng.random() < c.noise_p and n > 1:
            power = float(x.pow(2).mean())
            if power > 0:
                snr = rng.uniform(*c.snr_db)
                gen = torch.Generator().manual_seed(rng.getrandbits(62))
                x += torch.randn(x.shape, generator=gen) * math.sqrt(power / 10.0 ** (snr / 10.0))
        if c.time_mask > 0 and n > 4:
            span = int(rng.uniform(0, c.time_mask) * n)
            if span:
                a = rng.randrange(0, n - span + 1)
                x[..., a : a + span] = 0.0
        if c.freq_mask > 0 and n > 4:
            # a view has any length, and an FFT of a length with a large prime factor is 5-10x
            # slower: transform the zero-padded signal at a 5-smooth length, then crop it back
            size = fast_fft_length(n)
            spec = torch.fft.rfft(x, n=size)
            bins = spec.shape[-1]
            width = int(rng.uniform(0, c.freq_mask) * bins)
            if width:
                a = rng.randrange(0, bins - width + 1)
                spec[..., a : a + width] = 0
                x = torch.fft.irfft(spec, n=size)[..., :n]
        return x

    def image(self, image: Any, rng: random.Random) -> Any:
        from PIL import Image

        c = self.config
        f, start = self._fraction(rng)
        img = image_view(image, f, start)
        w, h = img.size
        s = 1.0 + rng.uniform(-c.scale, c.scale)
        if abs(s - 1.0) > 1e-3:
            img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR)
        dx = round(rng.uniform(-c.shift, c.shift) * w)
        dy = round(rng.uniform(-c.shift, c.shift) * h)
        if dx or dy:
            fill = 255 if img.mode == "L" else (255,) * len(img.getbands())
            canvas = Image.new(img.mode, img.size, fill)
            canvas.paste(img, (dx, dy))
            img = canvas
        return img

    def text(self, text: Any, rng: random.Random) -> Any:
        if not isinstance(text, str) or self.config.word_dropout <= 0:
            return text
        words = text.split()
        kept = [w for w in words if rng.random() >= self.config.word_dropout]
        return " ".join(kept) if kept else text


def augment_config(values: Mapping[str, Any]) -> AugmentConfig:
    """An :class:`AugmentConfig` from a mapping (unknown keys are a ValueError naming them)."""
    known = set(AugmentConfig.__dataclass_fields__)
    unknown = [k for k in values if k not in known]
    if unknown:
        raise ValueError(f"unknown augment option {unknown[0]!r}; known: {', '.join(sorted(known))}")
    values = dict(values)
    if "snr_db" in values:
        values["snr_db"] = tuple(float(v) for v in values["snr_db"])
    if "modalities" in values:
        mods = values["modalities"]
        values["modalities"] = (mods,) if isinstance(mods, str) else tuple(str(m) for m in mods)
    cfg = AugmentConfig(**values)
    cfg.validate()
    return cfg


__all__ = ["MODALITIES", "AugmentConfig", "Augmenter", "augment_config", "item_rng"]
