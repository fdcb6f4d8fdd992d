"""``vmfmir train`` through Typer's CliRunner: flags, output, --resume, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vmfmir_cli.cli.app import app
from vmfmir_cli.training.synthetic import TINY_ENCODERS, make_synthetic_dataset

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("traincli")
    make_synthetic_dataset(root / "data", groups=16, variants=2)
    lines = ["dim = 16", "batch_size = 12", "epochs = 2", "mc_samples = 4", "ssw_projections = 8", "log_every = 1"]
    for modality, spec in TINY_ENCODERS.items():
        lines.append(f"[encoders.{modality}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in spec.items()]
    (root / "tiny.toml").write_text("\n".join(lines) + "\n")
    return root


def invoke(workdir, *args):
    import os

    old = os.getcwd()
    os.chdir(workdir)
    try:
        return runner.invoke(app, ["train", *args])
    finally:
        os.chdir(old)


def test_train_json_summary_then_resume_latest_with_more_epochs(workdir):
    result = invoke(workdir, "-c", "tiny.toml", "--loss", "baseline", "--name", "b", "--json", "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    run = Path(summary["run_dir"])
    assert run.name == "b" and summary["steps"] == 4 and 0 < summary["best_mrr"] <= 1
    saved = json.loads((workdir / run / "config.json").read_text())["train"]
    assert saved["loss"] == "baseline" and saved["dim"] == 16 and saved["epochs"] == 2
    # --resume without a RUN continues runs/latest; epochs may grow
    result = invoke(workdir, "--resume", "--epochs", "3", "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("b")
    state = json.loads((workdir / run / "checkpoint" / "state.json").read_text())
    assert state["step"] == 6 and state["config"]["epochs"] == 3
    # a key that changes the maths cannot change on resume
    result = invoke(workdir, "--resume", "runs/b", "--lr", "0.5")
    assert result.exit_code == 1 and "cannot change lr" in result.stderr


def test_progress_display_and_encoder_flag(workdir):
    result = invoke(workdir, "-c", "tiny.toml", "--encoder", "text=text-transformer", "--modalities", "audio,text", "--name", "p", "--max-steps", "2")
    assert result.exit_code == 0, result.output
    assert "training" in result.stderr and "val step" in result.stderr and "MRR" in result.stderr
    assert "best val MRR" in result.stdout
    config = json.loads((workdir / "runs" / "p" / "config.json").read_text())
    assert set(config["model"]["encoders"]) == {"audio", "text"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "ssw_lamda=1"], "unknown config key 'ssw_lamda' (did you mean 'ssw_lambda'?)"),
        (["--modalities", "audio,imag"], "unknown modality 'imag'"),
        (["--encoder", "audio=nope"], "unknown audio encoder 'nope'"),
        (["--encoder", "audio"], "--encoder expects MODALITY=ID"),
        (["--data", "missing"], "no dataset in 'missing'"),
        (["--loss", "clip"], "must be one of proposed, baseline, infonce"),
        (["runs/x"], "only given with --resume"),
    ],
)
def test_user_errors_are_one_line(workdir, args, message):
    result = invoke(workdir, "-c", "tiny.toml", *args)
    assert result.exit_code == 1
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output


def test_resume_errors(workdir, tmp_path):
    result = invoke(workdir, "--resume", "-c", "tiny.toml")
    assert result.exit_code == 1 and "cannot be combined with --resume" in result.stderr
    result = invoke(workdir, "--resume", str(tmp_path / "nope"))
    assert result.exit_code == 1 and "not found" in result.stderr


def test_help_does_not_import_torch():
    code = "import sys; from vmfmir_cli.cli.app import app; import vmfmir_cli.cli.train_cmd; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    help_text = runner.invoke(app, ["train", "--help"]).output
    for flag in ("--config", "--epochs", "--batch-size", "--lr", "--dim", "--seed", "--device", "--out", "--data", "--resume", "--quiet", "--encoder", "--loss"):
        assert flag in help_text
