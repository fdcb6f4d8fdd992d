"""Search on synthetic indexes with a lookup "model": fusion, targets, scores, faiss, errors.

The geometry is chosen by hand (orthonormal directions u, v), so each assertion is exact:
an image query near u, a text query near v, and audio items X = u, Y = v, Z = (u + v)/sqrt 2.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import pytest
import torch

from vmfmir_cli.engine.scores import SCORE_KINDS
from vmfmir_cli.errors import ConfigError, DataError
from vmfmir_cli.index import search as search_fn
from vmfmir_cli.index.ranking import _top
from vmfmir_cli.index.search import (
    DEFAULT_SCORE,
    fuse_query,
    parse_weights,
    rank,
)
from vmfmir_cli.index.store import Index

D = 64  # nu = 31: the Olver fast path of the scorer


@dataclass(frozen=True)
class Key:
    """A decoded query input for the lookup model (not a path)."""

    name: str


class _LookupEncoder:
    def __init__(self, modality: str):
        self.modality = modality

    def preprocess(self, raw):
        return raw.name if isinstance(raw, Key) else raw

    def collate(self, items):
        return {"keys": list(items)}


class LookupModel(torch.nn.Module):
    """Stands in for MultimodalModel: each query input maps to a fixed (mu, kappa)."""

    def __init__(self, table: dict[str, dict[str, tuple[torch.Tensor, float]]], dim: int = D):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.table = table
        self.embed_dim = dim

    @property
    def modalities(self):
        return list(self.table)

    @property
    def device(self):
        return self.anchor.device

    def encoder(self, modality):
        if modality not in self.table:
            raise ConfigError(f"no {modality} encoder")
        return _LookupEncoder(modality)

    def encode_params(self, modality, batch):
        rows = [self.table[modality][k] for k in batch["keys"]]
        return torch.stack([r[0] for r in rows]), torch.tensor([float(r[1]) for r in rows])


def _basis():
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(D, 3, generator=g))
    return q[:, 0], q[:, 1], q[:, 2]


def make_index(rows: dict[str, list[tuple[str, torch.Tensor, float]]], ids: list[str]) -> Index:
    """An in-memory index: ``rows[modality]`` = [(item id, mu, kappa), ...]."""
    items = [{"id": i, "group": i, "split": "test", "text": f"text of {i}", "audio": f"/a/{i}.wav",
              "image": f"/i/{i}.png", "meta": {}, "hash": {}} for i in ids]
    index = Index(info={"dim": D, "model_hash": "sha256:x", "run": None, "model_modalities": ["audio", "image", "text"]},
                  items=items)
    for m, entries in rows.items():
        index.mu[m] = torch.stack([torch.nn.functional.normalize(mu, dim=0) for _, mu, _ in entries])
        index.kappa[m] = torch.tensor([float(k) for _, _, k in entries])
        index.rows[m] = torch.tensor([ids.index(i) for i, _, _ in entries])
    return index


@pytest.fixture
def geometry():
    u, v, w = _basis()
    kappa = 50.0
    z = (u + v) / math.sqrt(2.0)
    ids = ["X", "Y", "Z", "W"]
    index = make_index(
        {
            "audio": [("X", u, kappa), ("Y", v, kappa), ("Z", z, kappa * math.sqrt(2.0)), ("W", w, kappa)],
            "image": [("X", u, kappa), ("W", w, kappa)],
        },
        ids,
    )
    model = LookupModel({"image": {"u": (u, kappa)}, "text": {"v": (v, kappa)}, "audio": {"w": (w, kappa)}})
    return index, model


def ids_of(result):
    return [h.id for h in result.hits]


@pytest.mark.parametrize("kind", SCORE_KINDS)
def test_fusion_moves_the_ranking_to_the_item_matching_both(geometry, kind):
    index, model = geometry
    alone = search_fn(index, model, image=Key("u"), target="audio", k=4, score=kind)
    fused = search_fn(index, model, image=Key("u"), text="v", target="audio", k=4, score=kind)
    assert ids_of(alone)[0] == "X"
    assert ids_of(fused)[0] == "Z"  # the item matching image and text
    assert fused.kappa["image"] == pytest.approx(50.0) and fused.kappa["text"] == pytest.approx(50.0)
    assert fused.kappa["fused"] == pytest.approx(50.0 * math.sqrt(2.0), rel=1e-5)  # |k u + k v|, u . v = 0


def test_weights_scale_each_expert(geometry):
    index, model = geometry
    muted = search_fn(index, model, image=Key("u"), text="v", k=4, score="kl", weights="image=1.0,text=0")
    assert ids_of(muted)[0] == "X" and muted.kappa["fused"] == pytest.approx(50.0, rel=1e-5)
    text_heavy = search_fn(index, model, image=Key("u"), text="v", k=4, score="kl", weights={"image": 0.1, "text": 1})
    assert ids_of(text_heavy)[0] == "Y"
    assert text_heavy.weights == {"image": 0.1, "text": 1.0}


def test_kl_and_bhattacharyya_rank_the_identical_distribution_first_elk_need_not():
    u, v, _ = _basis()
    near = torch.nn.functional.normalize(u + 0.3 * v, dim=0)
    index = make_index({"audio": [("self", u, 50.0), ("sharper", u, 500.0), ("broader", u, 10.0), ("near", near, 50.0)]},
                       ["self", "sharper", "broader", "near"])
    model = LookupModel({"audio": {"q": (u, 50.0)}})
    for kind in ("kl", "bhattacharyya"):
        assert ids_of(search_fn(index, model, audio=Key("q"), k=4, score=kind))[0] == "self"
    # ELK in the query's direction grows with the item's kappa: the sharper copy wins
    assert ids_of(search_fn(index, model, audio=Key("q"), k=4, score="elk"))[0] == "sharper"


def test_target_all_ranks_items_by_their_best_modality(geometry):
    index, model = geometry
    result = search_fn(index, model, image=Key("u"), target="all", k=10, score="kl")
    assert ids_of(result)[0] == "X" and result.hits[0].score == pytest.approx(0.0, abs=1e-3)
    assert len(result.hits) == 4 and len(set(ids_of(result))) == 4  # one hit per item
    assert result.searched == index.count("audio") + index.count("image")
    by_id = {h.id: h for h in result.hits}
    assert by_id["W"].modality in ("audio", "image")


def test_result_fields_and_json(geometry):
    index, model = geometry
    result = search_fn(index, model, image=Key("u"), text="v", k=2, score="elk")
    data = result.to_dict()
    assert set(data) >= {"hits", "target", "score", "k", "query", "kappa", "weights", "candidates", "searched"}
    assert [h["rank"] for h in data["hits"]] == [1, 2]
    hit = data["hits"][0]
    assert set(hit) >= {"rank", "id", "score", "modality", "kappa", "text", "audio", "image", "meta", "path"}
    assert hit["path"] == hit["audio"] and data["query"]["text"] == "v"
    assert DEFAULT_SCORE in SCORE_KINDS


def test_k_larger_than_the_index_and_ties_are_deterministic():
    u, _, _ = _basis()
    index = make_index({"audio": [(i, u, 20.0) for i in "abc"]}, list("abc"))
    model = LookupModel({"audio": {"q": (u, 20.0)}})
    result = search_fn(index, model, audio=Key("q"), k=50, score="kl")
    assert ids_of(result) == ["a", "b", "c"]  # equal scores: index order
    assert _top(torch.tensor([1.0, 3.0, 3.0, 2.0]), 3).tolist() == [1, 2, 3]


def test_query_errors(geometry):
    index, model = geometry
    with pytest.raises(DataError, match="no query"):
        search_fn(index, model)
    with pytest.raises(DataError, match="text query is empty"):
        search_fn(index, model, text="   ")
    with pytest.raises(DataError, match="no text items"):
        search_fn(index, model, image=Key("u"), target="text")
    with pytest.raises(ConfigError, match="unknown target"):
        search_fn(index, model, image=Key("u"), target="video")
    with pytest.raises(ConfigError, match="unknown score"):
        search_fn(index, model, image=Key("u"), score="dot")
    with pytest.raises(ConfigError, match="not part of the query"):
        search_fn(index, model, image=Key("u"), weights="text=2")
    with pytest.raises(DataError, match="no such audio file"):
        search_fn(index, model, audio="/nonexistent/q.wav")
    narrow = LookupModel({"image": model.table["image"]})
    index.info["model_modalities"] = ["image"]
    with pytest.raises(ConfigError, match="not trained on text"):
        search_fn(index, narrow, image=Key("u"), text="v")


def test_parse_weights():
    assert parse_weights("image=1.0, text=0.5") == {"image": 1.0, "text": 0.5}
    assert parse_weights(None) == {} and parse_weights("") == {}
    for bad, message in (("image", "MODALITY=NUMBER"), ("video=1", "unknown modality"), ("text=x", "not a number"),
                         ("text=-1", ">= 0")):
        with pytest.raises(ConfigError, match=message):
            parse_weights(bad)


def test_fusing_to_nothing_is_an_error(geometry):
    _, model = geometry
    u, _, _ = _basis()
    from vmfmir_cli.engine.vmf import VonMisesFisher

    a = VonMisesFisher(u[None], torch.tensor([5.0]))
    b = VonMisesFisher(-u[None], torch.tensor([5.0]))
    with pytest.raises(ConfigError, match="no direction"):
        fuse_query({"image": a, "text": b})


def test_faiss_first_stage_matches_exact_scoring(geometry):
    pytest.importorskip("faiss")
    g = torch.Generator().manual_seed(1)
    n = 500
    mu = torch.nn.functional.normalize(torch.randn(n, D, generator=g), dim=-1)
    kappa = torch.exp(torch.rand(n, generator=g) * 4 + 1)
    ids = [f"i{j}" for j in range(n)]
    index = make_index({"audio": [(ids[j], mu[j], float(kappa[j])) for j in range(n)]}, ids)
    query = fuse_query({"audio": __import__("vmfmir_cli.engine.vmf", fromlist=["x"]).VonMisesFisher(mu[:1], kappa[:1])})
    for kind in SCORE_KINDS:
        exact, n_exact, _ = rank(index, query, "audio", 10, kind)
        full, n_full, _ = rank(index, query, "audio", 10, kind, use_faiss=True, rerank=n)
        assert n_exact == n_full == n
        assert [h[0] for h in exact] == [h[0] for h in full]
        assert [h[3] for h in exact] == pytest.approx([h[3] for h in full], abs=1e-3)
    # cosine, expected cosine and kl have exact inner-product first stages: any rerank >= k is exact
    for kind in ("cosine", "expected_cosine", "kl"):
        exact, _, _ = rank(index, query, "audio", 10, kind)
        staged, candidates, _ = rank(index, query, "audio", 10, kind, use_faiss=True, rerank=12)
        assert candidates == 12 and [h[0] for h in exact] == [h[0] for h in staged], kind


def test_faiss_missing_is_a_clear_error(geometry, monkeypatch):
    index, model = geometry
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'vmfmir\[faiss\]'"):
        search_fn(index, model, image=Key("u"), use_faiss=True)
