"""Does kappa track a known ambiguity on the music21 benchmark? Train runs and report eval's ambiguity section.

    python benchmarks/ambiguity.py --data /tmp/m21 --tag today                      # proposed, baseline, infonce
    python benchmarks/ambiguity.py --data /tmp/m21 --tag recipe --losses proposed \\
        --set augment=true --config examples/proposed.toml

Every run is ``vmfmir train --config CONFIG --loss L --seed S --epochs E`` (``CONFIG`` defaults to
``examples/<loss>.toml``) followed by ``vmfmir eval --split test --json``; a finished run of the
same name is reused. Writes ``benchmarks/results/ambiguity-<tag>.json`` (every eval document) and
``.md`` (the table of the section's headline numbers, one row per run), and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent


def vmfmir(*args: str) -> list[str]:
    return [sys.executable, "-m", "vmfmir_cli", *args]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def train(name: str, loss: str, seed: int, epochs: int, data: Path, runs: Path, config: Path, sets: list[str]) -> Path:
    run_dir = runs / name
    if (run_dir / "model.safetensors").is_file() and (run_dir / "config.json").is_file():
        log(f"{name}: reusing {run_dir}")
        return run_dir
    cmd = vmfmir(
        "train", "--quiet", "--config", str(config), "--data", str(data), "--loss", loss, "--seed", str(seed),
        "--epochs", str(epochs), "--out", str(runs), "--name", name, *[a for s in sets for a in ("--set", s)],
    )
    log(f"{name}: {' '.join(cmd[2:])}")
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    log(f"{name}: trained in {time.perf_counter() - t0:.0f} s")
    return run_dir


def evaluate(run_dir: Path, data: Path, split: str) -> dict:
    out = run_dir / f"eval-{split}.json"
    subprocess.run(vmfmir("eval", "--run", str(run_dir), "--data", str(data), "--split", split, "--json", str(out), "-q"),
                   check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def headline(doc: dict) -> dict[str, Any]:
    """The numbers the issues' targets name, from one eval document."""
    amb = doc.get("ambiguity") or {}
    dirs = doc["directions"]
    row: dict[str, Any] = {"run": doc["run"], "loss": doc.get("loss"), "score": doc["score"],
                           "mean_mrr": sum(d["mrr"] for d in dirs.values()) / max(1, len(dirs))}
    text = amb.get("text") or {}
    for lvl in text.get("levels", []):
        row[f"text_mrr_l{lvl['level']}"] = lvl["mrr"]
        row[f"text_kappa_l{lvl['level']}"] = lvl.get("kappa_median")
    row["text_spearman_level"] = text.get("spearman_kappa_level")
    row["text_spearman_compatible"] = text.get("spearman_kappa_compatible")
    for m in ("text", "audio", "image"):
        row[f"{m}_r_auroc"] = (amb.get(m) or {}).get("r_auroc")
        row[f"{m}_r_auroc_ci95"] = (amb.get(m) or {}).get("r_auroc_ci95")
        row[f"{m}_r_auroc_level"] = (amb.get(m) or {}).get("r_auroc_level")  # knowing the level exactly
    for m in ("audio", "image"):
        sec = amb.get(m) or {}
        row[f"{m}_spearman_view"] = sec.get("spearman_kappa_level")
        row[f"{m}_crop_drop"] = sec.get("crop_kappa_drop")
    fusion = {r["level"]: r for r in (amb.get("fusion") or {}).get("levels", [])}
    for lvl in (1, 3):
        if lvl in fusion:
            row[f"fusion_l{lvl}_poe"] = fusion[lvl]["product_of_experts"]["mrr"]
            row[f"fusion_l{lvl}_mean"] = fusion[lvl]["mean_direction"]["mrr"]
            row[f"fusion_l{lvl}_image"] = fusion[lvl]["image_only"]["mrr"]
    return row


COLUMNS = [
    ("run", "run"), ("mean_mrr", "mean MRR (9 dir.)"), ("text_mrr_l3", "text L3 MRR"), ("text_mrr_l1", "text L1 MRR"),
    ("text_spearman_level", "text ρ(κ, level)"), ("text_spearman_compatible", "text ρ(κ, -log fit)"),
    ("audio_crop_drop", "audio crop drop"), ("image_crop_drop", "image crop drop"),
    ("text_r_auroc", "text R-AUROC"), ("audio_r_auroc", "audio R-AUROC"), ("image_r_auroc", "image R-AUROC"),
    ("fusion_l1_poe", "fusion L1 PoE"), ("fusion_l1_mean", "fusion L1 mean dir."), ("fusion_l1_image", "L1 image only"),
]


def markdown(rows: list[dict], command: str, seconds: float) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "–"
        return f"{v:+.3f}" if isinstance(v, float) and v < 0 else (f"{v:.3f}" if isinstance(v, float) else str(v))

    lines = [
        f"Command: `{command}` ({seconds / 60:.1f} min on this machine).", "",
        "| " + " | ".join(label for _, label in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    def cell(r: dict, k: str) -> str:
        ci = r.get(f"{k}_ci95") if k.endswith("r_auroc") else None
        return fmt(r.get(k)) + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")

    for r in rows:
        lines.append("| " + " | ".join(cell(r, k) for k, _ in COLUMNS) + " |")
    lines += ["", "Uninformative kappa: ρ = 0, crop drop = 0.5, R-AUROC = 0.5 (in brackets: its 95% interval, a "
                  "bootstrap over the queries' items); deterministic (infonce) runs: –."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True, help="prepared music21 benchmark (with captions)")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "ambiguity")
    p.add_argument("--tag", required=True, help="names the runs (<tag>-<loss>-s<seed>) and the result files")
    p.add_argument("--losses", default="proposed,baseline,infonce")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--config", type=Path, help="training config (default examples/<loss>.toml)")
    p.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE passed to vmfmir train --set")
    p.add_argument("--split", default="test")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    t0 = time.perf_counter()
    docs, rows = {}, []
    for loss in [x for x in args.losses.split(",") if x]:
        config = args.config or ROOT / "examples" / f"{loss}.toml"
        name = f"{args.tag}-{loss}-s{args.seed}"
        run_dir = train(name, loss, args.seed, args.epochs, args.data, args.runs, config, args.sets)
        doc = evaluate(run_dir, args.data, args.split)
        docs[name] = doc
        rows.append(headline(doc))
        log(f"{name}: " + ", ".join(f"{k}={v:.3f}" for k, v in rows[-1].items() if isinstance(v, float)))
    seconds = time.perf_counter() - t0
    command = "python benchmarks/ambiguity.py " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"ambiguity-{args.tag}.json").write_text(
        json.dumps({"command": command, "seconds": round(seconds, 1), "rows": rows, "evals": docs}, indent=1) + "\n"
    )
    md = markdown(rows, command, seconds)
    (args.out / f"ambiguity-{args.tag}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
