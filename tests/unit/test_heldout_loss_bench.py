"""benchmarks/heldout_loss.py: the run's contrastive loss on a held-out split, with kappa rescaled."""

from __future__ import annotations

import pytest

from benchmarks import heldout_loss


def test_scores_every_scale_and_finds_the_best(tiny_dataset, tmp_path, make_untrained_run, one_thread):
    run = make_untrained_run(tmp_path / "run", tiny_dataset)
    result = heldout_loss.measure(str(run), str(tiny_dataset), split="all", batches=3)
    assert list(result["loss_by_scale"]) == [f"{s:g}" for s in heldout_loss.SCALES]
    assert result["loss"] == pytest.approx(result["loss_by_scale"]["1"], abs=1e-4)
    assert result["best_scale"] in heldout_loss.SCALES
    assert result["best_loss"] == pytest.approx(min(result["loss_by_scale"].values()), abs=1e-4)
    assert result["best_loss"] <= result["loss"]
    assert set(result["best_scale_by_modality"]) == {"audio", "image", "text"}
    assert len(set(result["loss_by_scale"].values())) > 1  # kappa changes the loss
    again = heldout_loss.measure(str(run), str(tiny_dataset), split="all", batches=3)
    assert again["loss_by_scale"] == result["loss_by_scale"]  # seeded batches and draws


def test_item_rows_keep_one_item_per_group(tiny_dataset, tmp_path, make_untrained_run, one_thread):
    from vmfmir_cli.evaluation.evaluate import EvalOptions, load_and_encode

    run = make_untrained_run(tmp_path / "run", tiny_dataset)
    loaded = load_and_encode(EvalOptions(run=str(run), data=str(tiny_dataset), split="all", ambiguity=False))
    params, masks = heldout_loss.item_rows(loaded)
    groups = {it.group for it in loaded.items}
    for m, (mu, kappa) in params.items():
        assert mu.shape[0] == kappa.shape[0] == masks[m].numel() == len(groups)
