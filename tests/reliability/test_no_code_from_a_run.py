"""Case 1: opening a run folder (or a TOML file) never runs code shipped with a model.

A throwaway "model" folder holds a Hugging Face config.json with ``auto_map`` and a
``configuration_evil.py`` that writes a marker file when imported. A run is edited to use it
through the hf-text encoder with ``trust_remote_code = true``; whatever the command, the marker must
never appear, and the refusal is one line that names the way out.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reliability_helpers import invoke, one_line_error


@pytest.fixture
def evil(tmp_path) -> tuple[Path, Path]:
    """(model folder, marker path): importing the folder's configuration module writes the marker."""
    folder, marker = tmp_path / "evil-model", tmp_path / "MARKER"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "vmfmir-evil",
                "auto_map": {"AutoConfig": "configuration_evil.EvilConfig", "AutoModel": "configuration_evil.EvilModel"},
            }
        )
    )
    (folder / "configuration_evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('code ran')\n"
        "from transformers import PretrainedConfig\n\n"
        "class EvilConfig(PretrainedConfig):\n    model_type = 'vmfmir-evil'\n"
    )
    return folder, marker


def evil_spec(folder: Path, dim: int = 32) -> dict:
    return {
        "id": "hf-text",
        "config": {"model": str(folder), "trust_remote_code": True, "dim": dim},
        "dim": dim,
        "plugin": "transformers",
        "package": "vmfmir-transformers",
    }


def edit_config(run: Path, folder: Path) -> None:
    path = run / "config.json"
    config = json.loads(path.read_text())
    config["model"]["encoders"]["text"] = evil_spec(folder)
    path.write_text(json.dumps(config))


def test_an_edited_config_is_refused_before_anything_is_built(fresh_run, rel_data, evil, tmp_path):
    folder, marker = evil
    edit_config(fresh_run, folder)
    for args in (
        ("embed", "--run", fresh_run, "--data", rel_data, "--out", tmp_path / "idx", "-q"),
        ("eval", "--run", fresh_run, "--data", rel_data, "-q"),
        ("embed", "--run", fresh_run, "--files", rel_data / "image", "--out", tmp_path / "idx2", "-q"),
    ):
        one_line_error(invoke(*args, cwd=tmp_path), "config.json", "edited", "VMFMIR_ALLOW_EDITED_RUN=1")
        assert not marker.exists()


def test_query_of_an_index_whose_run_was_edited_is_refused(trained_run, fresh_run, rel_data, evil, tmp_path):
    folder, marker = evil
    result = invoke("embed", "--run", fresh_run, "--data", rel_data, "--out", tmp_path / "idx", "-q", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    edit_config(fresh_run, folder)
    one_line_error(invoke("query", "--index", tmp_path / "idx", "--text", "a tune", cwd=tmp_path), "edited")
    assert not marker.exists()


def test_even_an_accepted_edit_never_grants_trust_remote_code(fresh_run, rel_data, evil, tmp_path, monkeypatch):
    folder, marker = evil
    edit_config(fresh_run, folder)
    monkeypatch.setenv("VMFMIR_ALLOW_EDITED_RUN", "1")
    for args in (
        ("embed", "--run", fresh_run, "--data", rel_data, "--out", tmp_path / "idx", "-q"),
        ("eval", "--run", fresh_run, "--data", rel_data, "-q"),
    ):
        result = invoke(*args, cwd=tmp_path)
        if "not registered" in result.stderr:  # the plugin is not installed: nothing could run anyway
            one_line_error(result, "hf-text")
        else:
            one_line_error(result, "trust_remote_code", "VMFMIR_TRUST_REMOTE_CODE=1")
        assert not marker.exists()


def test_resume_from_an_edited_checkpoint_never_runs_code(fresh_run, rel_data, evil, tmp_path, monkeypatch):
    folder, marker = evil
    state_path = fresh_run / "checkpoint" / "state.json"
    state = json.loads(state_path.read_text())
    state["model_config"]["encoders"]["text"] = evil_spec(folder)
    state_path.write_text(json.dumps(state))
    one_line_error(invoke("train", "--resume", fresh_run, "-q", cwd=tmp_path), "state.json", "edited")
    monkeypatch.setenv("VMFMIR_ALLOW_EDITED_RUN", "1")
    result = invoke("train", "--resume", fresh_run, "-q", cwd=tmp_path)
    one_line_error(result, "hf-text")
    assert not marker.exists()


def test_a_toml_file_cannot_grant_trust_remote_code(rel_data, evil, tmp_path):
    folder, marker = evil
    (tmp_path / "evil.toml").write_text(
        f'[encoders.text]\nid = "hf-text"\nmodel = "{folder}"\ntrust_remote_code = true\n'
        '[encoders.audio]\nid = "mel-cnn"\n[encoders.image]\nid = "score-cnn"\n'
    )
    result = invoke("train", "-c", tmp_path / "evil.toml", "--data", rel_data, "--out", tmp_path / "runs", "-q", cwd=tmp_path)
    if "unknown text encoder" in result.stderr:  # plugin not installed
        one_line_error(result, "hf-text")
    else:
        one_line_error(result, "trust_remote_code", "VMFMIR_TRUST_REMOTE_CODE=1")
    assert not marker.exists() and not (tmp_path / "runs").exists()


def test_an_encoder_config_of_the_wrong_type_is_refused_before_building(fresh_run, rel_data, tmp_path, monkeypatch):
    path = fresh_run / "config.json"
    config = json.loads(path.read_text())
    config["model"]["encoders"]["text"]["config"]["tokenizer_path"] = "/etc/passwd"
    path.write_text(json.dumps(config))
    monkeypatch.setenv("VMFMIR_ALLOW_EDITED_RUN", "1")
    one_line_error(invoke("eval", "--run", fresh_run, "--data", rel_data, "-q", cwd=tmp_path), "no config key 'tokenizer_path'")
    config["model"]["encoders"]["text"]["config"].pop("tokenizer_path")
    config["model"]["encoders"]["image"]["config"]["height"] = "128; import os"
    path.write_text(json.dumps(config))
    one_line_error(invoke("eval", "--run", fresh_run, "--data", rel_data, "-q", cwd=tmp_path), "height", "must be an integer")


def test_the_permission_is_real_when_the_user_grants_it(fresh_run, rel_data, evil, tmp_path, monkeypatch):
    """Control: with both variables set by the person running the command, the code does run, so
    the marker checks above would have seen it."""
    pytest.importorskip("vmfmir_transformers")
    pytest.importorskip("transformers")
    folder, marker = evil
    edit_config(fresh_run, folder)
    monkeypatch.setenv("VMFMIR_ALLOW_EDITED_RUN", "1")
    monkeypatch.setenv("VMFMIR_TRUST_REMOTE_CODE", "1")
    result = invoke("embed", "--run", fresh_run, "--data", rel_data, "--out", tmp_path / "idx", "-q", cwd=tmp_path)
    assert result.exit_code == 1  # the folder holds no real model
    assert marker.exists()


def test_an_untouched_run_still_loads(fresh_run, rel_data, tmp_path):
    result = invoke("embed", "--run", fresh_run, "--data", rel_data, "--out", tmp_path / "idx", "-q", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads((fresh_run / "config.json").read_text())["config_hash"].startswith("sha256:")
