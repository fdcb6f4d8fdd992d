"""Atomic writes: content, permissions like a plain open(), nothing left behind on failure."""

import os
import stat

import pytest

from vmfmir_cli.utils_io import atomic_path, current_umask, read_jsonl, write_json, write_jsonl, write_text


def test_written_files_get_umask_permissions_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "hello")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").read_text() == "hello"
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_writers_in_several_threads_never_change_the_umask(tmp_path):
    """Reading the umask by setting it and putting it back is a race between threads: one can leave
    it at the temporary value for the whole process (benchmarks/reproduce.py --jobs writes from
    worker threads)."""
    import threading

    old = os.umask(0o027)
    try:
        assert current_umask() == 0o027

        def writer(i):
            for j in range(40):
                write_text(tmp_path / f"{i}-{j}.txt", "x")

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert os.umask(0o027) == 0o027
    finally:
        os.umask(old)
    modes = {stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {0o640} and len(list(tmp_path.iterdir())) == 160


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "index.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text().strip().startswith("{")
    assert '"v": 1' in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]


def test_jsonl_round_trip(tmp_path):
    rows = [{"id": "a", "text": "é"}, {"id": "b"}]
    write_jsonl(tmp_path / "x.jsonl", rows)
    assert read_jsonl(tmp_path / "x.jsonl") == rows
