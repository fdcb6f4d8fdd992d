#!/usr/bin/env bash
# vmfmir demo: every step of the pipeline on a small benchmark (run with `make demo`).
set -euo pipefail
export COLUMNS="${COLUMNS:-140}"  # rich tables keep their columns when the output is not a terminal

# 1. data: 300 pieces of the music21 corpus x 2 performances -> data/ (resumes if rerun)
vmfmir prepare music21 --out data --pieces 300

# 2. train: CPU-sized encoders + vMF heads with the proposed loss (a few minutes on 2 cores)
#    -> runs/<date>-<time>-proposed/ (model.safetensors, config.json, metrics.jsonl, checkpoint/) and runs/latest
vmfmir train --config examples/proposed.toml --data data --out runs --epochs 15

# index: every test item's audio, score image and text as a vMF (mu, kappa) -> index/
vmfmir embed --run runs/latest --data data --split test --out index

# query: a test piece's score image + a description, fused as a product of experts -> ranked audio
IMAGE=$(python -c 'from vmfmir_cli.data.manifest import read_manifest; print(next(i.image for i in read_manifest("data") if i.split == "test" and i.image))')
vmfmir query --index index --image "$IMAGE" --text "a slow melody played on flute" -k 5
# the same image with a vague text (a level-1 caption): the text's kappa says how little it adds
vmfmir query --index index --image "$IMAGE" --text "calm piano" -k 5

# eval (keep last): evaluate the latest run on the test split: MRR, R@k, MR per direction, the kappa
# analysis and the ambiguity section (kappa by caption level and view fraction, crop drop, R-AUROC, fusion)
vmfmir eval --run runs/latest --data data --split test
