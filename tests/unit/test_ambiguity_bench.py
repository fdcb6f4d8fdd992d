"""benchmarks/ambiguity.py: the headline row of an eval document and its markdown (no training)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import ambiguity  # noqa: E402


def _doc(with_kappa: bool) -> dict:
    sec = {"r_auroc": 0.645 if with_kappa else None, "r_auroc_ci95": [0.591, 0.702] if with_kappa else None,
           "spearman_kappa_level": 0.7 if with_kappa else None, "crop_kappa_drop": 0.88 if with_kappa else None}
    return {
        "run": "r-proposed-s0" if with_kappa else "r-infonce-s0", "loss": "proposed", "score": "expected_cosine",
        "directions": {"audio->image": {"mrr": 0.2}, "image->audio": {"mrr": 0.1}},
        "ambiguity": {"audio": dict(sec, views=[]), "image": dict(sec, views=[]),
                      "text": dict(sec, levels=[{"level": 3, "mrr": 0.12, "kappa_median": 3000.0}])},
    }


def test_headline_and_markdown_show_the_r_auroc_interval():
    rows = [ambiguity.headline(_doc(True)), ambiguity.headline(_doc(False))]
    assert abs(rows[0]["mean_mrr"] - 0.15) < 1e-12
    assert rows[0]["audio_r_auroc_ci95"] == [0.591, 0.702] and rows[1]["audio_r_auroc_ci95"] is None
    md = ambiguity.markdown(rows, "python benchmarks/ambiguity.py ...", 60.0)
    line = next(l for l in md.splitlines() if l.startswith("| r-proposed-s0"))
    assert "0.645 [0.59, 0.70]" in line and "0.880" in line and "0.120" in line
    assert "[" not in next(l for l in md.splitlines() if l.startswith("| r-infonce-s0"))
