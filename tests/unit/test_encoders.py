"""Built-in encoders, the vMF head and MultimodalModel: shapes, determinism, exact round trips."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from vmfmir_cli.encoders.audio import MelCNN, frame_windows, window_starts
from vmfmir_cli.encoders.base import Encoder, pad_sequences
from vmfmir_cli.encoders.head import VMFHead
from vmfmir_cli.encoders.image import ScoreCNN
from vmfmir_cli.model import MultimodalModel, fuse_rows, load_model, save_model
from vmfmir_cli.encoders.text import TextTransformer
from vmfmir_cli.engine.vmf import VonMisesFisher, fuse
from vmfmir_cli.errors import CheckpointError, ConfigError
from vmfmir_cli.plugins import manager

SR = 8000
SMALL = {
    "audio": (MelCNN, {"sample_rate": SR, "n_fft": 256, "hop_length": 128, "n_mels": 24, "window_seconds": 1.0,
                       "window_hop_seconds": 1.0, "channels": [8, 16], "dim": 32}),
    "image": (ScoreCNN, {"height": 32, "width": 96, "channels": [8, 16], "dim": 32}),
    "text": (TextTransformer, {"vocab_size": 300, "d_model": 32, "heads": 2, "ff_dim": 64, "layers": 1, "dim": 32,
                               "max_length": 24, "min_frequency": 1}),
}
TEXTS = ["Bach chorale in four parts", "a lullaby", "", "Ave Maria, gratia plena — ünïcödé", "x" * 200]


def raws(modality: str) -> list:
    g = torch.Generator().manual_seed(0)
    if modality == "audio":  # 0.3 s (padded), exactly 1 s, 2.5 s (3 windows, last end-aligned)
        return [torch.randn(int(SR * s), generator=g) * 0.1 for s in (0.3, 1.0, 2.5)]
    if modality == "image":
        return [
            Image.new("L", (400, 80), 255),
            Image.frombytes("L", (50, 60), bytes(torch.randint(0, 256, (3000,), generator=g).tolist())),
            Image.new("RGBA", (120, 30), (0, 0, 0, 0)),
            Image.new("RGB", (30, 200), (10, 200, 30)),
        ]
    return list(TEXTS)


def build(modality: str, seed: int = 0, **overrides) -> Encoder:
    cls, config = SMALL[modality]
    torch.manual_seed(seed)
    enc = cls(**{**config, **overrides})
    if modality == "text":
        enc.fit_preprocessing(TEXTS * 3)
    return enc.eval()


def features(enc: Encoder, items: list) -> tuple[dict, torch.Tensor]:
    batch = enc.collate([enc.preprocess(r) for r in items])
    with torch.no_grad():
        return batch, enc(batch)


# --------------------------------------------------------------------------------------------------
# Every built-in encoder
# --------------------------------------------------------------------------------------------------

MODALITIES = ["audio", "image", "text"]


@pytest.mark.parametrize("modality", MODALITIES)
def test_builtin_is_registered_with_its_class_metadata(modality):
    manager.reset_plugin_manager()
    cls, _ = SMALL[modality]
    entry = manager.get_encoder_entry(manager.default_encoder_id(modality))
    assert entry.factory is cls and entry.modality == modality == cls.modality and entry.dim == cls.dim == 256


@pytest.mark.parametrize("modality", MODALITIES)
def test_features_have_shape_rows_by_dim(modality):
    enc = build(modality)
    items = raws(modality)
    batch, out = features(enc, items)
    rows = batch["x"].shape[0] if "owner" in batch else len(items)
    assert out.shape == (rows, enc.dim) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    if modality == "audio":
        assert batch["owner"].tolist() == [0, 1, 2, 2, 2] and batch["num_items"] == 3


@pytest.mark.parametrize("modality", MODALITIES)
def test_deterministic(modality):
    enc = build(modality)
    items = raws(modality)
    first = [enc.preprocess(r) for r in items]
    second = [enc.preprocess(r) for r in items]
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    _, out1 = features(enc, items)
    _, out2 = features(enc, items)
    assert torch.equal(out1, out2)
    # another instance from the same seed computes the same function
    _, out3 = features(build(modality), items)
    assert torch.equal(out1, out3)


@pytest.mark.parametrize("modality", MODALITIES)
def test_batching_does_not_change_an_item(modality):
    enc = build(modality)
    items = raws(modality)
    batch, together = features(enc, items)
    alone = torch.cat([features(enc, [r])[1] for r in items])
    torch.testing.assert_close(alone, together, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("modality", MODALITIES)
def test_round_trip_config_and_safetensors_is_bit_exact(modality):
    enc = build(modality, seed=1)
    config = json.loads(json.dumps(enc.config()))  # through JSON, like config.json
    blob = st_save({k: v.contiguous() for k, v in enc.state_dict_for_saving().items()})
    cls = manager.get_encoder_class(enc.encoder_id)
    torch.manual_seed(123)  # a different init: everything must come from the saved state
    clone = cls.from_config(config)
    clone.load_saved_state(st_load(blob))
    clone.eval()
    items = raws(modality)
    b1, out1 = features(enc, items)
    b2, out2 = features(clone, items)
    assert all(torch.equal(b1[k], b2[k]) for k in b1 if torch.is_tensor(b1[k]))
    assert torch.equal(out1, out2)


@pytest.mark.parametrize("modality", MODALITIES)
def test_training_mode_runs_backward(modality):
    enc = build(modality).train()
    batch = enc.collate([enc.preprocess(r) for r in raws(modality)])
    enc(batch).pow(2).mean().backward()
    grads = [p.grad for p in enc.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_default_configs_build_and_are_compact():
    for cls in (MelCNN, ScoreCNN, TextTransformer):
        enc = cls()
        assert enc.dim == 256
        assert 1e5 < enc.num_parameters() < 1.5e6, (cls.__name__, enc.num_parameters())


def test_unknown_config_key_is_rejected():
    with pytest.raises(ConfigError, match="unknown config key\\(s\\) colour; known keys: .*height"):
        ScoreCNN(colour="red")
    with pytest.raises(ConfigError, match="fit must be one of"):
        ScoreCNN(fit="stretch")


# --------------------------------------------------------------------------------------------------
# Modality specifics
# --------------------------------------------------------------------------------------------------


def test_window_starts_cover_the_signal_without_padding():
    assert window_starts(50, 100, 100) == [0]
    assert window_starts(100, 100, 100) == [0]
    assert window_starts(250, 100, 100) == [0, 100, 150]
    assert window_starts(300, 100, 50) == [0, 50, 100, 150, 200]
    w = frame_windows(torch.arange(250.0), 100, 100)
    assert w.shape == (3, 100) and w[-1, -1] == 249
    assert frame_windows(torch.ones(30), 100, 100)[0, 30:].abs().sum() == 0


def test_audio_accepts_channels_first_and_numpy():
    enc = build("audio")
    wav = raws("audio")[2]
    stereo = torch.stack([wav, wav])
    assert torch.equal(enc.preprocess(stereo), enc.preprocess(wav))
    assert torch.equal(enc.preprocess(wav.numpy()), enc.preprocess(wav))
    assert enc.preprocess(torch.zeros(0)).shape[0] == 1  # empty audio: one silent window


def test_image_fit_modes_and_transparency():
    pad = build("image")
    score = Image.new("RGBA", (300, 60), (0, 0, 0, 0))  # transparent: must become white paper
    x = pad.preprocess(score)
    assert x.shape == (1, 32, 96) and x.abs().max() == 0  # inverted white paper is 0
    ink = Image.new("L", (40, 20), 0)  # narrow black image: left-aligned, padded with paper
    y = pad.preprocess(ink)
    assert y[:, :, :60].min() == 1.0 and y[:, :, 70:].max() == 0.0
    crop = build("image", fit="crop", channels_in=3, invert=False)
    z = crop.preprocess(Image.new("RGB", (30, 200), (255, 0, 0)))
    assert z.shape == (3, 32, 96) and torch.allclose(z[0], torch.ones(32, 96))


def test_image_column_windows_keep_the_inked_columns():
    enc = build("image", column_window=32)  # canvas 32 x 96: windows at 0, 32, 64
    whole = build("image").preprocess(Image.new("L", (150, 60), 0))  # black, 80 of 96 columns
    x = enc.preprocess(Image.new("L", (150, 60), 0))
    assert x.shape == (3, 1, 32, 32)
    assert torch.equal(x[2], whole[:, :, 64:96])  # the windows are the canvas' own columns
    short = enc.preprocess(Image.new("L", (40, 60), 0))  # 21 columns of ink: one window
    assert short.shape == (1, 1, 32, 32) and short[0, :, :, :21].min() == 1.0
    blank = enc.preprocess(Image.new("L", (400, 80), 255))  # no ink anywhere: still one window
    assert blank.shape == (1, 1, 32, 32) and blank.abs().max() == 0
    paper = build("image", column_window=32, invert=False).preprocess(Image.new("L", (40, 60), 0))
    assert paper.shape[0] == 1  # without inversion the background is 1, and still dropped
    odd = build("image", column_window=40).preprocess(Image.new("L", (400, 80), 0))
    assert odd.shape == (3, 1, 32, 40)  # 0, 40 and the last one aligned with the right edge (56)
    batch = enc.collate([x, short, blank])
    assert batch["owner"].tolist() == [0, 0, 0, 1, 2] and batch["num_items"] == 3
    with torch.no_grad():
        out = enc(batch)
        alone = torch.cat([enc(enc.collate([t])) for t in (x, short, blank)])
    assert out.shape == (5, enc.dim)
    torch.testing.assert_close(out, alone, atol=2e-5, rtol=1e-4)


def test_a_score_cnn_config_saved_before_column_window_loads_without_windows():
    saved = {k: v for k, v in build("image").config().items() if k != "column_window"}
    enc = ScoreCNN.from_config(saved)
    assert enc.cfg["column_window"] == 0
    x = enc.preprocess(Image.new("L", (150, 60), 0))
    assert x.shape == (1, 32, 96) and "owner" not in enc.collate([x])


def test_image_column_window_is_validated():
    for bad in (8, 97, 2.5, True, "64"):
        with pytest.raises(ConfigError, match="column_window"):
            build("image", column_window=bad)


def test_model_fuses_the_column_windows_of_a_score():
    torch.manual_seed(0)
    cls, config = SMALL["image"]
    model = MultimodalModel({"image": cls(**{**config, "column_window": 32})}, embed_dim=16).eval()
    scores = [Image.new("L", (150, 60), 0), Image.new("L", (40, 60), 0)]
    enc, head = model.encoders["image"], model.heads["image"]
    with torch.no_grad():
        dist = model.encode_raw("image", scores)
        mu, kappa = head(enc(enc.collate([enc.preprocess(s) for s in scores])))
    assert dist.batch_shape == (2,)
    expected = fuse(*(VonMisesFisher(mu[i], kappa[i]) for i in range(3)))
    torch.testing.assert_close(dist.concentration[0], expected.concentration)
    torch.testing.assert_close(dist.concentration[1], kappa[3])
    assert dist.concentration[0] > dist.concentration[1]  # the whole score carries more evidence


def test_text_tokenizer_is_trained_saved_and_restored():
    enc = build("text")
    assert enc.cfg["tokenizer"] and enc.tokenizer.get_vocab_size() > 258  # merges were learnt
    clone = TextTransformer.from_config(json.loads(json.dumps(enc.config())))
    for text in TEXTS + ["unseen wörds"]:
        assert torch.equal(clone.preprocess(text), enc.preprocess(text))
    assert enc.preprocess("lyrics and words " * 100).shape[0] == enc.cfg["max_length"]
    assert enc.preprocess("")[0] == enc.tokenizer.token_to_id("[CLS]")
    unfitted = TextTransformer(**SMALL["text"][1])
    assert unfitted.preprocess("abc").shape[0] >= 4  # byte fallback works before fitting


def test_pad_sequences_mask():
    out = pad_sequences([torch.ones(2, 3), torch.ones(4, 3)])
    assert out["x"].shape == (2, 4, 3) and out["mask"].tolist() == [[True, True, False, False], [True] * 4]


# --------------------------------------------------------------------------------------------------
# Head, fusion, MultimodalModel
# --------------------------------------------------------------------------------------------------


def test_head_outputs_unit_mu_and_bounded_kappa():
    torch.manual_seed(0)
    head = VMFHead(16, 8, kappa_min=2.0, kappa_max=500.0)
    mu, kappa = head(torch.randn(5, 16))
    assert mu.shape == (5, 8) and kappa.shape == (5,)
    torch.testing.assert_close(mu.norm(dim=-1), torch.ones(5))
    torch.testing.assert_close(kappa, torch.full((5,), 20.0))  # moderate start
    for bias, expected in ((1e4, 500.0), (-1e4, 2.0)):
        with torch.no_grad():
            head.kappa_net[-1].bias.fill_(bias)
        _, kappa = head(torch.randn(4, 16) * 1e4)
        torch.testing.assert_close(kappa, torch.full((4,), expected))
    with torch.no_grad():
        head.kappa_net[-1].weight.normal_(std=3.0)
        head.kappa_net[-1].bias.zero_()
    _, kappa = head(torch.randn(256, 16))
    assert (kappa >= 2.0).all() and (kappa <= 500.0).all() and kappa.max() / kappa.min() > 10


def test_head_starts_inside_the_kappa_range_and_can_move():
    # kappa_min above the default kappa_init (20): kappa must not start saturated at the floor
    torch.manual_seed(0)
    head = VMFHead(16, 8, kappa_min=50.0, kappa_max=1000.0)
    _, kappa = head(torch.randn(4, 16))
    assert torch.allclose(kappa, torch.full_like(kappa, (50.0 * 1000.0) ** 0.5), rtol=1e-3)
    kappa.sum().backward()
    assert head.kappa_net[-1].bias.grad.abs().item() > 1.0  # the sigmoid is not saturated
    # an explicit kappa_init inside the range is kept
    _, k2 = VMFHead(16, 8, kappa_min=1.0, kappa_max=1000.0, kappa_init=30.0)(torch.randn(2, 16))
    assert torch.allclose(k2, torch.full_like(k2, 30.0), rtol=1e-3)


def test_centred_head_removes_the_batch_mean_while_training_and_the_running_mean_after():
    torch.manual_seed(0)
    head = VMFHead(16, 8, center=True, center_momentum=0.5)
    x = torch.randn(32, 16) + 3.0  # features with a large common part
    raw = head.mu(head.norm(x))
    mu, _ = head(x)  # training mode: the batch mean, with its gradient
    torch.testing.assert_close(mu, torch.nn.functional.normalize(raw - raw.mean(0), dim=-1))
    torch.testing.assert_close(head.running_center, raw.mean(0).detach())  # first batch: its plain mean
    assert int(head.center_updates) == 1
    mu.sum().backward()
    assert head.mu.bias.grad.abs().max() < 1e-5  # a common offset cannot move any mu
    x2 = torch.randn(32, 16) - 1.0
    raw2 = head.mu(head.norm(x2)).detach()
    head(x2)
    torch.testing.assert_close(head.running_center, 0.5 * raw.mean(0).detach() + 0.5 * raw2.mean(0))
    head.eval()  # inference: the running mean, so an item's mu does not depend on its batch
    one, _ = head(x[:1])
    torch.testing.assert_close(one[0], torch.nn.functional.normalize(raw[0] - head.running_center, dim=-1).detach())
    head.train()  # a training batch of fewer than 8 rows is centred with the running mean too
    few, _ = head(x[:3])
    torch.testing.assert_close(few, torch.nn.functional.normalize(raw[:3] - head.running_center, dim=-1))
    assert int(head.center_updates) == 2


def test_centred_head_takes_the_statistics_of_a_larger_batch():
    """project / finish with stats = (sum, rows) of the whole (distributed) batch centre with its mean."""
    torch.manual_seed(0)
    head = VMFHead(16, 8)
    x = torch.randn(12, 16) + 2.0
    direction, h = head.project(x)
    whole = torch.cat([direction, direction.detach() + 1.0])  # this rank's rows and another rank's
    mu, kappa = head.finish(direction, h, (whole.sum(0), whole.shape[0]))
    torch.testing.assert_close(mu, torch.nn.functional.normalize(direction - whole.mean(0), dim=-1))
    torch.testing.assert_close(head.running_center, whole.mean(0).detach())
    head2 = VMFHead(16, 8)
    head2.load_state_dict({k: v for k, v in head.state_dict().items() if "center" not in k}, strict=False)
    torch.testing.assert_close(head2(x)[0], torch.nn.functional.normalize(direction - direction.mean(0), dim=-1))


def test_head_without_centring_keeps_its_state_dict_keys():
    plain = VMFHead(16, 8, center=False)
    assert not any("center" in k for k in plain.state_dict())
    assert {"running_center", "center_updates"} <= set(VMFHead(16, 8).state_dict())  # centred by default
    with pytest.raises(ValueError, match="center_momentum"):
        VMFHead(16, 8, center_momentum=0.0)


def test_head_computes_in_float32_under_autocast():
    head = VMFHead(16, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mu, kappa = head(torch.randn(3, 16))
    assert mu.dtype == kappa.dtype == torch.float32


def test_fuse_rows_is_a_product_of_experts():
    torch.manual_seed(0)
    mu = torch.nn.functional.normalize(torch.randn(5, 4), dim=-1)
    kappa = torch.tensor([3.0, 5.0, 7.0, 11.0, 13.0])
    owner = torch.tensor([0, 1, 1, 1, 2])
    fmu, fkappa = fuse_rows(mu, kappa, owner)
    ref = fuse(*(VonMisesFisher(mu[i], kappa[i]) for i in (1, 2, 3)))
    torch.testing.assert_close(fmu[1], ref.loc)
    torch.testing.assert_close(fkappa[1], ref.concentration)
    torch.testing.assert_close(fmu[0], mu[0])
    torch.testing.assert_close(fkappa[2], kappa[4])


def small_model(seed: int = 0) -> MultimodalModel:
    encs = {m: build(m, seed=seed) for m in MODALITIES}
    torch.manual_seed(seed)
    return MultimodalModel(encs, embed_dim=16).eval()


def test_model_encodes_one_vmf_per_item_with_windows_fused():
    model = small_model()
    for modality in MODALITIES:
        items = raws(modality)
        with torch.no_grad():
            dist = model.encode_raw(modality, items)
        assert isinstance(dist, VonMisesFisher) and dist.batch_shape == (len(items),) and dist.dim == 16
        torch.testing.assert_close(dist.loc.norm(dim=-1), torch.ones(len(items)))
    enc, head = model.encoders["audio"], model.heads["audio"]
    batch = enc.collate([enc.preprocess(r) for r in raws("audio")])
    with torch.no_grad():
        mu, kappa = head(enc(batch))
        fused = model.encode("audio", batch)
    torch.testing.assert_close(fused.concentration[:2], kappa[:2])
    expected = fuse(*(VonMisesFisher(mu[i], kappa[i]) for i in (2, 3, 4)))
    torch.testing.assert_close(fused.loc[2], expected.loc)
    torch.testing.assert_close(fused.concentration[2], expected.concentration)
    assert fused.concentration[2] > kappa[2:].max()  # more evidence, more concentrated


def test_model_rejects_a_mismatched_modality():
    with pytest.raises(ConfigError, match="is a text encoder, not a audio encoder"):
        MultimodalModel({"audio": build("text")})


def test_model_config_records_the_centred_head_and_older_models_load_without_it(tmp_path):
    model = small_model(seed=1)
    assert model.config()["head_center"] is True and all(h.center for h in model.heads.values())
    legacy = {**model.config()}
    del legacy["head_center"]  # a model saved before the centred head existed
    old = MultimodalModel.from_config(legacy)
    assert not any(h.center for h in old.heads.values())
    old_weights = {k: v for k, v in old.state_dict_for_saving().items() if "center" not in k}
    assert len(old_weights) == len(old.state_dict_for_saving())  # no centring buffers to miss
    old.load_saved_state(old_weights)
    with pytest.raises(CheckpointError, match="head weights do not match"):
        model.load_saved_state({k: v for k, v in model.state_dict_for_saving().items() if "running_center" not in k})
    with pytest.raises(ConfigError, match="head_center must be true or false"):
        MultimodalModel.from_config({**model.config(), "head_center": "yes"})


def test_save_and_load_model_round_trip(tmp_path):
    model = small_model(seed=3)
    config = save_model(model, tmp_path / "run", {"train": {"steps": 1}})
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved == config and saved["train"] == {"steps": 1} and saved["hash"].startswith("sha256:")
    assert saved["model"]["encoders"]["text"]["id"] == "text-transformer"
    assert saved["model"]["encoders"]["audio"]["plugin"] == "builtin"
    assert not list((tmp_path / "run").glob(".*tmp"))  # atomic writes leave no temporaries
    torch.manual_seed(999)
    loaded, loaded_config = load_model(tmp_path / "run")
    assert loaded_config == saved and not loaded.training
    for modality in MODALITIES:
        with torch.no_grad():
            a = model.encode_raw(modality, raws(modality))
            b = loaded.encode_raw(modality, raws(modality))
        assert torch.equal(a.loc, b.loc) and torch.equal(a.concentration, b.concentration)


def test_load_model_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no trained model at"):
        load_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_model(tmp_path / "empty")
    model = small_model()
    run = tmp_path / "run"
    save_model(model, run)
    weights = run / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(CheckpointError, match="does not match the hash"):
        load_model(run)
    weights.unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        load_model(run)
    weights.write_bytes(data)
    (run / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(run)


def test_load_model_names_the_missing_plugin(tmp_path, monkeypatch):
    monkeypatch.setenv("VMFMIR_ALLOW_EDITED_RUN", "1")  # the test edits config.json on purpose
    model = small_model()
    run = tmp_path / "run"
    config = save_model(model, run)
    config["model"]["encoders"]["text"].update(id="hf-bigbird", plugin="bigbird", package="vmfmir-bigbird")
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"'hf-bigbird'.*pip install vmfmir-bigbird.*Available encoders: .*mel-cnn"):
        load_model(run)


def test_load_model_rejects_weights_of_another_shape(tmp_path, monkeypatch):
    monkeypatch.setenv("VMFMIR_ALLOW_EDITED_RUN", "1")  # the test edits config.json on purpose
    run = tmp_path / "run"
    config = save_model(small_model(), run)
    config["model"]["embed_dim"] = 8
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(run)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("modality", MODALITIES)
def test_encoders_run_on_cuda_like_on_cpu(modality):
    model = small_model()
    items = raws(modality)
    with torch.no_grad():
        cpu = model.encode_raw(modality, items)
        model.to("cuda")
        gpu = model.encode_raw(modality, items)
        again = model.encode_raw(modality, items)
    assert gpu.loc.device.type == "cuda"
    torch.testing.assert_close(gpu.loc.cpu(), cpu.loc, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(gpu.concentration.cpu(), cpu.concentration, atol=1e-2, rtol=1e-3)
    assert torch.equal(gpu.loc, again.loc)
