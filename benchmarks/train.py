"""Training step time of the three losses on the same batch: how much does the SSW term cost?

    python benchmarks/train.py                       # CPU, synthetic batch, writes benchmarks/results/train_cpu.json
    python benchmarks/train.py --device cuda         # on a GPU (bf16 autocast, as vmfmir train does)
    python benchmarks/train.py --data data           # a batch of a prepared dataset instead
    python benchmarks/train.py --quick               # tiny sizes (smoke run)

The recipe of issue 11 (the new defaults) is timed against the landed recipe before it (``LANDED``:
sigmoid head, mean denominator, sampled positive, SSW on the 16 shared draws with 64 projections, no
debiasing): target, a new-default step costs at most 1.5x the landed baseline step.

One step = encode the batch (every modality) -> loss -> backward -> AdamW step, exactly what
``vmfmir train`` does per step (single process). The model is built from ``--config`` (default
examples/proposed.toml: the CPU-sized encoders); every loss starts from the same initial weights and
sees the same preprocessed batch. The losses are timed in alternation (round r times proposed, baseline,
infonce in turn), so all three see the same load on a shared machine; the figures are medians over
rounds after warm-up. The loss alone (forward + backward on fixed mu/kappa, no encoders) is timed the
same way. Target: the SSW term adds at most 20% to a step (proposed vs baseline).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from vmfmir_cli.training.build import build_model, make_optimizer, resolve_encoders, use_bf16  # noqa: E402
from vmfmir_cli.training.config import load_config  # noqa: E402
from vmfmir_cli.training.data import BatchCollator, PreprocessedDataset, load_training_data  # noqa: E402
from vmfmir_cli.training.objective import training_loss  # noqa: E402
from vmfmir_cli.training.module import TrainModule  # noqa: E402
from vmfmir_cli.utils_io import write_json  # noqa: E402

LOSSES = ("proposed", "baseline", "infonce", "proposed-landed", "baseline-landed")

#: the recipe before issue 11 ("landed"): the timing reference of the new defaults
LANDED = {
    "kappa_head": "sigmoid",
    "kappa_max": 1000.0,
    "inv_temperature": 5.0,
    "denominator": "mean",
    "mc_positive": "sampled",
    "mc_negatives": "sampled",
    "ssw_samples": 16,
    "ssw_projections": 64,
    "ssw_debias": False,
    "head_center": False,
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def parse_step_arguments(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """The options every step-timing benchmark shares (batch, rounds, warmup, threads, quick, out),
    parsed; sets the torch thread count and shrinks the sizes for ``--quick``."""
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.batch, args.rounds, args.warmup = 8, 2, 1
    return args


def machine_info(device: torch.device) -> dict:
    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def timed_step(cfg, module, opt, inputs, masks, seed: int, device: torch.device, bf16: bool) -> float:
    """Seconds of one training step: encode the batch -> loss -> backward -> clipped optimiser step."""
    gen = torch.Generator(device=device).manual_seed(seed)
    _sync(device)
    t0 = time.perf_counter()
    ctx = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if bf16 else torch.autocast(device.type, enabled=False)
    with ctx:
        params, scale = module(inputs, masks)
    total, _, _ = training_loss(params, masks, cfg, gen, None, scale)
    opt.zero_grad(set_to_none=True)
    total.backward()
    torch.nn.utils.clip_grad_norm_([p for p in module.parameters() if p.requires_grad], cfg.grad_clip)
    opt.step()
    _sync(device)
    return time.perf_counter() - t0


def build_batch(cfg, data_dir: str, batch: int):
    data = load_training_data(data_dir, cfg.modalities)
    specs = resolve_encoders(cfg, data.modalities)
    rate = int(data.info.get("sample_rate", 16000))
    torch.manual_seed(0)
    texts = [it.text for it in data.train if it.text]
    model = build_model(specs, cfg, rate, fit_raws={"text": texts} if "text" in specs else None)
    items = data.train[:batch]
    ds = PreprocessedDataset(items, data.modalities, {m: model.encoders[m].preprocess for m in data.modalities}, rate)
    collate = BatchCollator({m: model.encoders[m].collate for m in data.modalities})
    return model, collate([ds[i] for i in range(len(ds))])


def _dataset_name(path: str) -> str:
    from vmfmir_cli.data.manifest import read_dataset_info

    info = read_dataset_info(path)
    counts = info.get("counts", {}).get("total", {})
    return f"{info.get('name', Path(path).name)} ({counts.get('items', '?')} items)"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "examples" / "proposed.toml"))
    parser.add_argument("--data", default=None, help="prepared dataset (default: a synthetic one)")
    parser.add_argument("--device", default="cpu")
    args = parse_step_arguments(parser, argv)
    device = torch.device(args.device)

    cfg = load_config(args.config, overrides={"device": args.device, "batch_size": args.batch})
    tmp = None
    data_dir = args.data
    if data_dir is None:
        from vmfmir_cli.training.synthetic import make_synthetic_dataset

        tmp = tempfile.TemporaryDirectory()
        groups = max(8, args.batch)  # every item of the batch from the train split
        data_dir = str(
            make_synthetic_dataset(Path(tmp.name) / "data", groups=groups, variants=2, sample_rate=16000,
                                   seconds=2.0 if args.quick else 10.0, fractions=(0.9, 0.05, 0.05))
        )
    if args.quick:
        from vmfmir_cli.training.synthetic import TINY_ENCODERS

        cfg = cfg.replace(encoders={**TINY_ENCODERS, "audio": {**TINY_ENCODERS["audio"], "sample_rate": 16000}}, dim=16,
                          mc_samples=4, ssw_samples=4, ssw_projections=8)
    base_model, batch = build_batch(cfg, data_dir, args.batch)
    bf16 = use_bf16(cfg.precision, device)
    from vmfmir_cli.encoders.base import batch_to

    inputs = {m: batch_to(b, device) for m, b in batch["inputs"].items()}
    masks = {m: t.to(device) for m, t in batch["masks"].items()}

    setups = {}
    for loss in LOSSES:
        # the landed recipe shares the model (a sigmoid and an exp head cost the same)
        c = cfg.replace(loss=loss.split("-")[0], **(LANDED if loss.endswith("-landed") else {}))
        if args.quick and loss.endswith("-landed"):
            c = c.replace(ssw_samples=c.mc_samples, ssw_projections=8)
        model = copy.deepcopy(base_model).to(device).train()
        module = TrainModule(model, c.logit_scale_init if c.loss == "infonce" else None).to(device)
        if c.loss == "infonce":
            for head in model.heads.values():
                for p in head.kappa_net.parameters():
                    p.requires_grad_(False)
        opt = make_optimizer(c, module.named_parameters())
        setups[loss] = (c, module, opt)

    def step(loss: str, k: int) -> float:
        c, module, opt = setups[loss]
        return timed_step(c, module, opt, inputs, masks, k, device, bf16)

    # the loss alone, on fixed (mu, kappa) of the batch
    with torch.no_grad():
        fixed, _ = setups["proposed"][1](inputs, masks)

    def loss_only(loss: str, k: int) -> float:
        c, module, _ = setups[loss]
        params = {m: (mu.detach().clone().requires_grad_(True), kappa.detach().clone().requires_grad_(True)) for m, (mu, kappa) in fixed.items()}
        scale = torch.tensor(c.logit_scale_init, device=device, requires_grad=True) if c.loss == "infonce" else None
        gen = torch.Generator(device=device).manual_seed(k)
        _sync(device)
        t0 = time.perf_counter()
        total, _, _ = training_loss(params, masks, c, gen, None, scale)
        total.backward()
        _sync(device)
        return time.perf_counter() - t0

    for k in range(args.warmup):
        for loss in LOSSES:
            step(loss, k)
            loss_only(loss, k)
    times = {loss: [] for loss in LOSSES}
    loss_times = {loss: [] for loss in LOSSES}
    for r in range(args.rounds):
        order = LOSSES if r % 2 == 0 else tuple(reversed(LOSSES))
        for loss in order:
            times[loss].append(step(loss, 100 + r))
            loss_times[loss].append(loss_only(loss, 100 + r))

    med = {loss: statistics.median(v) for loss, v in times.items()}
    med_loss = {loss: statistics.median(v) for loss, v in loss_times.items()}
    overhead = med["proposed"] / med["baseline"] - 1.0
    vs_landed = {
        "baseline / baseline-landed": med["baseline"] / med["baseline-landed"],
        "proposed / baseline-landed": med["proposed"] / med["baseline-landed"],
        "proposed / proposed-landed": med["proposed"] / med["proposed-landed"],
    }
    loss_vs_landed = {
        "baseline / baseline-landed": med_loss["baseline"] / med_loss["baseline-landed"],
        "proposed / baseline-landed": med_loss["proposed"] / med_loss["baseline-landed"],
        "proposed / proposed-landed": med_loss["proposed"] / med_loss["proposed-landed"],
    }
    result = {
        "benchmark": "train_step",
        "quick": bool(args.quick),
        "machine": machine_info(device),
        "config": {
            "config_file": os.path.relpath(args.config, ROOT) if Path(args.config).is_absolute() else args.config,
            "batch": args.batch,
            "dim": cfg.dim,
            "mc_samples": cfg.mc_samples,
            "ssw_samples": cfg.ssw_samples,
            "ssw_projections": cfg.ssw_projections,
            "recipe": {k: getattr(cfg, k) for k in ("kappa_head", "head_center", "inv_temperature", "denominator",
                                                    "mc_positive", "mc_negatives", "ssw_debias")},
            "landed_recipe": LANDED,
            "ssw_p": cfg.ssw_p,
            "modalities": list(batch["inputs"]),
            "precision": "bf16" if bf16 else "fp32",
            "data": "synthetic" if args.data is None else _dataset_name(args.data),
            "rounds": args.rounds,
        },
        "step_s": med,
        "step_s_all": times,
        "loss_only_s": med_loss,
        "ssw_overhead": overhead,
        "target": "proposed step <= 1.20 x baseline step",
        "meets_target": overhead <= 0.20,
        "vs_landed": vs_landed,
        "loss_only_vs_landed": loss_vs_landed,
        "target_vs_landed": "new-default step <= 1.5 x the landed baseline step",
        "meets_target_vs_landed": max(vs_landed["baseline / baseline-landed"], vs_landed["proposed / baseline-landed"]) <= 1.5,
    }
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / (
        f"train_{device.type}{'_quick' if args.quick else ''}.json"
    )
    write_json(out, result)
    print(f"train step on {result['machine']['device']} (batch {args.batch}, d={cfg.dim}, S={cfg.mc_samples}, "
          f"{cfg.ssw_projections} projections, {result['config']['precision']}, {torch.get_num_threads()} threads)")
    print(f"{'loss':16} {'step (ms)':>10} {'loss fwd+bwd (ms)':>18}")
    for loss in LOSSES:
        print(f"{loss:16} {1e3 * med[loss]:10.1f} {1e3 * med_loss[loss]:18.1f}")
    for k, v in vs_landed.items():
        print(f"step {k}: {v:.2f}x (loss alone {loss_vs_landed[k]:.2f}x)")
    print(f"SSW overhead per step: {100 * overhead:+.1f}% (target <= +20%: {'met' if overhead <= 0.2 else 'NOT met'})")
    print(f"wrote {out}")
    if tmp is not None:
        tmp.cleanup()
    return result


if __name__ == "__main__":
    main()
