"""Fixtures of the reliability tests: a tiny synthetic dataset, a run trained on it for two steps,
and helpers that run a command in-process and check the "one red line, exit 1" contract.

These tests run alone: ``pytest tests/reliability``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from reliability_helpers import tiny_overrides
from vmfmir_cli.training.synthetic import make_synthetic_dataset


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every reliability test runs torch with one thread (see tests/conftest.py)."""


@pytest.fixture(autouse=True)
def no_granted_permissions(monkeypatch):
    """Start every test as a user who granted nothing and edited nothing."""
    for name in ("VMFMIR_TRUST_REMOTE_CODE", "VMFMIR_ALLOW_DOWNLOAD", "VMFMIR_ALLOW_EDITED_RUN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def rel_data(tmp_path_factory) -> Path:
    """A synthetic dataset (8 pieces x 2 variants, audio + image + text). Read-only: copy to edit."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("reldata") / "data", groups=8, variants=2)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, rel_data) -> Path:
    """A run trained for two steps on ``rel_data``. Read-only: copy it with ``fresh_run``."""
    from vmfmir_cli.training.config import load_config
    from vmfmir_cli.training.trainer import train

    root = tmp_path_factory.mktemp("relrun")
    torch.set_num_threads(1)
    return train(load_config(None, overrides=tiny_overrides(rel_data, root / "runs", name="r")))


@pytest.fixture
def fresh_run(tmp_path, trained_run) -> Path:
    """A private copy of the trained run (``runs/r``) that a test may edit."""
    dest = tmp_path / "runs" / "r"
    shutil.copytree(trained_run, dest, symlinks=True)
    return dest
