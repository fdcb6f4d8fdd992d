"""Captions of graded specificity for the music21 benchmark, made from an item's metadata.

Every item gets captions at four levels (see :mod:`vmfmir_cli.data.captions`), each naming the facts
it states, so the number of items of a split that a caption fits is known:

* level 3, full: the description the item always had (title, collection or composer, key, metre,
  tempo word and bpm, instrument) plus a second phrasing of the same facts;
* level 2, facts: the kind of work, key, metre, tempo word and instrument, without title or origin;
* level 1, vague: one or two facts in everyday words that the level-3 vocabulary does not use:
  tempo as mood ("calm", "lively"), instrument families and colloquial names ("piano", "strings",
  "a whistle", "squeezebox"), metre ("something in 3/4"): e.g. "calm piano", "lively fiddle tune";
* level 0, uninformative: one of a small fixed set ("a piece of music", "play something").

Captions are made when the manifest is written, from the metadata of the item alone, so a dataset
built before captions existed gets them by rerunning ``vmfmir prepare`` (no re-rendering). The
phrasings are chosen deterministically from ``(seed, item id)``.
"""

from __future__ import annotations

import random
from typing import Any, Mapping

from vmfmir_cli.data.captions import Caption
from vmfmir_cli.data.recipes.music21_catalog import COLLECTIONS

STYLE_OF_COLLECTION = {c.key: c.style for c in COLLECTIONS.values()}

#: instrument noun (as in the palettes of music21_text) -> family
INSTRUMENT_FAMILY = {
    "piano": "piano", "bright piano": "piano", "electric piano": "piano",
    "harpsichord": "harpsichord",
    "church organ": "organ", "reed organ": "organ",
    "fiddle": "fiddle",
    "string ensemble": "strings", "slow strings": "strings",
    "flute": "flute", "tin whistle": "flute", "pan flute": "flute", "recorder": "flute",
    "recorders": "flute", "ocarina": "flute",
    "clarinet": "reed", "oboe": "reed",
    "accordion": "accordion",
    "harp": "plucked", "guitar": "plucked", "banjo": "plucked", "koto": "plucked",
    "choir": "voice", "voice": "voice", "voices": "voice",
    "brass section": "brass",
}
#: family -> everyday words for it (level 1)
FAMILY_WORDS = {
    "piano": ("piano", "keys"),
    "harpsichord": ("harpsichord", "early keyboard"),
    "organ": ("organ", "pipe organ"),
    "fiddle": ("fiddle", "fiddler's"),
    "strings": ("strings", "string section"),
    "flute": ("whistle", "pipes", "flute"),
    "reed": ("woodwind", "reeds"),
    "accordion": ("squeezebox", "accordion"),
    "plucked": ("plucked strings", "strummed"),
    "voice": ("singing", "vocal", "sung"),
    "brass": ("brass", "horns"),
}
#: tempo word -> tempo class, and the class's moods (level 1)
TEMPO_CLASS = {
    "largo": "slow", "adagio": "slow",
    "andante": "moderate", "moderato": "moderate",
    "allegretto": "fast", "allegro": "fast", "vivace": "fast", "presto": "fast",
}
MOODS = {
    "slow": ("calm", "gentle", "peaceful", "slow"),
    "moderate": ("relaxed", "steady", "easy-going", "unhurried"),
    "fast": ("lively", "brisk", "upbeat", "energetic"),
}
STYLE_WORDS = {
    "folk_song": ("folk song", "traditional song"),
    "dance_tune": ("dance tune", "folk dance"),
    "chorale": ("hymn", "church music"),
    "renaissance": ("renaissance music", "polyphony"),
    "medieval": ("medieval music", "old music"),
    "chamber": ("chamber music", "classical music"),
    "keyboard": ("keyboard music", "classical solo"),
    "song": ("song", "art song"),
}
#: level 0: the same small set for every item
UNINFORMATIVE = ("a piece of music", "some tune", "play something", "any music", "a recording")

PER_LEVEL = {3: 2, 2: 2, 1: 3, 0: 1}


