"""The training configuration: defaults < TOML file < command-line flags.

A config file is flat TOML: every top-level key is a :class:`TrainConfig` field, and the only
tables are ``[encoders.<modality>]`` (``id`` picks the encoder from the plugin registry, every other
key goes to that encoder's config)::

    loss = "proposed"
    epochs = 10
    batch_size = 64
    dim = 128
    ssw_lambda = 0.1

    [encoders.audio]
    id = "mel-cnn"
    channels = [16, 32, 64, 96]

An unknown key is a :class:`~vmfmir_cli.errors.ConfigError` that names the key and suggests the
closest known one; a value of the wrong type or out of range names the key and what it accepts.
The resolved config (every field) is saved with the run (``config.json`` ``"train"`` and the
checkpoint), so a run can always be rebuilt and resumed.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from vmfmir_cli.data.augment import augment_config
from vmfmir_cli.data.captions import parse_level_weights
from vmfmir_cli.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MODALITIES = ("audio", "image", "text")
LOSSES = ("proposed", "baseline", "infonce")
KAPPA_HEADS = ("exp", "sigmoid")
DENOMINATORS = ("sum", "mean")
MC_POSITIVES = ("analytic", "sampled")
MC_NEGATIVES = ("sampled", "analytic")
MC_BIAS_CORRECTIONS = ("none", "jackknife")
MC_SAMPLE_MEANS = ("probability", "score")
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("auto", "bf16", "fp32")
SCORE_KINDS = ("elk", "kl", "bhattacharyya", "expected_cosine", "cosine")

#: keys that may differ from the saved config when a run is resumed (they do not change the maths
#: of the steps already taken, or they only extend the run)
RESUMABLE_KEYS = frozenset(
    {"epochs", "max_steps", "device", "num_workers", "cache_gb", "log_every", "checkpoint_every", "data", "out", "name"}
)


@dataclass
class TrainConfig:
    """Every knob of ``vmfmir train`` with its default (see docs in the field comments)."""

    # -- data -------------------------------------------------------------------------------------
    data: str = "data"  # prepared dataset folder (manifest.jsonl + dataset.json)
    modalities: list = field(default_factory=lambda: list(MODALITIES))  # at least two
    num_workers: int = 0  # DataLoader worker processes
    cache_gb: float = 4.0  # keep up to this many GB of preprocessed items in memory (0: off; num_workers = 0 only)
    # train on every caption of an item (one drawn per item and epoch), not only its main text;
    # validation always uses the main (level-3) text
    captions: bool = True
    # {level: weight} of that draw, e.g. {0 = 1, 1 = 2, 2 = 1, 3 = 2}; empty: uniform over the levels an item has
    caption_levels: dict = field(default_factory=dict)
    # training augmentation (random views, gain, noise, masking; image shift/scale; word dropout),
    # deterministic in (seed, epoch, item); augment_options overrides its knobs (vmfmir_cli/data/augment.py)
    augment: bool = False
    augment_options: dict = field(default_factory=dict)
    # -- model ------------------------------------------------------------------------------------
    encoders: dict = field(default_factory=dict)  # {modality: {"id": ..., <encoder config>}}
    dim: int = 64  # embedding dimension d (vMFs live on S^{d-1})
    kappa_min: float = 1.0
    kappa_max: float = 10000.0  # a safety range: the default exp head is log-linear inside it
    kappa_head: str = "exp"  # exp (log-linear, unbounded inside the range) | sigmoid (the earlier head)
    kappa_init: float = 20.0  # every item's kappa at initialisation
    # subtract the mean direction of the batch (running mean at inference) before normalising mu:
    # stops the embedding from drifting into one cap with over-confident kappas (README "Learning kappa")
    head_center: bool = True
    # -- loss -------------------------------------------------------------------------------------
    loss: str = "proposed"  # proposed | baseline | infonce
    mc_samples: int = 16  # Monte Carlo samples per vMF of the contrastive term
    # tau of MCInfoNCE (fixed, not learned): in theory the kappa of the positive kernel (how far
    # apart two views of one item are); with the summed denominator 20 (the paper's) no longer
    # collapses (see "Learning kappa" in the README)
    inv_temperature: float = 20.0
    denominator: str = "sum"  # sum (InfoNCE: positive + sum over negatives) | mean (over negatives; collapses)
    mc_positive: str = "analytic"  # analytic (positive vMF integrated out) | sampled (the paper's estimate)
    mc_bias_correction: str = "none"  # none | jackknife (of the log of the mean over samples)
    mc_negatives: str = "analytic"  # analytic (every candidate's vMF integrated out) | sampled (one draw per negative)
    # where the mean over the anchor's samples goes: probability (Kirchhof: mean of per-sample softmaxes)
    # | score (inside each candidate's score: log E exp(tau z.z'), InfoNCE's optimal critic; needs analytic)
    mc_sample_mean: str = "probability"
    kappa_detach_fraction: float = 0.0  # phased schedule: train mu only (kappa detached) for this share of the steps
    # learning rate of the kappa heads' MLPs relative to lr (1: the same; the loss is nearly flat in
    # kappa once kappa >> tau, and Adam still moves it at full speed there)
    kappa_lr_scale: float = 1.0
    # weight of KL(vMF || uniform) per item (the VIB prior of PCME, for vMFs): pulls kappa down where
    # the contrastive loss is flat in it (0: off)
    kappa_prior_weight: float = 0.0
    ssw_lambda: float = 0.1  # weight of the SSW alignment term (proposed)
    ssw_p: float = 2.0
    ssw_samples: int = 32  # samples per vMF of the SSW term (its own draws unless equal to mc_samples)
    ssw_projections: int = 128
    ssw_debias: bool = True  # subtract the within-distribution terms (identical vMFs score ~0)
    logit_scale_init: float = math.log(1 / 0.07)  # infonce: learned log inverse temperature
    # -- optimisation -----------------------------------------------------------------------------
    optimizer: str = "adamw"  # adamw | adam | sgd
    lr: float = 2e-3
    weight_decay: float = 0.05  # applied to matrices only (not biases, norms, logit scale)
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    momentum: float = 0.9  # sgd
    grad_clip: float = 1.0  # max global gradient norm (0: off)
    schedule: str = "cosine"  # cosine | linear | constant, after a linear warmup
    warmup_fraction: float = 0.05  # of all steps
    min_lr_ratio: float = 0.01  # final lr = lr * min_lr_ratio
    epochs: int = 15
    batch_size: int = 64  # global batch (split across DDP ranks)
    # "": uniform random batches; a field name (an item's metadata, else its captions' facts, e.g.
    # "collection"): each batch drawn from items that share its value, so negatives are alike
    batch_group: str = ""
    # with batch_group: the share of each batch drawn from one group, the rest uniformly at random
    # (1.0: the whole batch; a smaller share keeps easy negatives beside the alike ones)
    batch_group_fraction: float = 1.0
    max_steps: int = 0  # stop after this many steps in total (0: no limit)
    # -- run --------------------------------------------------------------------------------------
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto (bf16 on CUDA, else fp32) | bf16 | fp32
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPU)
    out: str = "runs"  # runs/<name>/
    name: str = ""  # default: <YYYYmmdd-HHMMSS>-<loss>
    # -- validation, logging, checkpoints ---------------------------------------------------------
    val_score: str = "expected_cosine"  # score of the validation MRR (infonce runs always use cosine)
    val_every: int = 1  # epochs
    log_every: int = 10  # steps between metrics.jsonl rows
    checkpoint_every: int = 50  # steps between checkpoints (and every epoch end)

    # -- conversions ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> "TrainConfig":
        return apply_overrides(cls(), values, source=source)

    @classmethod
    def from_saved(cls, values: Mapping[str, Any], source: str = "config") -> "TrainConfig":
        """A config saved with a run: keys it lacks (saved before they existed) take the value that
        reproduces what that run did (:data:`LEGACY_VALUES`), not today's default."""
        values = dict(values)
        for key, legacy in LEGACY_VALUES.items():
            if key not in values:
                values[key] = values.get("mc_samples", 16) if legacy == "mc_samples" else legacy
        return cls.from_dict(values, source=source)

    def replace(self, **changes: Any) -> "TrainConfig":
        return apply_overrides(self, changes, source="overrides")

    def encoder_spec(self, modality: str) -> tuple[Optional[str], dict]:
        """(encoder id or None for the default, encoder config) of ``modality``."""
        spec = dict(self.encoders.get(modality) or {})
        encoder_id = spec.pop("id", None)
        return encoder_id, spec

    def effective_val_score(self) -> str:
        return "cosine" if self.loss == "infonce" else self.val_score


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}

