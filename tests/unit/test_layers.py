"""The package's layers: every import inside vmfmir_cli goes down, never up or sideways across a layer.

Imports inside functions (the lazy ones) count too: a lazy import that reaches up is still a cycle
in the design, only one that Python happens not to trip over.
"""

from __future__ import annotations

import ast
from pathlib import Path

import vmfmir_cli

#: bottom to top; a package may import its own modules and any package of a lower layer
LAYERS: list[set[str]] = [
    {"_version"},
    {"errors", "__init__"},
    {"utils_io", "device", "provenance"},
    {"locks"},
    {"engine"},
    {"data", "encoders"},
    {"plugins"},
    {"model"},
    {"training"},
    {"index"},
    {"evaluation"},
    {"cli"},
    {"__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
ROOT = Path(vmfmir_cli.__file__).parent


def _package(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return rel.parts[0]


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "vmfmir_cli":
                out.append((node.lineno, parts[1] if len(parts) > 1 else "__init__"))
    return out


def test_every_package_has_a_layer():
    packages = {_package(p) for p in ROOT.rglob("*.py")}
    assert packages - set(RANK) == set(), "a new package needs its place in LAYERS"


def test_imports_only_go_down():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        here = _package(path)
        for line, target in _imports(path):
            if target != here and RANK[target] >= RANK[here]:
                wrong.append(f"{path.relative_to(ROOT.parent)}:{line} ({here}) imports {target}")
    assert wrong == []


def test_the_check_sees_an_upward_import(tmp_path):
    """The walk finds imports inside functions, so the test above can fail."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from vmfmir_cli.training.trainer import train\n    import vmfmir_cli.cli.app\n")
    assert _imports(f) == [(2, "training"), (3, "cli")]
