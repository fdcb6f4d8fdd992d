"""What the study trains: presets (full / quick), the loss configs, the tuning grid, the side table's encoders.

The recipe of every loss is read from a TOML file (``examples/<loss>.toml`` by default, or
``--configs DIR``), never copied here, so the study follows the recommended recipe as it changes.
The study only *adds* to it: the data, the budget (epochs), the seed, the quick mode's tiny
encoders, the tuned hyper-parameters and, for the side table, another set of encoders. The three
losses must share their encoders, embedding size, data options, augmentation and batch size
(:func:`shared_differences`); the study refuses to start otherwise.
"""

from __future__ import annotations

import copy
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
LOSSES = ("proposed", "baseline", "infonce")
PROBABILISTIC = ("proposed", "baseline")
#: the keys the three losses must share: same encoders, data, augmentation and budget
SHARED_KEYS = (
    "encoders", "dim", "modalities", "captions", "caption_levels", "augment", "augment_options", "batch_size",
    "max_steps",
)


@dataclass(frozen=True)
class Preset:
    """The size of a study. ``tune_settings``: hyper-parameter settings tried per loss (the same for
    every loss), one run each at ``tune_seed`` (not one of the reported seeds), scored on val only."""

    pieces: int
    variants: int
    epochs: int
    seeds: int
    tune_settings: int
    tune_seed: int
    side_seeds: int
    replicates: int


#: the full study (`make reproduce`): the default music21 benchmark (2,000 pieces x 2 performances:
#: 3,200 train / 400 val / 400 test items), 4 epochs (200 steps of batch 64) per run, 5 seeds per
#: loss, 2 tuning settings per loss; sized to finish within 2 hours on 2 idle CPU cores (README).
FULL = Preset(pieces=2000, variants=2, epochs=4, seeds=5, tune_settings=2, tune_seed=100, side_seeds=3,
              replicates=2000)
#: every stage on a tiny setting in a few minutes (2 seeds, so that the bootstrap has seeds to resample)
QUICK = Preset(pieces=16, variants=2, epochs=1, seeds=2, tune_settings=2, tune_seed=100, side_seeds=2,
               replicates=2000)

#: settings every run of the study gets on top of its loss config
STUDY_OVERRIDES: dict[str, Any] = {"checkpoint_every": 0}  # checkpoints at epoch ends only
#: the quick mode's tiny model (replaces the config's encoders)
QUICK_OVERRIDES: dict[str, Any] = {
    "dim": 16,
    "batch_size": 8,
    "mc_samples": 4,
    "ssw_samples": 4,
    "ssw_projections": 8,
    "encoders": {
        "audio": {"id": "mel-cnn", "dim": 16, "n_mels": 16, "channels": [4, 8], "window_seconds": 2.0,
                  "window_hop_seconds": 2.0},
        "image": {"id": "score-cnn", "dim": 16, "height": 32, "width": 128, "channels": [4, 8]},
        "text": {"id": "text-transformer", "dim": 16, "d_model": 16, "ff_dim": 32, "heads": 2, "layers": 1},
    },
}

#: per loss, the hyper-parameter settings the val-only tuning tries, in order; a study with
#: ``tune_settings = n`` tries the first n of *every* loss (the same budget for each). The first
#: is always the config as it is. Probabilistic losses: the inverse temperature first (the README's
#: first suspect for the accuracy of the recipe), then the SSW weight / the learning rate;
#: InfoNCE learns its temperature, so its knobs are the learning rate and the weight decay.
TUNING_CANDIDATES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "proposed": [("recipe", {}), ("tau10", {"inv_temperature": 10.0}), ("lambda1", {"ssw_lambda": 1.0}),
                 ("lr5e-3", {"lr": 5e-3})],
    "baseline": [("recipe", {}), ("tau10", {"inv_temperature": 10.0}), ("lr5e-3", {"lr": 5e-3}),
                 ("tau5", {"inv_temperature": 5.0})],
    "infonce": [("recipe", {}), ("lr5e-3", {"lr": 5e-3}), ("lr1e-3", {"lr": 1e-3}),
                ("wd0.2", {"weight_decay": 0.2})],
}


