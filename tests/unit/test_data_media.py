"""Media decoding: audio formats and resampling, image modes, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from vmfmir_cli.data.media import encode_flac, encode_png, load_audio, load_image, read_audio, resample
from vmfmir_cli.errors import DataError


def _tone(sr: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.mark.parametrize(
    "fmt,ext,subtype", [("WAV", "wav", "PCM_16"), ("FLAC", "flac", "PCM_16"), ("OGG", "ogg", "VORBIS"), ("MP3", "mp3", None)]
)
def test_load_audio_formats_resample_to_mono(tmp_path, fmt, ext, subtype):
    path = tmp_path / f"a.{ext}"
    sf.write(path, _tone(44100, 1.0, channels=2), 44100, format=fmt, subtype=subtype)
    x = load_audio(path, 16000)
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.ndim == 1
    assert abs(x.shape[0] - 16000) <= 1200  # MP3 adds encoder padding
    assert 0.1 < float(x.abs().max()) < 0.5


def test_resample_exact_length_and_identity():
    x = _tone(48000, 2.0)
    assert resample(x, 48000, 16000).shape == (32000,)
    assert resample(x, 16000, 16000) is not None and resample(x, 16000, 16000).shape == x.shape


def test_flac_roundtrip(tmp_path):
    x = _tone(16000, 0.5)
    (tmp_path / "x.flac").write_bytes(encode_flac(x, 16000))
    y, sr = read_audio(tmp_path / "x.flac")
    assert sr == 16000 and y.shape == x.shape
    assert np.abs(y - x).max() < 1e-3


def test_undecodable_audio_is_a_data_error(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....not audio at all")
    with pytest.raises(DataError, match=r"bad\.wav: cannot decode audio"):
        load_audio(bad, 16000)


@pytest.mark.parametrize("mode,expected", [("RGBA", "RGB"), ("LA", "L"), ("P", "RGB"), ("L", "L"), ("1", "L"), ("I;16", "L")])
def test_load_image_modes(tmp_path, mode, expected):
    img = Image.new(mode, (20, 10))
    path = tmp_path / "x.png"
    img.save(path)
    out = load_image(path)
    assert out.mode == expected and out.size == (20, 10)


def test_transparent_pixels_become_white(tmp_path):
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    img.save(tmp_path / "t.png")
    assert load_image(tmp_path / "t.png").getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("fmt,ext", [("JPEG", "jpg"), ("WEBP", "webp"), ("PNG", "png")])
def test_load_image_formats(tmp_path, fmt, ext):
    Image.new("RGB", (16, 8), (200, 10, 10)).save(tmp_path / f"x.{ext}", format=fmt)
    out = load_image(tmp_path / f"x.{ext}")
    assert out.mode == "RGB" and out.size == (16, 8)
    assert load_image(tmp_path / f"x.{ext}").tobytes() == out.tobytes()  # deterministic


def test_undecodable_image_is_a_data_error(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"bad\.png: cannot decode image"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(DataError, match="no such image file"):  # missing is not "cannot decode"
        load_image(tmp_path / "missing.png")


def test_encode_png_roundtrip(tmp_path):
    img = Image.new("L", (5, 3), 128)
    (tmp_path / "x.png").write_bytes(encode_png(img))
    assert load_image(tmp_path / "x.png").tobytes() == img.tobytes()
