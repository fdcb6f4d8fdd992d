"""Case 4: ``--device cuda`` on a machine without a GPU is one line in every command."""

from __future__ import annotations

import pytest
import torch

from reliability_helpers import invoke, one_line_error
from vmfmir_cli.device import resolve_device
from vmfmir_cli.errors import ConfigError


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def index(trained_run, rel_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("devidx") / "idx"
    result = invoke("embed", "--run", trained_run, "--data", rel_data, "--out", out, "-q", "--device", "cpu")
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_every_command_says_there_is_no_gpu_in_one_line(fresh_run, rel_data, index, no_gpu, tmp_path, device):
    commands = {
        "embed": ("embed", "--run", fresh_run, "--data", rel_data, "--out", tmp_path / "idx", "-q"),
        "query": ("query", "--index", index, "--text", "a tune"),
        "eval": ("eval", "--run", fresh_run, "--data", rel_data, "-q"),
        "train": ("train", "--data", rel_data, "--out", tmp_path / "newruns", "--max-steps", "1", "-q"),
    }
    for name, args in commands.items():
        one_line_error(invoke(*args, "--device", device, cwd=tmp_path), f"--device {device}", "CUDA is not available")
    assert not (tmp_path / "idx").exists() and not (tmp_path / "newruns").exists()


def test_the_resolver_is_shared_and_strict(no_gpu):
    assert resolve_device("auto") == torch.device("cpu") and resolve_device(None, default="cpu").type == "cpu"
    assert resolve_device(torch.device("cpu")).type == "cpu"
    for bad in ("gpu", "cuda:x", "tpu"):
        with pytest.raises(ConfigError, match="auto, cpu, cuda, cuda:N or mps"):
            resolve_device(bad)
    import vmfmir_cli.index.build as index_build
    import vmfmir_cli.training.build as training_build

    for resolve in (index_build.resolve_device, training_build.resolve_device):
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve("cuda")
