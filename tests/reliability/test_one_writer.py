"""Case 5: one writer at a time on a run, index or dataset folder; stale locks are taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reliability_helpers import invoke, one_line_error
from vmfmir_cli.errors import BusyError
from vmfmir_cli.locks import LOCK_FILE, folder_lock, read_holder

HOLDER = textwrap.dedent(
    """
    import sys
    from vmfmir_cli.locks import folder_lock
    with folder_lock(sys.argv[1], "folder", "vmfmir train (test holder)"):
        print("locked", flush=True)
        sys.stdin.read()  # hold until the test closes stdin
    """
)


@pytest.fixture
def hold():
    """``hold(folder)``: another process takes the lock of ``folder`` until the test ends."""
    procs = []

    def start(folder: Path) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout.readline().strip() == "locked"
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_resume_of_a_run_that_is_being_written_is_refused(fresh_run, tmp_path, hold):
    proc = hold(fresh_run)
    before = (fresh_run / "metrics.jsonl").read_text()
    one_line_error(invoke("train", "--resume", fresh_run, "-q", cwd=tmp_path), "is in use", f"pid {proc.pid}", "vmfmir train")
    assert (fresh_run / "metrics.jsonl").read_text() == before  # nothing was touched


def test_a_second_embed_into_the_same_index_is_refused(fresh_run, rel_data, tmp_path, hold):
    proc = hold(tmp_path / "idx")
    result = invoke("embed", "--run", fresh_run, "--data", rel_data, "--out", tmp_path / "idx", "-q", cwd=tmp_path)
    one_line_error(result, "idx is in use", f"pid {proc.pid}")
    assert not (tmp_path / "idx" / "index.json").exists()


def test_a_second_import_into_the_same_dataset_is_refused(tmp_path, hold):
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "a", "text": "a tune"}) + "\n")
    proc = hold(tmp_path / "data")
    result = invoke("prepare", "manifest", tmp_path / "m.jsonl", "--out", tmp_path / "data", "-q", cwd=tmp_path)
    one_line_error(result, "is in use", f"pid {proc.pid}")
    assert not (tmp_path / "data" / "manifest.jsonl").exists()


def test_a_lock_left_by_a_dead_process_is_taken_over(fresh_run, rel_data, tmp_path):
    idx = tmp_path / "idx"
    # a process that took the lock and was killed before releasing it
    killed = subprocess.Popen([sys.executable, "-c", HOLDER, str(idx)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert killed.stdout.readline().strip() == "locked"
    killed.kill()
    killed.wait(timeout=30)
    assert (idx / LOCK_FILE).exists() and read_holder(idx)["pid"] == killed.pid
    result = invoke("embed", "--run", fresh_run, "--data", rel_data, "--out", idx, "-q", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert (idx / "index.json").is_file() and not (idx / LOCK_FILE).exists()


def test_the_lock_is_exclusive_within_one_process_too_and_is_released(tmp_path):
    with folder_lock(tmp_path / "f", "index"):
        holder = read_holder(tmp_path / "f")
        assert holder["pid"] == os.getpid()
        with pytest.raises(BusyError, match=f"pid {os.getpid()}"):
            with folder_lock(tmp_path / "f", "index"):
                pass
    assert not (tmp_path / "f" / LOCK_FILE).exists()
    with folder_lock(tmp_path / "f", "index"):  # free again
        assert (tmp_path / "f" / LOCK_FILE).exists()


def test_a_training_run_holds_its_lock_while_it_trains(rel_data, tmp_path, monkeypatch):
    """While train runs (seen from inside a callback), its run folder's lock names this process."""
    from reliability_helpers import tiny_overrides
    from vmfmir_cli.training.callbacks import Callback
    from vmfmir_cli.training.config import load_config
    from vmfmir_cli.training.trainer import train

    seen = []

    class Spy(Callback):
        def on_step(self, record):
            run = Path(self.run_dir)
            seen.append(read_holder(run))
            with pytest.raises(BusyError):
                with folder_lock(run, "run"):
                    pass

        def on_train_start(self, info):
            self.run_dir = info["run_dir"]

    run = train(load_config(None, overrides=tiny_overrides(rel_data, tmp_path / "runs", name="t")), callbacks=[Spy()])
    assert seen and all(h["pid"] == os.getpid() for h in seen)
    assert not (run / LOCK_FILE).exists()
