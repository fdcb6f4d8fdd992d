"""Graded views of audio and images."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from vmfmir_cli.data.views import VIEW_FRACTIONS, audio_view, image_view, view


def test_full_view_is_the_item_itself():
    wave = torch.randn(16000)
    img = Image.new("L", (300, 64), 255)
    assert audio_view(wave, 1.0) is wave
    assert image_view(img, 1.0) is img
    assert view("calm piano", "text", 0.25) == "calm piano"


@pytest.mark.parametrize("fraction", VIEW_FRACTIONS)
def test_views_have_the_right_length_and_width(fraction):
    wave = torch.arange(16000, dtype=torch.float32)
    v = audio_view(wave, fraction)
    assert v.shape == (int(16000 * fraction),)
    assert torch.equal(v, wave[: v.shape[0]])  # the first f of the excerpt
    img = Image.linear_gradient("L").resize((400, 50))
    c = image_view(img, fraction)
    assert c.size == (int(400 * fraction), 50)
    assert c.tobytes() == img.crop((0, 0, c.size[0], 50)).tobytes()  # its left f


def test_view_start_moves_the_window_and_stays_inside():
    wave = torch.arange(1000, dtype=torch.float32)
    last = audio_view(wave, 0.25, start=1.0)
    assert last.shape == (250,) and float(last[-1]) == 999.0
    mid = audio_view(wave, 0.5, start=0.5)
    assert float(mid[0]) == 250.0
    tiny = audio_view(torch.ones(3), 0.01)
    assert tiny.shape == (1,)  # never empty
    with pytest.raises(ValueError):
        audio_view(wave, 0.0)
    with pytest.raises(ValueError):
        audio_view(wave, 0.5, start=1.5)
