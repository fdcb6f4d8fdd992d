"""``vmfmir eval``: the table, --json, --plots, --compare, --score all and user errors, on tiny runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vmfmir_cli.cli.app import app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_evaluation_run import make_tiny_dataset, make_tiny_run  # noqa: E402

ENV = {"COLUMNS": "200", "NO_COLOR": "1"}
DIRECTIONS = [
    "audio->image", "image->audio", "audio->text", "text->audio", "image->text", "text->image",
    "image+text->audio", "audio+text->image", "audio+image->text",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalcli")
    data = make_tiny_dataset(root / "data")
    runs = root / "runs"
    for name, loss, seed in (("proposed", "proposed", 0), ("baseline", "baseline", 1), ("infonce", "infonce", 2)):
        make_tiny_run(runs / name, data, loss, seed)
    (runs / "LATEST").write_text("proposed\n")
    os.symlink("proposed", runs / "latest", target_is_directory=True)
    return {"root": root, "data": data, "runs": runs}


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """A 200-column console: rich fixes its width at import when COLUMNS is set (e.g. by xdist)."""
    from vmfmir_cli.cli import common

    monkeypatch.setattr(common.out, "_width", 200)
    return common.out


def invoke(*args: str):
    return CliRunner().invoke(app, ["eval", *args], env=ENV)


def test_table_in_the_terminal(tiny):
    res = invoke("--run", str(tiny["runs"] / "latest"), "--data", str(tiny["data"]), "--split", "test", "-q")
    assert res.exit_code == 0, res.output
    out = res.output
    assert "run proposed (proposed), test split (8 items), score expected_cosine" in out
    for name in DIRECTIONS:
        assert name in out
    for column in ("MRR", "R@1", "R@5", "R@10", "MR", "queries", "candidates"):
        assert column in out
    assert "relevance: identical media are one query" in out  # the convention is stated
    assert "R@1 by kappa decile" in out and "Spearman" in out and "D10" in out


def test_json_schema_and_plots(tiny, tmp_path):
    target = tmp_path / "metrics.json"
    plots = tmp_path / "plots"
    res = invoke("--run", str(tiny["runs"] / "proposed"), "--data", str(tiny["data"]), "--json", str(target),
                 "--plots", str(plots), "-q")
    assert res.exit_code == 0, res.output
    doc = json.loads(target.read_text())
    assert {"run", "split", "score", "n_items", "directions", "uncertainty"} <= set(doc)
    assert doc["run"] == "proposed" and doc["split"] == "test" and doc["score"] == "expected_cosine" and doc["n_items"] == 8
    assert list(doc["directions"]) == DIRECTIONS
    for metrics in doc["directions"].values():
        assert set(metrics) == {"mrr", "r1", "r5", "r10", "mr", "n_queries"}
    assert set(doc["uncertainty"]) == {"audio", "image", "text"}
    deciles = doc["uncertainty"]["audio"]["kappa_deciles"]
    assert {"bin", "kappa_min", "kappa_max", "n", "r1", "mrr"} == set(deciles[0])
    assert sorted(p.name for p in plots.iterdir()) == [
        "kappa_by_level.png", "kappa_histograms.png", "r1_by_kappa_decile.png", "recall_at_k.png", "reject_curve.png"
    ]
    amb = doc["ambiguity"]
    # no caption levels in this dataset: no text section
    assert set(amb) == {"audio", "image", "relevance", "kappa_used", "kappa_at_bounds"}
    assert set(amb["kappa_at_bounds"]) == {"audio", "image", "text"}
    assert all(0.0 <= v <= 1.0 for v in amb["kappa_at_bounds"].values())
    assert [v["fraction"] for v in amb["audio"]["views"]] == [0.25, 0.5, 1.0]
    assert amb["audio"]["views"][0]["n_queries"] == amb["audio"]["views"][2]["n_queries"] > 0
    for key in ("spearman_kappa_level", "crop_kappa_drop", "r_auroc"):
        assert isinstance(amb["image"][key], float)
    assert len(amb["image"]["reject_curve"]) == 10
    assert "R@1" in res.output  # the table is still printed with --json FILE


def test_json_to_stdout_replaces_the_table(tiny):
    res = CliRunner().invoke(
        app, ["eval", "--run", str(tiny["runs"] / "infonce"), "--data", str(tiny["data"]), "--json", "-", "-q"], env=ENV
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["score"] == "cosine" and doc["uncertainty"] == {} and doc["loss"] == "infonce"
    amb = doc["ambiguity"]  # every metric that needs no kappa, side by side with the probabilistic runs
    assert amb["kappa_used"] is False and amb["audio"]["r_auroc"] is None and amb["audio"]["views"][0]["mrr"] > 0
    assert any("not trained" in n for n in doc["notes"])


def test_compare_runs_side_by_side(tiny, tmp_path):
    runs = tiny["runs"]
    target = tmp_path / "cmp.json"
    res = invoke("--compare", str(runs / "proposed"), str(runs / "baseline"), str(runs / "infonce"),
                 "--data", str(tiny["data"]), "--json", str(target), "-q")
    assert res.exit_code == 0, res.output
    out = res.output
    assert "vmfmir eval --compare" in out
    assert "proposed: expected_cosine (proposed)" in out and "infonce: cosine (infonce)" in out
    assert "Δ baseline" in out and "Δ infonce" in out and "mean" in out
    doc = json.loads(target.read_text())
    cmp = doc["compare"]
    assert cmp["labels"] == ["proposed", "baseline", "infonce"] and cmp["reference"] == "proposed"
    row = cmp["directions"]["audio->image"]["mrr"]
    mrrs = [r["directions"]["audio->image"]["mrr"] for r in doc["runs"]]
    assert row["values"] == mrrs
    assert row["diff"][0] is None and row["diff"][1] == pytest.approx(mrrs[1] - mrrs[0])
    assert [r["score"] for r in doc["runs"]] == ["expected_cosine", "expected_cosine", "cosine"]


def test_compare_runs_narrow_terminal(tiny, wide_console, monkeypatch):
    monkeypatch.setattr(wide_console, "_width", 60)
    runs = tiny["runs"]
    res = CliRunner().invoke(
        app,
        ["eval", "--compare", str(runs / "proposed"), str(runs / "baseline"), "--data", str(tiny["data"]), "-q"],
        env={"COLUMNS": "60", "NO_COLOR": "1"},
    )
    assert res.exit_code == 0, res.output
    assert "…" not in res.output  # numbers are never elided; the layout turns instead
    assert "baseline" in res.output and "MRR" in res.output


def test_score_all_compares_the_scores_of_one_run(tiny, tmp_path):
    target = tmp_path / "scores.json"
    res = invoke("--score", "all", "--data", str(tiny["data"]), "--run", str(tiny["runs"] / "latest"),
                 "--json", str(target), "-q")
    assert res.exit_code == 0, res.output
    for kind in ("elk", "kl", "bhattacharyya", "expected_cosine", "cosine"):
        assert kind in res.output
    doc = json.loads(target.read_text())
    assert list(doc["scores"]) == ["elk", "kl", "bhattacharyya", "expected_cosine", "cosine"]
    assert doc["compare"]["labels"] == list(doc["scores"])
    assert doc["best_score_by_mean_mrr"] in doc["scores"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--run", "nowhere"], "vmfmir train"),
        (["--split", "dev"], "unknown --split"),
        (["--score", "dot"], "unknown --score"),
        (["somerun"], "--compare"),
        (["--compare"], "needs the runs"),
        (["--compare", "a", "b", "--score", "all"], "cannot be combined"),
    ],
)
def test_user_errors_are_one_line(tiny, args, message):
    res = CliRunner().invoke(app, ["eval", "--data", str(tiny["data"]), *args], env=ENV)
    assert res.exit_code == 1
    assert message in res.output
    assert "Traceback" not in res.output


def test_missing_dataset_is_a_user_error(tiny, tmp_path):
    res = invoke("--run", str(tiny["runs"] / "proposed"), "--data", str(tmp_path / "nodata"))
    assert res.exit_code == 1 and "vmfmir prepare" in res.output


def test_help_does_not_import_torch():
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom vmfmir_cli.cli.app import app\n"
        "r = CliRunner().invoke(app, ['eval', '--help'])\nassert r.exit_code == 0, r.output\n"
        "assert '--compare' in r.output\nassert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_ambiguity_section_on_a_captioned_benchmark(tiny_dataset, make_untrained_run, tmp_path):
    run = make_untrained_run(tmp_path / "run", tiny_dataset)
    res = invoke("--run", str(run), "--data", str(tiny_dataset), "--split", "all", "--json", str(tmp_path / "m.json"), "-q")
    assert res.exit_code == 0, res.output
    assert "Ambiguity: retrieval and kappa by caption level" in res.output
    assert "Is kappa the known ambiguity?" in res.output and "Fusion, image+text->audio" in res.output
    amb = json.loads((tmp_path / "m.json").read_text())["ambiguity"]
    text = amb["text"]
    assert [r["level"] for r in text["levels"]] == [0, 1, 2, 3]
    n_items = 16
    assert text["levels"][0]["n_compatible_median"] == n_items
    assert text["levels"][0]["n_compatible_median"] > text["levels"][1]["n_compatible_median"] >= text["levels"][3]["n_compatible_median"]
    assert isinstance(text["spearman_kappa_compatible"], float)
    assert all(0.0 <= amb[m]["r_auroc_level"] <= 1.0 for m in ("text", "audio", "image"))
    assert "level AUROC" in res.output and "Rejecting the least confident queries" in res.output
    assert [r["level"] for r in amb["fusion"]["levels"]] == [0, 1, 2, 3]
    assert {"product_of_experts", "mean_direction", "image_only"} <= set(amb["fusion"]["levels"][0])
    res = invoke("--run", str(run), "--data", str(tiny_dataset), "--no-ambiguity", "--json", "-", "-q")
    assert res.exit_code == 0 and json.loads(res.stdout)["ambiguity"] == {}
