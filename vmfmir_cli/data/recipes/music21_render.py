"""Turn one music21 piece into an excerpt, a score image and synthesised performances.

The excerpt is the first ``bars`` full bars of the piece (a leading pickup bar is skipped); the score
image and every audio variant are made from this SAME excerpt:

* image: music21 -> MusicXML -> verovio (one system, no header) -> SVG with all ``<text>`` removed
  (fonts differ between machines; lyrics, tempo words and part names would give the answer away)
  -> PNG with resvg (no system libraries) -> grayscale, cropped to the notes, scaled to a fixed
  height (:data:`IMAGE_HEIGHT`) on a white canvas; the width follows the music.
* audio: the excerpt's notes -> a MIDI file with the variant's General MIDI program and tempo
  (pretty-midi) -> WAV with midirenderer and the TimGM6mb SoundFont that ships with pretty-midi
  -> mono, resampled to the dataset rate, exactly ``duration_s`` long (excerpt + release tail).

Nothing here touches the dataset folder; :mod:`music21` (the recipe) writes the results.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_HEIGHT = 256  # pixels, every score image
IMAGE_MARGIN = 8  # white pixels above and below the notes
MAX_STAFF_SPACE = 12.0  # pixels between staff lines at most (single staves are not blown up)
VEROVIO_SCALE = 40  # verovio's scale (%); at 40 a staff space is about 8 SVG pixels
RELEASE_TAIL_S = 0.75  # seconds of release kept after the last bar
MIN_NOTES_PER_BAR = 1.0  # an excerpt with fewer notes than this per bar is "too short"


class SkipPiece(Exception):
    """The piece cannot be used; ``reason`` is one of parse / too_short / engrave / synth."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Excerpt:
    """The first bars of a piece, ready to engrave and to synthesise."""

    stream: Any  # music21 Score of the excerpt
    bars: int
    quarter_length: float  # length of the excerpt in quarter notes
    beat_quarter_length: float  # one beat of the metre in quarter notes (6/8 -> 1.5)
    time_signature: str  # "6/8"
    key_name: str  # "D major", "E-flat minor", "D dorian"
    key_source: str  # "score" (written in the file) or "analysis"
    marked_bpm: float | None  # the score's own tempo in beats per minute, if it has one
    marked_tempo_text: str | None
    num_parts: int
    notes: list[tuple[int, float, float, int]] = field(default_factory=list)  # (part, start_q, end_q, midi)


# --------------------------------------------------------------------------------------- parsing
def parse_piece(path: Path, number: int | None, max_measures: int | None = None) -> Any:
    """Parse one corpus file (one tune of a multi-tune ABC file) into a music21 Score.

    With ``max_measures``, a MusicXML file is cut to its first ``max_measures`` measures per part
    before music21 sees it: a whole string quartet takes seconds to parse, four bars do not.
    """
    from music21 import converter, stream

    s = None
    if max_measures is not None and path.suffix.lower() in (".mxl", ".xml", ".musicxml"):
        head = musicxml_head(path, max_measures)
        if head is not None:
            try:
                s = converter.parse(head, format="musicxml", forceSource=True)
            except Exception:
                s = None  # fall back to the whole file
    if s is None:
        try:
            s = converter.parse(str(path), number=number, forceSource=True)
        except Exception as exc:  # music21 raises many kinds of errors on odd input
            raise SkipPiece("parse", _short(exc)) from None
    if isinstance(s, stream.Opus):
        scores = list(s.scores)
        if not scores:
            raise SkipPiece("parse", "empty opus")
        s = scores[0]
    if not isinstance(s, stream.Score):
        sc = stream.Score()
        sc.insert(0, s)
        s = sc
    for part in list(s.parts):  # ABC voice declarations can leave empty parts behind
        if not part.recurse().notes:
            s.remove(part)
    if not s.parts:
        raise SkipPiece("parse", "no notes")
    if path.suffix.lower() == ".abc" and len(s.parts) > 1:
        # music21 turns every V: block of a multi-voice ABC tune into its own part
        raise SkipPiece("parse", "multi-voice ABC tune")
    return s


