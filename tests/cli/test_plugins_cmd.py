"""``vmfmir plugins``: table and JSON output, broken plugins, strict mode (CliRunner + subprocess)."""

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
from vmfmir_cli.plugins import manager

VMFMIR = [sys.executable, "-m", "vmfmir_cli"]


@pytest.fixture(autouse=True)
def fresh_plugins(monkeypatch):
    monkeypatch.delenv("VMFMIR_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("VMFMIR_STRICT_PLUGINS", raising=False)
    manager.reset_plugin_manager()
    yield
    manager.reset_plugin_manager()


@pytest.fixture
def broken_plugin_dir(tmp_path, monkeypatch):
    """An installed (fake) distribution whose vmfmir plugin raises on import; on sys.path for this test."""
    module = f"vmfmir_broken_{tmp_path.name.replace('-', '_')}"
    info = tmp_path / "vmfmir_broken-0.3.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vmfmir-broken\nVersion: 0.3.0\n")
    (info / "entry_points.txt").write_text(f"[vmfmir]\nbroken = {module}\n")
    (tmp_path / f"{module}.py").write_text(textwrap.dedent('raise ImportError("needs libfoo 9")\n'))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    return tmp_path


def run(*args, env=None):
    return CliRunner().invoke(app, list(args), env=env)


def test_plugins_table_lists_builtin_encoders():
    result = run("plugins")
    assert result.exit_code == 0, result.output
    for text in ("builtin", "mel-cnn", "score-cnn", "text-transformer", "audio", "image", "text", "256"):
        assert text in result.stdout


def test_plugins_json():
    result = run("plugins", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    builtin = next(r for r in rows if r["name"] == "builtin")
    assert set(builtin) >= {"name", "version", "package", "builtin", "encoders"}
    assert {"id": "mel-cnn", "aliases": ["mel"], "modality": "audio", "dim": 256} in builtin["encoders"]


def test_load_plugins_empty_lists_only_builtins(monkeypatch):
    monkeypatch.setenv("VMFMIR_LOAD_PLUGINS", "")
    rows = json.loads(run("plugins", "--json").stdout)
    assert [r["name"] for r in rows] == ["builtin"]


def test_broken_plugin_warns_and_the_command_still_works(broken_plugin_dir):
    result = run("plugins", "--json")
    assert result.exit_code == 0
    assert "vmfmir: plugin 'broken' failed to load: ImportError: needs libfoo 9" in result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["broken"]["error"] == "ImportError: needs libfoo 9" and rows["broken"]["version"] == "0.3.0"
    assert rows["builtin"]["encoders"]
    manager.reset_plugin_manager()
    table = run("plugins")
    assert table.exit_code == 0 and "failed" in table.stdout and "mel-cnn" in table.stdout


def test_broken_plugin_is_an_error_in_strict_mode(broken_plugin_dir, monkeypatch):
    monkeypatch.setenv("VMFMIR_STRICT_PLUGINS", "1")
    result = run("plugins")
    assert result.exit_code == 1
    assert "plugin 'broken' failed to load: ImportError: needs libfoo 9" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def _subprocess_env(extra_path: Path, **env: str) -> dict:
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join([str(extra_path), *filter(None, [os.environ.get("PYTHONPATH")])])
    out.pop("VMFMIR_LOAD_PLUGINS", None)
    out.pop("VMFMIR_STRICT_PLUGINS", None)
    out.update(env)
    return out


def test_real_command_with_a_broken_plugin(broken_plugin_dir):
    env = _subprocess_env(broken_plugin_dir)
    helped = subprocess.run([*VMFMIR, "--help"], env=env, capture_output=True, text=True)
    assert helped.returncode == 0 and "plugins" in helped.stdout and helped.stderr == ""
    strict_help = subprocess.run([*VMFMIR, "--help"], env={**env, "VMFMIR_STRICT_PLUGINS": "1"}, capture_output=True)
    assert strict_help.returncode == 0  # --help never loads plugins
    listed = subprocess.run([*VMFMIR, "plugins", "--json"], env=env, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert "vmfmir: plugin 'broken' failed to load: ImportError: needs libfoo 9" in listed.stderr
    assert any(r["name"] == "builtin" for r in json.loads(listed.stdout))
    strict = subprocess.run(
        [*VMFMIR, "plugins"], env={**env, "VMFMIR_STRICT_PLUGINS": "1"}, capture_output=True, text=True
    )
    assert strict.returncode == 1 and "failed to load" in strict.stderr and "Traceback" not in strict.stderr


def test_help_does_not_import_torch(broken_plugin_dir):
    code = (
        "import sys\n"
        "from vmfmir_cli.cli.app import main\n"
        "sys.argv = ['vmfmir', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write('TORCH=%s' % ('torch' in sys.modules))\n"
    )
    env = _subprocess_env(broken_plugin_dir)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert "TORCH=False" in result.stderr
