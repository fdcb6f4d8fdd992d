"""Real processes: a run SIGKILLed at a random moment and resumed ends with the weights of an
uninterrupted run; a 2-process CPU torchrun (gloo) run equals the single-process run on the same
global batches; a CUDA smoke run (skipped without a GPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vmfmir_cli.training.synthetic import TINY_ENCODERS, make_synthetic_dataset


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def write_config(path: Path, **top) -> Path:
    lines = [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    for modality, spec in TINY_ENCODERS.items():
        lines.append(f"\n[encoders.{modality}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in spec.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", VMFMIR_LOAD_PLUGINS="")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _train_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "vmfmir_cli", "train", *args]


def _run(cmd, cwd, timeout=300):
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _weights_equal(a: Path, b: Path) -> None:
    ta, tb = load_file(a), load_file(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("proc")
    data = make_synthetic_dataset(root / "data", groups=24, variants=2)
    config = write_config(
        root / "tiny.toml",
        dim=16,
        batch_size=8,
        epochs=3,
        lr=5e-3,
        mc_samples=8,
        ssw_projections=16,
        checkpoint_every=3,
        log_every=1,
        val_every=2,
    )
    return root, data, config


def test_sigkill_at_any_moment_then_resume_gives_the_uninterrupted_weights(setup):
    root, data, config = setup
    common = ["-c", str(config), "--data", str(data), "--name", "run", "--quiet"]
    _run(_train_cmd(*common, "--out", str(root / "clean")), root)
    clean = root / "clean" / "run"

    killed = root / "killed" / "run"
    proc = subprocess.Popen(
        _train_cmd(*common, "--out", str(root / "killed")), cwd=root, env=_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.time() + 240
    step = -1
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                step = json.loads((killed / "checkpoint" / "state.json").read_text())["step"]
            except (OSError, ValueError, KeyError):
                step = -1
            if step >= 3:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
        time.sleep(0.15)  # somewhere after the first checkpoint: mid-step, mid-write, mid-validation
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "final").exists()

    out = _run(_train_cmd("--resume", str(killed), "--quiet"), root)
    assert out.stdout.strip().endswith("run")
    for name in ("final/model.safetensors", "model.safetensors", "checkpoint/model.safetensors"):
        _weights_equal(clean / name, killed / name)
    rows = lambda run: [(r["type"], r["step"], r.get("loss"), r.get("mrr")) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]  # noqa: E731
    assert rows(clean) == rows(killed)


def test_torchrun_two_processes_equal_single_process(setup):
    """DDP computes the single-process objective: the centred heads (the default) centre with the
    mean over every rank's rows (CenterSync), as one process does with the whole batch."""
    root, data, config = setup
    args = ["-c", str(config), "--data", str(data), "--name", "run", "--quiet", "--max-steps", "3", "--batch-size", "16"]
    _run(_train_cmd(*args, "--out", str(root / "single")), root)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", "-m", "vmfmir_cli", "train"]
    _run(torchrun + args + ["--out", str(root / "ddp")], root)
    single, ddp = root / "single" / "run", root / "ddp" / "run"
    rows_s = [r for r in map(json.loads, (single / "metrics.jsonl").read_text().splitlines()) if r["type"] == "train"]
    rows_d = [r for r in map(json.loads, (ddp / "metrics.jsonl").read_text().splitlines()) if r["type"] == "train"]
    assert [r["step"] for r in rows_s] == [r["step"] for r in rows_d] == [1, 2, 3]
    for a, b in zip(rows_s, rows_d):
        for term in ("loss", "contrastive", "ssw"):
            assert b[term] == pytest.approx(a[term], rel=1e-4, abs=1e-6), (a["step"], term)
    assert json.loads((ddp / "config.json").read_text())["world_size"] == 2
    assert json.loads((ddp / "config.json").read_text())["model"]["head_center"] is True
    # checkpoints are interchangeable: same keys and nearly the same weights (Adam turns float
    # round-off in near-zero gradients into differences of up to ~lr per step)
    ws, wd = load_file(single / "checkpoint" / "model.safetensors"), load_file(ddp / "checkpoint" / "model.safetensors")
    assert ws.keys() == wd.keys()
    for k in ws:
        torch.testing.assert_close(wd[k], ws[k], rtol=0, atol=3 * 5e-3)
    moved = sum(float((wd[k] - ws[k]).abs().sum()) for k in ws) / sum(ws[k].numel() for k in ws)
    assert moved < 1e-4
    # and a DDP run resumes in a single process
    _run(_train_cmd("--resume", str(ddp), "--max-steps", "4", "--quiet"), root)
    assert json.loads((ddp / "checkpoint" / "state.json").read_text())["step"] == 4


def test_torchrun_with_items_missing_modalities(tmp_path, setup):
    _, _, config = setup
    data = make_synthetic_dataset(tmp_path / "data", groups=16, variants=2, missing=0.5, seed=3)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", "-m", "vmfmir_cli", "train"]
    _run(torchrun + ["-c", str(config), "--data", str(data), "--out", str(tmp_path / "runs"), "--max-steps", "2", "--quiet"], tmp_path)
    runs = [p for p in (tmp_path / "runs").iterdir() if p.is_dir() and not p.is_symlink()]
    assert (runs[0] / "model.safetensors").is_file()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_smoke(setup, tmp_path):
    _, data, _ = setup
    from vmfmir_cli.training import Callback, TrainConfig, train

    class Rec(Callback):
        info, losses = None, []

        def on_train_start(self, info):
            Rec.info = info

        def on_step(self, record):
            Rec.losses.append(record["loss"])

    cfg = TrainConfig(data=str(data), out=str(tmp_path), encoders=TINY_ENCODERS, dim=16, batch_size=16, epochs=3, mc_samples=8)
    train(cfg, [Rec()])
    assert Rec.info["device"].startswith("cuda") and Rec.info["precision"] == "bf16"
    assert all(v == v for v in Rec.losses)
