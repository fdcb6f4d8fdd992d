"""The pluggy host: hook registration, lookups, broken plugins, environment controls."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from plugin_fixtures import BROKEN_ON_IMPORT, BROKEN_ON_REGISTER, good_source, install_fake_dists, make_dist
from vmfmir_cli.errors import PluginError
from vmfmir_cli.plugins import hookspecs, manager
from vmfmir_cli.plugins.hookspecs import hookimpl

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fresh_plugins(monkeypatch):
    """Each test loads plugins from scratch with a clean environment, and leaves no trace."""
    monkeypatch.delenv("VMFMIR_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("VMFMIR_STRICT_PLUGINS", raising=False)
    manager.reset_plugin_manager()
    yield
    manager.reset_plugin_manager()


def _toy_encoder(encoder_id="toy-enc", modality="text", dim=8):
    from vmfmir_cli.encoders.base import Encoder

    class Toy(Encoder):
        default_config = {"dim": dim, "scale": 1.0}

        def preprocess(self, raw):
            import torch

            return torch.full((3,), float(len(raw)))

        def forward(self, batch):
            return batch["x"].sum(-1, keepdim=True).expand(-1, self.dim) * self.cfg["scale"]

    Toy.encoder_id = encoder_id
    Toy.modality = modality
    return Toy


class ToyPlugin:
    def __init__(self, *classes, aliases=()):
        self.classes, self.aliases = classes, aliases

    @hookimpl
    def register_encoders(self, register):
        for cls in self.classes:
            register(cls, aliases=self.aliases)


@pytest.fixture
def toy_plugin():
    """Register a toy plugin for one test (the llm conftest pattern) and unregister it afterwards."""
    pm = manager.get_plugin_manager()
    registered = []

    def add(plugin, name="toy"):
        pm.register(plugin, name=name)
        registered.append(name)
        return plugin

    yield add
    for name in registered:
        if pm.has_plugin(name):
            pm.unregister(name=name)


# --------------------------------------------------------------------------------------------------
# Every hook: a documented signature and a test
# --------------------------------------------------------------------------------------------------

HOOKS = sorted(name for name, obj in vars(hookspecs).items() if hasattr(obj, "vmfmir_spec"))


def test_hookspecs_exist():
    assert HOOKS == ["register_encoders"]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    assert f"test_hook_{hook}" in globals(), f"write test_hook_{hook} in {__file__}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_documented_signature(hook):
    spec = getattr(hookspecs, hook)
    args = list(inspect.signature(spec).parameters)
    signature = f"{hook}({', '.join(args)})"
    assert spec.__doc__ and signature in spec.__doc__, f"the docstring of {hook} must show `{signature}`"
    for arg in args:
        assert f"``{arg}(" in spec.__doc__ or f"``{arg}``" in spec.__doc__, f"document the argument {arg!r}"
    internals = (ROOT / "docs" / "internals.md").read_text()
    assert signature in internals, f"docs/internals.md must document {signature}"


def test_hook_register_encoders(toy_plugin):
    Toy = _toy_encoder()
    toy_plugin(ToyPlugin(Toy, aliases=("toy",)))
    assert manager.get_encoder_class("toy-enc") is Toy
    assert manager.get_encoder_class("toy") is Toy
    entry = manager.get_encoder_entry("toy")
    assert (entry.encoder_id, entry.modality, entry.dim, entry.plugin) == ("toy-enc", "text", 8, "toy")
    enc = manager.create_encoder("toy", {"scale": 2.0})
    assert isinstance(enc, Toy) and enc.cfg["scale"] == 2.0
    row = next(p for p in manager.list_plugins() if p["name"] == "toy")
    assert row["encoders"] == [{"id": "toy-enc", "aliases": ["toy"], "modality": "text", "dim": 8}]


def test_hook_implementations_may_omit_arguments(toy_plugin):
    """pluggy passes only the arguments an implementation names (how hooks grow compatibly)."""
    calls = []

    class NoArgs:
        @hookimpl
        def register_encoders(self):
            calls.append("called")

    toy_plugin(NoArgs(), name="noargs")
    manager.get_registry()
    assert calls == ["called"]


# --------------------------------------------------------------------------------------------------
# Registry: ids, aliases, duplicates, unknown ids
# --------------------------------------------------------------------------------------------------


def test_builtin_encoders_are_registered_through_the_hook():
    builtin = next(p for p in manager.list_plugins() if p["name"] == "builtin")
    assert builtin["builtin"] and builtin["package"] == "vmfmir"
    ids = {e["id"]: e for e in builtin["encoders"]}
    for modality in manager.MODALITIES:
        default = manager.default_encoder_id(modality)
        assert ids[default]["modality"] == modality and ids[default]["dim"] > 0
    pm = manager.get_plugin_manager()
    impls = {impl.plugin_name for impl in pm.hook.register_encoders.get_hookimpls()}
    assert "builtin" in impls


def test_default_encoder_id_unknown_modality():
    with pytest.raises(PluginError, match="unknown modality 'video'"):
        manager.default_encoder_id("video")


def test_unknown_id_lists_what_is_available():
    with pytest.raises(PluginError) as info:
        manager.get_encoder_class("nope")
    message = str(info.value)
    assert "unknown encoder 'nope'" in message
    assert "mel-cnn (audio)" in message and "score-cnn (image)" in message and "text-transformer (text)" in message
    assert "vmfmir plugins" in message


def test_registry_duplicates_and_aliases():
    reg = manager.EncoderRegistry()
    reg.register(_toy_encoder("a"), aliases=("x",), plugin="p1")
    with pytest.raises(PluginError, match=r"encoder id 'a' of plugin 'p2' is already registered .*plugin 'p1'"):
        reg.register(_toy_encoder("a"), plugin="p2")
    with pytest.raises(PluginError, match=r"alias 'x' of plugin 'p2' is already registered"):
        reg.register(_toy_encoder("b"), aliases=("x",), plugin="p2")
    with pytest.raises(PluginError, match="encoder id 'x'"):
        reg.register(_toy_encoder("x"), plugin="p2")
    assert reg.get("x").encoder_id == "a"
    assert [e.encoder_id for e in reg.entries()] == ["a"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"encoder_id": ""}, "without a string 'encoder_id'"),
        ({"modality": "video"}, "modality 'video'"),
        ({"dim": 0}, "invalid dim"),
    ],
)
def test_registry_rejects_invalid_encoders(kwargs, match):
    cls = _toy_encoder()
    for key, value in kwargs.items():
        setattr(cls, key, value)
    with pytest.raises(PluginError, match=match):
        manager.EncoderRegistry().register(cls, plugin="p")


def test_registry_accepts_factories():
    Toy = _toy_encoder("fac-target")

    def factory(**config):
        return Toy(**config)

    factory.encoder_id, factory.modality, factory.dim = "fac", "text", 8
    reg = manager.EncoderRegistry()
    entry = reg.register(factory, aliases=("f",), plugin="p")
    enc = reg.get("f").factory.from_config({"scale": 3.0})
    assert isinstance(enc, Toy) and enc.encoder_id == "fac" and enc.cfg["scale"] == 3.0
    assert entry.to_dict() == {"id": "fac", "aliases": ["f"], "modality": "text", "dim": 8}


def test_duplicate_of_a_builtin_skips_the_plugin_with_a_warning(toy_plugin, capsys):
    Impostor = _toy_encoder("mel-cnn", modality="audio")
    Fine = _toy_encoder("fine-enc")
    toy_plugin(ToyPlugin(Fine, Impostor), name="impostor")
    registry = manager.get_registry()
    err = capsys.readouterr().err
    assert "vmfmir: plugin 'impostor' failed to register encoders: PluginError: encoder id 'mel-cnn'" in err
    assert registry.get("mel-cnn").plugin == "builtin"
    assert "fine-enc" not in registry  # a failing plugin is skipped as a whole
    failed = next(p for p in manager.list_plugins() if p["name"] == "impostor")
    assert "mel-cnn" in failed["error"] and failed["encoders"] == []


def test_duplicate_is_fatal_in_strict_mode(toy_plugin, monkeypatch):
    toy_plugin(ToyPlugin(_toy_encoder("score-cnn", modality="image")), name="impostor")
    monkeypatch.setenv("VMFMIR_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="plugin 'impostor' failed to register encoders"):
        manager.get_registry()


# --------------------------------------------------------------------------------------------------
# Entry points: broken plugins, VMFMIR_LOAD_PLUGINS, VMFMIR_STRICT_PLUGINS
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_dists(tmp_path, monkeypatch):
    """Three installed fake plugins: good_a (encoder ep-a), good_b (ep-b), broken (raises on import)."""
    suffix = tmp_path.name.replace("-", "_")
    modules = {name: f"vmfmir_fake_{name}_{suffix}" for name in ("good_a", "good_b", "broken")}
    make_dist(tmp_path, "fake-good-a", "good_a", modules["good_a"], good_source("ep-a"), version="1.2.3")
    make_dist(tmp_path, "fake-good-b", "good_b", modules["good_b"], good_source("ep-b"))
    make_dist(tmp_path, "fake-broken", "broken", modules["broken"], BROKEN_ON_IMPORT)
    install_fake_dists(monkeypatch, tmp_path, list(modules.values()))
    return modules


def test_entry_point_plugins_load_and_a_broken_one_is_skipped(fake_dists, capsys):
    registry = manager.get_registry()
    assert "ep-a" in registry and "ep-b-alias" in registry and "mel-cnn" in registry
    err = capsys.readouterr().err
    assert "vmfmir: plugin 'broken' failed to load: RuntimeError: boom at import" in err
    rows = {p["name"]: p for p in manager.list_plugins()}
    assert rows["good_a"]["version"] == "1.2.3" and rows["good_a"]["package"] == "fake-good-a"
    assert rows["good_a"]["encoders"][0]["id"] == "ep-a"
    assert rows["broken"]["error"] == "RuntimeError: boom at import"
    manager.get_registry()
    assert capsys.readouterr().err == ""  # warned once per process


def test_broken_plugin_is_fatal_in_strict_mode(fake_dists, monkeypatch):
    monkeypatch.setenv("VMFMIR_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="plugin 'broken' failed to load: RuntimeError: boom at import"):
        manager.get_plugin_manager()


def test_plugin_raising_in_its_hook_is_skipped(tmp_path, monkeypatch, capsys):
    module = f"vmfmir_fake_reg_{tmp_path.name.replace('-', '_')}"
    make_dist(tmp_path, "fake-reg", "regfail", module, BROKEN_ON_REGISTER)
    install_fake_dists(monkeypatch, tmp_path, [module])
    assert "mel-cnn" in manager.get_registry()
    assert "plugin 'regfail' failed to register encoders: ValueError: boom at registration" in capsys.readouterr().err
    assert not manager.get_plugin_manager().has_plugin("regfail")


def test_load_plugins_empty_loads_none(fake_dists, monkeypatch, capsys):
    monkeypatch.setenv("VMFMIR_LOAD_PLUGINS", "")
    names = [p["name"] for p in manager.list_plugins()]
    assert names == ["builtin"]
    assert capsys.readouterr().err == ""


def test_load_plugins_selects(fake_dists, monkeypatch, capsys):
    monkeypatch.setenv("VMFMIR_LOAD_PLUGINS", "good_b, missing_one")
    names = [p["name"] for p in manager.list_plugins()]
    assert "good_b" in names and "good_a" not in names and "broken" not in names and "builtin" in names
    assert "ep-b" in manager.get_registry() and "ep-a" not in manager.get_registry()
    assert "plugin 'missing_one' failed to load" in capsys.readouterr().err


def test_unknown_hook_is_reported(tmp_path, monkeypatch, capsys):
    module = f"vmfmir_fake_typo_{tmp_path.name.replace('-', '_')}"
    source = "from vmfmir_cli import hookimpl\n\n@hookimpl\ndef register_encoder(register):\n    pass\n"
    make_dist(tmp_path, "fake-typo", "typo", module, source)
    install_fake_dists(monkeypatch, tmp_path, [module])
    manager.get_registry()
    err = capsys.readouterr().err
    assert "plugin 'typo' failed to load" in err and "unknown hook(s) register_encoder" in err


def test_reserved_name_is_rejected(tmp_path, monkeypatch, capsys):
    module = f"vmfmir_fake_res_{tmp_path.name.replace('-', '_')}"
    make_dist(tmp_path, "fake-reserved", "builtin", module, good_source("res-enc"))
    install_fake_dists(monkeypatch, tmp_path, [module])
    assert "mel-cnn" in manager.get_registry() and "res-enc" not in manager.get_registry()
    assert "reserved" in capsys.readouterr().err


def test_importing_the_host_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, vmfmir_cli, vmfmir_cli.plugins.manager, vmfmir_cli.cli.plugins_cmd; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
