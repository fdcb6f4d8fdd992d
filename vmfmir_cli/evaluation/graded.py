"""The graded queries of a split and the ``ambiguity`` section of ``vmfmir eval``.

Graded queries carry a known amount of ambiguity:

* audio and image: the views of :data:`vmfmir_cli.data.views.VIEW_FRACTIONS` (a quarter, half and
  all of the excerpt / score image, from its start), every distinct media of the split, against the
  full media of the other modalities;
* text, when the dataset has captions with levels: every caption of every item (level 3 ... 0),
  against the audio and images of the split. A caption query has exactly one correct answer, the
  media of its own item (a level-0 caption such as "a piece of music" is shared by many items and
  is then many queries, each with its own item as the answer: that is what makes it ambiguous).

:func:`encode_graded` encodes what the full-media embeddings do not already hold (views f < 1,
caption texts); :func:`ambiguity_report` computes the section from embeddings alone (no model),
so tests can build embeddings by hand. The measurements themselves are in :mod:`.ambiguity`.

Fusion (image + text -> audio, by caption level): the full score image fused with each caption
as a product of experts (what ``vmfmir query --image --text`` does), against the plain mean of the
two mean directions scored by cosine (what a deterministic model would do) and the image alone.
The correct answer is the item's own recording, for all three.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import torch

from vmfmir_cli.data.captions import LEVEL_NAMES, has_levels, item_captions, n_compatible
from vmfmir_cli.data.manifest import Item
from vmfmir_cli.data.views import VIEW_FRACTIONS, VIEW_MODALITIES, view
from vmfmir_cli.engine.metrics import ranks_from_scores
from vmfmir_cli.engine.scores import score
from vmfmir_cli.engine.vmf import VonMisesFisher, fuse
from vmfmir_cli.evaluation.ambiguity import (
    crop_kappa_drop,
    level_table,
    rank_correlation,
    reject_curve,
    roc_auc,
    roc_auc_interval,
)
from vmfmir_cli.evaluation.retrieval import ModalityEmbeddings
from vmfmir_cli.evaluation.tasks import build_task, media_key, unique_media

#: ``on_progress(label, done, total)``
ProgressFn = Callable[[str, int, int], None]

RELEVANCE = (
    "views: a view of a media is a query with the same correct answers as the full media; captions: one query "
    "per caption of each item, whose only correct answer is that item's media"
)


@dataclass
class CaptionQueries:
    """Every caption of the split's items: ``texts[q]``, ``levels[q]``, ``items[q]`` (index into the
    split), ``n_compatible[q]``; ``embeddings`` keyed by caption text."""

    texts: list[str]
    levels: list[int]
    items: list[int]
    n_compatible: list[int]
    embeddings: Optional[ModalityEmbeddings] = None


@dataclass
class GradedEmbeddings:
    """``views[m][f]``: embeddings of the views of fraction ``f`` of every media of ``m`` (f = 1 is the
    full media); ``captions``: the caption queries (None when the dataset has no levels)."""

    views: dict[str, dict[float, ModalityEmbeddings]] = field(default_factory=dict)
    captions: Optional[CaptionQueries] = None


def caption_queries(items: Sequence[Item]) -> Optional[CaptionQueries]:
    """The caption queries of ``items`` (None when no caption carries a level)."""
    if not has_levels(items):
        return None
    texts, levels, owners, caps = [], [], [], []
    for i, it in enumerate(items):
        for c in item_captions(it):
            texts.append(c.text)
            levels.append(3 if c.level is None else int(c.level))
            owners.append(i)
            caps.append(c)
    return CaptionQueries(texts, levels, owners, n_compatible(caps, items))


def encode_graded(
    model: Any,
    items: Sequence[Item],
    full: Mapping[str, ModalityEmbeddings],
    batch_size: int = 32,
    device: Optional[str] = None,
    on_progress: Optional[ProgressFn] = None,
    sample_rate: Optional[int] = None,
    fractions: Sequence[float] = VIEW_FRACTIONS,
    chunk: int = 128,
) -> GradedEmbeddings:
    """Encode the views (f < 1) of the split's audio and images and the split's captions."""
    from vmfmir_cli.evaluation.evaluate import representatives
    from vmfmir_cli.index.encode import encode_items, model_sample_rate, raw_input

    rate = int(sample_rate or model_sample_rate(model))
    graded = GradedEmbeddings()
    partial = [f for f in fractions if f < 1.0]
    for m in VIEW_MODALITIES:
        if m not in full:
            continue
        graded.views[m] = {1.0: full[m]}
        if not partial:
            continue
        reps = representatives(items, m)
        keys = [media_key(it, m) for it in reps]
        mus: dict[float, list[torch.Tensor]] = {f: [] for f in partial}
        kappas: dict[float, list[torch.Tensor]] = {f: [] for f in partial}
        total = len(reps) * len(partial)
        done = 0
        if on_progress is not None:
            on_progress(f"{m} views", 0, total)
        for start in range(0, len(reps), chunk):
            raws = [raw_input(it, m, rate) for it in reps[start : start + chunk]]
            for f in partial:
                mu, kappa = encode_items(
                    model, [view(r, m, f) for r in raws], m, batch_size=batch_size, device=device, sample_rate=rate
                )
                mus[f].append(mu)
                kappas[f].append(kappa)
                done += len(raws)
                if on_progress is not None:
                    on_progress(f"{m} views", done, total)
        for f in partial:
            graded.views[m][f] = ModalityEmbeddings(list(keys), torch.cat(mus[f]), torch.cat(kappas[f]))
    queries = caption_queries(items) if "text" in full else None
    if queries is not None:
        unique = list(dict.fromkeys(queries.texts))
        callback = None
        if on_progress is not None:

            def callback(done, total, *_):
                on_progress("captions", int(done), int(total))

            on_progress("captions", 0, len(unique))
        mu, kappa = encode_items(
            model, unique, "text", batch_size=max(batch_size, 64), device=device, on_progress=callback
        )
        queries.embeddings = ModalityEmbeddings(unique, mu, kappa)
        graded.captions = queries
    return graded


# --------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------


def _own_media_index(items: Sequence[Item], owners: Sequence[int], target: str, candidates: list[str]) -> torch.Tensor:
    index = {k: i for i, k in enumerate(candidates)}
    return torch.tensor([index[media_key(items[i], target)] for i in owners], dtype=torch.long)


def _summary(kappa: Optional[torch.Tensor], ranks: torch.Tensor, groups: torch.Tensor, level: torch.Tensor) -> dict:
    """R-AUROC (with its 95% interval from a bootstrap over ``groups``, the item each query comes
    from), the R-AUROC of the known ``level`` itself (caption level or view fraction: what a kappa
    that knows the known ambiguity exactly, and nothing else, would score; needs no kappa) and the
    reject curve."""
    hits = (ranks <= 1).to(torch.float64)
    interval = None if kappa is None else roc_auc_interval(kappa, hits.bool(), groups)
    return {
        "r_auroc": None if kappa is None else roc_auc(kappa, hits.bool()),
        "r_auroc_ci95": None if interval is None else list(interval),
        "r_auroc_level": roc_auc(level, hits.bool()),
        "reject_curve": None if kappa is None else reject_curve(kappa, hits),
    }


@dataclass
class ViewQueries:
    """One view fraction of one direction: the queries' media ``keys``, their vMFs ``queries`` (the
    view ``fraction`` of each), the direction's ``candidates`` and the (Q, N) ``scores``."""

    target: str
    fraction: float
    keys: list[str]
    queries: VonMisesFisher
    candidates: VonMisesFisher
    scores: torch.Tensor
    relevant: torch.Tensor

    def ranks(self) -> torch.Tensor:
        return ranks_from_scores(self.scores, self.relevant)


