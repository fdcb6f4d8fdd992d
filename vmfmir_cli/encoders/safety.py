"""What an encoder config may ask for: its schema, and the permissions no file can grant.

A run folder (``config.json``, ``checkpoint/state.json``) or a TOML file can come from anyone, so
opening one must never run code or reach the network on its say-so:

* :func:`validate_encoder_config` checks an encoder config against the encoder's
  ``default_config`` (known keys only, each value of the default's JSON type) before the encoder is
  built;
* :data:`PERMISSIONS` are config keys that would let the encoder run code shipped with a model
  (``trust_remote_code``) or download one (``allow_download``). A config may *ask* for them, but
  only the person running the command grants them, with an environment variable
  (``VMFMIR_TRUST_REMOTE_CODE=1``, ``VMFMIR_ALLOW_DOWNLOAD=1``). :func:`check_permissions` refuses
  a config that asks for one that was not granted, and :func:`granted` is what an encoder plugin
  must read before passing such an option on.
"""

from __future__ import annotations

import difflib
import os
from typing import Any, Mapping

from vmfmir_cli.errors import ConfigError

#: config key -> the environment variable that grants it for one command
PERMISSIONS = {
    "trust_remote_code": "VMFMIR_TRUST_REMOTE_CODE",
    "allow_download": "VMFMIR_ALLOW_DOWNLOAD",
}
_WHY = {
    "trust_remote_code": "it would run Python code shipped with the model",
    "allow_download": "it would download a model from the network",
}
_TRUE = ("1", "true", "yes", "on")


def granted(key: str) -> bool:
    """True when the person running this command granted permission ``key`` (its env variable)."""
    return os.environ.get(PERMISSIONS[key], "").strip().lower() in _TRUE


def check_permissions(encoder_id: str, config: Mapping[str, Any], where: str = "the encoder config") -> None:
    """ConfigError when ``config`` asks for a permission (see :data:`PERMISSIONS`) not granted."""
    for key, env in PERMISSIONS.items():
        if config.get(key) and not granted(key):
            raise ConfigError(
                f"encoder {encoder_id!r} in {where} sets {key} = true ({_WHY[key]}); a config file cannot "
                f"grant that. If you trust this model, run the command again with {env}=1"
            )


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return "null" if value is None else type(value).__name__


def _fits(value: Any, default: Any) -> bool:
    if default is None:
        return True  # optional key: any JSON value (the encoder checks it)
    if value is None:
        return False
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    if isinstance(default, dict):
        return isinstance(value, dict)
    return True


def validate_encoder_config(
    encoder_id: str, factory: Any, config: Any, where: str = "the encoder config"
) -> dict[str, Any]:
    """``config`` checked against ``factory.default_config`` (keys and JSON types) and permissions."""
    if not isinstance(config, Mapping):
        raise ConfigError(f"{where}: the config of encoder {encoder_id!r} must be a table, got {_json_type(config)}")
    defaults = getattr(factory, "default_config", None)
    if isinstance(defaults, Mapping):
        for key, value in config.items():
            if key not in defaults:
                close = difflib.get_close_matches(str(key), list(defaults), n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else f"; its keys: {', '.join(sorted(defaults))}"
                raise ConfigError(f"{where}: encoder {encoder_id!r} has no config key {key!r}{hint}")
            if not _fits(value, defaults[key]):
                raise ConfigError(
                    f"{where}: {key} of encoder {encoder_id!r} must be {_json_type(defaults[key])}, "
                    f"got {_json_type(value)} {value!r}"[:300]
                )
    check_permissions(encoder_id, config, where)
    return dict(config)


__all__ = ["PERMISSIONS", "check_permissions", "granted", "validate_encoder_config"]
