"""Smoke test: benchmarks/query.py --quick runs end to end and writes the expected JSON (no timing asserts)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_query_benchmark_quick_writes_json(tmp_path):
    out = tmp_path / "query.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "query.py"), "--quick", "--queries", "2", "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["quick"] is True and {"torch_threads", "faiss", "loadavg"} <= set(data["machine"])
    (size,) = data["sizes"]
    assert size["items"] == 2000 and set(size["kinds"]) == {"elk", "kl"}
    for paths in size["kinds"].values():
        assert {"exact", "engine"} <= set(paths)
        for name, result in paths.items():
            assert result["median_s"] > 0
            if name != "exact":
                assert 0.0 <= result["recall_at_10"] <= 1.0
        assert paths["engine"]["recall_at_10"] >= 0.9  # the engine and the prepared scorer agree
    if data["machine"]["faiss"]:
        assert size["kinds"]["kl"]["faiss_rerank100"]["recall_at_10"] >= 0.9  # kl's first stage is exact
