"""Cases 2 and 6: a read-only or full disk, or a file where a folder should be, is one line.

Tests run as root, which ignores permissions, so the disk is simulated: ``tempfile.mkstemp`` /
``mkdtemp`` (how every vmfmir write starts) raise EROFS under a "read-only" folder, and the
checkpoint writer raises ENOSPC mid-run. Where possible the check comes before the long work.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import pytest

from reliability_helpers import invoke, one_line_error, tiny_overrides


@pytest.fixture
def read_only(monkeypatch, tmp_path):
    """A folder ``tmp_path/ro`` in which nothing can be created (EROFS), as on a read-only mount."""
    root = (tmp_path / "ro").resolve()
    root.mkdir()
    real_mkstemp, real_mkdtemp = tempfile.mkstemp, tempfile.mkdtemp

    def blocked(folder) -> bool:
        return folder is not None and Path(folder).resolve().is_relative_to(root)

    def mkstemp(suffix=None, prefix=None, dir=None, text=False):
        if blocked(dir):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
        return real_mkstemp(suffix, prefix, dir, text)

    def mkdtemp(suffix=None, prefix=None, dir=None):
        if blocked(dir):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
        return real_mkdtemp(suffix, prefix, dir)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    return root


@pytest.fixture
def no_encoding(monkeypatch):
    """Record any attempt to encode (the long work), which the disk checks must come before."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("encoded before checking the output")

    import vmfmir_cli.evaluation.evaluate as evaluate
    import vmfmir_cli.index.encode as encode

    monkeypatch.setattr(evaluate, "load_and_encode", refuse)
    monkeypatch.setattr(encode, "encode_items", refuse)
    return calls


def test_eval_checks_json_and_plots_are_writable_before_computing(fresh_run, rel_data, read_only, no_encoding, tmp_path):
    for option, target in (("--json", read_only / "metrics.json"), ("--plots", read_only / "plots")):
        result = invoke("eval", "--run", fresh_run, "--data", rel_data, option, target, "-q", cwd=tmp_path)
        one_line_error(result, f"cannot write {target}", "read-only")
    assert not no_encoding


def test_embed_into_a_read_only_folder_stops_before_encoding(fresh_run, rel_data, read_only, no_encoding, tmp_path):
    result = invoke("embed", "--run", fresh_run, "--data", rel_data, "--out", read_only / "idx", "-q", cwd=tmp_path)
    one_line_error(result, "idx", "read-only")
    assert not no_encoding and not (read_only / "idx").exists()


def test_prepare_manifest_into_a_read_only_folder(rel_data, read_only, tmp_path):
    rows = [{"id": "a", "audio": str(rel_data / "audio" / "piece000-v0.flac"), "text": "a tune"}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = invoke("prepare", "manifest", tmp_path / "m.jsonl", "--out", read_only / "data", "-q", cwd=tmp_path)
    one_line_error(result, str(read_only / "data"), "read-only")
    assert not (read_only / "data").exists()  # the folder this import created is gone again


def test_train_into_a_read_only_folder(rel_data, read_only, tmp_path):
    toml = tmp_path / "tiny.toml"
    toml.write_text("max_steps = 2\n")
    result = invoke("train", "-c", toml, "--data", rel_data, "--out", read_only / "runs", "-q", cwd=tmp_path)
    one_line_error(result, "cannot write", str(read_only / "runs"), "read-only")


def test_a_full_disk_during_training_keeps_the_last_checkpoint_and_says_how_to_resume(rel_data, tmp_path, monkeypatch):
    from vmfmir_cli.training import checkpoint as ckpt_io
    from vmfmir_cli.training.config import load_config
    from vmfmir_cli.training.trainer import train

    import stat
    import types

    calls = []

    def fsync(fd):  # 3 files per checkpoint: the checkpoints of steps 0 and 1 fit, step 2's does not
        if stat.S_ISREG(os.fstat(fd).st_mode):
            calls.append(fd)
            if len(calls) > 6:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os.fsync(fd)

    fake_os = types.SimpleNamespace(**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")})
    fake_os.fsync = fsync
    monkeypatch.setattr(ckpt_io, "os", fake_os)  # the checkpoint writer's view of the disk only
    from vmfmir_cli.errors import WriteError

    cfg = load_config(None, overrides=tiny_overrides(rel_data, tmp_path / "runs", name="full", epochs=3, max_steps=3, checkpoint_every=1))
    with pytest.raises(WriteError) as info:
        train(cfg)
    run = tmp_path / "runs" / "full"
    message = str(info.value)
    assert "the disk is full" in message and "checkpoint.tmp-" in message and f"vmfmir train --resume {run}" in message and "step 1" in message
    assert ckpt_io.find_checkpoint(run).step == 1
    assert not list(run.glob("checkpoint.tmp-*"))  # the half-written one is gone
    monkeypatch.setattr(ckpt_io, "os", os)  # space freed: resume finishes the run
    result = invoke("train", "--resume", run, "-q", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert ckpt_io.find_checkpoint(run).step == 3


def test_the_cli_turns_a_full_disk_into_one_line(fresh_run, rel_data, tmp_path, monkeypatch):
    """A full disk found during the final write (not by the early check) is one line too."""
    import vmfmir_cli.index.store as store

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store, "save_file", full, raising=False)
    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    result = invoke("embed", "--run", fresh_run, "--data", rel_data, "--out", tmp_path / "idx", "-q", cwd=tmp_path)
    one_line_error(result, "cannot write", "index.safetensors", "the disk is full")


# --------------------------------------------------------------------------------------------------
# Case 6: a file where a folder goes, a folder where a file goes
# --------------------------------------------------------------------------------------------------


def test_embed_out_that_is_a_file(fresh_run, rel_data, tmp_path):
    (tmp_path / "taken").write_text("mine")
    result = invoke("embed", "--run", fresh_run, "--data", rel_data, "--out", tmp_path / "taken", "-q", cwd=tmp_path)
    one_line_error(result, "taken is a file")
    assert (tmp_path / "taken").read_text() == "mine"


def test_eval_plots_that_is_a_file_and_json_that_is_a_folder(fresh_run, rel_data, no_encoding, tmp_path):
    (tmp_path / "taken").write_text("mine")
    result = invoke("eval", "--run", fresh_run, "--data", rel_data, "--plots", tmp_path / "taken", "-q", cwd=tmp_path)
    one_line_error(result, "taken is a file")
    (tmp_path / "adir").mkdir()
    result = invoke("eval", "--run", fresh_run, "--data", rel_data, "--json", tmp_path / "adir", "-q", cwd=tmp_path)
    one_line_error(result, "adir is a folder")
    assert not no_encoding and (tmp_path / "taken").read_text() == "mine"
