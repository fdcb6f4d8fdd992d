"""``vmfmir embed`` and ``vmfmir query`` through the CLI (CliRunner, plus one real subprocess).

The run is an untrained model (default encoders, tokenizer fitted on the tiny dataset's texts,
randomised kappa head) saved with ``save_model``; ``runs/latest`` points at it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vmfmir_cli.cli.app import app


def invoke(*args, cwd: Path | None = None):
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(app, [str(a) for a in args])
    finally:
        os.chdir(old)


def assert_user_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for fragment in fragments:
        assert fragment in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def project(tiny_dataset, tmp_path_factory, make_untrained_run):
    """A working directory with runs/latest (symlink), data -> the tiny dataset and index/ embedded by the CLI."""
    root = tmp_path_factory.mktemp("project")
    make_untrained_run(root / "runs" / "r0", tiny_dataset)
    (root / "runs" / "latest").symlink_to("r0", target_is_directory=True)
    (root / "data").symlink_to(tiny_dataset, target_is_directory=True)
    result = invoke("embed", "--quiet", cwd=root)  # defaults: --run runs/latest --data data --split all --out index
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (root / "index" / "items.jsonl").read_text().splitlines()]
    return {"root": root, "rows": rows, "embed_output": result.stdout}


def query_json(project, *args):
    result = invoke("query", "--json", *args, cwd=project["root"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_embed_summary_and_rerun(project):
    assert "16 items" in project["embed_output"] and "16 new" in project["embed_output"]
    again = invoke("embed", "--json", cwd=project["root"])
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert report["encoded"] == {"audio": 0, "image": 0, "text": 0} and report["unchanged_items"] == 16
    assert report["reused"] == {"audio": 16, "image": 16, "text": 16}


@pytest.mark.parametrize("modality", ["audio", "image", "text"])
def test_single_modality_queries(project, modality):
    row = project["rows"][2]
    result = invoke("query", f"--{modality}", row[modality], "--target", modality, "--score", "kl", "-k", "3",
                    cwd=project["root"])
    assert result.exit_code == 0, result.output
    assert "rank" in result.stdout and "query kappa" in result.stdout and f"{modality} " in result.stdout
    data = query_json(project, f"--{modality}", row[modality], "--target", modality, "--score", "kl", "-k", "3")
    assert data["hits"][0][modality] == row[modality]  # kl: the item's own distribution is first
    assert set(data["kappa"]) == {modality, "fused"}


def test_image_plus_text_query(project):
    row = project["rows"][0]
    result = invoke("query", "--image", row["image"], "--text", "a slow melody played on flute", "-k", "5",
                    cwd=project["root"])
    assert result.exit_code == 0, result.output
    assert "query kappa: image" in result.stdout and "text" in result.stdout and "fused" in result.stdout
    single = query_json(project, "--image", row["image"], "-k", "16")
    fused = query_json(project, "--image", row["image"], "--text", "a slow melody played on flute", "-k", "16",
                       "--weight", "image=1.0,text=0.5")
    assert [h["id"] for h in single["hits"]] != [h["id"] for h in fused["hits"]]
    assert fused["weights"] == {"image": 1.0, "text": 0.5}


def test_json_is_valid_and_complete(project):
    from vmfmir_cli.index.search import DEFAULT_SCORE

    row = project["rows"][3]
    data = query_json(project, "--audio", row["audio"], "--text", row["text"], "--target", "all", "-k", "4")
    assert data["target"] == "all" and data["k"] == 4 and data["score"] == DEFAULT_SCORE
    assert data["query"] == {"audio": row["audio"], "image": None, "text": row["text"]}
    assert set(data["kappa"]) == {"audio", "text", "fused"} and all(v > 0 for v in data["kappa"].values())
    assert data["searched"] == 48 and data["candidates"] == 48 and data["first_stage"] is None
    assert data["index"] == str(project["root"] / "index") and Path(data["run"]).name == "r0"
    assert [h["rank"] for h in data["hits"]] == [1, 2, 3, 4]
    scores = [h["score"] for h in data["hits"]]
    assert scores == sorted(scores, reverse=True)
    ids = {r["id"]: r for r in project["rows"]}
    for hit in data["hits"]:
        assert hit["modality"] in ("audio", "image", "text") and hit["kappa"] > 0
        assert hit["text"] == ids[hit["id"]]["text"] and hit["audio"] == ids[hit["id"]]["audio"]
        assert hit["meta"] == ids[hit["id"]]["meta"] and "path" in hit


def test_query_errors(project, tmp_path):
    root = project["root"]
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    assert_user_error(invoke("query", "--audio", tmp_path / "missing.wav", cwd=root), "missing.wav", "no such audio file")
    assert_user_error(invoke("query", "--audio", bad, cwd=root), "cannot decode audio")
    assert_user_error(invoke("query", "--text", "  ", cwd=root), "text query is empty")
    assert_user_error(invoke("query", cwd=root), "no query")
    assert_user_error(invoke("query", "--text", "x", "--target", "video", cwd=root), "unknown --target")
    assert_user_error(invoke("query", "--text", "x", "--score", "dot", cwd=root), "unknown --score")
    assert_user_error(invoke("query", "--text", "x", "--weight", "image=1", cwd=root), "not part of the query")
    assert_user_error(invoke("query", "--text", "x", "--index", tmp_path / "none", cwd=root), "no index at")


def test_a_modality_the_run_was_not_trained_on_and_an_absent_target(project, tmp_path, make_untrained_run):
    run = make_untrained_run(tmp_path / "runs" / "audio-only", project["root"] / "data", modalities=("audio",))
    media = tmp_path / "media"
    media.mkdir()
    import soundfile as sf

    sr = 16000
    for i, f in enumerate((220.0, 330.0, 440.0)):
        sf.write(media / f"tone{i}.wav", (0.3 * np.sin(2 * np.pi * f * np.arange(sr) / sr)).astype(np.float32), sr)
    (media / "note.txt").write_text("a slow melody")
    result = invoke("embed", "--run", run, "--files", media, "--out", tmp_path / "idx", "--quiet")
    assert result.exit_code == 0, result.output
    assert "3 items" in result.stdout and "no text encoder" in result.stderr
    assert_user_error(invoke("query", "--index", tmp_path / "idx", "--text", "flute"), "not trained on text", "--text")
    assert_user_error(invoke("query", "--index", tmp_path / "idx", "--audio", media / "tone0.wav", "--target", "image"),
                      "no image items")
    data = json.loads(invoke("query", "--index", tmp_path / "idx", "--audio", media / "tone1.wav", "--score", "kl",
                             "--json").stdout)
    assert data["hits"][0]["id"] == "tone1" and data["hits"][0]["path"] == str((media / "tone1.wav").resolve())


def test_another_model_is_refused(project, tmp_path, make_untrained_run):
    root = project["root"]
    other = make_untrained_run(tmp_path / "other", root / "data", seed=3)
    assert_user_error(invoke("query", "--text", "x", "--run", other, cwd=root), "built by another model")
    assert_user_error(invoke("embed", "--run", other, "--quiet", cwd=root), "built by another model", "--rebuild")


def test_faiss_flag(project, monkeypatch):
    root = project["root"]
    row = project["rows"][4]
    try:
        import faiss  # noqa: F401
    except ImportError:
        faiss = None
    if faiss is not None:
        exact = query_json(project, "--audio", row["audio"], "--score", "kl", "-k", "5")
        staged = query_json(project, "--audio", row["audio"], "--score", "kl", "-k", "5", "--faiss", "--rerank", "16")
        assert [h["id"] for h in exact["hits"]] == [h["id"] for h in staged["hits"]]
        assert staged["first_stage"]["rerank"] == 16 and staged["candidates"] == 16
    monkeypatch.setitem(sys.modules, "faiss", None)
    assert_user_error(invoke("query", "--text", "x", "--faiss", cwd=root), "vmfmir[faiss]")


def test_embed_argument_errors(project, tmp_path):
    root = project["root"]
    assert_user_error(invoke("embed", "--data", tmp_path / "nodata", "--out", tmp_path / "i", cwd=root), "no dataset")
    assert_user_error(invoke("embed", "--split", "dev", cwd=root), "unknown split")
    assert_user_error(invoke("embed", "some/file.wav", cwd=root), "--files")
    assert_user_error(invoke("embed", "--files", tmp_path / "nothing-here", "--out", tmp_path / "i", cwd=root),
                      "no such file or folder")
    assert_user_error(invoke("embed", "--run", tmp_path / "noruns", cwd=root), "not found")


def test_score_choices_match_the_engine():
    from vmfmir_cli.cli.query_cmd import SCORES, TARGETS
    from vmfmir_cli.engine.scores import SCORE_KINDS
    from vmfmir_cli.index import search as search_module_function  # noqa: F401  (package export)
    from vmfmir_cli.index.search import TARGETS as LIB_TARGETS

    assert tuple(SCORES) == tuple(SCORE_KINDS) and tuple(TARGETS) == tuple(LIB_TARGETS)


def test_installed_command_runs_a_query(project):
    row = project["rows"][1]
    proc = subprocess.run(
        [sys.executable, "-m", "vmfmir_cli", "query", "--image", row["image"], "--text", "a slow melody", "--json", "-k", "2"],
        cwd=project["root"], capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["hits"]) == 2
