"""The disk feature cache: one computation per distinct input, never a wrong or unsafe read."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from safetensors.torch import save

from vmfmir_cli.encoders.feature_cache import ENV, FORMAT, FeatureCache, cache_root, input_key


class Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self, raw):
        self.calls += 1
        return raw.float().cumsum(0) * 2


def test_computes_once_per_input_and_reads_the_same_tensor(tmp_path):
    cache, f = FeatureCache("enc", {"hop": 512}, root=tmp_path), Counter()
    x, y = torch.randn(1000), torch.randn(1000)
    first = cache(x, f)
    assert torch.equal(cache(x, f), first) and f.calls == 1
    assert torch.equal(cache(y, f), f(y)) and f.calls == 3  # another input misses
    again = FeatureCache("enc", {"hop": 512}, root=tmp_path)  # another process, same folder
    assert torch.equal(again(x, f), first) and f.calls == 3 and (again.hits, again.misses) == (1, 0)
    assert (cache.folder / "signature.json").is_file()


def test_the_key_is_the_exact_input_and_the_signature():
    x = torch.arange(6, dtype=torch.float32)
    assert input_key(x) == input_key(x.clone())
    assert input_key(x) != input_key(x.reshape(2, 3))  # same bytes, other shape
    assert input_key(x) != input_key(x.double())
    z = x.clone()
    z[3] += 1e-6
    assert input_key(x) != input_key(z)
    a, b = FeatureCache("enc", {"hop": 512}, root="r"), FeatureCache("enc", {"hop": 256}, root="r")
    assert a.folder != b.folder and a.folder.parent == b.folder.parent


@pytest.mark.parametrize("what", ["garbage", "truncated", "two tensors", "other key", "no format"])
def test_a_bad_file_is_ignored_and_recomputed(tmp_path, what):
    cache, f = FeatureCache("enc", {}, root=tmp_path), Counter()
    x = torch.randn(50)
    good = cache(x, f)
    path = cache.path(input_key(x))
    blob = path.read_bytes()
    bad = {
        "garbage": b"\x00" * 40,
        "truncated": blob[: len(blob) // 2],
        "two tensors": save({"x": good, "y": good.clone()}, metadata={"format": FORMAT, "key": input_key(x)}),
        "other key": save({"x": good + 1}, metadata={"format": FORMAT, "key": "0" * 64}),  # a file renamed
        "no format": save({"x": good + 1}),
    }[what]
    path.write_bytes(bad)
    assert torch.equal(cache(x, f), good) and f.calls == 2
    assert torch.equal(FeatureCache("enc", {}, root=tmp_path)(x, f), good) and f.calls == 2  # rewritten


def test_the_cache_never_unpickles(tmp_path):
    cache = FeatureCache("enc", {}, root=tmp_path)
    x = torch.randn(5)
    path = cache.path(input_key(x))
    path.parent.mkdir(parents=True)

    class Boom:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "ran"),))

    path.write_bytes(pickle.dumps(Boom()))
    assert cache.get(input_key(x)) is None and not (tmp_path / "ran").exists()


def test_off_non_tensors_and_an_unwritable_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, "off")
    assert cache_root() is None and not FeatureCache("enc", {}).enabled
    monkeypatch.setenv(ENV, str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv(ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "vmfmir" / "features"
    cache, f = FeatureCache("enc", {}, root=tmp_path / "c"), Counter()
    assert cache("text", lambda s: s.upper()) == "TEXT"  # not a tensor: computed, not stored
    (tmp_path / "ro").write_text("a file where the folder should be")
    broken = FeatureCache("enc", {}, root=tmp_path / "ro")
    with pytest.warns(RuntimeWarning, match="cannot be written"):
        out = broken(torch.ones(3), f)
    assert torch.equal(out, f(torch.ones(3))) and not broken.enabled  # computed; the cache turned off
    assert torch.equal(broken(torch.ones(3), f), out)  # off now: no second write, no second warning


def test_pickles_for_dataloader_workers(tmp_path):
    cache = FeatureCache("enc", {"a": [1, 2]}, root=tmp_path)
    copy = pickle.loads(pickle.dumps(cache))
    assert copy.folder == cache.folder and copy.signature == {"a": [1, 2]}