def item_fact_values(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The fact values of an item (stored as ``meta["facts"]``): what its captions may state."""
    inst = meta.get("instrument") or {}
    noun = inst.get("noun") if isinstance(inst, Mapping) else None
    key = str(meta.get("key") or "")
    mode = key.split()[-1].lower() if key.split() else None
    return {
        "title": meta.get("title"),
        "collection": meta.get("collection"),
        "style": STYLE_OF_COLLECTION.get(str(meta.get("collection")), "chamber"),
        "work": meta.get("work"),
        "key": meta.get("key"),
        "mode": mode if mode in ("major", "minor") else None,
        "metre": meta.get("metre"),
        "tempo_word": meta.get("tempo_word"),
        "tempo_class": TEMPO_CLASS.get(str(meta.get("tempo_word"))),
        "instrument": noun,
        "instrument_family": INSTRUMENT_FAMILY.get(str(noun)),
    }


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _an(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def _level3(meta: Mapping[str, Any], f: Mapping[str, Any], rng: random.Random) -> list[str]:
    inst = f["instrument"] or "an unknown instrument"
    name = meta.get("collection_name") or f["collection"]
    forms = [
        f"'{meta.get('title')}' from {name}: {f['key']}, {f['metre']}, {f['tempo_word']} at "
        f"{meta.get('tempo_bpm')} bpm, on {inst}.",
        f"{_cap(str(f['work']))} titled '{meta.get('title')}' ({name}), {inst}, {f['tempo_word']}, "
        f"{f['key']}, {f['metre']}.",
    ]
    return [rng.choice(forms)]


def _level2(f: Mapping[str, Any], rng: random.Random) -> list[tuple[str, tuple[str, ...]]]:
    inst, work = f["instrument"], str(f["work"])
    forms = [
        (f"{_cap(work)} in {f['key']} and {f['metre']}, on {inst}, {f['tempo_word']}.",
         ("work", "key", "metre", "instrument", "tempo_word")),
        (f"{_cap(work)} in {f['metre']}, {f['tempo_word']}, played on {inst}.",
         ("work", "metre", "tempo_word", "instrument")),
        (f"A {f['metre']} piece in {f['key']} for {inst}, {f['tempo_word']}.",
         ("metre", "key", "instrument", "tempo_word")),
        (f"{_cap(work)} in {f['key']}, {f['tempo_word']}.", ("work", "key", "tempo_word")),
    ]
    return rng.sample(forms, PER_LEVEL[2])


def _level1(f: Mapping[str, Any], rng: random.Random) -> list[tuple[str, tuple[str, ...]]]:
    fam = rng.choice(FAMILY_WORDS[f["instrument_family"]]) if f["instrument_family"] else None
    mood = rng.choice(MOODS[f["tempo_class"]]) if f["tempo_class"] else None
    style = rng.choice(STYLE_WORDS.get(f["style"], ("music",)))
    forms: list[tuple[str, tuple[str, ...]]] = [(f"something in {f['metre']}", ("metre",)), (_an(style), ("style",))]
    if mood:
        forms.append((f"a {mood} {style}", ("tempo_class", "style")))
        forms.append((f"something {mood}", ("tempo_class",)))
    if fam:
        forms.append((f"{fam} music", ("instrument_family",)))
        forms.append((f"{fam} {style}", ("instrument_family", "style")))
    if fam and mood:
        forms.append((f"{mood} {fam}", ("tempo_class", "instrument_family")))
        forms.append((f"{mood} {fam}", ("tempo_class", "instrument_family")))  # the most typical query: twice the odds
    if f["mode"]:
        forms.append((f"{_an(f['mode'])}-key {style}", ("mode", "style")))
    chosen: list[tuple[str, tuple[str, ...]]] = []
    while forms and len(chosen) < PER_LEVEL[1]:
        pick = rng.choice(forms)
        forms = [x for x in forms if x[0] != pick[0]]
        chosen.append(pick)
    return chosen


def music21_captions(text: str, meta: Mapping[str, Any], seed: int, item_id: str) -> tuple[list[Caption], dict]:
    """The captions of one item (its description ``text`` first) and its fact values."""
    f = item_fact_values(meta)
    rng = random.Random(f"vmfmir-captions:{seed}:{item_id}")
    full = ("title", "collection", "key", "metre", "tempo_word", "instrument")
    caps = [Caption(text, 3, {k: f[k] for k in full})]
    caps += [Caption(t, 3, {k: f[k] for k in full}) for t in _level3(meta, f, rng)]
    caps += [Caption(t, 2, {k: f[k] for k in keys}) for t, keys in _level2(f, rng)]
    caps += [Caption(t, 1, {k: f[k] for k in keys}) for t, keys in _level1(f, rng)]
    caps += [Caption(rng.choice(UNINFORMATIVE), 0, {})]
    return caps, f


__all__ = ["music21_captions", "item_fact_values", "INSTRUMENT_FAMILY", "TEMPO_CLASS", "UNINFORMATIVE"]
