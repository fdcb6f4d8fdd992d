"""The smaller findings of the audit: each mistake is one clear line, and what a run leaves is tidy."""

from __future__ import annotations

import json
import shutil

from reliability_helpers import invoke, one_line_error


def test_set_suggests_the_key_people_mean(tmp_path, rel_data):
    text = one_line_error(invoke("train", "--data", rel_data, "--set", "learning_rate=1e-4", cwd=tmp_path), "did you mean 'lr'?")
    assert "batch_size" not in text  # not the list of every key
    one_line_error(invoke("train", "--data", rel_data, "--set", "val_frequency=2", cwd=tmp_path), "did you mean 'val_every'?")


def test_a_toml_syntax_error_names_its_line(tmp_path, rel_data):
    (tmp_path / "bad.toml").write_text('lr = 1e-3\nepochs = 2\nname = "unterminated')  # no newline at the end
    one_line_error(invoke("train", "-c", tmp_path / "bad.toml", cwd=tmp_path), "bad.toml", "invalid TOML", "at line 3")
    (tmp_path / "twice.toml").write_text("lr = 1e-3\nepochs = 2\nlr = 2")
    one_line_error(invoke("train", "-c", tmp_path / "twice.toml", cwd=tmp_path), "at line 3")


def test_a_corrupt_checkpoint_is_named(fresh_run, tmp_path):
    weights = fresh_run / "checkpoint" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    one_line_error(
        invoke("train", "--resume", fresh_run, "-q", cwd=tmp_path),
        "no complete checkpoint",
        "checkpoint/model.safetensors does not match the hash",
    )


def test_an_edited_dim_is_one_line(fresh_run, rel_data, tmp_path, monkeypatch):
    path = fresh_run / "config.json"
    config = json.loads(path.read_text())
    config["model"]["encoders"]["text"]["config"]["dim"] = 24
    config["model"]["encoders"]["text"]["dim"] = 24
    path.write_text(json.dumps(config))
    one_line_error(invoke("eval", "--run", fresh_run, "--data", rel_data, "-q", cwd=tmp_path), "edited")
    monkeypatch.setenv("VMFMIR_ALLOW_EDITED_RUN", "1")
    one_line_error(
        invoke("eval", "--run", fresh_run, "--data", rel_data, "-q", cwd=tmp_path),
        "the saved text weights do not fit the model in the config (size mismatch for",
    )


def test_eval_of_a_text_only_dataset_says_why_in_plain_words(fresh_run, tmp_path):
    rows = [{"id": f"t{i}", "text": f"tune number {i}", "split": "test"} for i in range(4)]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert invoke("prepare", "manifest", tmp_path / "m.jsonl", "--out", tmp_path / "texts", "-q", cwd=tmp_path).exit_code == 0
    one_line_error(
        invoke("eval", "--run", fresh_run, "--data", tmp_path / "texts", "-q", cwd=tmp_path),
        "has only text of the run's modalities (audio, image, text)",
        "needs items with at least two of them",
    )


def test_embed_files_skips_invalid_files_on_request_and_says_1_item(fresh_run, rel_data, tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    shutil.copy(rel_data / "image" / "piece000.png", folder / "good.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    one_line_error(invoke("embed", "--run", fresh_run, "--files", folder, "--out", tmp_path / "i1", "-q", cwd=tmp_path), "broken.png")
    result = invoke("embed", "--run", fresh_run, "--files", folder, "--skip-invalid", "--out", tmp_path / "i2", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert "1 undecodable" in result.stderr and ": 1 item;" in result.stdout, result.output


def test_embed_files_does_not_follow_symlinks_out_of_the_folder(fresh_run, rel_data, tmp_path):
    folder, elsewhere = tmp_path / "files", tmp_path / "private"
    folder.mkdir()
    elsewhere.mkdir()
    shutil.copy(rel_data / "image" / "piece000.png", folder / "mine.png")
    shutil.copy(rel_data / "image" / "piece001.png", elsewhere / "secret.png")
    (folder / "link.png").symlink_to(elsewhere / "secret.png")
    result = invoke("embed", "--run", fresh_run, "--files", folder, "--out", tmp_path / "i1", "--json", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["items"] == 1 and report["skipped"] == {"outside": 1}
    items = (tmp_path / "i1" / "items.jsonl").read_text()
    assert "secret" not in items
    result = invoke("embed", "--run", fresh_run, "--files", folder, "--follow-symlinks", "--out", tmp_path / "i2", "--json", cwd=tmp_path)
    assert result.exit_code == 0 and json.loads(result.stdout)["items"] == 2