def musicxml_head(path: Path, max_measures: int) -> str | None:
    """The MusicXML text of ``path`` (.xml, .musicxml or compressed .mxl) keeping only the first
    ``max_measures`` measures of each part; None if the file is not partwise MusicXML."""
    import xml.etree.ElementTree as ET
    import zipfile

    try:
        if path.suffix.lower() == ".mxl":
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
                root_name = None
                if "META-INF/container.xml" in names:
                    container = ET.fromstring(zf.read("META-INF/container.xml"))
                    for el in container.iter():
                        if el.tag.endswith("rootfile") and el.get("full-path"):
                            root_name = el.get("full-path")
                            break
                if root_name is None:
                    root_name = next(n for n in names if n.endswith((".xml", ".musicxml")) and not n.startswith("META-INF"))
                data = zf.read(root_name)
        else:
            data = path.read_bytes()
        root = ET.fromstring(data)
    except Exception:
        return None
    if root.tag != "score-partwise":
        return None
    for part in root.findall("part"):
        for m in part.findall("measure")[max_measures:]:
            part.remove(m)
    return ET.tostring(root, encoding="unicode")


def make_excerpt(score: Any, bars: int) -> Excerpt:
    """Cut the first ``bars`` full bars (skipping a pickup bar) and gather what describes them."""
    from music21 import key as m21key
    from music21 import meter, tempo

    parts = list(score.parts)
    first_measures = list(parts[0].getElementsByClass("Measure"))
    if not first_measures:
        raise SkipPiece("parse", "no measures")
    ts_list = list(score.recurse().getElementsByClass(meter.TimeSignature))
    ts = ts_list[0] if ts_list else meter.TimeSignature("4/4")
    bar_q = float(ts.barDuration.quarterLength)
    start = 0
    m0 = first_measures[0]
    if len(first_measures) > 1 and (m0.number == 0 or float(m0.duration.quarterLength) < bar_q - 1e-6 or m0.paddingLeft):
        start = 1  # pickup bar
    if len(first_measures) - start < bars:
        raise SkipPiece("too_short", f"{len(first_measures) - start} bars")
    try:
        ex = score.measures(start, start + bars, indicesNotNumbers=True)
    except Exception as exc:
        raise SkipPiece("parse", f"cannot cut bars: {_short(exc)}") from None
    ex_parts = [p for p in ex.parts if p.getElementsByClass("Measure")]
    if not ex_parts:
        raise SkipPiece("too_short", "no bars")

    # timeline from the first part's bars: bar j starts at starts[j] quarter notes
    measures0 = list(ex_parts[0].getElementsByClass("Measure"))[:bars]
    if len(measures0) < bars:
        raise SkipPiece("too_short", f"{len(measures0)} bars")
    starts, total = [], 0.0
    for m in measures0:
        starts.append(total)
        total += max(float(m.duration.quarterLength), float(m.barDuration.quarterLength) if m.timeSignature else 0.0)
    notes: list[tuple[int, float, float, int]] = []
    for pi, part in enumerate(ex_parts):
        stripped = part.stripTies(inPlace=False)
        for j, m in enumerate(list(stripped.getElementsByClass("Measure"))[:bars]):
            for n in m.recurse().notes:
                ql = float(n.duration.quarterLength)
                if ql <= 0 or not hasattr(n, "pitches"):
                    continue
                on = starts[j] + float(n.getOffsetInHierarchy(m))
                off = min(on + ql, total)
                if off <= on:
                    continue
                for p in n.pitches:
                    if 0 <= p.midi <= 127:
                        notes.append((pi, on, off, int(p.midi)))
    if len(notes) < MIN_NOTES_PER_BAR * bars:
        raise SkipPiece("too_short", f"{len(notes)} notes in {bars} bars")

    key_name, key_source = _key_of(score, m21key)
    marks = [mm for mm in score.recurse().getElementsByClass(tempo.MetronomeMark)]
    marked_bpm, marked_text = None, None
    beat_q = float(ts.beatDuration.quarterLength) or 1.0
    if marks:
        mm = marks[0]
        try:
            qbpm = mm.getQuarterBPM()
        except Exception:
            qbpm = None
        if qbpm:
            marked_bpm = float(qbpm) / beat_q
        marked_text = mm.text if isinstance(mm.text, str) and mm.text.strip() else None
    return Excerpt(
        stream=ex,
        bars=bars,
        quarter_length=total,
        beat_quarter_length=beat_q,
        time_signature=ts.ratioString,
        key_name=key_name,
        key_source=key_source,
        marked_bpm=marked_bpm,
        marked_tempo_text=marked_text,
        num_parts=len(ex_parts),
        notes=notes,
    )


