"""The training loop on a tiny synthetic dataset (CPU, seconds): every loss learns, run files,
partial items, errors before any work, NaN handling, in-process resume equality."""

from __future__ import annotations

import importlib.metadata
import json
import math
import platform
import shutil

import pytest
import torch
from safetensors.torch import load_file

from vmfmir_cli.errors import DataError, PluginError, ConfigError, VmfmirError
from vmfmir_cli.training import Callback, TrainConfig, train
from vmfmir_cli.training.checkpoint import find_checkpoint
from vmfmir_cli.training.data import EpochBatchSampler, plan_batches
from vmfmir_cli.training.synthetic import TINY_ENCODERS, make_synthetic_dataset


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: the suite runs two workers on two cores (and spin-waiting thread pools
    make tiny ops 10x slower when the cores are oversubscribed)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("syn") / "data", groups=24, variants=2)


def tiny(data, out, **kw) -> TrainConfig:
    base = dict(
        data=str(data),
        out=str(out),
        encoders=TINY_ENCODERS,
        dim=16,
        batch_size=32,
        epochs=6,
        lr=5e-3,
        mc_samples=8,
        ssw_projections=16,
        warmup_fraction=0.0,
        log_every=1,
        checkpoint_every=0,
    )
    base.update(kw)
    return TrainConfig(**base)


class Recorder(Callback):
    def __init__(self):
        self.steps, self.vals, self.messages, self.start, self.end, self.checkpoints = [], [], [], None, None, []

    def on_train_start(self, info):
        self.start = info

    def on_step(self, record):
        self.steps.append(record)

    def on_validation(self, record):
        self.vals.append(record)

    def on_message(self, text):
        self.messages.append(text)

    def on_checkpoint(self, step, path):
        self.checkpoints.append(step)

    def on_train_end(self, summary):
        self.end = summary


@pytest.mark.parametrize("loss", ["proposed", "baseline", "infonce"])
def test_each_loss_decreases_the_training_loss(syn, tmp_path, loss):
    rec = Recorder()
    run = train(tiny(syn, tmp_path / "runs", loss=loss, epochs=8, val_every=4), [rec])
    losses = [r["loss"] for r in rec.steps]
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.02, losses
    terms = {"proposed": {"contrastive", "ssw"}, "baseline": {"contrastive"}, "infonce": {"infonce", "logit_scale"}}[loss]
    assert terms <= set(rec.steps[0])
    assert set(rec.steps[0]["kappa"]) == {"audio", "image", "text"}
    if loss == "infonce":  # kappa is not trained
        assert all(abs(v - 20.0) < 1e-3 for r in rec.steps for v in r["kappa"].values())
    else:
        assert rec.steps[-1]["kappa"] != rec.steps[0]["kappa"]
    # the run folder
    names = {p.name for p in run.iterdir()}
    assert {"model.safetensors", "config.json", "metrics.jsonl", "checkpoint", "final"} <= names
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["loss"] == loss and config["model"]["embed_dim"] == 16
    assert {m: e["id"] for m, e in config["model"]["encoders"].items()} == {
        "audio": "mel-cnn",
        "image": "score-cnn",
        "text": "text-transformer",
    }
    assert config["model"]["encoders"]["text"]["config"]["tokenizer"]  # fitted on the train texts
    assert config["hash"].startswith("sha256:") and config["vmfmir_version"]
    # what it was trained with: the versions of the installed packages, not of a fixed list
    assert config["environment"]["packages"]["torch"] == importlib.metadata.version("torch")
    assert config["environment"]["python"] == platform.python_version()
    assert config["environment"]["torch"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert config["environment"]["torch"]["version"] == torch.__version__
    assert config["score"] == ("cosine" if loss == "infonce" else "expected_cosine")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["type"] == "train"] == list(range(1, 9))
    vals = [r for r in rows if r["type"] == "val"]
    assert [r["step"] for r in vals] == [4, 8] and all(0 < r["mrr"] <= 1 for r in vals)
    assert len(vals[0]["pairs"]) == 6
    best = max(vals, key=lambda r: r["mrr"])
    assert config["val_mrr"] == pytest.approx(best["mrr"]) and rec.end["best_mrr"] == pytest.approx(best["mrr"])
    assert (tmp_path / "runs" / "latest").resolve() == run.resolve()
    # the saved model loads and encodes
    from vmfmir_cli.model import load_model

    model, _ = load_model(run)
    dist = model.encode_raw("text", ["a waltz"])
    assert dist.loc.shape == (1, 16)


