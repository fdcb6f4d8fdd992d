"""Evaluating a (tiny, untrained) saved run end to end: JSON schema, every score, plots, runs/latest.

The run is a MultimodalModel of the registry's default encoders (small configs), its text tokenizer
fitted on the dataset's texts and its kappa heads randomised (an untrained head gives every item the
same kappa), saved with ``save_model`` next to a tiny hand-made manifest dataset: 6 pieces x 2
performances sharing their score image.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from vmfmir_cli.evaluation.evaluate import (
    DEFAULT_SCORE,
    EvalOptions,
    evaluate_run,
    evaluate_run_scores,
    load_split,
    representatives,
    resolve_run,
    run_loss,
)
from vmfmir_cli.evaluation.plots import (
    DECILE_FILE,
    KAPPA_FILE,
    LEVEL_FILE,
    RECALL_FILE,
    REJECT_FILE,
    recall_curve,
    write_plots,
)
from vmfmir_cli.evaluation.tasks import RELEVANCE_CONVENTION

SR = 8000
PIECES = 6
VARIANTS = 2
TEST_PIECES = 4  # pieces 0-3 test, 4 val, 5 train
SMALL = {
    "audio": {"sample_rate": SR, "n_fft": 256, "hop_length": 128, "n_mels": 16, "window_seconds": 0.5,
              "window_hop_seconds": 0.5, "channels": [4, 8], "dim": 16},
    "image": {"height": 32, "width": 64, "channels": [4, 8], "dim": 16},
    "text": {"vocab_size": 300, "d_model": 16, "heads": 2, "ff_dim": 32, "layers": 1, "dim": 16,
             "max_length": 16, "min_frequency": 1},
}


def make_tiny_dataset(root: Path) -> Path:
    """A manifest dataset of PIECES x VARIANTS items (1 s of audio each, one PNG per piece)."""
    import soundfile as sf
    from PIL import Image

    from vmfmir_cli.data.manifest import Item, write_dataset

    rng = np.random.default_rng(0)
    (root / "audio").mkdir(parents=True)
    (root / "image").mkdir()
    items = []
    for p in range(PIECES):
        split = "test" if p < TEST_PIECES else ("val" if p == TEST_PIECES else "train")
        image = root / "image" / f"piece{p}.png"
        Image.fromarray(rng.integers(0, 256, (24, 80), dtype=np.uint8), mode="L").save(image)
        for v in range(VARIANTS):
            t = np.arange(SR) / SR
            wav = 0.3 * np.sin(2 * np.pi * (220 + 55 * p + 7 * v) * t) + 0.01 * rng.standard_normal(SR)
            audio = root / "audio" / f"piece{p}-v{v}.flac"
            sf.write(audio, wav.astype(np.float32), SR, format="FLAC")
            items.append(
                Item(id=f"piece{p}-v{v}", group=f"piece{p}", split=split, audio=audio, image=image,
                     text=f"piece number {p} performance {v} in {'major' if p % 2 else 'minor'}")
            )
    write_dataset(root, items, name="tiny", sample_rate=SR, source="test", options={})
    return root


def make_tiny_run(run_dir: Path, data_dir: Path, loss: str = "proposed", seed: int = 0) -> Path:
    """An untrained run of the default encoders with varied kappa, as ``vmfmir train`` would save it."""
    from vmfmir_cli.data.manifest import read_manifest
    from vmfmir_cli.model import MultimodalModel, save_model
    from vmfmir_cli.plugins.manager import default_encoder_id, get_registry

    torch.manual_seed(seed)
    registry = get_registry()
    encoders = {m: registry.get(default_encoder_id(m)).factory(**cfg) for m, cfg in SMALL.items()}
    encoders["text"].fit_preprocessing([it.text for it in read_manifest(data_dir)])
    model = MultimodalModel(encoders, embed_dim=8, kappa_min=1.0, kappa_max=1000.0)
    with torch.no_grad():
        for head in model.heads.values():  # an untrained head gives every item the same kappa
            head.kappa_net[-1].weight.normal_(0.0, 2.0)
    save_model(model, run_dir, extra={"train": {"loss": loss, "seed": seed}})
    return run_dir


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = make_tiny_dataset(root / "data")
    runs = root / "runs"
    make_tiny_run(runs / "prop", data, "proposed", seed=0)
    make_tiny_run(runs / "info", data, "infonce", seed=1)
    (runs / "LATEST").write_text("prop\n")
    os.symlink("prop", runs / "latest", target_is_directory=True)
    return {"data": data, "runs": runs}


def test_representatives_encode_each_shared_image_once(tiny):
    items = load_split(tiny["data"], "test")
    assert len(items) == TEST_PIECES * VARIANTS
    assert len(representatives(items, "image")) == TEST_PIECES
    assert len(representatives(items, "audio")) == TEST_PIECES * VARIANTS


def test_evaluate_run_schema_and_counts(tiny):
    result = evaluate_run(EvalOptions(run=str(tiny["runs"] / "latest"), data=str(tiny["data"]), split="test"))
    doc = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert doc["run"] == "prop" and doc["split"] == "test" and doc["score"] == DEFAULT_SCORE
    assert doc["n_items"] == TEST_PIECES * VARIANTS and doc["loss"] == "proposed"
    assert doc["relevance"] == RELEVANCE_CONVENTION
    assert list(doc["directions"]) == [
        "audio->image", "image->audio", "audio->text", "text->audio", "image->text", "text->image",
        "image+text->audio", "audio+text->image", "audio+image->text",
    ]
    for name, m in doc["directions"].items():
        assert set(m) == {"mrr", "r1", "r5", "r10", "mr", "n_queries"}, name
        assert 0 < m["mrr"] <= 1 and 0 <= m["r1"] <= m["r5"] <= m["r10"] <= 1 and m["mr"] >= 1
    n = TEST_PIECES * VARIANTS
    assert doc["directions"]["audio->image"]["n_queries"] == n and doc["candidates"]["audio->image"] == TEST_PIECES
    assert doc["directions"]["image->audio"]["n_queries"] == TEST_PIECES and doc["candidates"]["image->audio"] == n
    assert doc["directions"]["image->text"]["n_queries"] == TEST_PIECES
    assert doc["directions"]["audio+text->image"]["n_queries"] == n
    # 4 candidate images: R@5 and R@10 are certain
    assert doc["directions"]["audio->image"]["r5"] == 1.0
    unc = doc["uncertainty"]
    assert list(unc) == ["audio", "image", "text"]
    audio = unc["audio"]
    assert audio["n_queries"] == 2 * n  # audio->image and audio->text pooled
    assert len(audio["kappa_deciles"]) == 10 and sum(b["n"] for b in audio["kappa_deciles"]) == 2 * n
    assert audio["spearman"] is None or -1 <= audio["spearman"] <= 1
    assert set(audio["directions"]) == {"audio->image", "audio->text"}
    assert unc["image"]["n_queries"] == 2 * TEST_PIECES


def test_infonce_run_uses_cosine_and_skips_uncertainty(tiny):
    result = evaluate_run(EvalOptions(run=str(tiny["runs"] / "info"), data=str(tiny["data"]), split="all"))
    doc = result.to_json()
    assert doc["score"] == "cosine" and doc["loss"] == "infonce"
    assert doc["uncertainty"] == {}
    assert any("not trained" in n for n in doc["notes"])
    assert doc["n_items"] == PIECES * VARIANTS


def test_every_score_from_one_encoding(tiny):
    results = evaluate_run_scores(EvalOptions(run=str(tiny["runs"] / "prop"), data=str(tiny["data"]), split="test"))
    assert [r.score for r in results] == ["elk", "kl", "bhattacharyya", "expected_cosine", "cosine"]
    for r in results:  # the same embeddings, so the same tasks under every score
        assert list(r.directions) == list(results[0].directions)
        assert r.directions["image->audio"].query_kappa.tolist() == results[0].directions["image->audio"].query_kappa.tolist()


def test_plots_are_written(tiny, tmp_path):
    result = evaluate_run(EvalOptions(run=str(tiny["runs"] / "prop"), data=str(tiny["data"]), split="test"))
    written = write_plots(result, tmp_path / "plots")
    assert sorted(p.name for p in written) == sorted([RECALL_FILE, DECILE_FILE, KAPPA_FILE, REJECT_FILE, LEVEL_FILE])
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 1000
    assert not list((tmp_path / "plots").glob(".*.tmp"))  # atomic writes left nothing behind


def test_recall_curve():
    ks, recall = recall_curve(torch.tensor([1, 2, 2, 5]), 5)
    assert ks == [1, 2, 3, 4, 5] and recall == [0.25, 0.75, 0.75, 0.75, 1.0]


def test_run_resolution_and_loss(tiny):
    runs = tiny["runs"]
    assert resolve_run(runs / "latest") == (runs / "prop").resolve()
    assert resolve_run(runs) == (runs / "prop").resolve()
    os.unlink(runs / "latest")  # only the LATEST text file left
    try:
        assert resolve_run(runs / "latest") == (runs / "prop").resolve()
    finally:
        os.symlink("prop", runs / "latest", target_is_directory=True)
    assert run_loss({"train": {"loss": "baseline"}}) == "baseline"
    assert run_loss({"loss": "infonce"}) == "infonce"
    assert run_loss({}) is None


def test_user_errors(tiny, tmp_path):
    from vmfmir_cli.errors import CheckpointError, ConfigError, DataError

    with pytest.raises(CheckpointError, match="vmfmir train"):
        evaluate_run(EvalOptions(run=str(tmp_path / "nope"), data=str(tiny["data"])))
    with pytest.raises(DataError, match="vmfmir prepare"):
        evaluate_run(EvalOptions(run=str(tiny["runs"] / "prop"), data=str(tmp_path)))
    with pytest.raises(ConfigError, match="split"):
        evaluate_run(EvalOptions(run=str(tiny["runs"] / "prop"), data=str(tiny["data"]), split="dev"))