def _key_of(score: Any, m21key: Any) -> tuple[str, str]:
    for k in score.recurse().getElementsByClass(m21key.KeySignature):
        if isinstance(k, m21key.Key):
            return key_name(k), "score"
        break
    try:
        head = score.measures(0, 16, indicesNotNumbers=True)
        return key_name(head.analyze("key")), "analysis"
    except Exception:
        return key_name(score.analyze("key")), "analysis"


def key_name(k: Any) -> str:
    """'E- major' -> 'E-flat major'; 'f# minor' -> 'F-sharp minor'."""
    tonic = k.tonic.name.replace("--", "-double-flat").replace("##", "-double-sharp")
    tonic = tonic.replace("-", "-flat").replace("#", "-sharp").replace("-flat-double-flat", "-double-flat")
    tonic = tonic[0].upper() + tonic[1:]
    return f"{tonic} {k.mode}"


# --------------------------------------------------------------------------------------- engraving
def _clean_for_engraving(ex: Any) -> Any:
    from music21 import expressions, harmony, note, tempo

    s = ex
    for n in s.recurse().getElementsByClass(note.GeneralNote):
        if getattr(n, "lyrics", None):
            n.lyrics = []
    drop = (expressions.TextExpression, tempo.TempoIndication, harmony.ChordSymbol, expressions.RehearsalMark)
    for el in list(s.recurse().getElementsByClass(drop)):
        site = el.activeSite
        if site is not None:
            site.remove(el)
    for p in s.parts:
        p.partName = None
        p.partAbbreviation = None
        for inst in p.recurse().getElementsByClass("Instrument"):
            inst.partName = None
            inst.partAbbreviation = None
            inst.instrumentName = None
            inst.instrumentAbbreviation = None
    return s


def musicxml_of(stream: Any) -> str:
    """MusicXML of the excerpt for engraving (lyrics, texts, tempo marks and part names removed).

    Note: music21's makeNotation pass is kept; skipping it is faster but changes the accidentals.
    """
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    return GeneralObjectExporter(_clean_for_engraving(stream)).parse().decode("utf-8")


@lru_cache(maxsize=1)
def _toolkit() -> Any:
    import verovio

    if hasattr(verovio, "enableLog"):
        try:
            verovio.enableLog(verovio.LOG_OFF)
        except Exception:
            pass
    tk = verovio.toolkit()
    tk.setOptions(
        {
            "breaks": "none",
            "header": "none",
            "footer": "none",
            "adjustPageHeight": True,
            "adjustPageWidth": True,
            "pageWidth": 60000,
            "pageMarginLeft": 20,
            "pageMarginRight": 20,
            "pageMarginTop": 20,
            "pageMarginBottom": 20,
            "scale": VEROVIO_SCALE,
            "svgViewBox": False,
            "mnumInterval": 0,
        }
    )
    return tk


_TEXT_RE = re.compile(r"<text\b.*?</text>", re.S)


def engrave(ex: Excerpt, height: int = IMAGE_HEIGHT) -> "Any":
    """Engrave the excerpt: a grayscale PIL image of exactly ``height`` pixels."""
    try:
        xml = musicxml_of(ex.stream)
    except Exception as exc:
        raise SkipPiece("engrave", f"MusicXML export: {_short(exc)}") from None
    tk = _toolkit()
    try:
        ok = tk.loadData(xml)
        svg = tk.renderToSVG(1) if ok else ""
    except Exception as exc:
        raise SkipPiece("engrave", f"verovio: {_short(exc)}") from None
    if not svg or tk.getPageCount() < 1:
        raise SkipPiece("engrave", "verovio produced no page")
    svg = _TEXT_RE.sub("", svg)
    return svg_to_fixed_height(svg, height, staff_space_px=VEROVIO_SCALE / 5.0)


def _render_png(svg: str, zoom: float) -> Any:
    import resvg_py
    from PIL import Image

    png = resvg_py.svg_to_bytes(svg_string=svg, background="#ffffff", zoom=float(zoom), skip_system_fonts=True)
    return Image.open(io.BytesIO(bytes(png))).convert("L")