def test_partial_items_and_dropped_modality(tmp_path):
    data = make_synthetic_dataset(tmp_path / "data", groups=16, variants=2, missing=0.4, seed=1)
    rows = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
    assert any(r["audio"] is None or r["image"] is None or r["text"] is None for r in rows)
    rec = Recorder()
    run = train(tiny(data, tmp_path / "runs", epochs=3, batch_size=8), [rec])
    assert all(math.isfinite(r["loss"]) for r in rec.steps)
    # a dataset without text trains the two modalities it has (with a note)
    for r in rows:
        r["text"] = None
    (data / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rec = Recorder()
    run = train(tiny(data, tmp_path / "runs", epochs=1, batch_size=8), [rec])
    assert rec.start["modalities"] == ["audio", "image"]
    assert any("no text" in m for m in rec.messages)
    assert set(json.loads((run / "config.json").read_text())["model"]["encoders"]) == {"audio", "image"}


def _expect_no_run(tmp_path, config, error, match):
    with pytest.raises(error, match=match):
        train(config)
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_errors_before_any_work(syn, tmp_path):
    rows = [json.loads(line) for line in (syn / "manifest.jsonl").read_text().splitlines()]

    def dataset(name, edit):
        d = tmp_path / name
        shutil.copytree(syn, d)
        new = [edit(dict(r)) for r in rows]
        (d / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in new if r is not None))
        return d

    _expect_no_run(tmp_path, tiny(syn, tmp_path / "runs", encoders={"text": {"id": "txt"}}), PluginError, "unknown text encoder 'txt'")
    _expect_no_run(
        tmp_path, tiny(syn, tmp_path / "runs", encoders={"audio": {"id": "score-cnn"}}), ConfigError, "encodes image, not audio"
    )
    enc = {**TINY_ENCODERS, "text": {**TINY_ENCODERS["text"], "layer": 2}}
    _expect_no_run(tmp_path, tiny(syn, tmp_path / "runs", encoders=enc), ConfigError, "no config key 'layer'.*'layers'")
    no_val = dataset("noval", lambda r: None if r["split"] == "val" else r)
    _expect_no_run(tmp_path, tiny(no_val, tmp_path / "runs"), DataError, "val split .* is empty")
    no_train = dataset("notrain", lambda r: None if r["split"] == "train" else r)
    _expect_no_run(tmp_path, tiny(no_train, tmp_path / "runs"), DataError, "train split .* is empty")
    one = dataset("onemod", lambda r: {**r, "audio": None, "image": None})
    _expect_no_run(tmp_path, tiny(one, tmp_path / "runs"), DataError, "1 of the requested modalities")


def test_nan_stops_with_the_term_named_and_keeps_the_last_checkpoint(syn, tmp_path, monkeypatch):
    import vmfmir_cli.training.trainer as trainer_mod

    real = trainer_mod.training_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        loss, terms, pairs = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 4:
            terms = dict(terms, ssw=terms["ssw"] * float("nan"))
            loss = terms["contrastive"] + terms["ssw"]
            terms["loss"] = loss
        return loss, terms, pairs

    monkeypatch.setattr(trainer_mod, "training_loss", poisoned)
    with pytest.raises(VmfmirError, match=r"the ssw loss term became nan at step 4.*last good checkpoint.*\(step 3\)"):
        train(tiny(syn, tmp_path / "runs", epochs=6, batch_size=16, checkpoint_every=3))
    run = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir() and not p.is_symlink())
    assert find_checkpoint(run).step == 3


