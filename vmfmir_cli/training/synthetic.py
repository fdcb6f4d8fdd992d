"""A tiny synthetic dataset with learnable cross-modal structure, for smoke tests and benchmarks.

Each group ("piece") has three latent attributes (pitch, timbre, pulse; up to 96 distinct groups) that
every view encodes differently: audio variants are two partials (frequency = pitch, ratio = timbre)
under an amplitude modulation (rate = pulse) with a variant-specific level, phase and noise; the
image (shared by the variants, as a score is shared by performances) has a vertical bar placed by
the pitch, a horizontal bar placed by the timbre and one to four dots for the pulse; each variant's
text names the three attributes. Val and test groups are unseen combinations of seen attribute
values, so retrieval on them measures learning, not memorisation. The folder has the same layout as a prepared dataset
(``manifest.jsonl`` + ``dataset.json`` + ``audio/`` + ``image/``), so every command can read it.

:data:`TINY_ENCODERS` configures the built-in encoders small enough to train in seconds on a CPU.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np

from vmfmir_cli.data.manifest import Item, assign_splits, write_dataset
from vmfmir_cli.data.media import encode_flac, encode_png
from vmfmir_cli.utils_io import write_bytes

PITCHES = ("low", "deep", "middle", "warm", "bright", "high")
TIMBRES = ("hollow", "reedy", "brassy", "shrill")
PULSES = ("steady", "slow", "lively", "rapid")

#: built-in encoders shrunk for seconds-long CPU runs (1 s audio at 8 kHz, 32 x 96 images)
TINY_ENCODERS = {
    "audio": {
        "id": "mel-cnn",
        "dim": 32,
        "sample_rate": 8000,
        "n_fft": 256,
        "hop_length": 128,
        "n_mels": 16,
        "window_seconds": 1.0,
        "window_hop_seconds": 1.0,
        "channels": [8, 16],
        "dropout": 0.0,
    },
    "image": {"id": "score-cnn", "dim": 32, "height": 32, "width": 96, "channels": [8, 16], "dropout": 0.0},
    "text": {
        "id": "text-transformer",
        "dim": 32,
        "vocab_size": 300,
        "max_length": 16,
        "d_model": 32,
        "layers": 1,
        "heads": 2,
        "ff_dim": 64,
        "dropout": 0.0,
        "min_frequency": 1,
    },
}


def attributes(group: int) -> tuple[int, int, int]:
    """The three latent attributes (pitch, timbre, pulse) every view of a group encodes."""
    return group % 6, (group // 6) % 4, (group // 24) % 4


def _audio(group: int, variant: int, sample_rate: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    pitch, timbre, pulse = attributes(group)
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    f1 = 220.0 * 2 ** (pitch / 6)
    ratio = (1.5, 2.0, 2.5, 3.0)[timbre]
    envelope = 0.6 + 0.4 * np.cos(2 * math.pi * (0.0, 2.0, 4.0, 8.0)[pulse] * t)
    level = 0.3 + 0.1 * variant
    x = level * envelope * (np.sin(2 * math.pi * f1 * t + variant) + 0.6 * np.sin(2 * math.pi * f1 * ratio * t))
    x = x + 0.02 * rng.standard_normal(t.shape)
    return np.clip(x, -1, 1).astype(np.float32)


def _image(group: int, height: int = 32, width: int = 96):
    from PIL import Image

    pitch, timbre, pulse = attributes(group)
    canvas = np.full((height, width), 255, dtype=np.uint8)
    x0 = 4 + pitch * 7  # a vertical bar whose position is the pitch
    canvas[4 : height - 4, x0 : x0 + 4] = 0
    y0 = 4 + timbre * 6  # a horizontal bar whose height is the timbre
    canvas[y0 : y0 + 3, 52:92] = 0
    for k in range(pulse + 1):  # 1..4 dots: the pulse
        canvas[height - 6 : height - 2, 52 + 10 * k : 56 + 10 * k] = 0
    return Image.fromarray(canvas, mode="L")


def make_synthetic_dataset(
    path: str | Path,
    groups: int = 24,
    variants: int = 2,
    seed: int = 0,
    sample_rate: int = 8000,
    seconds: float = 1.0,
    missing: float = 0.0,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
) -> Path:
    """Write a synthetic dataset to ``path`` and return it.

    ``missing`` is the probability that an item lacks one of its three modalities (for tests of
    partial items); every item keeps at least two.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    names = [f"piece{g:03d}" for g in range(groups)]
    splits = assign_splits(names, seed, fractions)
    items = []
    for g, name in enumerate(names):
        image_rel = f"image/{name}.png"
        write_bytes(path / image_rel, encode_png(_image(g)))
        pitch, timbre, pulse = attributes(g)
        for v in range(variants):
            item_id = f"{name}-v{v}"
            audio_rel = f"audio/{item_id}.flac"
            write_bytes(path / audio_rel, encode_flac(_audio(g, v, sample_rate, seconds, rng), sample_rate))
            text = f"a {PITCHES[pitch]} {TIMBRES[timbre]} tune with a {PULSES[pulse]} pulse, take {v}"
            item = Item(id=item_id, group=name, split=splits[name], audio=path / audio_rel, image=path / image_rel, text=text)
            if missing and pick.random() < missing:
                setattr(item, pick.choice(["audio", "image", "text"]), None)
            items.append(item)
    write_dataset(
        path,
        items,
        name="synthetic",
        sample_rate=sample_rate,
        source="vmfmir_cli.training.synthetic",
        options={"groups": groups, "variants": variants, "seed": seed, "missing": missing},
    )
    return path


__all__ = ["TINY_ENCODERS", "make_synthetic_dataset"]
