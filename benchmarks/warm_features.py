"""Fill the disk feature cache with the audio encoder's features of every audio item of a dataset.

    python benchmarks/warm_features.py --data DATA                                  # one process
    for s in 0 1; do OMP_NUM_THREADS=1 python benchmarks/warm_features.py --data DATA --shard $s --shards 2 & done; wait

For encoders with a costly frozen front end (``pitch-cnn``: CREPE, about 0.4-0.6 s per 10 s clip on
one CPU thread), so that the runs that follow (e.g. the reproduction's side table) read the features
instead of computing them in their first epoch. The items are decoded exactly as training decodes
them (same rate, same code), so the cache keys match; items already cached are only read. Prints
progress and a final JSON line with the counts and the seconds taken.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="prepared dataset")
    ap.add_argument("--config", default=str(ROOT / "examples" / "pretrained.toml"),
                    help="training config whose [encoders.audio] is used (default examples/pretrained.toml)")
    ap.add_argument("--shard", type=int, default=0, help="this process's share: items shard, shard + shards, ...")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: run shards side by side)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting of the config (vmfmir train --set syntax), repeatable")
    args = ap.parse_args(argv)
    if not 0 <= args.shard < args.shards:
        ap.error(f"--shard must be in [0, {args.shards})")

    import torch

    torch.set_num_threads(args.threads)
    from vmfmir_cli.data.datasets import MultimodalDataset
    from vmfmir_cli.data.manifest import read_dataset_info, read_manifest
    from vmfmir_cli.training.build import audio_rate, build_model, resolve_encoders
    from vmfmir_cli.training.config import load_config

    cfg = load_config(args.config, overrides={"data": args.data, "device": "cpu"}, sets=args.sets)
    rate = int(read_dataset_info(args.data).get("sample_rate", 16000))
    model = build_model(resolve_encoders(cfg, ["audio"]), cfg, rate)
    enc = model.encoders["audio"]
    cache = getattr(enc, "features", None)
    if cache is None or not cache.enabled:
        print(f"{enc.encoder_id} has no feature cache (or it is turned off); nothing to warm", file=sys.stderr)
        return {"encoder": enc.encoder_id, "items": 0}
    items = [it for it in read_manifest(args.data) if it.has("audio")][args.shard :: args.shards]
    decoder = MultimodalDataset(items, None, ["audio"], sample_rate=audio_rate(model, rate), require=False)
    t0 = time.perf_counter()
    for i, item in enumerate(decoder.items, start=1):
        enc.preprocess(decoder.decode(item, "audio"))
        if i % 200 == 0 or i == len(items):
            print(f"{i}/{len(items)} items, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    result = {"encoder": enc.encoder_id, "items": len(items), "computed": cache.misses, "read": cache.hits,
              "seconds": round(time.perf_counter() - t0, 1), "folder": str(cache.folder)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
