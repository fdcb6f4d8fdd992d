"""TrainConfig: precedence (defaults < TOML < --set < flags), unknown keys with suggestions, checks."""

from __future__ import annotations

import pytest

from vmfmir_cli.errors import ConfigError
from vmfmir_cli.training.config import TrainConfig, load_config, parse_assignment, validate
from vmfmir_cli.training.runs import resolve_run_dir, set_latest


def _write(tmp_path, text: str):
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_precedence_defaults_file_set_flags(tmp_path):
    path = _write(tmp_path, 'epochs = 3\nlr = 0.01\nbatch_size = 32\nloss = "baseline"\n[encoders.text]\nid = "text-transformer"\nlayers = 1\n')
    cfg = load_config(path, overrides={"lr": 0.5, "epochs": None}, sets=["batch_size=8", "ssw_lambda=0.25"])
    assert cfg.epochs == 3  # file (flag not given)
    assert cfg.lr == 0.5  # flag beats file
    assert cfg.batch_size == 8  # --set beats file
    assert cfg.ssw_lambda == 0.25
    assert cfg.loss == "baseline"
    assert cfg.dim == TrainConfig().dim  # default
    assert cfg.encoders == {"text": {"id": "text-transformer", "layers": 1}}
    # flags beat --set too
    assert load_config(path, overrides={"batch_size": 4}, sets=["batch_size=8"]).batch_size == 4


def test_encoder_flag_keeps_file_options_of_the_same_encoder_and_drops_others(tmp_path):
    path = _write(tmp_path, '[encoders.text]\nid = "text-transformer"\nlayers = 1\n')
    same = load_config(path, overrides={"encoders": {"text": {"id": "text-transformer"}}})
    assert same.encoders["text"] == {"id": "text-transformer", "layers": 1}
    other = load_config(path, overrides={"encoders": {"text": {"id": "char-bow"}}})
    assert other.encoders["text"] == {"id": "char-bow"}


def test_unknown_key_names_it_and_suggests(tmp_path):
    path = _write(tmp_path, "ssw_lamda = 0.3\n")
    with pytest.raises(ConfigError, match=r"'ssw_lamda'.*did you mean 'ssw_lambda'"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"--set: unknown config key 'batchsize'.*'batch_size'"):
        load_config(sets=["batchsize=3"])
    with pytest.raises(ConfigError, match="unknown config key 'zzz'; known keys"):
        load_config(sets=["zzz=1"])


