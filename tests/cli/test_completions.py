"""The checked-in completion scripts match the CLI, and the bash one really completes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from vmfmir_cli.cli.completions import SHELLS, generate

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_checked_in_completions_match_the_cli(shell):
    checked_in = (ROOT / "completions" / SHELLS[shell]).read_text()
    assert checked_in == generate(shell), (
        f"completions/{SHELLS[shell]} is stale: run `make completions` and commit the result"
    )


def _bash_complete(*words: str) -> list[str]:
    script = ROOT / "completions" / "vmfmir.bash"
    words_literal = " ".join(f"'{w}'" for w in words)
    cmd = (
        f"source {script}; COMP_WORDS=({words_literal}); COMP_CWORD={len(words) - 1}; "
        '_vmfmir; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_commands_and_options():
    import typer

    from vmfmir_cli.cli.app import app

    commands = set(typer.main.get_command(app).commands)
    top = _bash_complete("vmfmir", "")
    assert commands and commands <= set(top)
    assert "--version" in top
    assert _bash_complete("vmfmir", "--ver") == ["--version"]
    assert "--json" in _bash_complete("vmfmir", "plugins", "--")
