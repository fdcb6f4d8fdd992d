"""The registry of encoders: one entry per encoder id (and its aliases), checked as it is added.

An entry records the encoder's id, modality, embedding dimension (when the plugin states it), the
plugin and package that registered it, and its factory: an :class:`~vmfmir_cli.encoders.base.Encoder`
subclass, or a plain callable wrapped so that it builds from a config like one. Ids and aliases are
unique across all plugins; :mod:`vmfmir_cli.plugins.manager` fills the registry from the plugins'
``register_encoders`` hooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

from vmfmir_cli.errors import PluginError

MODALITIES = ("audio", "image", "text")


@dataclass(frozen=True)
class EncoderEntry:
    """One registered encoder: what ``vmfmir plugins`` shows and what lookups return."""

    encoder_id: str
    modality: str
    dim: Optional[int]
    aliases: tuple[str, ...]
    plugin: str
    package: Optional[str]
    factory: Any  # an Encoder subclass, or a _FactoryEncoder wrapping a callable

    def to_dict(self) -> dict:
        return {"id": self.encoder_id, "aliases": list(self.aliases), "modality": self.modality, "dim": self.dim}


class _FactoryEncoder:
    """Gives a registered factory callable the ``from_config`` interface of an Encoder class."""

    def __init__(self, factory: Callable[..., Any], encoder_id: str, modality: str, dim: Optional[int]):
        self.factory = factory
        self.encoder_id = encoder_id
        self.modality = modality
        self.dim = dim
        self.__name__ = getattr(factory, "__name__", encoder_id)
        self.__doc__ = getattr(factory, "__doc__", None)

    def __call__(self, **config: Any) -> Any:
        encoder = self.factory(**config)
        encoder.encoder_id = self.encoder_id  # the saved config must name the registered id
        return encoder

    def from_config(self, config: dict) -> Any:
        return self(**dict(config))

    def __repr__(self) -> str:
        return f"<encoder factory {self.encoder_id!r} ({self.__name__})>"


def _describe(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or repr(obj)


class EncoderRegistry:
    """Encoder ids and aliases -> :class:`EncoderEntry`; duplicates and unknown ids are errors."""

    def __init__(self) -> None:
        self._entries: dict[str, EncoderEntry] = {}
        self._names: dict[str, str] = {}  # id or alias -> id

    # -- building ----------------------------------------------------------------------------------
    def make_entry(self, obj: Any, aliases: Iterable[str] = (), plugin: str = "?", package: Optional[str] = None):
        """Validate ``obj`` (an Encoder class or a factory) and return its entry (not yet added)."""
        if isinstance(aliases, str):
            aliases = (aliases,)
        aliases = tuple(aliases)
        encoder_id = getattr(obj, "encoder_id", None)
        modality = getattr(obj, "modality", None)
        dim = getattr(obj, "dim", None)
        what = _describe(obj)
        if not callable(obj):
            raise PluginError(f"plugin {plugin!r} registered {what}, which is neither an Encoder class nor a factory")
        if not isinstance(encoder_id, str) or not encoder_id.strip():
            raise PluginError(f"plugin {plugin!r} registered {what} without a string 'encoder_id' attribute")
        if modality not in MODALITIES:
            raise PluginError(
                f"encoder {encoder_id!r} of plugin {plugin!r} has modality {modality!r}; "
                f"expected one of {', '.join(MODALITIES)}"
            )
        if dim is not None and not (isinstance(dim, int) and dim > 0):
            raise PluginError(f"encoder {encoder_id!r} of plugin {plugin!r} has an invalid dim {dim!r}")
        for alias in aliases:
            if not isinstance(alias, str) or not alias.strip():
                raise PluginError(f"encoder {encoder_id!r} of plugin {plugin!r} has an invalid alias {alias!r}")
        if not _is_encoder_class(obj):
            obj = _FactoryEncoder(obj, encoder_id, modality, dim)
        return EncoderEntry(encoder_id, modality, dim, aliases, plugin, package, obj)

    def check_free(self, entry: EncoderEntry, pending: Iterable[EncoderEntry] = ()) -> None:
        """Raise PluginError if the id or an alias of ``entry`` is taken."""
        taken = dict(self._names)
        known = dict(self._entries)
        for other in pending:
            for name in (other.encoder_id, *other.aliases):
                taken[name] = other.encoder_id
            known[other.encoder_id] = other
        owners = {i: e.plugin for i, e in known.items()}
        names = (entry.encoder_id, *entry.aliases)
        if len(set(names)) != len(names):
            raise PluginError(f"encoder {entry.encoder_id!r} of plugin {entry.plugin!r} lists a name twice: {names}")
        for name in names:
            if name in taken:
                holder = taken[name]
                kind = "encoder id" if name == entry.encoder_id else "alias"
                raise PluginError(
                    f"{kind} {name!r} of plugin {entry.plugin!r} is already registered "
                    f"(by encoder {holder!r} of plugin {owners.get(holder, '?')!r}); encoder ids and aliases "
                    f"must be unique. Registered: {self._available(taken, known)}"
                )

    def add(self, entry: EncoderEntry) -> None:
        self.check_free(entry)
        self._entries[entry.encoder_id] = entry
        for name in (entry.encoder_id, *entry.aliases):
            self._names[name] = entry.encoder_id

    def register(self, obj: Any, aliases: Iterable[str] = (), plugin: str = "?", package: Optional[str] = None):
        """Validate and add in one step (what tests and scripts use)."""
        entry = self.make_entry(obj, aliases, plugin=plugin, package=package)
        self.add(entry)
        return entry

    # -- lookup ------------------------------------------------------------------------------------
    def get(self, name: str) -> EncoderEntry:
        if name in self._names:
            return self._entries[self._names[name]]
        raise PluginError(
            f"unknown encoder {name!r}; available: {self._available(self._names, self._entries) or 'none'}. "
            "Install the plugin that provides it (`vmfmir plugins` lists what is installed)."
        )

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def entries(self) -> list[EncoderEntry]:
        return list(self._entries.values())

    @staticmethod
    def _available(names: dict[str, str], entries: dict[str, EncoderEntry]) -> str:
        parts = []
        for i in sorted(set(names.values())):
            e = entries.get(i)
            parts.append(f"{i} ({e.modality})" if e else i)
        return ", ".join(parts)


def _is_encoder_class(obj: Any) -> bool:
    if not isinstance(obj, type):
        return False
    try:  # only here does the registry touch torch: the built-in hook imported it already
        from vmfmir_cli.encoders.base import Encoder
    except Exception:  # pragma: no cover - torch missing
        return hasattr(obj, "from_config")
    return issubclass(obj, Encoder)


__all__ = ["EncoderEntry", "EncoderRegistry", "MODALITIES"]
