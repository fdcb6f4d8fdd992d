"""``python -m vmfmir_cli`` is the ``vmfmir`` command (torchrun needs a module to launch)."""

from vmfmir_cli.cli.app import main

if __name__ == "__main__":
    main()