#: the behaviour of runs saved before these keys existed (issue 11 changed the recipe's defaults);
#: "mc_samples" means "the run's own mc_samples" (the SSW term shared the contrastive draws)
LEGACY_VALUES = {
    "kappa_head": "sigmoid",
    "kappa_init": 20.0,
    "denominator": "mean",
    "mc_positive": "sampled",
    "mc_bias_correction": "none",
    "mc_negatives": "sampled",
    "kappa_detach_fraction": 0.0,
    "ssw_samples": "mc_samples",
    "ssw_debias": False,
    "mc_sample_mean": "probability",
    "head_center": False,
    "val_score": "elk",
}
_DEFAULTS = TrainConfig()


#: names people type for a config key (from other trainers' flags) -> the key
ALIASES = {
    "learning_rate": "lr",
    "learningrate": "lr",
    "batch": "batch_size",
    "bs": "batch_size",
    "n_epochs": "epochs",
    "num_epochs": "epochs",
    "epoch": "epochs",
    "steps": "max_steps",
    "num_steps": "max_steps",
    "embed_dim": "dim",
    "embedding_dim": "dim",
    "workers": "num_workers",
    "wd": "weight_decay",
    "lambda": "ssw_lambda",
    "temperature": "inv_temperature",
    "warmup": "warmup_fraction",
    "warmup_steps": "warmup_fraction",
    "output": "out",
    "output_dir": "out",
    "dataset": "data",
    "data_dir": "data",
}


