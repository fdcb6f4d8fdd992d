"""The pluggy host: load plugins, isolate broken ones, fill the registry of encoders.

The registry itself (entries, ids, aliases) is :mod:`vmfmir_cli.plugins.registry`.

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
from typing import Any, Iterable, Optional

import pluggy

from vmfmir_cli._version import __version__
from vmfmir_cli.errors import PluginError
from vmfmir_cli.plugins import hookspecs
from vmfmir_cli.plugins.registry import MODALITIES, EncoderEntry, EncoderRegistry

ENTRY_POINT_GROUP = "vmfmir"
BUILTIN_PLUGIN_NAME = "builtin"
DEFAULT_PLUGINS: dict[str, str] = {BUILTIN_PLUGIN_NAME: "vmfmir_cli.plugins.builtin"}
DEFAULT_ENCODERS = {"audio": "mel-cnn", "image": "score-cnn", "text": "text-transformer"}
ENV_LOAD = "VMFMIR_LOAD_PLUGINS"
ENV_STRICT = "VMFMIR_STRICT_PLUGINS"


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