def view_queries(
    items: Sequence[Item],
    full: Mapping[str, ModalityEmbeddings],
    views: Mapping[float, ModalityEmbeddings],
    modality: str,
    kind: str,
) -> Iterator[ViewQueries]:
    """The graded queries of ``modality`` as the eval pools them: for every other modality of
    ``full`` (in order) that the split can answer, every view fraction (ascending) of every query
    media, scored with ``kind`` against the full candidates. Yields :class:`ViewQueries`."""
    for target in [t for t in full if t != modality]:
        task = build_task(items, (modality,), target)
        if task.n_queries == 0:
            continue
        keys = [q[0] for q in task.queries]
        cands = full[target].take(task.candidates)
        for f in sorted(views):
            q = views[f].take(keys)
            yield ViewQueries(target, float(f), keys, q, cands, score(q, cands, kind=kind), task.relevant)


def _view_section(
    items: Sequence[Item],
    full: Mapping[str, ModalityEmbeddings],
    views: Mapping[float, ModalityEmbeddings],
    modality: str,
    kind: str,
    use_kappa: bool,
) -> Optional[dict]:
    fractions = sorted(views)
    obs_f, obs_k, obs_r, obs_g = [], [], [], []
    key_ids: dict[str, int] = {}  # a query's media: its views and targets resample together
    targets: list[str] = []
    for vq in view_queries(items, full, views, modality, kind):
        if vq.target not in targets:
            targets.append(vq.target)
        obs_f.append(torch.full((len(vq.keys),), vq.fraction, dtype=torch.float64))
        obs_k.append(vq.queries.concentration.to(torch.float64))
        obs_r.append(vq.ranks().to(torch.float64))
        obs_g.append(torch.tensor([key_ids.setdefault(k, len(key_ids)) for k in vq.keys], dtype=torch.long))
    if not targets:
        return None
    f_all, k_all, r_all = torch.cat(obs_f), torch.cat(obs_k), torch.cat(obs_r)
    keys = list(views[1.0].keys)
    per_query_f = torch.cat([torch.full((len(keys),), float(f), dtype=torch.float64) for f in fractions])
    per_query_k = torch.cat([views[f].take(keys).concentration.to(torch.float64) for f in fractions])
    section = {
        "targets": targets,
        "views": level_table(f_all, k_all if use_kappa else None, r_all, key="fraction", integer=False),
        "spearman_kappa_level": rank_correlation(per_query_k, per_query_f) if use_kappa else None,
        "crop_kappa_drop": (
            crop_kappa_drop(views[min(fractions)].take(keys).concentration, views[1.0].take(keys).concentration)
            if use_kappa and min(fractions) < 1.0
            else None
        ),
    }
    section.update(_summary(k_all if use_kappa else None, r_all, torch.cat(obs_g), f_all))
    return section