def suggest(key: str, known) -> str:
    """`` (did you mean 'x'?)`` for a known alias or the closest known names, else a short hint."""
    known = list(known)
    alias = ALIASES.get(str(key).strip().lower().replace("-", "_"))
    if alias in known:
        return f" (did you mean {alias!r}?)"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)  # the closest one: a typo has one fix
    if not close:  # compare the words of snake_case names too: "val_frequency" -> "val_every"
        words = set(str(key).lower().replace("-", "_").split("_"))
        close = [k for k in known if words & set(k.split("_")) - {"max", "min"}][:3]
    if close:
        return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"
    return f"; known keys: {', '.join(sorted(known))}"


def _type_name(default: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}[
        type(default)
    ]


def _coerce(key: str, value: Any, source: str) -> Any:
    default = getattr(_DEFAULTS, key)
    expected = type(default)
    ok = False
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
    elif expected is str:
        ok = isinstance(value, str)
    elif expected is list:
        if isinstance(value, str) and key == "modalities":
            value = [v.strip() for v in value.split(",") if v.strip()]
        ok = isinstance(value, (list, tuple))
        if ok:
            value = list(value)
    elif expected is dict:
        ok = isinstance(value, Mapping)
        if ok:
            value = copy.deepcopy(dict(value))
    if not ok:
        raise ConfigError(f"{source}: {key!r} must be {_type_name(default)}, got {value!r}")
    return value


