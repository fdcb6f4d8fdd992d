"""Performances and English descriptions for the music21 benchmark.

A *performance* (one variant of a piece) is a General MIDI instrument from the collection's palette
and a tempo (an Italian tempo word and beats per minute, counted in the metre's beat: dotted
quarters in 6/8, halves in 2/2). A *description* is an English sentence built from the piece's real
metadata (collection, region or composer, title, tune type or genre, key, metre) and the
performance; one of several phrasings is picked deterministically from the seed and the item id.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from vmfmir_cli.data.recipes.music21_catalog import Collection, PieceRef


# ------------------------------------------------------------------------------- instruments
@dataclass(frozen=True)
class Instrument:
    program: int  # General MIDI program, 0-based
    noun: str  # "fiddle"
    performed: str  # "played on the fiddle"


def _inst(program: int, noun: str, performed: str | None = None) -> Instrument:
    return Instrument(program, noun, performed or f"played on the {noun}")


PALETTES: dict[str, tuple[Instrument, ...]] = {
    "dance_tune": (
        _inst(110, "fiddle"),
        _inst(73, "flute"),
        _inst(78, "tin whistle"),
        _inst(21, "accordion"),
        _inst(46, "harp"),
        _inst(0, "piano"),
        _inst(24, "guitar", "played on a nylon-string guitar"),
        _inst(105, "banjo"),
    ),
    "folk_song": (
        _inst(52, "choir", "sung by a choir"),
        _inst(53, "voice", "sung by a solo voice"),
        _inst(74, "recorder"),
        _inst(71, "clarinet"),
        _inst(21, "accordion"),
        _inst(24, "guitar", "played on a nylon-string guitar"),
        _inst(0, "piano"),
        _inst(68, "oboe"),
    ),
    "folk_song_east_asia": (
        _inst(73, "flute"),
        _inst(75, "pan flute"),
        _inst(107, "koto"),
        _inst(110, "fiddle"),
        _inst(46, "harp"),
        _inst(79, "ocarina"),
        _inst(0, "piano"),
    ),
    "chorale": (
        _inst(19, "church organ"),
        _inst(52, "choir", "sung by a choir"),
        _inst(48, "string ensemble", "played by a string ensemble"),
        _inst(0, "piano"),
        _inst(6, "harpsichord"),
        _inst(61, "brass section", "played by a brass section"),
        _inst(20, "reed organ"),
    ),
    "renaissance": (
        _inst(52, "choir", "sung by a choir"),
        _inst(53, "voices", "sung by solo voices"),
        _inst(19, "church organ"),
        _inst(74, "recorders", "played by a recorder consort"),
        _inst(48, "string ensemble", "played by a string ensemble"),
        _inst(24, "guitar", "played on a nylon-string guitar"),
    ),
    "medieval": (
        _inst(52, "choir", "sung by a choir"),
        _inst(74, "recorders", "played by a recorder consort"),
        _inst(46, "harp"),
        _inst(19, "church organ"),
        _inst(110, "fiddle"),
        _inst(53, "voices", "sung by solo voices"),
    ),
    "chamber": (
        _inst(48, "string ensemble", "played by a string ensemble"),
        _inst(0, "piano"),
        _inst(6, "harpsichord"),
        _inst(19, "church organ"),
        _inst(49, "slow strings", "played by a slow string ensemble"),
        _inst(71, "clarinet"),
    ),
    "keyboard": (
        _inst(0, "piano"),
        _inst(1, "bright piano", "played on a bright piano"),
        _inst(6, "harpsichord"),
        _inst(4, "electric piano", "played on an electric piano"),
        _inst(19, "church organ"),
        _inst(46, "harp"),
    ),
    "song": (
        _inst(0, "piano"),
        _inst(52, "choir", "sung by a choir"),
        _inst(48, "string ensemble", "played by a string ensemble"),
        _inst(24, "guitar", "played on a nylon-string guitar"),
        _inst(71, "clarinet"),
        _inst(73, "flute"),
    ),
}


def gm_name(program: int) -> str:
    """The General MIDI name of a 0-based program ("Fiddle", "Church Organ")."""
    import pretty_midi

    return pretty_midi.program_to_instrument_name(int(program))


# ------------------------------------------------------------------------------------- tempo
TEMPO_WORDS: tuple[tuple[str, int, int], ...] = (
    ("largo", 44, 54),
    ("adagio", 56, 72),
    ("andante", 76, 96),
    ("moderato", 98, 112),
    ("allegretto", 114, 126),
    ("allegro", 128, 152),
    ("vivace", 156, 172),
    ("presto", 176, 200),
)
STYLE_TEMPI: dict[str, tuple[str, ...]] = {
    "dance_tune": ("andante", "moderato", "allegretto", "allegro", "vivace"),
    "folk_song": ("adagio", "andante", "moderato", "allegretto", "allegro"),
    "chorale": ("largo", "adagio", "andante", "moderato"),
    "renaissance": ("adagio", "andante", "moderato", "allegretto"),
    "medieval": ("adagio", "andante", "moderato", "allegretto", "allegro"),
    "chamber": ("adagio", "andante", "moderato", "allegretto", "allegro", "vivace", "presto"),
    "keyboard": ("adagio", "andante", "moderato", "allegretto", "allegro", "vivace", "presto"),
    "song": ("largo", "adagio", "andante", "moderato", "allegretto", "allegro"),
}


def tempo_word(bpm: float) -> str:
    """The Italian tempo word whose range is nearest to ``bpm``."""
    best, dist = TEMPO_WORDS[0][0], float("inf")
    for word, lo, hi in TEMPO_WORDS:
        d = 0.0 if lo <= bpm <= hi else min(abs(bpm - lo), abs(bpm - hi))
        if d < dist:
            best, dist = word, d
    return best


@dataclass(frozen=True)
class Performance:
    variant: int
    instrument: Instrument
    tempo_word: str
    bpm: int


def choose_performances(
    piece_id: str, style: str, palette: str, variants: int, seed: int, marked_bpm: float | None
) -> list[Performance]:
    """``variants`` performances of a piece, distinct in instrument and (where possible) tempo."""
    rng = random.Random(f"vmfmir-perf:{seed}:{piece_id}")
    insts = list(PALETTES.get(palette, PALETTES["chamber"]))
    rng.shuffle(insts)
    words = list(STYLE_TEMPI.get(style, STYLE_TEMPI["chamber"]))
    rng.shuffle(words)
    ranges = {w: (lo, hi) for w, lo, hi in TEMPO_WORDS}
    out: list[Performance] = []
    for v in range(variants):
        inst = insts[v % len(insts)]
        if v == 0 and marked_bpm is not None and 30 <= marked_bpm <= 240:
            bpm = int(round(marked_bpm))
            word = tempo_word(bpm)
            if word in words:  # keep the other variants' tempi distinct from the marked one
                words.remove(word)
                words.insert(0, word)
        else:
            word = words[v % len(words)]
            lo, hi = ranges[word]
            bpm = rng.randint(lo, hi)
        out.append(Performance(v, inst, word, bpm))
    return out


# ------------------------------------------------------------------------------ descriptions
_CONTINENTS = {
    "europa", "mitteleuropa", "osteuropa", "suedosteuropa", "nordeuropa", "westeuropa", "suedeuropa",
    "asien", "ostasien", "amerika", "mittelamerika", "nordamerika", "suedamerika", "afrika", "",
}
_PLACES = {
    "deutschland": "Germany", "china": "China", "luxemburg": "Luxembourg", "lothringen": "Lorraine",
    "frankreich": "France", "oesterreich": "Austria", "schweiz": "Switzerland", "niederlande": "the Netherlands",
    "irland": "Ireland", "polen": "Poland", "ungarn": "Hungary", "jugoslawien": "Yugoslavia",
    "rumaenien": "Romania", "udssr": "the Soviet Union", "russland": "Russia", "tschechoslowakei": "Czechoslovakia",
    "schweden": "Sweden", "italien": "Italy", "mexiko": "Mexico", "ukraine": "Ukraine", "taiwan": "Taiwan",
    "daenemark": "Denmark", "belgien": "Belgium", "england": "England", "schottland": "Scotland",
    "hessen": "Hesse", "schlesien": "Silesia", "rheinland": "the Rhineland", "niederrhein": "the Lower Rhine",
    "westfalen": "Westphalia", "elsass": "Alsace", "brandenburg": "Brandenburg", "thueringen": "Thuringia",
    "gottschee": "Gottschee", "sachsen": "Saxony", "franken": "Franconia", "schwaben": "Swabia",
    "bayern": "Bavaria", "pommern": "Pomerania", "tirol": "Tyrol", "boehmen": "Bohemia", "steiermark": "Styria",
    "siebenbuergen": "Transylvania", "galizien": "Galicia", "ostpreussen": "East Prussia",
    "wuerttemberg": "Württemberg", "koeln": "Cologne", "schleswig - holstein": "Schleswig-Holstein",
    "nordrhein - westfalen": "North Rhine-Westphalia", "sueddeutschland": "southern Germany",
    "nord - deutschland": "northern Germany", "norddeutschland": "northern Germany", "rheinpfalz": "the Palatinate",
    "rheinprovinz": "the Rhine Province", "sudetenland": "the Sudetenland", "breslau": "Breslau",
    "ober - hessen": "Upper Hesse", "ober - franken": "Upper Franconia", "untermainfranken": "Lower Franconia",
    "bergisches land": "the Bergisches Land", "herzogtum berg": "the Duchy of Berg", "kuhlaendchen": "the Kuhländchen",
    "mecklenburg": "Mecklenburg", "flaemisch": "Flanders", "mittelfranken": "Middle Franconia",
}
_EAST_ASIA = {"China", "Taiwan"}
_COUNTRIES = {
    "Germany", "China", "Luxembourg", "France", "Austria", "Switzerland", "the Netherlands", "Ireland", "Poland",
    "Hungary", "Yugoslavia", "Romania", "the Soviet Union", "Russia", "Czechoslovakia", "Sweden", "Italy",
    "Mexico", "Ukraine", "Taiwan", "Denmark", "Belgium", "England", "Scotland",
}


def place_phrase(country: str | None, region: str | None) -> str | None:
    """'Hesse, Germany'; 'Germany and the Netherlands' when the 'region' is a country too."""
    if not country:
        return None
    if not region or region == country:
        return country
    if region in _COUNTRIES:
        return f"{country} and {region}"
    return f"{region}, {country}"


def parse_origin(origin: str | None) -> tuple[str | None, str | None]:
    """Essen ``O:`` field -> (country, region) in English, e.g. ('Germany', 'Hesse')."""
    if not origin:
        return None, None
    first = re.split(r"[/;]", origin)[0]
    names = []
    for raw in first.split(","):
        word = re.sub(r"\((BRD|DDR)\)", "", raw).strip().strip(".")
        if word.lower() in _CONTINENTS:
            continue
        names.append(_PLACES.get(word.lower(), word))
    if not names:
        return None, None
    country = names[0]
    region = names[-1] if len(names) > 1 else None
    return country, region


_GENRES = (
    ("kinder", "children's song"), ("wiegen", "lullaby"), ("liebe", "love song"), ("soldat", "soldiers' song"),
    ("krieg", "soldiers' song"), ("trink", "drinking song"), ("tanz", "dance song"), ("arbeit", "work song"),
    ("ballade", "ballad"), ("romanze", "ballad"), ("religi", "religious song"), ("geistlich", "religious song"),
    ("xiaodiao", "xiaodiao (ditty)"), ("shange", "shan'ge (mountain song)"), ("haozi", "haozi (work song)"),
    ("yangge", "yangge (planting song)"), ("huaer", "hua'er"), ("ertai", "ertai song"),
)
_TUNE_TYPES = (
    "slip jig", "double jig", "single jig", "set dance", "highland fling", "country dance", "quick step",
    "quickstep", "strathspey", "hornpipe", "schottische", "mazurka", "minuet", "gavotte", "polka", "waltz",
    "march", "reel", "jig", "slide", "clog", "fling", "rant", "air", "lament", "song", "rag",
)


def genre_of_song(rhythm: str | None) -> str | None:
    if not rhythm:
        return None
    low = rhythm.lower().replace(" - ", "").replace(" ", "")
    for needle, genre in _GENRES:
        if needle in low:
            return genre
    return None


def tune_type(rhythm: str | None, title: str | None) -> str | None:
    for text in (rhythm, title):
        if not text:
            continue
        low = " " + re.sub(r"[^a-z ]+", " ", text.lower()) + " "
        for t in _TUNE_TYPES:
            if f" {t} " in low:
                return "quickstep" if t == "quick step" else ("jig" if t == "single jig" else t)
    return None


def clean_title(title: str | None) -> str | None:
    if not title:
        return None
    t = re.sub(r"\s*--\s*[A-Za-z .]+$", "", title)  # Ryan's "SHERIFF MULDOON'S -- JIG"
    t = re.sub(r"\s*\(\d+[a-z]?(?:\s*[-/,]\s*\d+[a-z]?)*\)", "", t)  # Essen "(55a)", "(3-12)"
    t = re.sub(r",?\s*S\.\s*\d+\s*[a-z]{0,2}\.?\s*$", "", t)  # Essen ", S. 176", ", S. 33f"
    t = re.sub(r"^\d+[a-z]?\.\s+", "", t)  # "26. Kyrie"
    t = t.strip(" .,;:")
    if t and t.upper() == t and any(c.isalpha() for c in t):
        t = re.sub(r"[A-Za-z]+('[A-Za-z]+)?", lambda m: m.group(0).capitalize(), t.lower())
    return t or None


def title_from_path(ref: PieceRef) -> str:
    stem = ref.corpus_path.split("/", 1)[1].rsplit(".", 1)[0]
    folder = ref.folder
    if folder == "bach":
        m = re.match(r"bwv(\d+)(?:\.(\d+))?", stem)
        if m:
            return f"Chorale BWV {m.group(1)}" + (f".{m.group(2)}" if m.group(2) else "")
    if folder == "palestrina":
        m = re.match(r"([A-Za-z]+)_(\d+)(?:_([a-z]))?", stem)
        if m:
            return f"{m.group(1).capitalize()} from Mass {m.group(2)}"
    if folder == "monteverdi":
        m = re.match(r"madrigal\.(\d+)\.(\d+)", stem)
        if m:
            return f"Madrigal, book {m.group(1)}, no. {m.group(2)}"
    s = stem.replace("/", ", ").replace("_", " ")
    s = re.sub(r"opus\s*(\d+)", r"Op. \1 ", s, flags=re.I)
    s = re.sub(r"no\.?\s*(\d+)", r"No. \1 ", s, flags=re.I)
    s = re.sub(r"movement\s*(\d+)", r"movement \1", s, flags=re.I)
    s = re.sub(r"^k(\d+)", r"K. \1", s)
    s = re.sub(r"\s+", " ", s).strip(" ,")
    return s[:1].upper() + s[1:]


def piece_title(ref: PieceRef) -> str:
    title = clean_title(ref.title)
    if ref.folder == "palestrina":
        base = title_from_path(ref)
        return f"{title} ({base})" if title and title.lower() not in base.lower() else base
    return title or title_from_path(ref)


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


_NUM_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}


@dataclass(frozen=True)
class PieceFacts:
    """Everything the descriptions of a piece say apart from the performance."""

    collection: str  # collection key
    collection_name: str
    title: str
    work: str  # "an Irish reel", "a German love song", "a four-part chorale"
    origin: str  # "from O'Neill's Music of Ireland", "by Johann Sebastian Bach"
    key: str
    metre: str
    composer: str | None
    country: str | None
    region: str | None
    genre: str | None
    palette: str


def piece_facts(ref: PieceRef, headers: dict[str, str], key: str, metre: str, num_parts: int) -> PieceFacts:
    """Facts for one piece from its corpus metadata, ABC headers and the excerpt's key and metre."""
    coll: Collection = ref.collection
    title = piece_title(ref)
    composer = coll.composer
    country = region = genre = None
    palette = coll.style
    if coll.style == "folk_song":
        country, region = parse_origin(headers.get("O") or ref.locale)
        genre = genre_of_song(headers.get("R"))
        noun = genre or "folk song"
        place = place_phrase(country, region)
        work = f"{_article(noun)} {noun}"
        # "a love song from Hesse, Germany, in the Essen folk song collection"
        origin = f"from {place}, in {coll.name}" if place else f"from {coll.name}"
        if country in _EAST_ASIA:
            palette = "folk_song_east_asia"
    elif coll.style == "dance_tune":
        genre = tune_type(headers.get("R"), ref.title) or ("air" if coll.key == "airds" else "tune")
        adj = coll.nationality
        if coll.key == "ryans":
            c = (headers.get("C") or ref.composer or "").lower()
            adj = "Scottish" if "scotch" in c or "scot" in c else ("Irish" if "irish" in c else None)
            if not adj and ("strathspey" in genre or "fling" in genre):
                adj = "Scottish"
        work = f"{_article(adj or genre)} {adj} {genre}" if adj else f"{_article(genre)} {genre}"
        origin = f"from {coll.name}"
        if headers.get("C") and coll.key in ("oneills", "ryans") and "scotch" not in headers["C"].lower():
            composer = clean_title(headers["C"])
            if composer:
                origin += f", composed by {composer}"
    else:
        voices = _NUM_WORDS.get(num_parts, str(num_parts))
        if coll.style == "chorale":
            work = f"a {voices}-part chorale" if num_parts > 1 else "a chorale"
        elif coll.style in ("renaissance", "medieval"):
            age = "Renaissance" if coll.style == "renaissance" else "fourteenth-century"
            work = f"a {voices}-voice {age} piece" if num_parts > 1 else f"{_article(age)} {age} melody"
        elif coll.style == "chamber":
            kind = "string quartet movement" if "quartet" in coll.name else "chamber piece"
            work = f"{_article(kind)} {kind}"
        elif coll.style == "keyboard":
            work = "a keyboard piece" if num_parts <= 2 else f"a piece in {voices} parts"
        else:
            work = "a song" if num_parts > 1 else "a melody"
        composer = composer or _composer_from(ref)
        origin = f"by {composer}" if composer else f"from {coll.name}"
    return PieceFacts(
        collection=coll.key,
        collection_name=coll.name,
        title=title,
        work=work,
        origin=origin,
        key=key,
        metre=metre,
        composer=composer,
        country=country,
        region=region,
        genre=genre,
        palette=palette,
    )


