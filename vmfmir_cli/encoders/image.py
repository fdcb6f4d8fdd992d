"""Built-in image encoder ``score-cnn``: a fixed-size grayscale (or RGB) canvas -> compact CNN.

Preprocessing (deterministic, PIL, CPU) maps any image to ``(channels, height, width)``:

* transparency is composited on white first (rendered SVG scores are often transparent);
* ``fit="pad"`` (scores, the default): scale to ``height`` keeping the aspect ratio; if the result
  is wider than ``width`` scale down to ``width`` instead; then pad the right (and centre vertically)
  with background. Nothing of the score is cut off, and short excerpts stay left-aligned like music.
* ``fit="crop"`` (photos): scale so the image covers the canvas, then centre-crop.
* ``invert=True`` (the default, for scores): ink is 1 and paper is 0, so padding is "empty paper".

``column_window`` (canvas pixels, 0 = off, the default): cut the canvas into windows of that many
columns and drop the windows without ink (the padding right of a short score). When ``width`` is
not a multiple of ``column_window`` the last window is aligned with the right edge and overlaps
the one before (those columns count twice). Each window becomes a vMF and the core fuses an
item's windows as a product of experts (like ``mel-cnn``'s audio windows), so evidence adds up
along the score: a quarter of a score has about a quarter of the windows, and its kappa is lower by
construction rather than only if training happens to learn it. That holds for scores no wider than
the canvas' aspect ratio (4:1 by default; the music21 benchmark's are at most 3.7:1): a wider one
is scaled to the canvas' width, so a part of it is scaled up and fills as many windows as the
whole. Measured on music21, it makes the image kappa follow the part of the score seen but lowers
the R-AUROC, so the example configs leave it off (README, "Evidence that adds up over a score").
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vmfmir_cli.encoders.base import Encoder, window_starts, windowed_collate
from vmfmir_cli.encoders.layers import MeanMaxPool, cnn_trunk
from vmfmir_cli.errors import ConfigError

FITS = ("pad", "crop")
#: a window whose pixels all lie within this of the background holds no ink and is dropped
BLANK_TOLERANCE = 0.02


def flatten_alpha(image):
    """Composite an image with transparency onto white; return mode "L" or "RGB" unchanged."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image


def fit_image(image, height: int, width: int, fit: str, background: int):
    """Resize ``image`` (mode "L" or "RGB") onto a ``width`` x ``height`` canvas (see module docs)."""
    from PIL import Image

    w, h = image.size
    if w < 1 or h < 1:
        raise ValueError(f"empty image of size {w}x{h}")
    resample = Image.Resampling.LANCZOS
    fill = background if image.mode == "L" else (background,) * 3
    if fit == "pad":
        scale = min(height / h, width / w)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        resized = image.resize((new_w, new_h), resample)
        canvas = Image.new(image.mode, (width, height), fill)
        canvas.paste(resized, (0, (height - new_h) // 2))
        return canvas
    scale = max(height / h, width / w)
    new_w, new_h = max(width, round(w * scale)), max(height, round(h * scale))
    resized = image.resize((new_w, new_h), resample)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return resized.crop((left, top, left + width, top + height))


class ScoreCNN(Encoder):
    """A strided stem + 3 conv blocks (~0.4 M parameters) on a fixed canvas (default 128 x 512)."""

    encoder_id = "score-cnn"
    modality = "image"
    default_config = {
        "dim": 256,
        "height": 128,
        "width": 512,
        "channels_in": 1,
        "fit": "pad",
        "invert": True,
        "channels": [32, 64, 128, 192],
        "dropout": 0.1,
        "column_window": 0,
    }

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.cfg
        if c["fit"] not in FITS:
            raise ConfigError(f"score-cnn: fit must be one of {', '.join(FITS)}, got {c['fit']!r}")
        if c["channels_in"] not in (1, 3):
            raise ConfigError(f"score-cnn: channels_in must be 1 (grayscale) or 3 (RGB), got {c['channels_in']!r}")
        if int(c["height"]) < 16 or int(c["width"]) < 16:
            raise ConfigError("score-cnn: height and width must be at least 16 pixels")
        window = c["column_window"]
        if isinstance(window, bool) or not isinstance(window, int) or not (window == 0 or 16 <= window <= int(c["width"])):
            raise ConfigError(
                f"score-cnn: column_window must be 0 (off) or a whole number of pixels from 16 to width "
                f"({c['width']}), got {window!r}"
            )
        self.trunk = cnn_trunk(c["channels_in"], list(c["channels"]), stem_stride=2)
        self.pool = MeanMaxPool()
        self.dropout = nn.Dropout(c["dropout"])
        self.proj = nn.Linear(2 * c["channels"][-1], self.dim)

    def preprocess(self, raw: Any) -> torch.Tensor:
        import numpy as np

        c = self.cfg
        image = flatten_alpha(raw).convert("L" if c["channels_in"] == 1 else "RGB")
        background = 255  # white paper, before inversion
        image = fit_image(image, int(c["height"]), int(c["width"]), c["fit"], background)
        array = np.asarray(image, dtype=np.float32) / 255.0
        x = torch.from_numpy(array.copy())
        x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)
        if c["invert"]:
            x = 1.0 - x
        if c["column_window"]:
            x = self.column_windows(x, 0.0 if c["invert"] else 1.0)
        return x.contiguous()

    def column_windows(self, x: torch.Tensor, background: float) -> torch.Tensor:
        """(C, H, W) canvas -> (N, C, H, column_window): the windows holding ink (at least one)."""
        w = int(self.cfg["column_window"])
        windows = torch.stack([x[..., s : s + w] for s in window_starts(x.shape[-1], w, w)])
        inked = (windows - background).abs().flatten(1).amax(dim=1) > BLANK_TOLERANCE
        return windows[inked] if bool(inked.any()) else windows[:1]

    def collate(self, items: list[torch.Tensor]) -> dict[str, Any]:
        if self.cfg["column_window"]:
            return windowed_collate(items)
        return super().collate(items)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        h = self.pool(self.trunk(batch["x"]))
        return self.proj(self.dropout(h))


__all__ = ["ScoreCNN", "fit_image", "flatten_alpha"]
