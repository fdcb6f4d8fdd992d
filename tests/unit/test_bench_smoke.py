"""Smoke test: benchmarks/engine.py --quick runs end to end and writes the expected JSON (no timing asserts)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_engine_benchmark_quick_writes_json(tmp_path):
    out = tmp_path / "engine.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "engine.py"), "--quick", "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["quick"] is True
    assert {"platform", "cpu_count", "torch", "torch_threads"} <= set(data["machine"])
    assert set(data["benchmarks"]) == {"ssw_loss", "rsample", "elk_scoring"}
    for result in data["benchmarks"].values():
        assert {"config", "ours", "baseline", "ours_s", "baseline_s", "ratio", "target", "meets_target"} <= set(result)
        assert result["ours_s"] > 0 and result["baseline_s"] > 0
    assert data["benchmarks"]["ssw_loss"]["max_abs_diff_vs_pot"] < 1e-4