def caption_ranks(
    items: Sequence[Item], full: Mapping[str, ModalityEmbeddings], queries: CaptionQueries, kind: str
) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """Per target modality (audio, image) of the caption queries: ``(target, query indices (Q,),
    1-based ranks (Q,))``; a caption's only correct answer is its own item's media. The indices
    point into ``queries.texts`` (captions whose item lacks the target are left out)."""
    q = queries.embeddings.take(queries.texts)
    out = []
    for target in [t for t in full if t != "text"]:
        have = [j for j, i in enumerate(queries.items) if media_key(items[i], target) is not None]
        if not have:
            continue
        candidates = unique_media(items, target)
        sel = torch.tensor(have, dtype=torch.long)
        rel = _own_media_index(items, [queries.items[j] for j in have], target, candidates)
        sub = VonMisesFisher(q.loc[sel], q.concentration[sel], validate_args=False)
        out.append((target, sel, ranks_from_scores(score(sub, full[target].take(candidates), kind=kind), rel)))
    return out


def _text_section(
    items: Sequence[Item], full: Mapping[str, ModalityEmbeddings], queries: CaptionQueries, kind: str, use_kappa: bool
) -> Optional[dict]:
    per_target = caption_ranks(items, full, queries, kind)
    if not per_target:
        return None
    kappa = queries.embeddings.take(queries.texts).concentration.to(torch.float64)
    levels = torch.tensor(queries.levels, dtype=torch.float64)
    l_all = torch.cat([levels[sel] for _, sel, _ in per_target])
    k_all = torch.cat([kappa[sel] for _, sel, _ in per_target])
    r_all = torch.cat([ranks.to(torch.float64) for _, _, ranks in per_target])
    table = level_table(l_all, k_all if use_kappa else None, r_all)
    comp = torch.tensor(queries.n_compatible, dtype=torch.float64)
    for row in table:
        sel = levels == row["level"]
        row["name"] = LEVEL_NAMES.get(row["level"], "")
        row["n_compatible_median"] = float(comp[sel].median()) if bool(sel.any()) else None
        row["n_compatible_mean"] = float(comp[sel].mean()) if bool(sel.any()) else None
    section = {
        "targets": [t for t, _, _ in per_target],
        "n_captions": len(queries.texts),
        "levels": table,
        "spearman_kappa_level": rank_correlation(kappa, levels) if use_kappa else None,
        "spearman_kappa_compatible": rank_correlation(kappa, -torch.log(comp.clamp_min(1))) if use_kappa else None,
    }
    owner = torch.tensor(queries.items, dtype=torch.long)  # a caption's item: its captions resample together
    groups = torch.cat([owner[sel] for _, sel, _ in per_target])
    section.update(_summary(k_all if use_kappa else None, r_all, groups, l_all))
    return section


