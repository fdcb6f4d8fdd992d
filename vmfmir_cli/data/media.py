"""Decode and encode media: audio (soundfile + torchaudio resampling) and images (Pillow).

Audio is decoded with soundfile (libsndfile, bundled with the wheel: WAV, FLAC, OGG/Vorbis/Opus,
MP3), mixed down to mono float32 and resampled with ``torchaudio.functional.resample``; torchaudio's
own I/O is not used (it moved to torchcodec in torchaudio 2.9). Images are decoded with Pillow
(PNG, JPEG, WebP) into mode "L" (grayscale) or "RGB"; transparency is flattened onto white.

Every function opens and closes its file within the call (no shared handles), so decoding is safe
in DataLoader worker processes.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from vmfmir_cli.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
#: the largest image decoded (width x height): 64 megapixels, e.g. 8000 x 8000 or an A4 page at
#: 900 dpi; larger files are refused as invalid (a small PNG can claim 400 Mpx: a decompression bomb)
MAX_IMAGE_PIXELS = 64_000_000


# ----------------------------------------------------------------------------------------- audio
def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode an audio file to a mono float32 array ``(T,)`` and its sample rate."""
    import soundfile as sf

    _check_exists(path, "audio")
    try:
        with _quiet_native_stderr(str(path).lower().endswith(".mp3")):  # libmpg123 prints resync notes
            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        reason = _short(exc)
        if "Error opening" in reason or "unknown format" in reason.lower():
            reason = "unrecognised or corrupt audio data"
        raise DataError(f"{path}: cannot decode audio ({reason}); use WAV, FLAC, OGG or MP3") from None
    if data.shape[0] == 0:
        raise DataError(f"{path}: the audio file holds no samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)


@contextlib.contextmanager
def _quiet_native_stderr(enabled: bool) -> Iterator[None]:
    """Silence what native decoders write straight to file descriptor 2 (not Python's sys.stderr)."""
    if not enabled:
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # pragma: no cover - no fd 2
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def decode_audio_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """Decode in-memory audio (e.g. WAV bytes from a renderer) to mono float32 and its rate."""
    import soundfile as sf

    x, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    mono = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)


def resample(x: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Resample a mono float32 signal with ``torchaudio.functional.resample`` (band-limited sinc)."""
    if int(orig_rate) == int(new_rate) or x.size == 0:
        return np.asarray(x, dtype=np.float32)
    import torch
    from torchaudio.functional import resample as _resample

    y = _resample(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), int(orig_rate), int(new_rate))
    return y.numpy().astype(np.float32, copy=False)


def load_audio(path: str | Path, sample_rate: int) -> "torch.Tensor":
    """Decode ``path`` to a mono float32 tensor ``(T,)`` at ``sample_rate``."""
    import torch

    x, sr = read_audio(path)
    return torch.from_numpy(resample(x, sr, sample_rate).copy())


def encode_flac(x: np.ndarray, sample_rate: int) -> bytes:
    """Encode a mono float signal in [-1, 1] as 16-bit FLAC bytes."""
    import soundfile as sf

    buf = io.BytesIO()
    y = np.clip(np.asarray(x, dtype=np.float32), -1.0, 1.0)
    sf.write(buf, y, int(sample_rate), format="FLAC", subtype="PCM_16")
    return buf.getvalue()


# ----------------------------------------------------------------------------------------- image
def to_l_or_rgb(img: "Image.Image") -> "Image.Image":
    """Flatten transparency onto white and return a mode "L" or "RGB" image."""
    from PIL import Image

    if img.mode in ("L", "RGB"):
        return img
    if img.mode in ("1", "I", "I;16", "I;16B", "I;16L", "F"):
        if img.mode == "1":
            return img.convert("L")
        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) or 1.0
        scale = 255.0 if hi <= 255.0 else (65535.0 if hi <= 65535.0 else hi)
        return Image.fromarray(np.clip(arr / scale * 255.0, 0, 255).astype(np.uint8), mode="L")
    if img.mode == "P" and "transparency" not in img.info:
        return img.convert("RGB")
    grey = img.mode in ("LA", "La")
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat = Image.alpha_composite(white, rgba)
    return flat.convert("L" if grey else "RGB")


def load_image(path: str | Path) -> "Image.Image":
    """Decode an image file (PNG, JPEG, WebP) to a PIL image of mode "L" or "RGB".

    Images of more than :data:`MAX_IMAGE_PIXELS` pixels are refused before their pixels are
    decoded (a small file can claim a huge image: a decompression bomb), with a DataError.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    _check_exists(path, "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we say it in one line
            with Image.open(str(path)) as img:
                width, height = img.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise DataError(_too_large(path, f"{width} x {height} pixels"))
                img.load()
                return to_l_or_rgb(img)
    except Image.DecompressionBombError as exc:  # Pillow's own check, at open time
        raise DataError(_too_large(path, _short(exc).split(",")[0].lower())) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot decode image ({_short(exc)}); use PNG, JPEG or WebP") from None


def _too_large(path: str | Path, size: str) -> str:
    return (
        f"{path}: the image is too large to decode ({size}; the limit is {MAX_IMAGE_PIXELS // 1_000_000} "
        "megapixels, vmfmir_cli.data.media.MAX_IMAGE_PIXELS); downscale it"
    )


def _check_exists(path: str | Path, kind: str) -> None:
    """A missing file is "does not exist", not "cannot decode" (a file deleted during a run)."""
    if not Path(path).exists():
        raise DataError(f"{path}: no such {kind} file (it does not exist: moved or deleted?)")


def encode_png(img: "Image.Image") -> bytes:
    """Encode a PIL image as PNG bytes."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


__all__ = [
    "AUDIO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "read_audio",
    "decode_audio_bytes",
    "resample",
    "load_audio",
    "encode_flac",
    "to_l_or_rgb",
    "load_image",
    "encode_png",
]
