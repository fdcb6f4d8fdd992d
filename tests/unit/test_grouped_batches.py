"""``batch_group``: batches drawn from items that share a field (e.g. the music21 collection)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from vmfmir_cli.data.captions import Caption
from vmfmir_cli.errors import ConfigError
from vmfmir_cli.training import TrainConfig, train
from vmfmir_cli.training.data import EpochBatchSampler, group_label, grouped_permutation, plan_batches
from vmfmir_cli.training.synthetic import TINY_ENCODERS, make_synthetic_dataset


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_each_batch_holds_one_label_when_the_labels_fill_whole_batches():
    labels = [name for name in "abcd" for _ in range(16)]
    labels = [labels[i] for i in torch.randperm(64, generator=torch.Generator().manual_seed(0)).tolist()]
    perm = grouped_permutation(labels, 8, seed=1, epoch=0)
    assert sorted(perm.tolist()) == list(range(64))
    batches = perm.view(-1, 8).tolist()
    assert all(len({labels[i] for i in batch}) == 1 for batch in batches)
    # the batches are shuffled: the epoch does not walk through the labels one after another
    order = [labels[batch[0]] for batch in batches]
    assert sum(a != b for a, b in zip(order, order[1:])) > 3


def test_the_order_is_fixed_by_seed_and_epoch_and_the_remainder_goes_last():
    labels = ["x"] * 7 + ["y"] * 5 + ["z"] * 3  # 15 items, batches of 4: 3 batches, 3 left over
    a = grouped_permutation(labels, 4, seed=5, epoch=2)
    assert torch.equal(a, grouped_permutation(labels, 4, seed=5, epoch=2))
    assert not torch.equal(a, grouped_permutation(labels, 4, seed=5, epoch=3))
    assert sorted(a.tolist()) == list(range(15))
    # a batch straddles at most two labels (the sequence is cut where one label ends)
    assert all(len({labels[i] for i in batch}) <= 2 for batch in a[:12].view(-1, 4).tolist())


def test_a_fraction_groups_part_of_each_batch_and_draws_the_rest_at_random():
    labels = [name for name in "abcdefgh" for _ in range(32)]  # 256 items, 8 labels
    perm = grouped_permutation(labels, 16, seed=3, epoch=1, fraction=0.25)
    assert sorted(perm.tolist()) == list(range(256))
    assert torch.equal(perm, grouped_permutation(labels, 16, seed=3, epoch=1, fraction=0.25))
    batches = perm.view(-1, 16).tolist()
    # the first 4 rows of a batch are its grouped part: one label, or two where a label ran out
    assert all(len({labels[i] for i in batch[:4]}) <= 2 for batch in batches)
    assert sum(len({labels[i] for i in batch[:4]}) == 1 for batch in batches) >= 10
    # the other 12 come from a uniform shuffle: they spread over several labels
    assert sum(len({labels[i] for i in batch[4:]}) for batch in batches) / len(batches) > 4
    # the largest share of one label in a batch lies between the random and the fully grouped case
    def top_share(p):
        return sum(max(sum(labels[i] == x for i in b) for x in "abcdefgh") for b in p.view(-1, 16).tolist()) / 256
    full, part = top_share(grouped_permutation(labels, 16, 3, 1)), top_share(perm)
    assert full == 1.0 and 0.3 < part < 0.7
    with pytest.raises(ValueError, match="fraction 0 is not in"):
        grouped_permutation(labels, 16, 3, 1, fraction=0)


def test_the_sampler_uses_the_labels():
    labels = ["p"] * 12 + ["q"] * 12
    plan = plan_batches(24, 6, 1)
    batches = list(EpochBatchSampler(24, plan, seed=0, epoch=0, labels=labels))
    assert len(batches) == 4 and all(len({labels[i] for i in b}) == 1 for b in batches)
    with pytest.raises(ValueError, match="3 batch labels for 24 items"):
        EpochBatchSampler(24, plan, seed=0, epoch=0, labels=["p"] * 3)


def test_group_label_reads_the_metadata_then_the_captions_facts():
    captions = [Caption("a tune", 1, {}), Caption("an air from Aird's", 3, {"collection": "airds"})]
    assert group_label(SimpleNamespace(meta={"collection": "essen"}, captions=captions), "collection") == "essen"
    assert group_label(SimpleNamespace(meta={}, captions=captions), "collection") == "airds"
    assert group_label(SimpleNamespace(meta={"parts": 4}, captions=[]), "parts") == "4"
    assert group_label(SimpleNamespace(meta={}, captions=[]), "collection") == ""


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    src = make_synthetic_dataset(tmp_path_factory.mktemp("syn") / "data", groups=16, variants=2)
    rows = [json.loads(line) for line in (src / "manifest.jsonl").read_text().splitlines()]
    for r in rows:
        r["meta"] = {"family": "even" if int(r["group"][-3:]) % 2 == 0 else "odd"}
    (src / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return src


def _config(data, out, **kw):
    return TrainConfig(data=str(data), out=str(out), encoders=TINY_ENCODERS, dim=16, batch_size=8, epochs=1,
                       mc_samples=4, ssw_projections=8, warmup_fraction=0.0, log_every=1, checkpoint_every=0,
                       num_workers=0, **kw)


def test_a_run_trains_with_grouped_batches(families, tmp_path):
    run = train(_config(families, tmp_path / "runs", batch_group="family", name="grouped"))
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(r["type"] == "train" for r in rows)
    assert json.loads((run / "config.json").read_text())["train"]["batch_group"] == "family"


def test_a_run_trains_with_partly_grouped_batches_and_refuses_a_bad_fraction(families, tmp_path):
    run = train(_config(families, tmp_path / "runs", batch_group="family", batch_group_fraction=0.5, name="half"))
    assert json.loads((run / "config.json").read_text())["train"]["batch_group_fraction"] == 0.5
    with pytest.raises(ConfigError, match="batch_group_fraction"):
        train(_config(families, tmp_path / "runs", batch_group="family", batch_group_fraction=1.5, name="bad"))
    assert not (tmp_path / "runs" / "bad").exists()


def test_a_field_no_item_has_is_refused_before_any_work(families, tmp_path):
    with pytest.raises(ConfigError, match="batch_group 'collection': no training item has this field"):
        train(_config(families, tmp_path / "runs", batch_group="collection"))
    assert not (tmp_path / "runs").exists()
