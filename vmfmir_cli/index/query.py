"""The inputs of a search: weights, the index and its model, the query checked, encoded and fused.

A query is any combination of an audio file, a score image and a text. :func:`check_query` validates
it before any model work, :func:`encode_query` encodes each modality into a vMF with the index's
model, and :func:`fuse_query` fuses them as a product of experts
(:func:`~vmfmir_cli.engine.vmf.fuse`: natural parameters add, eta = sum_m w_m kappa_m mu_m), so a
confident modality (large kappa) pulls the fused direction further than an uncertain one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from vmfmir_cli.errors import CheckpointError, ConfigError, DataError
from vmfmir_cli.index import store

QUERY_MODALITIES = ("audio", "image", "text")


def parse_weights(spec: str | Mapping[str, float] | None) -> dict[str, float]:
    """``"image=1.0,text=0.5"`` (or a mapping) -> {"image": 1.0, "text": 0.5}."""
    if spec is None or spec == "":
        return {}
    if isinstance(spec, Mapping):
        pairs = [(str(k), v) for k, v in spec.items()]
    else:
        pairs = []
        for part in str(spec).split(","):
            if not part.strip():
                continue
            name, sep, value = part.partition("=")
            if not sep:
                raise ConfigError(f"weight {part.strip()!r} is not MODALITY=NUMBER (e.g. --weight image=1.0,text=0.5)")
            pairs.append((name.strip(), value.strip()))
    weights: dict[str, float] = {}
    for name, value in pairs:
        if name not in QUERY_MODALITIES:
            raise ConfigError(f"unknown modality {name!r} in the weights; use audio, image or text")
        try:
            w = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"weight {name}={value!r} is not a number") from None
        if not w >= 0 or w == float("inf"):
            raise ConfigError(f"weight {name}={value} must be a finite number >= 0")
        weights[name] = w
    return weights


def open_index(index: str | Path | store.Index) -> store.Index:
    return index if isinstance(index, store.Index) else store.load_index(index)


def load_index_model(index: store.Index, run: str | Path | None = None, device: Optional[str] = None):
    """The model that built ``index`` (from ``index.json``'s run, or ``run``), hash-checked."""
    from vmfmir_cli.model import load_model, read_model_config
    from vmfmir_cli.index.build import resolve_device, resolve_run, run_model_hash

    where = str(index.path) if index.path else "index"
    if run is None:
        if not index.run:
            raise CheckpointError(f"the index at {where} does not name the run that built it; pass --run")
        if not Path(index.run).is_dir():
            raise CheckpointError(
                f"the run that built the index at {where} ({index.run}) is gone; pass --run with a run of the same "
                f"model ({index.model_hash}) or re-embed"
            )
        run_dir = Path(index.run)
    else:
        run_dir = resolve_run(run)
    config = read_model_config(run_dir)
    store.check_model_hash(index.info, run_model_hash(run_dir, config), run_dir, where=where)
    model, _ = load_model(run_dir, map_location=resolve_device(device))
    return model, run_dir


def check_query(
    audio: Any = None, image: Any = None, text: Optional[str] = None, modalities: Optional[list[str]] = None
) -> dict[str, Any]:
    """Validate a query before any model work -> {modality: file Path / decoded input / stripped text}.

    Raises DataError for no query, an empty text or a missing file, ConfigError for a modality
    outside ``modalities`` (the ones the model was trained on, when known).
    """
    given = {m: v for m, v in (("audio", audio), ("image", image), ("text", text)) if v is not None}
    if not given:
        raise DataError("no query: give at least one of --audio FILE, --image FILE or --text TEXT")
    if modalities is not None:
        for m in given:
            if m not in modalities:
                raise ConfigError(
                    f"the model was not trained on {m} (it knows {', '.join(modalities)}); drop --{m}"
                )
    if "text" in given:
        if not isinstance(given["text"], str) or not given["text"].strip():
            raise DataError("the text query is empty: pass some words, e.g. --text 'a slow melody played on flute'")
        given["text"] = given["text"].strip()
    for m in ("audio", "image"):
        value = given.get(m)
        if isinstance(value, (str, Path)):
            path = Path(value).expanduser()
            if not path.is_file():
                raise DataError(f"{value}: no such {m} file")
            given[m] = path
    return given


def encode_query(
    model: Any, audio: Any = None, image: Any = None, text: Optional[str] = None, device: Optional[str] = None
) -> dict[str, Any]:
    """Encode each given query modality -> {modality: VonMisesFisher of batch shape (1,)}.

    ``audio``/``image`` are file paths (or decoded inputs), ``text`` a string. An undecodable file
    raises DataError (from the media decoders).
    """
    from vmfmir_cli.engine.vmf import VonMisesFisher
    from vmfmir_cli.index.encode import encode_items

    given = check_query(audio, image, text, list(model.modalities))
    out = {}
    for m, value in given.items():
        mu, kappa = encode_items(model, [value], m, batch_size=1, device=device)
        out[m] = VonMisesFisher(mu, kappa, validate_args=False)
    return out


def fuse_query(dists: Mapping[str, Any], weights: Optional[Mapping[str, float]] = None):
    """Product of experts of the query modalities (weights default to 1)."""
    from vmfmir_cli.engine.vmf import fuse

    weights = dict(weights or {})
    extra = sorted(set(weights) - set(dists))
    if extra:
        raise ConfigError(f"a weight is given for {', '.join(extra)}, which is not part of the query")
    names = list(dists)
    ws = [float(weights.get(m, 1.0)) for m in names]
    eta = sum(w * dists[m].concentration.unsqueeze(-1) * dists[m].loc for w, m in zip(ws, names))
    if not bool((eta.norm(dim=-1) > 1e-6 * max(1.0, max(float(dists[m].concentration.max()) for m in names))).all()):
        raise ConfigError("the fused query has no direction (all weights 0, or the query modalities cancel out)")
    return fuse(*[dists[m] for m in names], weights=ws)


__all__ = ["QUERY_MODALITIES", "check_query", "encode_query", "fuse_query", "load_index_model", "open_index", "parse_weights"]
