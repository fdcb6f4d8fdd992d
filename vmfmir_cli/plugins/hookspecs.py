"""The plugin hooks of vmfmir (pluggy project name ``"vmfmir"``).

A plugin is any importable module (or object) with functions decorated by :data:`hookimpl`. An
installed package exposes it through the ``vmfmir`` entry-point group of its ``pyproject.toml``::

    [project.entry-points.vmfmir]
    my_plugin = "my_package"

Hooks receive callbacks (``register``) rather than returning values, so the host keeps control of
ids, aliases, duplicates and error messages. New hooks, or new arguments of an existing hook, can be
added without breaking old plugins: pluggy only passes a hook implementation the arguments it names.

Every hook below has a docstring with its exact signature and a test in ``tests/unit/test_plugins.py``
(named ``test_hook_<hook name>``); a test checks that both exist.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "vmfmir"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_encoders(register):
    """Register encoder classes (or factories) with vmfmir.

    Signature: ``register_encoders(register)``, where
    ``register(encoder_class_or_factory, aliases=())`` adds one encoder:

    * ``encoder_class_or_factory``: a subclass of :class:`vmfmir_cli.encoders.base.Encoder` with
      class attributes ``encoder_id`` (str, unique across all plugins), ``modality`` (``"audio"``,
      ``"image"`` or ``"text"``) and a default ``dim``; or a callable ``factory(**config) -> Encoder``
      that carries the same three attributes.
    * ``aliases``: extra names under which the encoder can be selected (``--audio-encoder NAME``).

    A duplicate id or alias raises :class:`vmfmir_cli.errors.PluginError`; the host then reports the
    plugin on stderr and skips all of its encoders (fatal with ``VMFMIR_STRICT_PLUGINS=1``).

    Example::

        from vmfmir_cli import hookimpl

        @hookimpl
        def register_encoders(register):
            from my_package.encoder import MyEncoder   # import torch lazily, inside the hook
            register(MyEncoder, aliases=("my",))
    """


__all__ = ["PROJECT_NAME", "hookspec", "hookimpl", "register_encoders"]