def _composer_from(ref: PieceRef) -> str | None:
    c = ref.composer
    if not c or c.lower() in ("anonymous", "music21", "none"):
        return "an anonymous composer" if c and c.lower() == "anonymous" else None
    if "," in c:  # "Palestrina, Giovanni Perluigi da" -> "Giovanni Perluigi da Palestrina"
        last, first = c.split(",", 1)
        c = f"{first.strip()} {last.strip()}"
    return c


_METRE_NAMES = {"4/4": "common time", "2/2": "cut time"}
_METRE_SPOKEN = {
    "2/4": "two-four time", "3/4": "three-four time", "4/4": "four-four time", "6/8": "six-eight time",
    "9/8": "nine-eight time", "12/8": "twelve-eight time", "3/8": "three-eight time", "2/2": "two-two time",
    "3/2": "three-two time", "4/2": "four-two time", "6/4": "six-four time",
}

_TEMPLATES = (
    "{Work} {origin}, '{title}', in {key} and {metre}, {performed} {tempo} at {bpm} bpm.",
    "'{title}': {work} {origin}, in {key}, {metre}, {performed} at {bpm} beats per minute ({tempo}).",
    "{A_tempo} performance ({bpm} bpm) of '{title}', {work} {origin}, in {key} and {metre}, {performed}.",
    "{Instrument} rendition of '{title}', {work} {origin}. Key: {key}; metre: {metre}; tempo: {tempo}, {bpm} bpm.",
    "Excerpt from '{title}', {work} {origin}: {key}, {metre}, {tempo} at {bpm} bpm, {performed}.",
    "{Work} in {key} {origin} - '{title}' - {performed}, {tempo} ({bpm} bpm), in {metre}.",
    "The opening bars of '{title}', {work} {origin}, {performed} in {key}, {metre}, {tempo} tempo ({bpm} bpm).",
)


