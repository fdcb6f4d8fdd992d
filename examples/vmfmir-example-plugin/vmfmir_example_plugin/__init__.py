"""A minimal vmfmir encoder plugin: ``char-bow``, a bag of hashed character n-grams + an MLP.

The plugin is this module: one ``@hookimpl`` registering one Encoder class. vmfmir finds it through
the ``vmfmir`` entry point in ``pyproject.toml``; nothing in vmfmir itself changes.
"""

from __future__ import annotations

from vmfmir_cli import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_encoders(register):
    # Import torch-using code inside the hook: `vmfmir --help` never runs it.
    from vmfmir_example_plugin.encoder import CharBowEncoder

    register(CharBowEncoder, aliases=("bow",))