def apply_overrides(config: TrainConfig, values: Mapping[str, Any], source: str = "overrides") -> TrainConfig:
    """A copy of ``config`` with ``values`` set (unknown keys and wrong types are ConfigErrors)."""
    new = copy.deepcopy(config)
    for key, value in values.items():
        if key not in FIELDS:
            raise ConfigError(f"{source}: unknown config key {key!r}{suggest(key, FIELDS)}")
        value = _coerce(key, value, source)
        if key == "encoders":
            merged = copy.deepcopy(new.encoders)
            for modality, spec in value.items():
                if isinstance(spec, str):
                    spec = {"id": spec}
                if not isinstance(spec, Mapping):
                    raise ConfigError(
                        f"{source}: encoders.{modality} must be a table such as {{id = \"mel-cnn\"}}, got {spec!r}"
                    )
                if modality not in MODALITIES:
                    raise ConfigError(
                        f"{source}: unknown modality {modality!r} in encoders{suggest(modality, MODALITIES)}"
                    )
                current = dict(merged.get(modality) or {})
                spec = dict(spec)
                if "id" in spec and spec["id"] != current.get("id"):
                    current = {}  # a different encoder: the old encoder's options do not apply
                current.update(spec)
                merged[modality] = current
            value = merged
        setattr(new, key, value)
    return new


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into a dict (ConfigError for a missing or malformed file)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; see examples/*.toml for templates")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        if "at end of document" in message:  # e.g. an unclosed string or a key set twice: say where
            line = _first_bad_line(path.read_text(encoding="utf-8", errors="replace"))
            if line:
                message = message.replace("at end of document", f"at line {line}")
        raise ConfigError(f"{path}: invalid TOML ({message})") from None


def _first_bad_line(text: str) -> Optional[int]:
    """The first line at which the TOML ``text`` stops parsing (for errors tomllib reports at the end)."""
    lines = text.splitlines()
    for n in range(1, len(lines) + 1):
        try:
            tomllib.loads("\n".join(lines[:n]) + "\n")
        except tomllib.TOMLDecodeError:
            return n
    return None


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"key=value"`` (value in TOML syntax; bare words are strings) -> (key, value)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects KEY=VALUE, got {text!r}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    if "." in key:  # encoders.audio.channels=[8,16]
        head, _, rest = key.partition(".")
        if head != "encoders" or "." not in rest:
            raise ConfigError(f"--set: unknown config key {key!r}{suggest(key, FIELDS)}")
        modality, _, sub = rest.partition(".")
        return "encoders", {modality: {sub: value}}
    return key, value


def load_config(
    path: Optional[str | Path] = None,
    overrides: Optional[Mapping[str, Any]] = None,
    sets: Optional[list[str]] = None,
) -> TrainConfig:
    """Defaults, then the TOML file at ``path``, then ``sets`` (``KEY=VALUE``), then ``overrides``.

    ``overrides`` holds the explicit flags (``None`` values are ignored: the flag was not given).
    The result is validated with :func:`validate`.
    """
    config = TrainConfig()
    if path is not None:
        config = apply_overrides(config, load_toml(path), source=str(path))
    for text in sets or []:
        key, value = parse_assignment(text)
        config = apply_overrides(config, {key: value}, source="--set")
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    config = apply_overrides(config, given, source="command line")
    validate(config)
    return config


def validate(config: TrainConfig) -> TrainConfig:
    """Check choices and ranges (everything that needs neither the dataset nor the registry)."""

    def bad(key: str, what: str) -> ConfigError:
        return ConfigError(f"config key {key!r} {what}, got {getattr(config, key)!r}")

    def choice(key: str, options) -> None:
        value = getattr(config, key)
        if value not in options:
            close = difflib.get_close_matches(str(value), list(options), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"config key {key!r} must be one of {', '.join(options)}, got {value!r}{hint}")

    choice("loss", LOSSES)
    choice("optimizer", OPTIMIZERS)
    choice("schedule", SCHEDULES)
    choice("precision", PRECISIONS)
    choice("val_score", SCORE_KINDS)
    choice("kappa_head", KAPPA_HEADS)
    choice("denominator", DENOMINATORS)
    choice("mc_positive", MC_POSITIVES)
    choice("mc_bias_correction", MC_BIAS_CORRECTIONS)
    choice("mc_negatives", MC_NEGATIVES)
    choice("mc_sample_mean", MC_SAMPLE_MEANS)
    mods = config.modalities
    for m in mods:
        if m not in MODALITIES:
            close = difflib.get_close_matches(str(m), list(MODALITIES), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown modality {m!r}; choose from {', '.join(MODALITIES)}{hint}")
    if len(set(mods)) != len(mods):
        raise bad("modalities", "lists a modality twice")
    if len(mods) < 2:
        raise bad("modalities", "needs at least two modalities (e.g. audio,text)")
    for m, spec in config.encoders.items():
        if spec.get("id") is not None and not isinstance(spec.get("id"), str):
            raise ConfigError(f"encoders.{m}.id must be a string (an encoder id), got {spec['id']!r}")
    positive_ints = ("dim", "mc_samples", "ssw_samples", "ssw_projections", "epochs", "batch_size", "val_every", "log_every")
    for key in positive_ints:
        if getattr(config, key) < 1:
            raise bad(key, "must be at least 1")
    if config.dim < 3:
        raise bad("dim", "must be at least 3 (vMF sampling needs d >= 3)")
    try:
        augment_config(config.augment_options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config key 'augment_options': {exc}") from None
    try:
        parse_level_weights(config.caption_levels)
    except ValueError as exc:
        raise ConfigError(f"config key 'caption_levels': {exc}") from None
    for key in ("max_steps", "num_workers", "checkpoint_every", "seed"):
        if getattr(config, key) < 0:
            raise bad(key, "must be >= 0")
    if not (0 < config.kappa_min < config.kappa_max):
        raise ConfigError(f"need 0 < kappa_min < kappa_max, got {config.kappa_min} and {config.kappa_max}")
    if not (config.kappa_min < config.kappa_init < config.kappa_max):
        raise ConfigError(
            f"config key 'kappa_init' must lie strictly between kappa_min ({config.kappa_min:g}) and kappa_max "
            f"({config.kappa_max:g}), got {config.kappa_init!r}"
        )
    if config.ssw_debias and config.ssw_samples < 2:
        raise ConfigError(
            f"config key 'ssw_samples' must be at least 2 with ssw_debias = true (each cloud is split in two "
            f"halves), got {config.ssw_samples!r}"
        )
    if config.mc_negatives == "analytic" and config.mc_positive != "analytic":
        raise bad("mc_negatives", "= 'analytic' needs mc_positive = 'analytic' (both sides integrated out)")
    if config.mc_sample_mean == "score" and config.mc_negatives != "analytic":
        raise bad("mc_sample_mean", "= 'score' needs mc_negatives = 'analytic' (every candidate integrated out)")
    if config.mc_sample_mean == "score" and config.mc_bias_correction != "none":
        raise bad("mc_bias_correction", "= 'jackknife' applies to mc_sample_mean = 'probability' only")
    if config.mc_bias_correction == "jackknife" and config.mc_samples < 2:
        raise bad("mc_samples", "must be at least 2 for mc_bias_correction = 'jackknife'")
    if not (0 <= config.kappa_prior_weight <= 10):
        raise bad("kappa_prior_weight", "must lie in [0, 10] (the weight of the KL of each vMF to the uniform)")
    if not (0 < config.kappa_lr_scale <= 100):
        raise bad("kappa_lr_scale", "must lie in (0, 100] (the kappa heads' learning rate relative to lr)")
    if not (0 <= config.kappa_detach_fraction < 1):
        raise bad("kappa_detach_fraction", "must lie in [0, 1) (the share of steps that train mu only)")
    if not (0 < config.batch_group_fraction <= 1):
        raise bad("batch_group_fraction", "must lie in (0, 1] (the share of each batch drawn from one group)")
    if not config.lr > 0:
        raise bad("lr", "must be positive")
    for key in ("inv_temperature",):
        if not getattr(config, key) > 0:
            raise bad(key, "must be positive")
    if config.ssw_p < 1:
        raise bad("ssw_p", "must be >= 1")
    for key in ("ssw_lambda", "weight_decay", "grad_clip", "momentum", "cache_gb"):
        if getattr(config, key) < 0:
            raise bad(key, "must be >= 0")
    if not (0 <= config.warmup_fraction < 1):
        raise bad("warmup_fraction", "must lie in [0, 1)")
    if not (0 <= config.min_lr_ratio <= 1):
        raise bad("min_lr_ratio", "must lie in [0, 1]")
    if len(config.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in config.betas):
        raise bad("betas", "must be two numbers in [0, 1)")
    dev = config.device
    if not (dev in ("auto", "cpu", "cuda", "mps") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise bad("device", "must be auto, cpu, cuda, cuda:N or mps")
    if config.name and (Path(config.name).name != config.name or config.name in (".", "..", "latest", "LATEST")):
        raise bad("name", "must be a plain folder name")
    return config


def differences(saved: TrainConfig, new: TrainConfig) -> list[str]:
    """Keys whose values differ between two configs."""
    a, b = saved.to_dict(), new.to_dict()
    return [k for k in FIELDS if a[k] != b[k]]


__all__ = [
    "FIELDS",
    "LOSSES",
    "MODALITIES",
    "RESUMABLE_KEYS",
    "TrainConfig",
    "apply_overrides",
    "differences",
    "load_config",
    "load_toml",
    "parse_assignment",
    "suggest",
    "validate",
]
