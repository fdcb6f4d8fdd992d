"""The built-in encoders, registered through the same hook as any third-party plugin."""

from __future__ import annotations

from vmfmir_cli.plugins.hookspecs import hookimpl


@hookimpl
def register_encoders(register):
    from vmfmir_cli.encoders.audio import MelCNN
    from vmfmir_cli.encoders.image import ScoreCNN
    from vmfmir_cli.encoders.text import TextTransformer

    register(MelCNN, aliases=("mel",))
    register(ScoreCNN, aliases=("cnn",))
    register(TextTransformer, aliases=("transformer",))
