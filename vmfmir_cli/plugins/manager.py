"""The pluggy host: load plugins, isolate broken ones, keep the registry of encoders.

Loading order (the llm / datasette shape):

1. every entry point of the ``vmfmir`` group (``[project.entry-points.vmfmir]``), each imported on
   its own inside ``try``/``except``: a plugin that raises on import or registration is reported on
   stderr as ``vmfmir: plugin 'NAME' failed to load: <error>`` and skipped;
2. then :data:`DEFAULT_PLUGINS` (the built-in encoders), registered through the same hook.

Environment:

* ``VMFMIR_LOAD_PLUGINS``: unset loads every installed plugin, ``""`` loads none, ``"a,b"`` only the
  entry points named ``a`` and ``b``. The built-in encoders always load.
* ``VMFMIR_STRICT_PLUGINS=1``: a failing plugin raises :class:`PluginError` instead (for authors).

Nothing here imports torch; the built-in encoder modules are imported when their hook runs, i.e.
the first time the registry is needed (never for ``vmfmir --help``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import pluggy

from vmfmir_cli._version import __version__
from vmfmir_cli.errors import PluginError
from vmfmir_cli.plugins import hookspecs

ENTRY_POINT_GROUP = "vmfmir"
BUILTIN_PLUGIN_NAME = "builtin"
DEFAULT_PLUGINS: dict[str, str] = {BUILTIN_PLUGIN_NAME: "vmfmir_cli.plugins.builtin"}
MODALITIES = ("audio", "image", "text")
DEFAULT_ENCODERS = {"audio": "mel-cnn", "image": "score-cnn", "text": "text-transformer"}
ENV_LOAD = "VMFMIR_LOAD_PLUGINS"
ENV_STRICT = "VMFMIR_STRICT_PLUGINS"


# --------------------------------------------------------------------------------------------------
# Registry of encoders
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Plugin loading
# --------------------------------------------------------------------------------------------------


@dataclass
class PluginInfo:
    name: str
    version: Optional[str]
    package: Optional[str]
    builtin: bool
    error: Optional[str] = None


@dataclass
class _State:
    pm: pluggy.PluginManager
    infos: dict[str, PluginInfo] = field(default_factory=dict)
    failed: dict[str, PluginInfo] = field(default_factory=dict)
    registry: Optional[EncoderRegistry] = None
    registry_key: Optional[tuple] = None


_STATE: Optional[_State] = None
_LOCK = threading.RLock()
_WARNED: set[tuple[str, str]] = set()


def strict_mode() -> bool:
    return os.environ.get(ENV_STRICT, "").strip().lower() not in ("", "0", "false", "no", "off")


def selected_plugins() -> Optional[set[str]]:
    """Entry-point names selected by ``VMFMIR_LOAD_PLUGINS`` (None: all)."""
    value = os.environ.get(ENV_LOAD)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _report(state: _State, info: PluginInfo, stage: str, exc: BaseException) -> None:
    """A plugin failed: raise in strict mode, else warn once on stderr and remember it."""
    message = f"vmfmir: plugin '{info.name}' failed to {stage}: {_error_text(exc)}"
    if strict_mode():
        raise PluginError(f"{message} ({ENV_STRICT}=1 makes plugin failures fatal)") from exc
    info.error = _error_text(exc)
    state.failed[info.name] = info
    state.infos.pop(info.name, None)
    key = (info.name, message)
    if key not in _WARNED:
        _WARNED.add(key)
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    seen: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        seen.setdefault(ep.name, ep)  # the same distribution found twice on sys.path counts once
    return list(seen.values())


def _unknown_hooks(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    callers = pm.get_hookcallers(plugin) or []
    return sorted(hc.name for hc in callers if hc.spec is None)


def _register(state: _State, info: PluginInfo, plugin: Any) -> None:
    pm = state.pm
    pm.register(plugin, name=info.name)
    unknown = _unknown_hooks(pm, plugin)
    if unknown:
        pm.unregister(plugin)
        known = ", ".join(sorted(n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "vmfmir_spec")))
        raise PluginError(f"implements unknown hook(s) {', '.join(unknown)} (known hooks: {known})")
    state.infos[info.name] = info


def _load_entry_point(state: _State, ep: importlib.metadata.EntryPoint) -> None:
    dist = getattr(ep, "dist", None)
    info = PluginInfo(
        name=ep.name,
        version=getattr(dist, "version", None),
        package=(dist.metadata["Name"] if dist is not None else None),
        builtin=False,
    )
    try:
        if ep.name in DEFAULT_PLUGINS:
            raise PluginError(f"the plugin name {ep.name!r} is reserved for vmfmir's built-in plugins")
        plugin = ep.load()
        _register(state, info, plugin)
    except Exception as exc:
        _report(state, info, "load", exc)


def _build_state() -> _State:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    state = _State(pm=pm)
    selected = selected_plugins()
    if selected is None or selected:
        available = _entry_points()
        for ep in available:
            if selected is None or ep.name in selected:
                _load_entry_point(state, ep)
        if selected:
            missing = sorted(selected - {ep.name for ep in available} - set(DEFAULT_PLUGINS))
            for name in missing:
                info = PluginInfo(name=name, version=None, package=None, builtin=False)
                _report(state, info, "load", PluginError(f"{ENV_LOAD} names it, but no such plugin is installed"))
    for name, module_name in DEFAULT_PLUGINS.items():
        info = PluginInfo(name=name, version=__version__, package="vmfmir", builtin=True)
        try:
            _register(state, info, importlib.import_module(module_name))
        except Exception as exc:
            _report(state, info, "load", exc)
    return state


def _state() -> _State:
    global _STATE
    with _LOCK:
        if _STATE is None:
            _STATE = _build_state()
        return _STATE


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading plugins on first use."""
    return _state().pm


