"""benchmarks/gpu_check.sh: valid bash, and its CPU-side dry run checks the entry points it calls."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_script_parses_and_dry_runs():
    assert os.access(SCRIPT, os.X_OK)
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    env = dict(os.environ, PYTHON=sys.executable, OUT="/tmp/vmfmir-gpu-dry", VMFMIR_LOAD_PLUGINS="")
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok: benchmarks/train.py accepts --device" in proc.stdout
    assert "ok: benchmarks/engine.py accepts --device" in proc.stdout
    assert "-m pytest -m gpu" in proc.stdout and "--device cuda" in proc.stdout
    assert not Path("/tmp/vmfmir-gpu-dry").exists()  # a dry run writes nothing
    bad = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert bad.returncode == 2 and "unknown argument" in bad.stderr
