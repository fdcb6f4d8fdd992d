"""Checkpoints: optimizer / RNG round trips, atomic replacement, recovery of a kill mid-swap."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import torch

from vmfmir_cli.training import checkpoint as ck


def _model_and_opt(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(
        [{"params": [model[0].weight, model[2].weight], "weight_decay": 0.1}, {"params": [model[0].bias, model[2].bias], "weight_decay": 0.0}],
        lr=1e-2,
        betas=(0.8, 0.95),
    )
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 4)).square().sum().backward()
        opt.step()
    return model, opt


def test_optimizer_round_trip_is_exact():
    model, opt = _model_and_opt()
    tensors, meta = ck.optimizer_to_flat(opt)
    json.dumps(meta)  # the non-tensor part is plain JSON
    model2, opt2 = _model_and_opt(seed=1)
    model2.load_state_dict(model.state_dict())
    ck.optimizer_from_flat(opt2, tensors, json.loads(json.dumps(meta)))
    x = torch.randn(5, 4)
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(x).square().sum().backward()
        o.step()
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    assert opt2.param_groups[0]["betas"] == (0.8, 0.95)


def test_rng_round_trip():
    tensors, meta = ck.rng_state()
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.rand(10), random.random(), np.random.rand()
    ck.set_rng_state(tensors, json.loads(json.dumps(meta)))
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(expected[0], got[0]) and expected[1:] == got[1:]


def _save(run, step):
    return ck.save_checkpoint(run, {"w": torch.full((3,), float(step))}, {"rng.torch": torch.get_rng_state()}, {"step": step})


def test_save_replaces_atomically_and_loads(tmp_path):
    run = tmp_path / "run"
    _save(run, 1)
    _save(run, 2)
    found = ck.find_checkpoint(run)
    assert found.step == 2 and torch.equal(found.model_tensors["w"], torch.full((3,), 2.0))
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint"]
    state = json.loads((run / "checkpoint" / ck.STATE_FILE).read_text())
    assert state["hashes"][ck.MODEL_FILE].startswith("sha256:")


def test_recovers_from_a_kill_between_the_two_renames(tmp_path):
    run = tmp_path / "run"
    _save(run, 5)
    # simulate: new checkpoint fully written to a tmp folder, old one renamed away, then SIGKILL
    newer = run / "checkpoint.tmp-x"
    _save(tmp_path / "other", 7)
    os.replace(tmp_path / "other" / "checkpoint", newer)
    os.replace(run / "checkpoint", run / "checkpoint.old-y")
    found = ck.find_checkpoint(run)
    assert found.step == 7
    ck.cleanup_leftovers(run, found.path)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint"]
    assert ck.find_checkpoint(run).step == 7


def test_incomplete_or_corrupt_folders_are_skipped(tmp_path):
    run = tmp_path / "run"
    _save(run, 3)
    half = run / "checkpoint.tmp-half"
    half.mkdir()
    (half / ck.MODEL_FILE).write_bytes(b"partial")  # killed before state.json was written
    assert ck.find_checkpoint(run).step == 3
    # a flipped byte is caught by the hash
    path = run / "checkpoint" / ck.MODEL_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert ck.find_checkpoint(run) is None
    with pytest.raises(Exception, match="hash"):
        ck._load_folder(run / "checkpoint")
