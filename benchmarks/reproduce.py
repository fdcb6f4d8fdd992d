"""Reproduction v2: does Proposed beat Baseline, and do distributions beat points, under a protocol that can tell?

    python benchmarks/reproduce.py                 # the full study (`make reproduce`), within 2 hours on 2 CPU cores
    python benchmarks/reproduce.py --quick         # every stage on a tiny setting in a few minutes
    python benchmarks/reproduce.py --estimate-only # prepare (+ feature-cache warm-up with --side) + probe: the time estimate
    python benchmarks/reproduce.py --tune          # only the val-only tuning stage
    python benchmarks/reproduce.py --report-only   # recompute the statistics from the saved per-query ranks
    python benchmarks/reproduce.py --side          # also the side table (the other encoder set, 3 seeds)

The study: the default music21 benchmark (`vmfmir prepare music21`: 2,000 pieces x 2 performances,
captions at four levels), the recipes of examples/{proposed,baseline,infonce}.toml (or --configs DIR)
with the same encoders, data, augmentation and budget (4 epochs per run), tuned on val only with the
same number of settings per loss (2), then 5 seeds per loss evaluated on test with the ambiguity
section. Every run's per-query ranks are saved (benchmarks/results/reproduction-ranks/), and the
statistics are computed from them: mean +- std over seeds, and paired differences (proposed -
baseline, baseline - infonce, proposed - infonce) with 95% bootstrap intervals over seeds and test
queries; a difference is a win only when its interval excludes 0. The report
(benchmarks/results/reproduction.{json,md}, plots in reproduction-plots/) answers four questions in
one generated line each: (1) Proposed vs Baseline, (2) probabilistic vs InfoNCE on level-3 / level-1
captions and fused queries, (3) is kappa a real uncertainty, (4) what SSW changes about kappa.

Before training, a probe (3 steps of each loss on the study's data, one test evaluation) measures
the costs and the script prints the time estimate of the whole plan. `--jobs N` (default 2 on 2 or
more cores) trains N runs at a time with one torch thread each; the probe is then measured N at a
time too. With `--side`, the side encoders' disk feature cache is filled first (warm_features.py,
one shard per job), so that the probe and the side runs read it. Rerunning the same command
reuses finished runs and evaluations. The code is in benchmarks/reproduction/.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.reproduction.study import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(None, __doc__))