def reset_plugin_manager() -> None:
    """Forget loaded plugins (tests; or after changing ``VMFMIR_LOAD_PLUGINS`` in-process)."""
    global _STATE
    with _LOCK:
        _STATE = None
        _WARNED.clear()


def get_registry() -> EncoderRegistry:
    """Run ``register_encoders`` of every plugin (cached until the set of plugins changes).

    Each plugin's hook runs on its own: if it raises (a duplicate id included), the plugin is
    reported and none of its encoders is kept.
    """
    state = _state()
    with _LOCK:
        pm = state.pm
        if state.registry is not None and state.registry_key == _plugins_key(pm):
            return state.registry
        registry = EncoderRegistry()
        failed: list[str] = []
        # The built-ins run first, so their ids always win; then pluggy's call order.
        impls = list(reversed(pm.hook.register_encoders.get_hookimpls()))
        impls.sort(key=lambda impl: 0 if impl.plugin_name in DEFAULT_PLUGINS else 1)
        for impl in impls:
            name = impl.plugin_name
            info = state.infos.get(name) or PluginInfo(name=name, version=None, package=None, builtin=False)
            pending: list[EncoderEntry] = []

            def register(obj: Any, aliases: Iterable[str] = (), _name=name, _info=info, _pending=pending):
                entry = registry.make_entry(obj, aliases, plugin=_name, package=_info.package)
                registry.check_free(entry, _pending)
                _pending.append(entry)
                return entry

            try:
                impl.function(*[{"register": register}[arg] for arg in impl.argnames])
            except Exception as exc:
                _report(state, info, "register encoders", exc)
                failed.append(name)
                continue
            for entry in pending:
                registry.add(entry)
        for name in failed:  # skipped: its other hooks must not run either
            if pm.has_plugin(name):
                pm.unregister(name=name)
        state.registry = registry
        state.registry_key = _plugins_key(pm)
        return registry


def _plugins_key(pm: pluggy.PluginManager) -> tuple:
    return tuple((name, id(plugin)) for name, plugin in pm.list_name_plugin())


# --------------------------------------------------------------------------------------------------
# The public lookups
# --------------------------------------------------------------------------------------------------


def get_encoder_class(encoder_id: str) -> Any:
    """The Encoder class (or factory adapter with ``from_config``) registered as ``encoder_id``."""
    return get_registry().get(encoder_id).factory


def get_encoder_entry(encoder_id: str) -> EncoderEntry:
    return get_registry().get(encoder_id)


def create_encoder(encoder_id: str, config: Optional[dict] = None) -> Any:
    """Build an encoder by id or alias from its config (``{}``: its defaults)."""
    return get_encoder_class(encoder_id).from_config(dict(config or {}))


def list_encoders(modality: Optional[str] = None) -> list[EncoderEntry]:
    entries = get_registry().entries()
    return [e for e in entries if modality is None or e.modality == modality]


def default_encoder_id(modality: str) -> str:
    """The built-in encoder id used for ``modality`` when none is chosen."""
    try:
        return DEFAULT_ENCODERS[modality]
    except KeyError:
        raise PluginError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}") from None


def list_plugins() -> list[dict]:
    """Every plugin with its version and encoders (failed ones with ``error`` and no encoders)."""
    state = _state()
    registry = get_registry()
    rows = []
    names = [name for name, _ in state.pm.list_name_plugin()]
    # built-ins first, then the others in load order
    names.sort(key=lambda n: 0 if (state.infos.get(n) and state.infos[n].builtin) else 1)
    for name in names:
        if name in state.failed:
            continue
        info = state.infos.get(name) or PluginInfo(name=name, version=None, package=None, builtin=False)
        encoders = [e.to_dict() for e in registry.entries() if e.plugin == name]
        rows.append(
            {
                "name": name,
                "version": info.version,
                "package": info.package,
                "builtin": info.builtin,
                "encoders": encoders,
            }
        )
    for info in state.failed.values():
        rows.append(
            {
                "name": info.name,
                "version": info.version,
                "package": info.package,
                "builtin": info.builtin,
                "encoders": [],
                "error": info.error,
            }
        )
    return rows


__all__ = [
    "BUILTIN_PLUGIN_NAME",
    "DEFAULT_ENCODERS",
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "EncoderEntry",
    "EncoderRegistry",
    "MODALITIES",
    "create_encoder",
    "default_encoder_id",
    "get_encoder_class",
    "get_encoder_entry",
    "get_plugin_manager",
    "get_registry",
    "list_encoders",
    "list_plugins",
    "reset_plugin_manager",
    "selected_plugins",
    "strict_mode",
]
