"""Case 3 (a decompression-bomb image) and case 7 (a media file deleted during training)."""

from __future__ import annotations

import json
import shutil
import struct
import warnings
import zlib
from pathlib import Path

import pytest

from reliability_helpers import invoke, one_line_error, tiny_overrides
from vmfmir_cli.data.media import MAX_IMAGE_PIXELS, load_image
from vmfmir_cli.errors import DataError


def bomb_png(path: Path, side: int = 20_000) -> Path:
    """A valid 1-bit PNG of side x side white pixels (400 Mpx for 20,000) in a file of ~50 KB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\xff" * ((side + 7) // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row * 500) for _ in range(side // 500)) + comp.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bombs")
    return {"400mpx": bomb_png(root / "bomb400.png"), "100mpx": bomb_png(root / "bomb100.png", side=10_000)}


def no_pil_text(result) -> None:
    text = result.stderr + result.stdout
    assert "DecompressionBomb" not in text and "Traceback" not in text and "warn" not in text.lower(), text


def test_load_image_refuses_a_bomb_without_a_warning(bombs):
    assert MAX_IMAGE_PIXELS < 100_000_000
    for path in bombs.values():
        assert path.stat().st_size < 200_000
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(DataError, match="too large to decode.*megapixels.*MAX_IMAGE_PIXELS"):
                load_image(path)
        assert not caught, [str(w.message) for w in caught]


def test_prepare_manifest_lists_a_bomb_with_the_other_bad_rows_and_skips_it(bombs, rel_data, tmp_path):
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really")
    rows = [
        {"id": "good", "image": str(rel_data / "image" / "piece000.png"), "text": "a tune"},
        {"id": "bomb", "image": str(bombs["400mpx"]), "text": "a bomb"},
        {"id": "broken", "audio": str(tmp_path / "broken.wav"), "text": "broken audio"},
        {"id": "good2", "image": str(rel_data / "image" / "piece001.png"), "text": "another tune"},
    ]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = invoke("prepare", "manifest", tmp_path / "m.jsonl", "--out", tmp_path / "data", "-q", cwd=tmp_path)
    assert result.exit_code == 1
    no_pil_text(result)
    assert "too large to decode" in result.stderr and "cannot decode audio" in result.stderr  # every bad row
    assert not (tmp_path / "data").exists()  # a failed import into a new folder leaves nothing behind
    result = invoke("prepare", "manifest", tmp_path / "m.jsonl", "--out", tmp_path / "data", "--skip-invalid", "-q", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    no_pil_text(result)
    ids = [json.loads(line)["id"] for line in (tmp_path / "data" / "manifest.jsonl").read_text().splitlines()]
    assert sorted(ids) == ["good", "good2"]
    skipped = [json.loads(line) for line in (tmp_path / "data" / "skipped.jsonl").read_text().splitlines()]
    assert {s["id"] for s in skipped} == {"bomb", "broken"}


def test_query_and_embed_files_refuse_a_bomb_in_one_line(bombs, trained_run, rel_data, tmp_path):
    idx = tmp_path / "idx"
    assert invoke("embed", "--run", trained_run, "--data", rel_data, "--out", idx, "-q").exit_code == 0
    for path in bombs.values():
        result = invoke("query", "--index", idx, "--image", path, cwd=tmp_path)
        one_line_error(result, path.name, "too large to decode")
        no_pil_text(result)
    folder = tmp_path / "files"
    folder.mkdir()
    shutil.copy(rel_data / "image" / "piece000.png", folder / "a.png")
    shutil.copy(bombs["400mpx"], folder / "b.png")
    result = invoke("embed", "--run", trained_run, "--files", folder, "--out", tmp_path / "fidx", "-q", cwd=tmp_path)
    one_line_error(result, "b.png", "too large to decode")
    no_pil_text(result)


def test_a_media_file_deleted_before_training_says_it_does_not_exist(rel_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(rel_data, data)
    victim = sorted((data / "audio").iterdir())[0]
    victim.unlink()
    toml = tmp_path / "t.toml"
    lines = [f"{k} = {json.dumps(v)}" for k, v in tiny_overrides(data, tmp_path / "runs").items() if k != "encoders"]
    for m, spec in tiny_overrides(data, tmp_path / "runs")["encoders"].items():
        lines += [f"[encoders.{m}]"] + [f"{k} = {json.dumps(v)}" for k, v in spec.items()]
    toml.write_text("\n".join(lines) + "\n")
    result = invoke("train", "-c", toml, "-q", cwd=tmp_path)
    text = one_line_error(result, victim.name, "no such audio file", "does not exist")
    assert "corrupt" not in text
