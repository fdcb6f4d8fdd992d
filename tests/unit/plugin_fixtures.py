"""Helpers shared by the plugin tests: fake installed distributions with a ``vmfmir`` entry point."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

GOOD_PLUGIN = '''
from vmfmir_cli import hookimpl

@hookimpl
def register_encoders(register):
    from vmfmir_cli.encoders.base import Encoder

    class {cls}(Encoder):
        encoder_id = "{encoder_id}"
        modality = "text"
        default_config = {{"dim": 8}}

        def preprocess(self, raw):
            import torch
            return torch.zeros(4)

        def forward(self, batch):
            return batch["x"].new_zeros(batch["x"].shape[0], self.dim)

    register({cls}, aliases=("{encoder_id}-alias",))
'''

BROKEN_ON_IMPORT = 'raise RuntimeError("boom at import")\n'

BROKEN_ON_REGISTER = '''
from vmfmir_cli import hookimpl

@hookimpl
def register_encoders(register):
    raise ValueError("boom at registration")
'''


def make_dist(root: Path, dist_name: str, ep_name: str, module: str, source: str, version: str = "0.1.0") -> None:
    """Write ``module.py`` and a ``.dist-info`` declaring ``[vmfmir] ep_name = module`` under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    info = root / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[vmfmir]\n{ep_name} = {module}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(source))


def good_source(encoder_id: str) -> str:
    cls = "".join(part.capitalize() for part in encoder_id.replace("-", "_").split("_")) + "Encoder"
    return GOOD_PLUGIN.format(cls=cls, encoder_id=encoder_id)


def install_fake_dists(monkeypatch, root: Path, modules: list[str]) -> None:
    """Put ``root`` on sys.path for this test and forget the fake modules afterwards."""
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    for name in modules:
        monkeypatch.delitem(sys.modules, name, raising=False)
