"""The example third-party plugin installs with pip, shows up in ``vmfmir plugins`` and works in a model."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "vmfmir-example-plugin"


def _can_build_wheels() -> bool:
    """--no-build-isolation needs setuptools with bdist_wheel (>= 70.1) or the wheel package."""
    if importlib.util.find_spec("wheel") is not None:
        return True
    try:
        import setuptools

        return tuple(int(p) for p in setuptools.__version__.split(".")[:2]) >= (70, 1)
    except Exception:
        return False


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """pip-install a copy of the example (no network: --no-deps --no-build-isolation) into a target dir."""
    if not _can_build_wheels():
        pytest.skip("needs `wheel` or setuptools>=70.1 in the environment to build the example offline")
    tmp = tmp_path_factory.mktemp("example")
    source, target = tmp / "src", tmp / "site"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return target


def _env(site: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMFMIR_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def test_example_is_listed_by_vmfmir_plugins(installed):
    result = subprocess.run(
        [sys.executable, "-m", "vmfmir_cli", "plugins", "--json"], env=_env(installed), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "failed" not in result.stderr
    row = next(r for r in json.loads(result.stdout) if r["name"] == "char_bow")
    assert row["package"] == "vmfmir-example-plugin" and row["version"] == "0.1.0"
    assert row["encoders"] == [{"id": "char-bow", "aliases": ["bow"], "modality": "text", "dim": 64}]


def test_example_encoder_trains_saves_and_loads_through_the_core(installed, tmp_path):
    script = f"""
import torch
from vmfmir_cli.plugins.manager import create_encoder, default_encoder_id
from vmfmir_cli.model import MultimodalModel, save_model, load_model
from vmfmir_cli.engine.vmf import VonMisesFisher

torch.manual_seed(0)
model = MultimodalModel({{"text": create_encoder("char-bow", {{"dim": 16}}),
                          "image": create_encoder(default_encoder_id("image"), {{"height": 32, "width": 64, "channels": [8]}})}},
                        embed_dim=8)
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
texts = ["bach chorale", "mozart sonata", "a folk song"]
for _ in range(3):
    d = model.encode_raw("text", texts)
    loss = -d.log_prob(d.loc.detach().roll(1, 0)).mean()
    opt.zero_grad(); loss.backward(); opt.step()
model.eval()
save_model(model, r"{tmp_path / 'run'}")
loaded, cfg = load_model(r"{tmp_path / 'run'}")
assert cfg["model"]["encoders"]["text"]["package"] == "vmfmir-example-plugin"
with torch.no_grad():
    assert torch.equal(model.encode_raw("text", texts).loc, loaded.encode_raw("text", texts).loc)
print("OK")
"""
    result = subprocess.run([sys.executable, "-c", script], env=_env(installed), capture_output=True, text=True)
    assert result.returncode == 0 and "OK" in result.stdout, result.stdout + result.stderr


def test_example_own_tests_pass(installed):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        env=_env(installed), capture_output=True, text=True, cwd=installed,
    )
    assert result.returncode == 0, result.stdout + result.stderr
