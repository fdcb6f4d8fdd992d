"""Smoke test: benchmarks/train.py --quick runs end to end and writes its JSON (no timing asserts)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_train_benchmark_quick_writes_json(tmp_path):
    out = tmp_path / "train.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", VMFMIR_LOAD_PLUGINS="")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train.py"), "--quick", "--out", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["benchmark"] == "train_step"
    assert set(data["step_s"]) == {"proposed", "baseline", "infonce", "proposed-landed", "baseline-landed"}
    assert set(data["vs_landed"]) == {"baseline / baseline-landed", "proposed / baseline-landed", "proposed / proposed-landed"}
    assert isinstance(data["meets_target_vs_landed"], bool)
    assert all(v > 0 for v in data["step_s"].values()) and all(v > 0 for v in data["loss_only_s"].values())
    assert isinstance(data["ssw_overhead"], float) and isinstance(data["meets_target"], bool)
    assert "SSW overhead per step" in proc.stdout
