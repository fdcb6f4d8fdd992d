"""Helpers of the reliability tests (imported by the tests and by conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner

from vmfmir_cli.cli.app import app
from vmfmir_cli.training.synthetic import TINY_ENCODERS

runner = CliRunner()


def tiny_overrides(data: Path, out: Path, **more) -> dict:
    base = dict(
        data=str(data),
        out=str(out),
        dim=16,
        batch_size=8,
        epochs=1,
        max_steps=2,
        mc_samples=4,
        ssw_projections=8,
        log_every=1,
        device="cpu",
        encoders={m: dict(spec) for m, spec in TINY_ENCODERS.items()},
    )
    base.update(more)
    return base


def invoke(*args: str, cwd: Path | None = None, env: dict | None = None):
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return runner.invoke(app, [str(a) for a in args], env=env)
    finally:
        os.chdir(old)


def one_line_error(result, *fragments: str) -> str:
    """Assert exit 1 with exactly one ``error:`` line on stderr (no traceback) holding ``fragments``."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    text = " ".join(result.stderr.split())
    for fragment in fragments:
        assert fragment in text, text
    return text