def test_resume_in_process_matches_uninterrupted(syn, tmp_path):
    """Crash (an exception from a callback) after step 7, resume: same weights as one clean run."""
    cfg = tiny(syn, tmp_path / "a", epochs=2, batch_size=8, checkpoint_every=3, name="run")
    clean = train(cfg)

    class Crash(Callback):
        def on_step(self, record):
            if record["step"] == 7:
                raise KeyboardInterrupt

    cfg_b = cfg.replace(out=str(tmp_path / "b"))
    with pytest.raises(KeyboardInterrupt):
        train(cfg_b, [Crash()])
    run_b = tmp_path / "b" / "run"
    assert find_checkpoint(run_b).step == 6  # mid-epoch (4 steps per epoch)
    rec = Recorder()
    assert train(None, [rec], resume=run_b) == run_b.resolve()  # the saved config
    assert rec.start["resumed"] and rec.start["start_step"] == 6
    for name in ("checkpoint/model.safetensors", "final/model.safetensors", "model.safetensors"):
        a, b = load_file(clean / name), load_file(run_b / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    rows_a = [json.loads(x) for x in (clean / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(x) for x in (run_b / "metrics.jsonl").read_text().splitlines()]
    assert [(r["type"], r["step"]) for r in rows_a] == [(r["type"], r["step"]) for r in rows_b]
    assert [r.get("loss") for r in rows_a] == [r.get("loss") for r in rows_b]


def test_batches_cover_the_epoch_and_split_across_ranks():
    plan = plan_batches(10, 4, 2)
    assert (plan.global_batch, plan.local_batch, plan.steps_per_epoch) == (4, 2, 2)
    full = list(EpochBatchSampler(10, plan_batches(10, 4, 1), seed=3, epoch=1))
    r0 = list(EpochBatchSampler(10, plan, seed=3, epoch=1, rank=0))
    r1 = list(EpochBatchSampler(10, plan, seed=3, epoch=1, rank=1))
    assert [a + b for a, b in zip(r0, r1)] == full
    assert list(EpochBatchSampler(10, plan, seed=3, epoch=1, rank=1, start=1)) == r1[1:]
    assert full != list(EpochBatchSampler(10, plan_batches(10, 4, 1), seed=3, epoch=2))
    small = plan_batches(5, 64, 2)
    assert small.global_batch == 4 and small.steps_per_epoch == 1 and "fewer than batch_size" in small.note
    with pytest.raises(DataError, match="divisible"):
        plan_batches(10, 5, 2)


def test_kappa_lr_scale_gives_the_kappa_heads_their_own_groups():
    from vmfmir_cli.encoders.head import VMFHead
    from vmfmir_cli.training.build import group_lr, make_optimizer

    heads = torch.nn.ModuleDict({"audio": VMFHead(8, 4), "text": VMFHead(8, 4)})
    named = list(heads.named_parameters())
    kappa = {id(p) for n, p in named if ".kappa_net." in n}
    same = make_optimizer(TrainConfig(), named)  # unscaled: the two groups of before
    assert [len(g["params"]) for g in same.param_groups] == [sum(p.ndim >= 2 for _, p in named),
                                                              sum(p.ndim < 2 for _, p in named)]
    scaled = make_optimizer(TrainConfig(kappa_lr_scale=0.1, lr=1e-3), named)
    for group in scaled.param_groups:
        ids = {id(p) for p in group["params"]}
        assert ids <= kappa or not ids & kappa  # a group is all kappa head or none of it
        want = 0.1 if ids <= kappa else 1.0
        assert group["lr_scale"] == want and group["lr"] == pytest.approx(1e-3 * want)
        assert group_lr(group, 2e-3) == pytest.approx(2e-3 * want)
        assert group["weight_decay"] == (0.05 if all(p.ndim >= 2 for p in group["params"]) else 0.0)
    assert sum(len(g["params"]) for g in scaled.param_groups) == len(named)


def test_kappa_lr_scale_reaches_the_training_steps(syn, tmp_path):
    """The kappa heads' last layer starts at zero: at a tiny scale it stays there, at 1 it moves."""
    moved = {}
    for scale in (1.0, 1e-4):
        run = train(tiny(syn, tmp_path / str(scale), epochs=1, kappa_lr_scale=scale, name="run"))
        weights = load_file(run / "model.safetensors")
        last = [v for k, v in weights.items() if k.endswith("kappa_net.2.weight")]
        assert last, "no kappa head found in the saved weights"
        moved[scale] = max(float(v.abs().max()) for v in last)
    assert moved[1e-4] < 1e-5 < 1e-4 < moved[1.0]


def test_kappa_prior_is_logged_and_pulls_kappa_down(syn, tmp_path):
    kappas = {}
    for weight in (0.0, 1.0):
        rec = Recorder()
        train(tiny(syn, tmp_path / str(weight), epochs=2, loss="baseline", kappa_prior_weight=weight, name="run"), [rec])
        last = rec.steps[-1]
        assert ("kappa_prior" in last) == (weight > 0)
        kappas[weight] = sum(last["kappa"].values())
    assert kappas[1.0] < kappas[0.0]