def describe(facts: PieceFacts, perf: Performance, seed: int, item_id: str) -> str:
    """One English description of a performance; the phrasing depends on (seed, item id)."""
    rng = random.Random(f"vmfmir-text:{seed}:{item_id}")
    template = rng.choice(_TEMPLATES)
    m = facts.metre
    metre_forms = [m, f"{m} time"]
    if m in _METRE_NAMES:
        metre_forms.append(_METRE_NAMES[m])
    if m in _METRE_SPOKEN:
        metre_forms.append(_METRE_SPOKEN[m])
    metre = rng.choice(metre_forms)
    fields = {
        "work": facts.work,
        "Work": facts.work[:1].upper() + facts.work[1:],
        "origin": facts.origin,
        "title": facts.title,
        "key": facts.key,
        "metre": metre,
        "tempo": perf.tempo_word,
        "A_tempo": f"{_article(perf.tempo_word).capitalize()} {perf.tempo_word}",
        "bpm": perf.bpm,
        "performed": perf.instrument.performed,
        "Instrument": perf.instrument.noun[:1].upper() + perf.instrument.noun[1:],
    }
    text = template.format(**fields)
    return re.sub(r"\s+", " ", text).replace(" ,", ",").strip()


def abc_headers(path: str, number: int | None) -> dict[str, str]:
    """The first value of each header field (T, R, O, C, N, B, ...) of tune ``number`` in an ABC file."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return {}
    blocks = re.split(r"(?m)^X:\s*", text)
    block = None
    if number is None:
        block = blocks[1] if len(blocks) > 1 else text
    else:
        for b in blocks[1:]:
            m = re.match(r"(\d+)", b)
            if m and int(m.group(1)) == number:
                block = b
                break
    if block is None:
        return {}
    out: dict[str, str] = {}
    for line in block.splitlines()[1:]:
        m = re.match(r"^([A-Za-z]):\s*(.*)$", line)
        if not m:
            if line.strip() and not line.startswith("%"):
                if out.get("K") is not None:
                    break
            continue
        field, value = m.group(1), m.group(2).strip().rstrip("]").strip()
        out.setdefault(field, value)
        if field == "K":
            break
    return out


__all__ = [
    "Instrument",
    "Performance",
    "PieceFacts",
    "PALETTES",
    "TEMPO_WORDS",
    "choose_performances",
    "describe",
    "piece_facts",
    "piece_title",
    "gm_name",
    "tempo_word",
    "abc_headers",
    "parse_origin",
]
