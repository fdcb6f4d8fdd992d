"""Training augmentation: deterministic in (seed, epoch, item), views from the same code as evaluation."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from vmfmir_cli.data.augment import AugmentConfig, Augmenter, augment_config


def _wave(n=16000):
    t = torch.arange(n) / 16000
    return torch.sin(2 * torch.pi * 440 * t)


def test_augmentation_is_deterministic_in_seed_epoch_and_item():
    aug = Augmenter(0)
    w = _wave()
    a = aug(w, "audio", 3, "item-1")
    assert torch.equal(a, aug(w, "audio", 3, "item-1"))
    other_epoch, other_seed = aug(w, "audio", 4, "item-1"), Augmenter(1)(w, "audio", 3, "item-1")
    assert a.shape != other_epoch.shape or not torch.equal(a, other_epoch)
    assert a.shape != other_seed.shape or not torch.equal(a, other_seed)
    img = Image.linear_gradient("L").resize((400, 60))
    assert aug(img, "image", 0, "x").tobytes() == aug(img, "image", 0, "x").tobytes()
    assert aug("a slow air on the fiddle", "text", 2, "x") == aug("a slow air on the fiddle", "text", 2, "x")


def test_audio_views_noise_and_masks_stay_in_range():
    aug = Augmenter(0, AugmentConfig(full_view_p=0.0, noise_p=1.0, snr_db=(20.0, 20.0)))
    w = _wave()
    lengths = set()
    for e in range(50):
        a = aug(w, "audio", e, "i")
        assert a.dtype == torch.float32 and torch.isfinite(a).all()
        assert 4000 <= a.shape[0] <= 16000
        lengths.add(a.shape[0])
    assert len(lengths) > 10  # random view fractions
    quiet = Augmenter(0, AugmentConfig(full_view_p=1.0, noise_p=1.0, snr_db=(20.0, 20.0), gain_db=0.0,
                                       time_mask=0.0, freq_mask=0.0))
    noisy = quiet(w, "audio", 0, "i")
    snr = 10 * torch.log10(w.pow(2).mean() / (noisy - w).pow(2).mean())
    assert float(snr) == pytest.approx(20.0, abs=0.5)


def test_full_view_probability_and_image_geometry():
    aug = Augmenter(0, AugmentConfig(full_view_p=1.0, shift=0.0, scale=0.0))
    img = Image.new("L", (400, 60), 200)
    assert aug(img, "image", 0, "x").size == (400, 60)
    crop = Augmenter(0, AugmentConfig(full_view_p=0.0, view_min=0.25, shift=0.0, scale=0.0))
    widths = {crop(img, "image", e, "x").size[0] for e in range(30)}
    assert min(widths) >= 100 and max(widths) <= 400 and len(widths) > 5


def test_word_dropout_never_empties_a_caption():
    aug = Augmenter(0, AugmentConfig(word_dropout=1.0))
    assert aug("calm piano", "text", 0, "x") == "calm piano"
    some = Augmenter(0, AugmentConfig(word_dropout=0.5))
    outs = {some("one two three four five six", "text", e, "x") for e in range(20)}
    assert len(outs) > 3 and all(o for o in outs)


def test_augment_config_rejects_unknown_and_bad_values():
    with pytest.raises(ValueError, match="unknown augment option"):
        augment_config({"view_minimum": 0.2})
    with pytest.raises(ValueError):
        augment_config({"view_min": 0.0})
    assert augment_config({"snr_db": [5, 10]}).snr_db == (5.0, 10.0)


def test_training_dataset_caches_decoded_media_and_augments_per_epoch(tiny_dataset):
    from vmfmir_cli.data.manifest import read_manifest, split_items
    from vmfmir_cli.training.data import PreprocessedDataset

    items = split_items(read_manifest(tiny_dataset), "train")[:4]
    seen = []
    ds = PreprocessedDataset(
        items, ["audio"], {"audio": lambda x: (seen.append(x.shape[0]), x)[1]}, 16000, cache_bytes=10**9,
        augment=Augmenter(0, AugmentConfig(full_view_p=0.0)),
    )
    a0 = ds[0]["audio"]
    assert torch.equal(a0, ds[0]["audio"])  # same epoch, same tensor
    ds.epoch = 1
    assert a0.shape != ds[0]["audio"].shape or not torch.equal(a0, ds[0]["audio"])
    from vmfmir_cli.data.media import load_audio

    cached = ds._cache[0]["audio"]  # the cache holds the decoded excerpt, whole ...
    assert torch.equal(cached, load_audio(items[0].audio, 16000))
    assert max(seen) < cached.shape[0]  # ... and the encoder saw views of it (full_view_p = 0)


def test_augmentation_limited_to_some_modalities(tiny_dataset):
    from vmfmir_cli.data.manifest import read_manifest, split_items
    from vmfmir_cli.training.data import PreprocessedDataset

    only_image = Augmenter(0, augment_config({"modalities": "image", "full_view_p": 0.0}))
    assert only_image.modalities == ("image",)
    w = _wave()
    assert only_image(w, "audio", 0, "x") is w and only_image("calm piano", "text", 0, "x") == "calm piano"
    img = Image.new("L", (400, 60), 200)
    assert only_image(img, "image", 0, "x").size != (400, 60)
    with pytest.raises(ValueError, match="unknown modality 'video'"):
        augment_config({"modalities": ["image", "video"]})

    items = split_items(read_manifest(tiny_dataset), "train")[:3]
    calls = {"audio": 0}

    def count(x):
        calls["audio"] += 1
        return x

    ds = PreprocessedDataset(items, ["audio"], {"audio": count}, 16000, cache_bytes=10**9, augment=only_image)
    first = ds[0]["audio"]
    ds.epoch = 1
    assert torch.equal(first, ds[0]["audio"]) and calls["audio"] == 1  # not augmented: preprocessed once, cached


def test_fast_fft_length_is_the_smallest_5_smooth_length():
    from vmfmir_cli.data.augment import fast_fft_length

    def smooth(m):
        for f in (2, 3, 5):
            while m % f == 0:
                m //= f
        return m == 1

    for n in [1, 2, 7, 97, 1000, 57001, 76000, 160001]:
        want = next(m for m in range(n, 2 * n + 2) if smooth(m))
        assert fast_fft_length(n) == want


def test_frequency_mask_removes_its_band_on_a_view_of_awkward_length():
    """The band is cut on the zero-padded signal (5-smooth FFT length) and the view cropped back:
    the masked band's energy falls, the length and the rest of the spectrum are kept."""
    import random

    import torch

    from vmfmir_cli.data.augment import AugmentConfig, Augmenter

    n = 57001  # 57001 = 7 * 17 * 479: a slow FFT length
    t = torch.arange(n) / 16000.0
    tones = [200.0, 1000.0, 3000.0, 6000.0]
    wave = sum(torch.sin(2 * math.pi * f * t) for f in tones)
    aug = Augmenter(0, AugmentConfig(view_min=1.0, full_view_p=1.0, gain_db=0.0, noise_p=0.0, time_mask=0.0,
                                     freq_mask=0.5, shift=0.0, scale=0.0))
    for k in range(20):  # find a draw whose band covers some tones and not others
        out = aug.audio(wave, random.Random(k))
        assert out.shape == wave.shape
        spec_in, spec_out = torch.fft.rfft(wave).abs(), torch.fft.rfft(out).abs()
        idx = [round(f * n / 16000.0) for f in tones]
        ratio = [float(spec_out[i] / spec_in[i]) for i in idx]
        if min(ratio) < 0.05 and max(ratio) > 0.95:
            return
    raise AssertionError("no draw masked one tone and kept another")
