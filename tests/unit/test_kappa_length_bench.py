"""benchmarks/kappa_length.py: windows per item, and the rank-1 hits the eval counts."""

from __future__ import annotations

import pytest

from benchmarks import kappa_length


def test_windows_and_hits_match_the_encoder_and_the_eval(tiny_dataset, tmp_path, make_untrained_run, one_thread):
    from vmfmir_cli.data.manifest import read_manifest
    from vmfmir_cli.data.media import load_audio
    from vmfmir_cli.evaluation.evaluate import EvalOptions, evaluate_loaded, load_and_encode
    from vmfmir_cli.model import load_model

    run = make_untrained_run(tmp_path / "run", tiny_dataset)
    result = kappa_length.measure(str(run), str(tiny_dataset), split="all")
    model, _ = load_model(run)
    encoder = model.encoder("audio")
    rate = int(encoder.cfg["sample_rate"])
    counts = sorted(encoder.num_windows(load_audio(it.audio, rate).shape[0]) for it in read_manifest(tiny_dataset))
    assert result["n"] == len(counts)
    assert (result["windows"]["min"], result["windows"]["max"]) == (counts[0], counts[-1])
    assert -1.0 <= result["spearman_kappa_windows"] <= 1.0
    loaded = load_and_encode(EvalOptions(run=str(run), data=str(tiny_dataset), split="all", ambiguity=False))
    doc = evaluate_loaded(loaded, EvalOptions(run=str(run), data=str(tiny_dataset), split="all", ambiguity=False),
                          score="expected_cosine").to_json()
    assert set(result["targets"]) == {"image", "text"}
    for target, row in result["targets"].items():
        direction = doc["directions"][f"audio->{target}"]
        assert row["n_queries"] == direction["n_queries"]
        assert row["hits"] == round(direction["r1"] * direction["n_queries"])
        for key in ("auroc_kappa", "auroc_windows"):
            assert row[key] is None or 0.0 <= row[key] <= 1.0


def test_views_pool_like_the_eval_r_auroc(tiny_dataset, tmp_path, make_untrained_run, one_thread):
    from vmfmir_cli.evaluation.evaluate import EvalOptions, evaluate_loaded, load_and_encode

    run = make_untrained_run(tmp_path / "run", tiny_dataset)
    result = kappa_length.measure(str(run), str(tiny_dataset), split="all", views=True)["views"]
    options = EvalOptions(run=str(run), data=str(tiny_dataset), split="all", ambiguity=True)
    audio = evaluate_loaded(load_and_encode(options), options, score="expected_cosine").to_json()["ambiguity"]["audio"]
    assert result["n_queries"] == sum(row["n_queries"] for row in audio["views"])
    assert result["hits"] == round(sum(row["r1"] * row["n_queries"] for row in audio["views"]))
    assert 0 < result["hits"] < result["n_queries"]
    assert result["auroc_kappa"] == pytest.approx(audio["r_auroc"])
    assert result["auroc_fraction"] == pytest.approx(audio["r_auroc_level"])  # the eval's view oracle
    for key in ("auroc_kappa_per_window", "auroc_windows", "auroc_fraction"):
        assert 0.0 <= result[key] <= 1.0
    tempered = result["auroc_kappa_tempered"]
    assert tempered["0.0"] == pytest.approx(result["auroc_kappa"])
    assert tempered["1.0"] == pytest.approx(result["auroc_kappa_per_window"])
    assert all(0.0 <= v <= 1.0 for v in tempered.values())
    depth = result["depth"]
    assert depth["1"]["hits"] == result["hits"]
    assert depth["1"]["auroc_kappa"] == pytest.approx(result["auroc_kappa"])
    assert depth["1"]["auroc_fraction"] == pytest.approx(result["auroc_fraction"])
    hits = [depth[k]["hits"] for k in ("1", "5", "10", "50")]
    assert hits == sorted(hits) and hits[-1] <= result["n_queries"]
    for key in ("spearman_kappa_rank", "spearman_fraction_rank", "spearman_kappa_rank_full_views"):
        assert -1.0 <= result[key] <= 1.0


def test_image_views_of_a_column_window_run(tiny_dataset, tmp_path, one_thread):
    import torch

    from vmfmir_cli.data.manifest import read_manifest
    from vmfmir_cli.data.media import load_image
    from vmfmir_cli.evaluation.evaluate import EvalOptions, evaluate_loaded, load_and_encode
    from vmfmir_cli.model import MultimodalModel, save_model
    from vmfmir_cli.plugins.manager import create_encoder

    torch.manual_seed(0)
    encoders = {"image": create_encoder("score-cnn", {"column_window": 64}), "text": create_encoder("text-transformer")}
    encoders["text"].fit_preprocessing([it.text for it in read_manifest(tiny_dataset) if it.text])
    model = MultimodalModel(encoders, embed_dim=32)
    torch.nn.init.normal_(model.heads["image"].kappa_net[-1].weight, std=0.2)
    run = tmp_path / "run"
    save_model(model, run)
    result = kappa_length.measure(str(run), str(tiny_dataset), split="all", modality="image", views=True)
    enc = model.encoder("image")
    images = {str(it.image): it for it in read_manifest(tiny_dataset)}
    counts = sorted(enc.preprocess(load_image(path)).shape[0] for path in images)
    assert (result["windows"]["min"], result["windows"]["max"]) == (counts[0], counts[-1]) and counts[-1] > 1
    options = EvalOptions(run=str(run), data=str(tiny_dataset), split="all", ambiguity=True)
    image = evaluate_loaded(load_and_encode(options), options, score="expected_cosine").to_json()["ambiguity"]["image"]
    assert result["views"]["n_queries"] == sum(row["n_queries"] for row in image["views"])
    assert image["r_auroc"] is not None and result["views"]["auroc_kappa"] == pytest.approx(image["r_auroc"])


def test_a_run_without_the_modality_is_refused(tiny_dataset, tmp_path, make_untrained_run):
    run = make_untrained_run(tmp_path / "run", tiny_dataset, modalities=("image", "text"))
    with pytest.raises(SystemExit, match="has no audio encoder"):
        kappa_length.measure(str(run), str(tiny_dataset), split="all")


def test_meta_correlations_take_the_numeric_fields_every_item_has():
    from types import SimpleNamespace

    import torch

    items = [SimpleNamespace(meta={"tempo_bpm": t, "name": "x", "flag": True, "bars": 4, **extra})
             for t, extra in ((60, {"only_here": 1}), (90, {}), (120, {}))]
    out = kappa_length.meta_correlations(items, torch.tensor([3.0, 2.0, 1.0]))
    assert out == {"tempo_bpm": pytest.approx(-1.0)}  # constant, boolean, text and partial fields left out


def test_collection_is_read_from_the_captions_facts():
    from types import SimpleNamespace

    from vmfmir_cli.data.captions import Caption

    stated = SimpleNamespace(captions=[Caption("a", 1, {}), Caption("b", 3, {"collection": "essen"})])
    assert kappa_length._collection(stated) == "essen"
    assert kappa_length._collection(SimpleNamespace(captions=[Caption("a")])) is None
    assert kappa_length._collection(SimpleNamespace()) is None
