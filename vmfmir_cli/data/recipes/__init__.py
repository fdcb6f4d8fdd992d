"""Dataset builders behind ``vmfmir prepare``: ``music21`` (built-in benchmark) and ``manifest`` (user files)."""
