"""Exceptions for mistakes a user can fix.

The library raises these with a message that names the file or value at fault and says what to do
next; the CLI turns them into one red line on stderr and exit code 1 (no traceback). Anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations


class VmfmirError(Exception):
    """Base class of every user-facing vmfmir error."""


class DataError(VmfmirError):
    """A dataset, manifest, media file or query input is missing or invalid."""


class PluginError(VmfmirError):
    """A plugin failed to load, or an encoder id is unknown or registered twice."""


class CheckpointError(VmfmirError):
    """A run, checkpoint or index is missing, corrupt or belongs to another model."""


class ConfigError(VmfmirError):
    """A configuration file or option has an unknown key or an invalid value."""


class BusyError(VmfmirError):
    """Another vmfmir process holds the lock of a run, index or dataset folder this one would write."""


class WriteError(VmfmirError):
    """A file cannot be written: read-only file system, disk full, no permission, a file in the way."""


__all__ = ["VmfmirError", "DataError", "PluginError", "CheckpointError", "ConfigError", "BusyError", "WriteError"]
