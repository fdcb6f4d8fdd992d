"""Reproduction v2 (``benchmarks/reproduce.py``): does Proposed beat Baseline, and do distributions beat points?

Modules, one job each: :mod:`.settings` (presets, loss configs, tuning grid, side encoders),
:mod:`.plan` (the run plan and its time estimate), :mod:`.stages` (prepare, warm the feature cache,
probe, train), :mod:`.parallel` (runs side by side, ``--jobs``), :mod:`.ranks` (the test evaluation
with per-query ranks), :mod:`.stats` (bootstrap intervals, verdicts), :mod:`.analysis` (the numbers
of the four questions), :mod:`.report` (markdown and the generated answers), :mod:`.plots`.
"""