def _content_box(img: Any, threshold: int = 250) -> tuple[int, int, int, int] | None:
    arr = np.asarray(img)
    ink = arr < threshold
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def svg_to_fixed_height(svg: str, height: int, staff_space_px: float) -> Any:
    """Rasterise ``svg``, crop it to its ink and fit it into a white canvas ``height`` pixels high.

    Tall systems (many staves) are scaled down to fit; short ones (one staff) are scaled up only
    until a staff space reaches :data:`MAX_STAFF_SPACE` pixels and centred vertically.
    """
    from PIL import Image

    try:
        first = _render_png(svg, 1.0)
    except Exception as exc:
        raise SkipPiece("engrave", f"resvg: {_short(exc)}") from None
    box = _content_box(first)
    if box is None:
        raise SkipPiece("engrave", "empty image")
    content_h = box[3] - box[1]
    inner = height - 2 * IMAGE_MARGIN
    zoom = min(inner / content_h, MAX_STAFF_SPACE / staff_space_px)
    img = _render_png(svg, zoom) if abs(zoom - 1.0) > 1e-3 else first
    box = _content_box(img)
    if box is None:
        raise SkipPiece("engrave", "empty image")
    img = img.crop(box)
    if img.height > inner:  # rounding: never taller than the canvas
        img = img.resize((max(1, round(img.width * inner / img.height)), inner), Image.LANCZOS)
    canvas = Image.new("L", (img.width + 2 * IMAGE_MARGIN, height), 255)
    canvas.paste(img, (IMAGE_MARGIN, (height - img.height) // 2))
    return canvas


# --------------------------------------------------------------------------------------- synthesis
@lru_cache(maxsize=1)
def soundfont_bytes() -> bytes:
    """The General MIDI SoundFont shipped with pretty-midi (TimGM6mb.sf2)."""
    import pretty_midi

    return (Path(pretty_midi.__file__).resolve().parent / "TimGM6mb.sf2").read_bytes()


def excerpt_midi(ex: Excerpt, program: int, bpm: float, velocity: int = 90) -> tuple[bytes, float]:
    """A MIDI file of the excerpt on GM ``program`` at ``bpm`` beats per minute; returns (bytes, duration_s)."""
    import pretty_midi

    quarter_s = 60.0 / (bpm * ex.beat_quarter_length)
    pm = pretty_midi.PrettyMIDI(initial_tempo=60.0 / quarter_s)
    insts: dict[int, Any] = {}
    for part, on, off, pitch in ex.notes:
        inst = insts.get(part)
        if inst is None:
            inst = insts[part] = pretty_midi.Instrument(program=int(program), name=f"part{part}")
        inst.notes.append(pretty_midi.Note(velocity=velocity, pitch=pitch, start=on * quarter_s, end=off * quarter_s))
    duration = ex.quarter_length * quarter_s
    if not insts:
        raise SkipPiece("synth", "no notes")
    first = insts[min(insts)]
    # a harmless controller at the end makes the renderer keep the release tail
    first.control_changes.append(pretty_midi.ControlChange(number=7, value=100, time=duration + RELEASE_TAIL_S))
    pm.instruments.extend(insts[k] for k in sorted(insts))
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue(), duration


def synthesize(ex: Excerpt, program: int, bpm: float, sample_rate: int) -> tuple[np.ndarray, float]:
    """Render the excerpt to a mono float32 signal at ``sample_rate``; returns (samples, duration_s)."""
    import midirenderer

    from vmfmir_cli.data.media import decode_audio_bytes, resample

    midi, duration = excerpt_midi(ex, program, bpm)
    try:
        wav = midirenderer.render_wave_from(soundfont_bytes(), midi)
        x, sr = decode_audio_bytes(bytes(wav))
    except Exception as exc:
        raise SkipPiece("synth", _short(exc)) from None
    y = resample(x, sr, sample_rate)
    total_s = duration + RELEASE_TAIL_S
    n = int(round(total_s * sample_rate))
    if y.shape[0] < n:
        y = np.concatenate([y, np.zeros(n - y.shape[0], dtype=np.float32)])
    y = y[:n]
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak < 1e-4:
        raise SkipPiece("synth", "silent rendering")
    if peak > 0.99:
        y = y * (0.99 / peak)
    return y.astype(np.float32, copy=False), total_s


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    return text[:160]


__all__ = [
    "IMAGE_HEIGHT",
    "SkipPiece",
    "Excerpt",
    "parse_piece",
    "make_excerpt",
    "engrave",
    "synthesize",
    "excerpt_midi",
    "key_name",
    "soundfont_bytes",
]
