"""CPU cost of the pretrained towers against the built-in encoders they replace, on the same batch.

    python benchmarks/pretrained_step.py --threads 1        # batch 64, writes benchmarks/results/pretrained_step_cpu.json
    python benchmarks/pretrained_step.py --quick            # tiny sizes (smoke run)

Two models, built from ``examples/proposed.toml`` (mel-cnn, score-cnn, text-transformer) and
``examples/pretrained.toml`` (pitch-cnn, score-cnn, wordllama-text), same loss and recipe, on one
synthetic batch (``--batch`` items of 10 s audio at 16 kHz, as benchmarks/train.py):

* ``preprocess_ms_per_item`` per modality and encoder: decoded item -> encoder input (for
  pitch-cnn this is where the frozen CREPE network runs), measured with the disk feature cache off;
  ``cached_ms_per_item`` for encoders that have one (pitch-cnn): the same items read back from a
  filled feature cache (:mod:`vmfmir_cli.encoders.feature_cache`), what every later run, validation
  and embed of the same waveforms pays;
* ``step_s``: one training step (encode the preprocessed batch -> proposed loss -> backward ->
  AdamW), :func:`benchmarks.train.timed_step`; the two models are timed in alternation, so both
  see the same load on a shared machine; medians over ``--rounds`` after ``--warmup``;
* trainable and frozen parameter counts of every encoder.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.train import build_batch, machine_info, parse_step_arguments, timed_step  # noqa: E402
from vmfmir_cli.data.media import load_audio, load_image  # noqa: E402
from vmfmir_cli.encoders.feature_cache import ENV as FEATURE_CACHE_ENV, FeatureCache  # noqa: E402
from vmfmir_cli.training.build import make_optimizer  # noqa: E402
from vmfmir_cli.training.config import load_config  # noqa: E402
from vmfmir_cli.training.data import load_training_data  # noqa: E402
from vmfmir_cli.training.module import TrainModule  # noqa: E402
from vmfmir_cli.utils_io import write_json  # noqa: E402

CONFIGS = {"built-in": ROOT / "examples" / "proposed.toml", "pretrained": ROOT / "examples" / "pretrained.toml"}


def raw_items(data_dir: str, modalities, batch: int, rate: int) -> dict[str, list]:
    """The first ``batch`` training items decoded (audio at ``rate``), per modality."""
    items = load_training_data(data_dir, modalities).train[:batch]
    return {
        "audio": [load_audio(it.audio, rate) for it in items],
        "image": [load_image(it.image) for it in items],
        "text": [it.text for it in items],
    }


def preprocess_ms(encoder, raws, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for raw in raws:
            encoder.preprocess(raw)
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best / len(raws)


def cached_ms(encoder, raws, repeats: int, folder: Path):
    """ms per item when the encoder's feature cache already holds every item (None: it has none)."""
    own = getattr(encoder, "features", None)
    if not isinstance(own, FeatureCache):
        return None
    object.__setattr__(encoder, "features", FeatureCache(encoder.encoder_id, own.signature, root=folder))
    try:
        for raw in raws:  # fill
            encoder.preprocess(raw)
        return preprocess_ms(encoder, raws, repeats)
    finally:
        object.__setattr__(encoder, "features", own)


def main(argv=None) -> dict:
    args = parse_step_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]), argv)
    os.environ[FEATURE_CACHE_ENV] = "off"  # preprocess_ms measures the computation itself
    device = torch.device("cpu")
    from vmfmir_cli.training.synthetic import make_synthetic_dataset

    tmp = tempfile.TemporaryDirectory()
    data_dir = str(make_synthetic_dataset(Path(tmp.name) / "data", groups=max(8, args.batch), variants=2,
                                          sample_rate=16000, seconds=2.0 if args.quick else 10.0,
                                          fractions=(0.9, 0.05, 0.05)))
    setups, report = {}, {}
    for name, path in CONFIGS.items():
        cfg = load_config(path, overrides={"device": "cpu", "batch_size": args.batch})
        model, batch = build_batch(cfg, data_dir, args.batch)
        model.train()
        module = TrainModule(model, None)
        setups[name] = (cfg, module, make_optimizer(cfg, module.named_parameters()), batch)
        raws = raw_items(data_dir, cfg.modalities, args.batch, 16000)
        report[name] = {
            "config_file": os.path.relpath(path, ROOT),
            "encoders": {
                m: {
                    "id": enc.encoder_id,
                    "trainable_parameters": enc.num_parameters(trainable_only=True),
                    "frozen_parameters": sum(t.numel() for t in enc.buffers())
                    + (sum(p.numel() for p in enc.crepe.parameters()) if hasattr(enc, "crepe") else 0)
                    + enc.num_parameters() - enc.num_parameters(trainable_only=True),
                    "preprocess_ms_per_item": preprocess_ms(enc, raws[m], 1 if args.quick else 2),
                    "cached_ms_per_item": cached_ms(enc, raws[m], 1 if args.quick else 2, Path(tmp.name) / "cache"),
                }
                for m, enc in model.encoders.items()
            },
        }

    def step(name: str, k: int) -> float:
        cfg, module, opt, batch = setups[name]
        return timed_step(cfg, module, opt, batch["inputs"], batch["masks"], k, device, False)

    for k in range(args.warmup):
        for name in setups:
            step(name, k)
    times = {name: [] for name in setups}
    for r in range(args.rounds):
        for name in (list(setups) if r % 2 == 0 else list(reversed(setups))):
            times[name].append(step(name, 100 + r))
    for name in setups:
        report[name]["step_s"] = statistics.median(times[name])
        report[name]["step_s_all"] = times[name]
    result = {
        "benchmark": "pretrained_step",
        "quick": bool(args.quick),
        "machine": machine_info(device),
        "batch": args.batch,
        "audio_seconds_per_item": 2.0 if args.quick else 10.0,
        "rounds": args.rounds,
        "models": report,
        "step_ratio_pretrained_vs_builtin": report["pretrained"]["step_s"] / report["built-in"]["step_s"],
    }
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / (
        f"pretrained_step_cpu{'_quick' if args.quick else ''}.json")
    write_json(out, result)
    print(f"batch {args.batch}, {torch.get_num_threads()} threads, load {result['machine']['load_average']}")
    print(f"{'model':10} {'modality':8} {'encoder':17} {'trainable':>10} {'frozen':>10} {'preprocess ms/item':>19} "
          f"{'cached ms/item':>15}")
    for name, r in report.items():
        for m, e in r["encoders"].items():
            cached = "-" if e["cached_ms_per_item"] is None else f"{e['cached_ms_per_item']:.1f}"
            print(f"{name:10} {m:8} {e['id']:17} {e['trainable_parameters']:10d} {e['frozen_parameters']:10d} "
                  f"{e['preprocess_ms_per_item']:19.1f} {cached:>15}")
        print(f"{name:10} step {1e3 * r['step_s']:.0f} ms (median of {args.rounds})")
    print(f"pretrained / built-in step: {result['step_ratio_pretrained_vs_builtin']:.2f}x; wrote {out}")
    tmp.cleanup()
    return result


if __name__ == "__main__":
    main()
