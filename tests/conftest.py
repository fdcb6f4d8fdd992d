"""Shared fixtures.

``tiny_dataset``: a real music21 benchmark folder (8 pieces x 2 variants, 2 bars: 16 items; splits
train 12 / val 2 / test 2) built once per test session. Treat it as read-only; copy it
(``shutil.copytree``) before changing anything. Under pytest-xdist the workers share one build
through a file lock.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import pytest

TINY_COLLECTIONS = ("essen", "oneills", "ryans", "bach")  # fast to parse and render


def build_tiny_dataset(out: Path, pieces: int = 8, variants: int = 2, bars: int = 2, seed: int = 0) -> Path:
    """Build (or resume) a small music21 benchmark in ``out`` in this process; returns ``out``."""
    from vmfmir_cli.data.recipes.music21 import Music21Options, build_music21_benchmark

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_music21_benchmark(
            Music21Options(
                out=out,
                pieces=pieces,
                variants=variants,
                bars=bars,
                seed=seed,
                workers=1,
                collections=TINY_COLLECTIONS,
            )
        )
    return out


@pytest.fixture(scope="session", autouse=True)
def _feature_cache_in_tmp(tmp_path_factory):
    """The disk feature cache (vmfmir_cli.encoders.feature_cache) of the whole session, in a temporary
    folder: tests never write to ~/.cache, and subprocesses inherit the setting."""
    import os

    from vmfmir_cli.encoders.feature_cache import ENV

    old = os.environ.get(ENV)
    os.environ[ENV] = str(tmp_path_factory.mktemp("feature-cache"))
    yield
    if old is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = old


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, vmfmir_worker_id: str) -> Path:
    """Folder of a tiny music21 benchmark (manifest.jsonl, dataset.json, audio/, image/)."""
    shared = tmp_path_factory.getbasetemp()
    if vmfmir_worker_id != "master":  # pytest-xdist: the parent of the per-worker temp dirs is shared
        shared = shared.parent
    out = shared / "tiny_dataset"
    try:
        from filelock import FileLock

        lock = FileLock(str(shared / "tiny_dataset.lock"))
    except ImportError:  # pragma: no cover - filelock comes with huggingface_hub
        lock = contextlib.nullcontext()
    with lock:
        if not (out / "dataset.json").is_file():
            build_tiny_dataset(out)
    return out


@pytest.fixture
def one_thread():
    """torch with one thread for the test (training tests under xdist would oversubscribe 2 cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def vmfmir_worker_id(request) -> str:
    """The pytest-xdist worker id ("master" without xdist)."""
    workerinput = getattr(request.config, "workerinput", None)
    return workerinput["workerid"] if workerinput else "master"


def _make_untrained_run(run_dir: Path, data_dir: Path, seed: int = 0, modalities=("audio", "image", "text")) -> Path:
    """Save an untrained model of the default encoders as a run folder (kappa heads made non-constant)."""
    import torch

    from vmfmir_cli.data.manifest import read_manifest
    from vmfmir_cli.model import MultimodalModel, save_model
    from vmfmir_cli.plugins.manager import create_encoder, default_encoder_id

    torch.manual_seed(seed)
    encoders = {m: create_encoder(default_encoder_id(m)) for m in modalities}
    if "text" in encoders:
        encoders["text"].fit_preprocessing([it.text for it in read_manifest(data_dir) if it.text])
    model = MultimodalModel(encoders, embed_dim=64)
    for head in model.heads.values():
        torch.nn.init.normal_(head.kappa_net[-1].weight, std=0.2)
    save_model(model, run_dir)
    return run_dir


@pytest.fixture(scope="session")
def make_untrained_run():
    """``make_untrained_run(run_dir, data_dir, seed=0, modalities=...)`` -> run_dir (a saved untrained model)."""
    return _make_untrained_run