def test_wrong_types_and_ranges(tmp_path):
    with pytest.raises(ConfigError, match="'epochs' must be an integer"):
        load_config(_write(tmp_path, 'epochs = "ten"\n'))
    with pytest.raises(ConfigError, match="'loss' must be one of proposed, baseline, infonce.*'baseline'"):
        load_config(overrides={"loss": "basline"})
    with pytest.raises(ConfigError, match="at least two"):
        load_config(overrides={"modalities": "audio"})
    with pytest.raises(ConfigError, match="unknown modality 'imag'.*'image'"):
        load_config(overrides={"modalities": "audio,imag"})
    with pytest.raises(ConfigError, match="'mc_negatives' must be one of sampled, analytic"):
        load_config(overrides={"mc_negatives": "exact"})
    with pytest.raises(ConfigError, match="'mc_negatives'.*needs mc_positive = 'analytic'"):
        load_config(sets=["mc_negatives='analytic'", "mc_positive='sampled'"])
    with pytest.raises(ConfigError, match="'kappa_lr_scale' must lie in"):
        load_config(overrides={"kappa_lr_scale": 0.0})
    with pytest.raises(ConfigError, match="kappa_min < kappa_max"):
        load_config(overrides={"kappa_min": 10.0, "kappa_max": 5.0})
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(_write(tmp_path, "epochs = = 3\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_set_parses_toml_values_and_encoder_keys():
    assert parse_assignment("lr=3e-4") == ("lr", 3e-4)
    assert parse_assignment("modalities=[\"audio\", \"text\"]") == ("modalities", ["audio", "text"])
    assert parse_assignment("device=cpu") == ("device", "cpu")  # bare word -> string
    assert parse_assignment("encoders.audio.channels=[8, 16]") == ("encoders", {"audio": {"channels": [8, 16]}})
    cfg = load_config(sets=["encoders.audio.channels=[8, 16]", "modalities=audio,text"])
    assert cfg.encoders == {"audio": {"channels": [8, 16]}} and cfg.modalities == ["audio", "text"]


def test_saved_configs_without_the_new_recipe_keys_keep_their_behaviour():
    """A run saved before mc_sample_mean / head_center existed ran with the probability form and an
    uncentred head: from_saved gives it those, a new config the centred head."""
    old = TrainConfig.from_saved({"loss": "baseline"})
    assert old.head_center is False and old.mc_sample_mean == "probability" and old.val_score == "elk"
    assert TrainConfig().head_center is True
    assert TrainConfig.from_saved({"loss": "baseline", "head_center": True}).head_center is True


def test_round_trip_and_effective_score():
    cfg = TrainConfig(loss="infonce", epochs=2)
    again = TrainConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert again.effective_val_score() == "cosine"
    assert validate(TrainConfig()).effective_val_score() == "expected_cosine"


def test_examples_load(tmp_path):
    from pathlib import Path

    examples = Path(__file__).resolve().parents[2] / "examples"
    tomls = sorted(examples.glob("*.toml"))
    assert {p.stem for p in tomls} >= {"proposed", "baseline", "infonce"}
    for path in tomls:
        cfg = load_config(path)
        assert cfg.loss in ("proposed", "baseline", "infonce")
    from vmfmir_cli.data.augment import augment_config

    for name in ("proposed", "baseline", "infonce", "pretrained"):  # random views of the score images only
        cfg = load_config(examples / f"{name}.toml")
        aug = augment_config(cfg.augment_options)
        assert cfg.augment and aug.modalities == ("image",) and aug.shift == 0.0 and aug.scale == 0.0


def test_proposed_example_names_every_key_with_its_default_where_it_keeps_it():
    import dataclasses
    import tomllib
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "proposed.toml"
    written = tomllib.loads(path.read_text())
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    assert [k for k in fields if k not in written] == []  # the README says this file documents every key
    # the keys it writes with a default's value write that value exactly (no rounded copy)
    default = TrainConfig()
    for key in ("logit_scale_init", "betas", "momentum", "batch_group", "batch_group_fraction", "max_steps",
                "deterministic", "name", "captions"):
        assert getattr(load_config(path), key) == getattr(default, key), key


def test_latest_pointer_symlink_and_text_file(tmp_path):
    runs = tmp_path / "runs"
    (runs / "a").mkdir(parents=True)
    (runs / "b").mkdir()
    set_latest(runs / "a")
    assert resolve_run_dir(runs / "latest") == (runs / "a").resolve()
    set_latest(runs / "b")
    assert resolve_run_dir(runs / "latest") == (runs / "b").resolve()
    assert resolve_run_dir(runs) == (runs / "b").resolve()
    assert (runs / "LATEST").read_text().strip() == "b"
    (runs / "latest").unlink()  # a platform without symlinks only has the text file
    assert resolve_run_dir(runs / "latest") == (runs / "b").resolve()
    assert resolve_run_dir(runs / "a") == (runs / "a").resolve()
    from vmfmir_cli.errors import CheckpointError

    with pytest.raises(CheckpointError):
        resolve_run_dir(tmp_path / "nowhere" / "latest")


def _toy_batch():
    """Six items with audio and text vMFs in d = 8: (mu, kappa, params, masks) for training_loss."""
    import torch

    g = torch.Generator().manual_seed(0)
    mu = {m: torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1) for m in ("audio", "text")}
    kappa = {m: torch.rand(6, generator=g) * 30 + 2 for m in mu}
    params = {m: (mu[m], kappa[m]) for m in mu}
    masks = {m: torch.ones(6, dtype=torch.bool) for m in mu}
    return mu, kappa, params, masks


def test_the_recipe_keys_reach_the_engine_loss():
    """training_loss passes mc_negatives / mc_positive / denominator through to mc_infonce_loss."""
    import torch

    from vmfmir_cli.engine.losses import mc_infonce_loss
    from vmfmir_cli.engine.vmf import VonMisesFisher
    from vmfmir_cli.training.objective import training_loss

    mu, kappa, params, masks = _toy_batch()
    for negatives in ("sampled", "analytic"):
        cfg = load_config(overrides={"loss": "baseline", "mc_negatives": negatives})
        got, _, _ = training_loss(params, masks, cfg, generator=torch.Generator().manual_seed(1))
        dists = {m: VonMisesFisher(mu[m], kappa[m], validate_args=False) for m in mu}
        want = mc_infonce_loss(dists, cfg.mc_samples, cfg.inv_temperature, generator=torch.Generator().manual_seed(1),
                               negatives=negatives)
        assert torch.allclose(got, want), (negatives, got, want)
    assert not torch.allclose(*(training_loss(params, masks, load_config(overrides={"loss": "baseline", "mc_negatives": n}),
                                              generator=torch.Generator().manual_seed(1))[0] for n in ("sampled", "analytic")))


def test_mc_sample_mean_reaches_the_engine_and_is_validated():
    """mc_sample_mean = 'score' is passed through; it needs analytic negatives and no jackknife."""
    import torch

    from vmfmir_cli.engine.losses import mc_infonce_loss
    from vmfmir_cli.engine.vmf import VonMisesFisher
    from vmfmir_cli.training.objective import training_loss

    mu, kappa, params, masks = _toy_batch()
    dists = {m: VonMisesFisher(mu[m], kappa[m], validate_args=False) for m in mu}
    losses = {}
    for mean in ("probability", "score"):
        cfg = load_config(overrides={"loss": "baseline", "mc_sample_mean": mean})
        got, _, _ = training_loss(params, masks, cfg, generator=torch.Generator().manual_seed(1))
        want = mc_infonce_loss(dists, cfg.mc_samples, cfg.inv_temperature, generator=torch.Generator().manual_seed(1),
                               sample_mean=mean)
        assert torch.allclose(got, want), (mean, got, want)
        losses[mean] = got
    assert not torch.allclose(losses["probability"], losses["score"])
    with pytest.raises(ConfigError, match="'mc_sample_mean' must be one of probability, score"):
        load_config(overrides={"mc_sample_mean": "inside"})
    with pytest.raises(ConfigError, match="'mc_sample_mean'.*needs mc_negatives = 'analytic'"):
        load_config(sets=["mc_sample_mean='score'", "mc_negatives='sampled'"])
    with pytest.raises(ConfigError, match="'mc_bias_correction'.*applies to mc_sample_mean = 'probability' only"):
        load_config(sets=["mc_sample_mean='score'", "mc_bias_correction='jackknife'"])


def test_kl_to_uniform_matches_the_closed_form_on_the_2_sphere():
    """d = 3: H(vMF) = 1 - kappa coth(kappa) + log(4 pi sinh(kappa) / kappa),
    KL(vMF || uniform) = log(4 pi) - H; 0 at kappa -> 0, about log kappa for large kappa."""
    import math

    import torch

    from vmfmir_cli.engine.vmf import VonMisesFisher
    from vmfmir_cli.training.objective import kl_to_uniform

    kappa = torch.tensor([1e-4, 0.5, 3.0, 40.0], dtype=torch.float64)
    mu = torch.nn.functional.normalize(torch.randn(4, 3, dtype=torch.float64), dim=-1)
    got = torch.stack([kl_to_uniform({"a": VonMisesFisher(mu[i:i + 1], kappa[i:i + 1])}, {"a": torch.tensor([True])})
                       for i in range(4)]).double()
    k = kappa
    entropy = 1.0 - k / torch.tanh(k) + torch.log(4 * math.pi * torch.sinh(k) / k)
    want = math.log(4 * math.pi) - entropy
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got, want)
    assert float(got[0]) == pytest.approx(0.0, abs=1e-6)


