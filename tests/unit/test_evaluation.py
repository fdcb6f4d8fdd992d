"""Evaluation maths on hand-made data: tasks and relevance, ranks with ties, kappa deciles, comparisons."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from vmfmir_cli.data.manifest import Item
from vmfmir_cli.engine.vmf import VonMisesFisher, fuse
from vmfmir_cli.evaluation.compare import compare_results
from vmfmir_cli.evaluation.retrieval import ModalityEmbeddings, evaluate_embeddings, query_distribution
from vmfmir_cli.evaluation.tasks import build_task, direction_name, directions_for, media_key, parse_direction
from vmfmir_cli.evaluation.uncertainty import kappa_bins, kappa_rank_correlation, uncertainty_report

ROOT = Path("/data")


def item(i: str, group: str, audio=None, image=None, text=None) -> Item:
    return Item(
        id=i,
        group=group,
        split="test",
        audio=ROOT / audio if audio else None,
        image=ROOT / image if image else None,
        text=text,
    )


# piece A: two performances sharing one score image; piece B: one; C: audio + text only
ITEMS = [
    item("a0", "A", "a0.flac", "A.png", "piece A, slow"),
    item("a1", "A", "a1.flac", "A.png", "piece A, fast"),
    item("b0", "B", "b0.flac", "B.png", "piece B"),
    item("c0", "C", "c0.flac", None, "piece B"),  # same text string as b0
]


def unit(*rows) -> torch.Tensor:
    x = torch.tensor(rows, dtype=torch.float64)
    return x / x.norm(dim=-1, keepdim=True)


def test_direction_names_round_trip():
    assert direction_name(("image", "text"), "audio") == "image+text->audio"
    assert parse_direction("image+text->audio") == (("image", "text"), "audio")
    names = [direction_name(s, t) for s, t in directions_for(["audio", "image", "text"])]
    assert names == [
        "audio->image", "image->audio", "audio->text", "text->audio", "image->text", "text->image",
        "image+text->audio", "audio+text->image", "audio+image->text",
    ]
    assert [direction_name(s, t) for s, t in directions_for(["audio", "text"])] == ["audio->text", "text->audio"]


def test_shared_score_image_is_one_candidate_relevant_to_every_performance():
    task = build_task(ITEMS, ("audio",), "image")
    assert task.candidates == [media_key(ITEMS[0], "image"), media_key(ITEMS[2], "image")]  # A.png, B.png
    assert task.n_queries == 3  # c0 has no image: not a query
    assert task.relevant.tolist() == [[True, False], [True, False], [False, True]]


def test_image_query_is_one_query_relevant_to_every_performance():
    task = build_task(ITEMS, ("image",), "audio")
    assert task.n_queries == 2 and task.n_candidates == 4  # c0's audio is a (never relevant) candidate
    assert task.relevant.tolist() == [[True, True, False, False], [False, False, True, False]]


def test_identical_texts_are_one_candidate():
    task = build_task(ITEMS, ("audio",), "text")
    assert task.candidates == ["piece A, slow", "piece A, fast", "piece B"]
    # b0 and c0 both pair their audio with the text "piece B"
    assert task.relevant.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]]
    back = build_task(ITEMS, ("text",), "audio")
    assert back.relevant.tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1]]


def test_fused_queries_need_both_modalities():
    task = build_task(ITEMS, ("audio", "text"), "image")
    assert task.n_queries == 3 and task.queries[0] == (media_key(ITEMS[0], "audio"), "piece A, slow")
    assert task.relevant.tolist() == [[True, False], [True, False], [False, True]]


def embeddings_for_hand_example():
    """d = 3 directions chosen so the cosine ranks are easy to read off."""
    audio = ModalityEmbeddings(
        [media_key(it, "audio") for it in ITEMS],
        unit([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]),
        torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64),
    )
    image = ModalityEmbeddings(
        [media_key(ITEMS[0], "image"), media_key(ITEMS[2], "image")],
        unit([1, 0, 0], [0, 1, 0]),
        torch.tensor([5.0, 5.0], dtype=torch.float64),
    )
    return {"audio": audio, "image": image}


def test_hand_computed_metrics_with_ties_and_several_relevant_items():
    emb = embeddings_for_hand_example()
    res = evaluate_embeddings(ITEMS, emb, "cosine", run="hand", split="test")
    assert list(res.directions) == ["audio->image", "image->audio"]
    # audio->image, cosine to [A.png, B.png]:
    #   a0 [1,0,0]: (1, 0)   true A -> rank 1
    #   a1 [0,1,0]: (0, 1)   true A -> rank 2
    #   b0 [0,0,1]: (0, 0)   true B, tied with A -> ties count against the query: rank 2
    ai = res.directions["audio->image"]
    assert ai.ranks.tolist() == [1, 2, 2]
    assert ai.metrics == pytest.approx(
        {"mrr": (1 + 0.5 + 0.5) / 3, "r1": 1 / 3, "r5": 1.0, "r10": 1.0, "mr": 2.0, "n_queries": 3}
    )
    assert ai.n_candidates == 2
    # image->audio, cosine of A.png [1,0,0] to audio (a0 1, a1 0, b0 0, c0 .707): relevant {a0, a1}
    #   best relevant a0 (1.0) -> rank 1; B.png [0,1,0]: (0, 1, 0, .707), relevant {b0} (0) -> a1, c0
    #   above and a0 tied -> rank 4
    ia = res.directions["image->audio"]
    assert ia.ranks.tolist() == [1, 4]
    assert ia.metrics["mrr"] == pytest.approx((1 + 0.25) / 2)
    assert ia.metrics["mr"] == pytest.approx(2.5)
    # the query kappa travels with the ranks (audio queries a0, a1, b0)
    assert ai.query_kappa.tolist() == [1.0, 2.0, 3.0]


def test_fused_query_is_the_product_of_experts():
    emb = embeddings_for_hand_example()
    emb["text"] = ModalityEmbeddings(
        ["piece A, slow", "piece A, fast", "piece B"], unit([0, 1, 0], [1, 0, 0], [0, 0, 1]), torch.tensor([1.0, 1.0, 1.0])
    )
    task = build_task(ITEMS, ("audio", "text"), "image")
    q = query_distribution(task, emb)
    rows = torch.tensor([0, 1, 2])
    expected = fuse(
        VonMisesFisher(emb["audio"].mu[rows], emb["audio"].kappa[rows]),
        VonMisesFisher(emb["text"].mu[rows], emb["text"].kappa[rows].double()),
    )
    assert torch.allclose(q.loc, expected.loc) and torch.allclose(q.concentration, expected.concentration)
    res = evaluate_embeddings(ITEMS, emb, "elk")
    assert "audio+text->image" in res.directions and "audio+image->text" in res.directions
    assert "image+text->audio" in res.directions
    # uncertainty pools the single-modality directions of each query modality
    assert set(res.uncertainty) == {"audio", "image", "text"}
    assert set(res.uncertainty["audio"]["directions"]) == {"audio->image", "audio->text"}


def test_every_score_kind_runs_and_cosine_ignores_kappa():
    emb = embeddings_for_hand_example()
    for kind in ("elk", "kl", "bhattacharyya", "expected_cosine", "cosine"):
        res = evaluate_embeddings(ITEMS, emb, kind)
        assert res.score == kind and res.directions["audio->image"].metrics["n_queries"] == 3
    emb["audio"].kappa.mul_(100.0)
    assert evaluate_embeddings(ITEMS, emb, "cosine").directions["audio->image"].ranks.tolist() == [1, 2, 2]


def test_unknown_score_is_a_config_error():
    from vmfmir_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown score"):
        evaluate_embeddings(ITEMS, embeddings_for_hand_example(), "dot")


def test_kappa_deciles_by_hand():
    kappa = torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0, 6.0])
    ranks = torch.tensor([1, 3, 1, 2, 1, 1])
    bins = kappa_bins(kappa, ranks, bins=3)  # sorted by kappa: (1:3), (2:2), (3:1), (4:1), (5:1), (6:1)
    assert [b["n"] for b in bins] == [2, 2, 2]
    assert [b["r1"] for b in bins] == [0.0, 1.0, 1.0]
    assert [(b["kappa_min"], b["kappa_max"]) for b in bins] == [(1.0, 2.0), (3.0, 4.0), (5.0, 6.0)]
    assert bins[0]["mrr"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    # fewer queries than bins: one bin per query
    assert len(kappa_bins(kappa[:4], ranks[:4], bins=10)) == 4
    # ten deciles of 25 queries: sizes differ by at most one
    sizes = [b["n"] for b in kappa_bins(torch.arange(25.0), torch.ones(25, dtype=torch.long))]
    assert sum(sizes) == 25 and max(sizes) - min(sizes) <= 1 and len(sizes) == 10


def test_kappa_rank_correlation():
    kappa = torch.tensor([1.0, 2.0, 3.0, 4.0])
    # reciprocal ranks 1/4, 1/3, 1/2, 1: perfectly increasing with kappa
    assert kappa_rank_correlation(kappa, torch.tensor([4, 3, 2, 1])) == pytest.approx(1.0)
    assert kappa_rank_correlation(kappa, torch.tensor([1, 2, 3, 4])) == pytest.approx(-1.0)
    # ties in the reciprocal ranks get average ranks: rr = (1/2, 1, 1, 1) -> ranks (1, 3, 3, 3)
    rho = kappa_rank_correlation(kappa, torch.tensor([2, 1, 1, 1]))
    rk = torch.tensor([1.0, 2, 3, 4]) - 2.5
    rr = torch.tensor([1.0, 3, 3, 3]) - 2.5
    assert rho == pytest.approx(float((rk * rr).sum() / torch.sqrt((rk * rk).sum() * (rr * rr).sum())))
    assert kappa_rank_correlation(torch.ones(4), torch.tensor([1, 2, 3, 4])) is None  # constant kappa


def test_uncertainty_report_pools_directions_of_a_modality():
    rep = uncertainty_report(
        {
            "audio->image": ("audio", torch.tensor([1.0, 2.0]), torch.tensor([2, 1])),
            "audio->text": ("audio", torch.tensor([3.0, 4.0]), torch.tensor([3, 1])),
            "image->audio": ("image", torch.tensor([1.0, 1.0]), torch.tensor([1, 2])),
        },
        bins=2,
    )
    assert list(rep) == ["audio", "image"]
    assert rep["audio"]["n_queries"] == 4
    assert [b["r1"] for b in rep["audio"]["kappa_deciles"]] == [0.5, 0.5]
    assert rep["audio"]["directions"]["audio->image"]["spearman"] == pytest.approx(1.0)
    assert rep["image"]["spearman"] is None


def result_doc(run: str, mrr: float, r1: float, mr: float, extra_direction: bool = False) -> dict:
    metrics = {"mrr": mrr, "r1": r1, "r5": 1.0, "r10": 1.0, "mr": mr, "n_queries": 4}
    doc = {"run": run, "directions": {"audio->image": dict(metrics), "image->audio": dict(metrics)}}
    if extra_direction:
        doc["directions"]["audio->text"] = dict(metrics)
    return doc


def test_compare_table_differences_best_and_mean():
    docs = [result_doc("base", 0.5, 0.25, 3.0), result_doc("prop", 0.75, 0.5, 2.0, extra_direction=True)]
    docs[1]["directions"]["image->audio"]["mrr"] = 0.25
    cmp = compare_results(docs, labels=["baseline", "proposed"])
    assert cmp["labels"] == ["baseline", "proposed"] and cmp["reference"] == "baseline"
    row = cmp["directions"]["audio->image"]["mrr"]
    assert row["values"] == [0.5, 0.75] and row["diff"] == [None, 0.25] and row["best"] == [1]
    mr = cmp["directions"]["audio->image"]["mr"]
    assert mr["diff"] == [None, -1.0] and mr["best"] == [1]  # lower median rank is better
    assert cmp["directions"]["image->audio"]["mrr"]["best"] == [0]
    assert cmp["directions"]["audio->image"]["r5"]["best"] == [0, 1]  # a tie: both best
    # a direction only one run has: a missing value, no difference
    assert cmp["directions"]["audio->text"]["mrr"]["values"] == [None, 0.75]
    assert cmp["directions"]["audio->text"]["mrr"]["diff"] == [None, None]
    # mean over the directions both have
    assert cmp["mean_over"] == ["audio->image", "image->audio"]
    assert cmp["directions"]["mean"]["mrr"]["values"] == pytest.approx([0.5, 0.5])
    assert list(cmp["directions"])[-1] == "mean"


def test_to_json_writes_nan_as_null_and_has_the_schema():
    res = evaluate_embeddings(ITEMS, embeddings_for_hand_example(), "elk", run="hand", split="test")
    doc = res.to_json()
    for key in ("run", "split", "score", "n_items", "directions", "uncertainty"):
        assert key in doc
    assert doc["n_items"] == 4
    assert set(doc["directions"]["audio->image"]) == {"mrr", "r1", "r5", "r10", "mr", "n_queries"}
    image = doc["uncertainty"]["image"]  # image kappas are all 5: no correlation -> null
    assert image["spearman"] is None
    assert any("constant" in n for n in doc["notes"])
    import json

    json.dumps(doc, allow_nan=False)  # strictly valid JSON
    assert not math.isnan(doc["directions"]["audio->image"]["mrr"])
