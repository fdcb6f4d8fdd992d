"""What the music21 benchmark is made of: collections, pieces, and how they are sampled.

The music21 package bundles about 15,000 pieces (Essen folk songs, O'Neill's, Aird's and Ryan's
tunes, Bach chorales, Palestrina masses, ...). Its metadata bundle lists every piece, including the
individual tunes inside multi-tune ABC files, so listing the corpus never parses a score.

Each corpus folder maps to a :class:`Collection`: a readable name, a composer where there is one,
and a *style* that picks the instrument palette and tempo range of the rendered performances.
Pieces are sampled across collections by interleaving them (round robin over collections, each
shuffled by the seed): the first N pieces of that order are a balanced, prefix-stable sample
(``--pieces 300`` is a subset of ``--pieces 2000`` with the same seed).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

# ------------------------------------------------------------------------------- collections
@dataclass(frozen=True)
class Collection:
    key: str  # short id used in piece ids and meta
    name: str  # readable name, used in descriptions ("from {name}")
    style: str  # palette / tempo range / wording: see STYLES
    composer: str | None = None
    nationality: str | None = None  # adjective for the tunes ("Irish"), if the collection has one


STYLES = ("folk_song", "dance_tune", "chorale", "renaissance", "medieval", "chamber", "keyboard", "song")

# corpus folder -> Collection
COLLECTIONS: dict[str, Collection] = {
    "essenFolksong": Collection("essen", "the Essen folk song collection", "folk_song"),
    "oneills1850": Collection("oneills", "O'Neill's Music of Ireland", "dance_tune", nationality="Irish"),
    "ryansMammoth": Collection("ryans", "Ryan's Mammoth Collection", "dance_tune"),
    "airdsAirs": Collection("airds", "Aird's Selection of Scotch, English, Irish and Foreign Airs", "dance_tune"),
    "miscFolk": Collection("miscfolk", "a collection of British and American folk tunes", "dance_tune"),
    "nottingham-dataset": Collection("nottingham", "the Nottingham folk music database", "dance_tune", nationality="English"),
    "bach": Collection("bach", "the Bach chorales", "chorale", composer="Johann Sebastian Bach"),
    "palestrina": Collection("palestrina", "Palestrina's masses", "renaissance", composer="Giovanni Pierluigi da Palestrina"),
    "josquin": Collection("josquin", "the works of Josquin des Prez", "renaissance", composer="Josquin des Prez"),
    "monteverdi": Collection("monteverdi", "Monteverdi's madrigals", "renaissance", composer="Claudio Monteverdi"),
    "lusitano": Collection("lusitano", "the works of Vicente Lusitano", "renaissance", composer="Vicente Lusitano"),
    "luca": Collection("luca", "Italian Trecento music", "medieval", composer="Gherardello da Firenze"),
    "trecento": Collection("trecento", "Italian Trecento music (PMFC)", "medieval"),
    "ciconia": Collection("ciconia", "Italian Trecento music", "medieval", composer="Johannes Ciconia"),
    "beethoven": Collection("beethoven", "Beethoven's string quartets", "chamber", composer="Ludwig van Beethoven"),
    "mozart": Collection("mozart", "Mozart's string quartets", "chamber", composer="Wolfgang Amadeus Mozart"),
    "haydn": Collection("haydn", "Haydn's string quartets", "chamber", composer="Joseph Haydn"),
    "corelli": Collection("corelli", "Corelli's trio sonatas", "chamber", composer="Arcangelo Corelli"),
    "handel": Collection("handel", "Handel's operas", "song", composer="George Frideric Handel"),
    "cpebach": Collection("cpebach", "C. P. E. Bach's keyboard sonatas", "keyboard", composer="Carl Philipp Emanuel Bach"),
    "chopin": Collection("chopin", "Chopin's mazurkas", "keyboard", composer="Frédéric Chopin"),
    "schumann_robert": Collection("schumann", "the works of Robert Schumann", "keyboard", composer="Robert Schumann"),
    "schumann_clara": Collection("clara-schumann", "the works of Clara Schumann", "keyboard", composer="Clara Schumann"),
    "schubert": Collection("schubert", "Schubert's songs", "song", composer="Franz Schubert"),
    "beach": Collection("beach", "the works of Amy Beach", "keyboard", composer="Amy Beach"),
    "joplin": Collection("joplin", "Scott Joplin's rags", "keyboard", composer="Scott Joplin"),
    "schoenberg": Collection("schoenberg", "Schoenberg's piano pieces", "keyboard", composer="Arnold Schoenberg"),
    "webern": Collection("webern", "the works of Anton Webern", "keyboard", composer="Anton Webern"),
    "verdi": Collection("verdi", "Verdi's operas", "song", composer="Giuseppe Verdi"),
    "weber": Collection("weber", "the works of Carl Maria von Weber", "chamber", composer="Carl Maria von Weber"),
    "liliuokalani": Collection("liliuokalani", "the songs of Queen Liliuokalani", "song", composer="Queen Liliuokalani"),
    "johnson_j_r": Collection("johnson", "American songs", "song", composer="J. Rosamond Johnson"),
    "leadSheet": Collection("leadsheet", "American popular songs", "song"),
}

# folders that are test fixtures or analyses rather than music, and formats that are not scores
EXCLUDED_FOLDERS = frozenset({"demos", "theoryExercises"})
EXCLUDED_SUFFIXES = frozenset({".rntxt"})
# when one work is stored twice (e.g. Beethoven in Humdrum and MusicXML), keep the first of these
FORMAT_PREFERENCE = (".mxl", ".musicxml", ".xml", ".krn", ".abc")
GLOBALLY_NUMBERED = frozenset({"oneills1850", "airdsAirs"})


def collection_for(folder: str) -> Collection:
    """The collection of a corpus folder (an unknown folder gets a generic one)."""
    if folder in COLLECTIONS:
        return COLLECTIONS[folder]
    return Collection(slug(folder), f"the {folder} collection", "chamber")


# ------------------------------------------------------------------------------------- pieces
@dataclass(frozen=True)
class PieceRef:
    """One piece of the corpus, known from the metadata bundle (nothing parsed yet)."""

    piece_id: str
    folder: str  # corpus folder, e.g. "essenFolksong"
    corpus_path: str  # path relative to the music21 corpus root, POSIX
    number: int | None  # tune number inside a multi-tune ABC file
    title: str | None
    composer: str | None
    locale: str | None

    @property
    def collection(self) -> Collection:
        return collection_for(self.folder)


def slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s or "x"


def corpus_root() -> Path:
    from music21 import corpus

    return Path(corpus.__file__).resolve().parent


def list_corpus_pieces() -> list[PieceRef]:
    """Every usable piece of the music21 core corpus, in a stable order (no score is parsed)."""
    from music21 import corpus

    bundle = corpus.corpora.CoreCorpus().metadataBundle
    entries = bundle[:]  # one slice: iterating a bundle by index is quadratic in music21
    # a multi-tune ABC file is listed once per tune AND once as a whole: keep only the tunes
    numbered = {str(e.sourcePath) for e in entries if _int_or_none(e.number) is not None}
    best: dict[tuple[str, str, int | None], tuple[int, PieceRef]] = {}
    for entry in entries:
        if _int_or_none(entry.number) is None and str(entry.sourcePath) in numbered:
            continue
        rel = str(entry.sourcePath).replace("\\", "/")
        parts = rel.split("/")
        if len(parts) < 2 or parts[0] in EXCLUDED_FOLDERS:
            continue
        suffix = Path(rel).suffix.lower()
        if suffix in EXCLUDED_SUFFIXES or suffix not in FORMAT_PREFERENCE:
            continue
        number = _int_or_none(entry.number)
        md = entry.metadata
        title = _clean(getattr(md, "title", None)) if md is not None else None
        if not title and md is not None:
            movement = _clean(getattr(md, "movementName", None))
            if movement and not re.search(r"\.(mxl|xml|krn|abc|musicxml)$", movement, re.I):
                title = movement
        composer = _clean(getattr(md, "composer", None)) if md is not None else None
        locale = _clean(getattr(md, "localeOfComposition", None)) if md is not None else None
        stem = rel[: -len(suffix)]
        # books numbered throughout (O'Neill's, Aird's) hold some tunes in two files: one per number
        key = (parts[0], "", number) if parts[0] in GLOBALLY_NUMBERED and number is not None else (parts[0], stem, number)
        ref = PieceRef("", parts[0], rel, number, title, composer, locale)
        rank = FORMAT_PREFERENCE.index(suffix)
        if key not in best or rank < best[key][0]:
            best[key] = (rank, ref)
    refs: list[PieceRef] = []
    used: set[str] = set()
    for (folder, _stem, number), (_, ref) in sorted(best.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)):
        coll = collection_for(folder)
        stem = ref.corpus_path.rsplit(".", 1)[0]
        base = coll.key + "-" + slug(stem.split("/", 1)[1])
        pid = base if number is None else f"{base}-{number}"
        while pid in used:
            pid += "x"
        used.add(pid)
        refs.append(PieceRef(pid, *[getattr(ref, f) for f in ("folder", "corpus_path", "number", "title", "composer", "locale")]))
    return refs


def interleave(refs: list[PieceRef], seed: int) -> list[PieceRef]:
    """A balanced, seed-deterministic order: round robin over collections, each shuffled."""
    by_coll: dict[str, list[PieceRef]] = {}
    for r in refs:
        by_coll.setdefault(r.collection.key, []).append(r)
    queues = []
    for key in sorted(by_coll):
        lst = sorted(by_coll[key], key=lambda r: r.piece_id)
        random.Random(f"vmfmir-music21:{seed}:{key}").shuffle(lst)
        queues.append(lst)
    order: list[PieceRef] = []
    depth = 0
    while True:
        added = False
        for q in queues:
            if depth < len(q):
                order.append(q[depth])
                added = True
        if not added:
            return order
        depth += 1


def _int_or_none(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _clean(value) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


__all__ = [
    "Collection",
    "COLLECTIONS",
    "STYLES",
    "PieceRef",
    "collection_for",
    "corpus_root",
    "list_corpus_pieces",
    "interleave",
    "slug",
]