def test_kappa_prior_weight_adds_the_kl_term_and_its_name():
    import torch

    from vmfmir_cli.engine.vmf import VonMisesFisher
    from vmfmir_cli.training.objective import kl_to_uniform, term_names, training_loss

    mu, kappa, params, masks = _toy_batch()
    plain = load_config(overrides={"loss": "baseline"})
    cfg = load_config(overrides={"loss": "baseline", "kappa_prior_weight": 0.01})
    assert term_names(plain) == ["loss", "contrastive"]
    assert term_names(cfg) == ["loss", "contrastive", "kappa_prior"]
    assert term_names(load_config(overrides={"loss": "infonce", "kappa_prior_weight": 0.01})) == ["loss", "infonce"]
    base, _, _ = training_loss(params, masks, plain, generator=torch.Generator().manual_seed(1))
    total, terms, _ = training_loss(params, masks, cfg, generator=torch.Generator().manual_seed(1))
    dists = {m: VonMisesFisher(mu[m], kappa[m], validate_args=False) for m in mu}
    prior = kl_to_uniform(dists, masks)
    assert float(prior) > 0
    assert torch.allclose(terms["kappa_prior"], prior)
    assert torch.allclose(total, base + 0.01 * prior)
    with pytest.raises(ConfigError, match="'kappa_prior_weight' must lie in"):
        load_config(overrides={"kappa_prior_weight": -1.0})