def _mrr_r1(ranks: torch.Tensor) -> dict:
    r = ranks.to(torch.float64)
    return {"mrr": float(r.reciprocal().mean()), "r1": float((r <= 1).to(torch.float64).mean())}


def fusion_ranks(
    items: Sequence[Item], full: Mapping[str, ModalityEmbeddings], queries: CaptionQueries, kind: str
) -> Optional[dict[str, torch.Tensor]]:
    """The image + caption -> audio queries: ``{"queries": caption indices (Q,), "levels": (Q,),
    "product_of_experts" / "mean_direction" / "image_only": 1-based ranks (Q,)}`` (None without
    audio, image and text). The correct answer is the item's own recording."""
    if not {"image", "text", "audio"} <= set(full):
        return None
    have = [
        j for j, i in enumerate(queries.items)
        if media_key(items[i], "image") is not None and media_key(items[i], "audio") is not None
    ]
    if not have:
        return None
    candidates = unique_media(items, "audio")
    cands = full["audio"].take(candidates)
    owners = [queries.items[j] for j in have]
    rel = _own_media_index(items, owners, "audio", candidates)
    img = full["image"].take([media_key(items[i], "image") for i in owners])
    txt = queries.embeddings.take([queries.texts[j] for j in have])
    mean_dir = torch.nn.functional.normalize(img.loc + txt.loc, dim=-1)
    mean = VonMisesFisher(mean_dir, torch.ones(len(have), dtype=mean_dir.dtype), validate_args=False)
    return {
        "queries": torch.tensor(have, dtype=torch.long),
        "levels": torch.tensor([queries.levels[j] for j in have]),
        "product_of_experts": ranks_from_scores(score(fuse(img, txt), cands, kind=kind), rel),
        "mean_direction": ranks_from_scores(score(mean, cands, kind="cosine"), rel),
        "image_only": ranks_from_scores(score(img, cands, kind=kind), rel),
    }


FUSION_KINDS = ("product_of_experts", "mean_direction", "image_only")


def _fusion_section(
    items: Sequence[Item], full: Mapping[str, ModalityEmbeddings], queries: CaptionQueries, kind: str
) -> Optional[dict]:
    fused = fusion_ranks(items, full, queries, kind)
    if fused is None:
        return None
    levels = fused["levels"]
    rows = []
    for lvl in sorted(set(levels.tolist())):
        sel = levels == lvl
        rows.append({"level": int(lvl), "n_queries": int(sel.sum()), **{k: _mrr_r1(fused[k][sel]) for k in FUSION_KINDS}})
    return {"direction": "image+text->audio", "score": kind, "levels": rows}


def ambiguity_report(
    items: Sequence[Item],
    full: Mapping[str, ModalityEmbeddings],
    graded: GradedEmbeddings,
    kind: str,
    use_kappa: bool = True,
) -> dict:
    """The ``ambiguity`` section: ``{modality: {...}, "fusion": {...}, "relevance": ...}``.

    ``use_kappa=False`` (deterministic runs) leaves out every number that needs kappa (None).
    """
    report: dict[str, Any] = {}
    for m in VIEW_MODALITIES:
        if m in graded.views:
            section = _view_section(items, full, graded.views[m], m, kind, use_kappa)
            if section is not None:
                report[m] = section
    if graded.captions is not None and graded.captions.embeddings is not None:
        section = _text_section(items, full, graded.captions, kind, use_kappa)
        if section is not None:
            report["text"] = section
        fusion = _fusion_section(items, full, graded.captions, kind)
        if fusion is not None:
            report["fusion"] = fusion
    if report:
        report["relevance"] = RELEVANCE
        report["kappa_used"] = bool(use_kappa)
    return report


__all__ = [
    "CaptionQueries",
    "GradedEmbeddings",
    "RELEVANCE",
    "FUSION_KINDS",
    "ambiguity_report",
    "caption_queries",
    "caption_ranks",
    "encode_graded",
    "fusion_ranks",
    "ViewQueries",
    "view_queries",
]