def tuning_grid(losses: list[str], n: int) -> list[tuple[str, str, dict]]:
    """``(label, loss, overrides)``: the first ``n`` candidates of every loss (the same number for each)."""
    if n < 1:
        return []
    short = [loss for loss in losses if len(TUNING_CANDIDATES[loss]) < n]
    if short:
        raise SystemExit(f"--tune-settings {n}: {short[0]} has only {len(TUNING_CANDIDATES[short[0]])} candidates")
    return [(label, loss, dict(over)) for loss in losses for label, over in TUNING_CANDIDATES[loss][:n]]


# --------------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------------


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise SystemExit(f"no config file {path}; pass --configs DIR with <loss>.toml files") from None
    except tomllib.TOMLDecodeError as exc:
        raise SystemExit(f"{path} is not valid TOML: {exc}") from None


def loss_configs(config_dir: Path, losses: list[str]) -> dict[str, dict[str, Any]]:
    """``{loss: the TOML values of <config_dir>/<loss>.toml}`` (its ``loss`` key set to the loss)."""
    out = {}
    for loss in losses:
        values = load_toml(config_dir / f"{loss}.toml")
        values["loss"] = loss
        out[loss] = values
    return out


def apply(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` (a deep copy; ``encoders`` is replaced as a whole, since another
    encoder id has other keys)."""
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        out[key] = copy.deepcopy(value)
    return out


def resolved(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every TrainConfig field of a config's values (defaults filled in, validated)."""
    from vmfmir_cli.errors import ConfigError
    from vmfmir_cli.training.config import TrainConfig, validate

    try:
        return validate(TrainConfig.from_dict(dict(values))).to_dict()
    except ConfigError as exc:
        raise SystemExit(f"config error: {exc}") from None


def shared_differences(configs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The :data:`SHARED_KEYS` on which the losses' resolved configs disagree."""
    full = {loss: resolved(values) for loss, values in configs.items()}
    first = next(iter(full.values()), {})
    return [k for k in SHARED_KEYS if any(cfg[k] != first[k] for cfg in full.values())]


def side_encoders(path: Optional[Path]) -> Optional[dict[str, Any]]:
    """The ``[encoders.*]`` tables of the side table's config, or None when the file is absent."""
    if path is None or not Path(path).is_file():
        return None
    encoders = load_toml(Path(path)).get("encoders")
    if not isinstance(encoders, dict) or not encoders:
        raise SystemExit(f"{path} has no [encoders.<modality>] tables: the side table needs the other encoder set")
    return encoders


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"cannot write {value!r} as TOML")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(settings: Mapping[str, Any], header: str = "") -> str:
    """The flat config TOML ``vmfmir train --config`` reads (top-level keys + ``[encoders.<m>]``)."""
    lines = [f"# {line}" for line in header.splitlines()] if header else []
    lines += [f"{k} = {_toml_value(v)}" for k, v in settings.items() if k != "encoders"]
    for m, spec in (settings.get("encoders") or {}).items():
        lines += ["", f"[encoders.{m}]"] + [f"{k} = {_toml_value(v)}" for k, v in spec.items()]
    return "\n".join(lines) + "\n"


__all__ = [
    "FULL",
    "LOSSES",
    "PROBABILISTIC",
    "Preset",
    "QUICK",
    "QUICK_OVERRIDES",
    "ROOT",
    "SHARED_KEYS",
    "STUDY_OVERRIDES",
    "TUNING_CANDIDATES",
    "apply",
    "loss_configs",
    "load_toml",
    "resolved",
    "shared_differences",
    "side_encoders",
    "to_toml",
    "tuning_grid",
]
