"""``vmfmir prepare``: error messages (one line, exit 1, no traceback), JSON output, the real command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vmfmir_cli.cli.app import app

VMFMIR = [sys.executable, "-m", "vmfmir_cli"]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _one_error_line(result) -> str:
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_prepare_help_lists_both_sources():
    result = run("prepare", "--help")
    assert result.exit_code == 0
    assert "music21" in result.stdout and "manifest" in result.stdout
    result = run("prepare", "music21", "--help")
    for option in ("--out", "--pieces", "--variants", "--bars", "--seed", "--workers"):
        assert option in result.stdout


def test_missing_manifest_file_is_one_line():
    line = _one_error_line(run("prepare", "manifest", "nowhere/items.csv", "--out", "unused"))
    assert "manifest file 'nowhere/items.csv' not found" in line


def test_invalid_rows_are_listed_then_one_error(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"not audio")
    src = tmp_path / "items.jsonl"
    src.write_text(
        "\n".join(
            [
                json.dumps({"id": "x", "text": "good"}),
                json.dumps({"id": "y", "audio": "a.wav"}),
                json.dumps({"id": "x", "text": "dup"}),
                json.dumps({"id": "z", "text": ""}),
            ]
        )
        + "\n"
    )
    result = run("prepare", "manifest", src, "--out", tmp_path / "data")
    line = _one_error_line(result)
    assert "3 invalid rows" in line and "--skip-invalid" in line
    listed = [ln for ln in result.stderr.splitlines() if ln.startswith("invalid:")]
    assert [ln.split(":", 1)[1].strip().split(": ", 1)[0] for ln in listed] == [f"{src}:2", f"{src}:3", f"{src}:4"]
    assert "cannot decode audio" in listed[0] and "duplicate id 'x'" in listed[1] and "empty text" in listed[2]
    assert not (tmp_path / "data" / "manifest.jsonl").exists()

    result = run("prepare", "manifest", src, "--out", tmp_path / "data", "--skip-invalid", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["items"] == 1 and summary["skipped_rows"] == 3
    assert Path(summary["report"]).name == "skipped.jsonl"
    assert "skipped:" in result.stderr


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--collections", "nope"], "unknown collection 'nope'; choose from:"),
    ],
)
def test_music21_option_errors(tmp_path, args, needle):
    line = _one_error_line(run("prepare", "music21", "--out", tmp_path / "d", "--quiet", *args))
    assert needle in line


def test_bad_pieces_value_is_a_usage_error(tmp_path):
    result = run("prepare", "music21", "--out", tmp_path / "d", "--pieces", "many")
    assert result.exit_code == 2 and "expected a number or 'all'" in result.output


def test_resume_with_other_options_is_one_line(tmp_path, tiny_dataset):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(tiny_dataset, out)
    line = _one_error_line(run("prepare", "music21", "--out", out, "--bars", "3", "--quiet"))
    assert "built with other options (bars=2)" in line and "choose another --out" in line


def test_music21_with_worker_processes(tmp_path):
    """The real multi-process path (spawn), through the CLI, with JSON output."""
    out = tmp_path / "d"
    result = run(
        "prepare", "music21", "--out", out, "--pieces", "2", "--variants", "1", "--bars", "1",
        "--collections", "essen", "--workers", "2", "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["items"] == 2 and summary["pieces_kept"] == 2 and summary["collections"]["essen"]["kept"] == 2
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 2
    info = json.loads((out / "dataset.json").read_text())
    assert info["options"]["workers"] == 2 and info["counts"]["total"]["items"] == 2


def test_help_does_not_import_torch_and_module_entry_point(tmp_path):
    code = textwrap.dedent(
        """
        import sys
        from vmfmir_cli.cli.app import main
        for argv in (["vmfmir", "--help"], ["vmfmir", "prepare", "--help"], ["vmfmir", "prepare", "music21", "--help"]):
            sys.argv = argv
            try:
                main()
            except SystemExit as exc:
                assert exc.code in (0, None), exc.code
        heavy = [m for m in ("torch", "music21", "verovio", "torchaudio") if m in sys.modules]
        print("HEAVY", heavy)
        """
    )
    env = {**os.environ, "COLUMNS": "100"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
    version = subprocess.run([*VMFMIR, "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("vmfmir ")
