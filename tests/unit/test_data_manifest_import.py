"""``prepare manifest``: a user's collection with broken rows (validation, --skip-invalid, conversion)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from vmfmir_cli.data.manifest import read_dataset_info, read_manifest
from vmfmir_cli.data.recipes.manifest import ManifestOptions, ManifestValidationError, import_manifest
from vmfmir_cli.errors import DataError


def _tone(seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = (0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    return np.stack([x, x], axis=1) if channels == 2 else x


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    """A folder with media in every supported format and a few broken files."""
    media = tmp_path / "coll" / "media"
    media.mkdir(parents=True)
    sf.write(media / "a.wav", _tone(1.5, 44100, 2), 44100)
    sf.write(media / "b.flac", _tone(2.0, 22050), 22050)
    sf.write(media / "c.ogg", _tone(1.0, 48000), 48000, format="OGG", subtype="VORBIS")
    sf.write(media / "d.mp3", _tone(1.0, 32000), 32000, format="MP3")
    Image.new("RGB", (40, 20), (250, 250, 250)).save(media / "s1.png")
    Image.new("RGB", (40, 20), (10, 10, 10)).save(media / "s2.jpg")
    Image.new("RGBA", (30, 20), (0, 0, 0, 0)).save(media / "s3.webp")
    (media / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnope")
    (media / "broken.png").write_bytes(b"not a png")
    (media / "notes.txt").write_text("A text stored in a file.\n")
    return tmp_path / "coll"


GOOD_CSV = [
    "id,audio,image,text,group,split",
    "a,media/a.wav,media/s1.png,First piece,p1,",
    "b,media/b.flac,media/s1.png,First piece again,p1,",
    "c,media/c.ogg,,Third,,test",
    "d,media/d.mp3,media/s2.jpg,,,",
    "e,,media/s3.webp,media/notes.txt,,",
]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_valid_csv_is_imported_and_converted(collection, tmp_path):
    src = _write(collection / "items.csv", GOOD_CSV + [f"g{i},,,text number {i},," for i in range(20)])
    out = tmp_path / "data"
    summary = import_manifest(ManifestOptions(file=src, out=out, sample_rate=16000, seed=1))
    assert summary.items == 25 and summary.skipped_rows == 0 and summary.report is None
    items = {it.id: it for it in read_manifest(out)}
    info = read_dataset_info(out)
    assert info["sample_rate"] == 16000 and info["name"] == "items" and info["source"] == "manifest"
    for rid, seconds in (("a", 1.5), ("b", 2.0), ("c", 1.0)):
        x, sr = sf.read(items[rid].audio)
        assert sr == 16000 and x.ndim == 1 and abs(len(x) - seconds * 16000) <= 2  # full length, mono
        assert items[rid].audio.suffix == ".flac" and items[rid].audio.parent == (out / "audio").resolve()
    x, sr = sf.read(items["d"].audio)
    assert sr == 16000 and abs(len(x) - 16000) < 1500  # mp3 encoder padding
    assert items["a"].image == items["b"].image  # one copy of a shared file
    with Image.open(items["e"].image) as img:
        assert img.format == "PNG" and img.mode == "RGB" and img.getpixel((0, 0)) == (255, 255, 255)
    assert items["e"].text == "A text stored in a file." and items["d"].text is None
    assert items["c"].split == "test" and items["a"].split == items["b"].split  # explicit split, group kept together
    splits = {}
    for it in items.values():
        splits.setdefault(it.group, set()).add(it.split)
    assert all(len(s) == 1 for s in splits.values())
    assert {it.split for it in items.values()} == {"train", "val", "test"}
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert rows[0]["audio"].startswith("audio/") and rows[0]["meta"]["source_line"] == 2
    # a rerun converts nothing again
    again = import_manifest(ManifestOptions(file=src, out=out, sample_rate=16000, seed=1))
    assert again.converted_media == 0 and again.reused_media == summary.converted_media
    assert [it.split for it in read_manifest(out)] == [it.split for it in items.values()]


def test_all_problems_are_reported_at_once(collection, tmp_path):
    src = _write(
        collection / "items.jsonl",
        [
            json.dumps({"id": "ok1", "audio": "media/a.wav", "text": "fine"}),
            json.dumps({"id": "m", "audio": "media/missing.wav"}),
            json.dumps({"id": "ba", "audio": "media/broken.wav"}),
            json.dumps({"id": "bi", "image": "media/broken.png"}),
            json.dumps({"id": "et", "text": "   "}),
            json.dumps({"id": "ok1", "text": "duplicate"}),
            json.dumps({"id": "u", "text": "x", "mood": "happy"}),
            json.dumps({"id": "s", "text": "x", "split": "holdout"}),
            "{not json",
            json.dumps({"id": "fmt", "audio": "media/notes.txt"}),
            json.dumps({"id": "ok2", "image": "media/s2.jpg", "group": "G", "split": "train"}),
            json.dumps({"id": "ok3", "text": "same group other split", "group": "G", "split": "val"}),
            json.dumps({"id": "nothing"}),
        ],
    )
    out = tmp_path / "data"
    with pytest.raises(ManifestValidationError) as info:
        import_manifest(ManifestOptions(file=src, out=out))
    lines = [str(p) for p in info.value.problems]
    expected = {
        2: "audio file 'media/missing.wav' not found",
        3: "audio file 'media/broken.wav': cannot decode audio",
        4: "image file 'media/broken.png': cannot decode image",
        5: "empty text",
        6: "duplicate id 'ok1' (first used on line 1)",
        7: "unknown column 'mood'",
        8: "unknown split 'holdout'",
        9: "invalid JSON",
        10: "unsupported format",
        11: "group 'G' is in split train here but also in val (line 12)",
        12: "group 'G' is in split val here but also in train (line 11)",
        13: "the row has no audio, image or text",
    }
    for line_no, needle in expected.items():
        assert any(line.startswith(f"{src}:{line_no}: ") and needle in line for line in lines), (line_no, lines)
    assert "12 invalid rows" in str(info.value) and "--skip-invalid" in str(info.value)
    assert not (out / "manifest.jsonl").exists()

    summary = import_manifest(ManifestOptions(file=src, out=out, skip_invalid=True))
    assert summary.items == 1 and summary.skipped_rows == 12
    assert [it.id for it in read_manifest(out)] == ["ok1"]
    report = [json.loads(line) for line in Path(summary.report).read_text().splitlines()]
    assert [r["line"] for r in report] == list(range(2, 14))
    assert report[0] == {"file": str(src), "line": 2, "id": "m", "problems": [expected[2] + " (paths are relative to the manifest)"]}


def test_csv_header_problems_are_fatal_even_when_skipping(collection, tmp_path):
    src = _write(collection / "bad.csv", ["id,audio,txet", "a,media/a.wav,hello"])
    with pytest.raises(ManifestValidationError) as info:
        import_manifest(ManifestOptions(file=src, out=tmp_path / "d", skip_invalid=True))
    assert str(info.value.problems[0]).startswith(f"{src}:1: unknown column 'txet'")
    src2 = _write(collection / "noid.csv", ["name,text", "a,hello"])
    with pytest.raises(ManifestValidationError, match=r"invalid header in .*noid.csv \(and 1 invalid row\): unknown column 'name'"):
        import_manifest(ManifestOptions(file=src2, out=tmp_path / "d"))


def test_file_level_errors(collection, tmp_path):
    with pytest.raises(DataError, match="not found"):
        import_manifest(ManifestOptions(file=collection / "missing.csv", out=tmp_path / "d"))
    with pytest.raises(DataError, match="unsupported manifest format '.xlsx'"):
        (collection / "x.xlsx").write_text("id\n")
        import_manifest(ManifestOptions(file=collection / "x.xlsx", out=tmp_path / "d"))
    with pytest.raises(DataError, match="empty"):
        import_manifest(ManifestOptions(file=_write(collection / "e.csv", []), out=tmp_path / "d"))


def test_captions_column_is_read_and_validated(collection, tmp_path):
    rows = [
        {"id": "a", "audio": "media/a.wav", "text": "First piece",
         "captions": [{"text": "calm piano", "level": 1, "facts": {"mood": "calm"}}, "a piece of music"]},
        {"id": "b", "audio": "media/b.flac", "captions": [{"text": "Only captions", "level": 3}]},
        {"id": "c", "audio": "media/c.ogg", "text": "No captions"},
        {"id": "bad", "audio": "media/c.ogg", "captions": [{"text": "x", "level": 9}]},
    ] + [{"id": f"g{i}", "text": f"text number {i}"} for i in range(12)]
    src = collection / "items.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    with pytest.raises(ManifestValidationError) as info:
        import_manifest(ManifestOptions(file=src, out=tmp_path / "d1", sample_rate=16000))
    assert any("level must be one of 0, 1, 2, 3" in str(p) for p in info.value.problems)
    import_manifest(ManifestOptions(file=src, out=tmp_path / "d2", sample_rate=16000, skip_invalid=True))
    items = {it.id: it for it in read_manifest(tmp_path / "d2")}
    assert "bad" not in items
    a = items["a"]
    assert [c.text for c in a.captions] == ["First piece", "calm piano", "a piece of music"]
    assert a.captions[1].level == 1 and a.captions[1].facts == {"mood": "calm"} and a.captions[0].level is None
    assert items["b"].text == "Only captions" and items["b"].captions[0].level == 3
    assert items["c"].captions == []
