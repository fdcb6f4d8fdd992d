"""The index folder (save/load, checksums, model hash) and collections made of plain files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vmfmir_cli.errors import CheckpointError, DataError
from vmfmir_cli.index import store
from vmfmir_cli.index.files import collect_files, modality_of


def _index(n_items: int = 3, d: int = 8, model_hash: str = "sha256:aa") -> store.Index:
    g = torch.Generator().manual_seed(n_items)
    items = [{"id": f"i{j}", "text": f"t{j}", "audio": None, "image": None, "meta": {"j": j}, "hash": {"text": f"h{j}"}}
             for j in range(n_items)]
    index = store.Index(info={"run": "/runs/r", "model_hash": model_hash, "dim": d, "source": {}}, items=items)
    index.mu["text"] = torch.nn.functional.normalize(torch.randn(n_items, d, generator=g), dim=-1)
    index.kappa["text"] = torch.rand(n_items, generator=g) * 10 + 1
    index.rows["text"] = torch.arange(n_items)
    index.mu["audio"] = index.mu["text"][:1].clone()
    index.kappa["audio"] = index.kappa["text"][:1].clone()
    index.rows["audio"] = torch.tensor([2])
    return index


def test_roundtrip(tmp_path):
    index = _index()
    info = store.save_index(index, tmp_path / "idx")
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["index.json", "index.safetensors", "items.jsonl"]
    assert info["counts"] == {"items": 3, "audio": 1, "text": 3} and info["modalities"] == ["audio", "text"]
    loaded = store.load_index(tmp_path / "idx")
    assert loaded.items == index.items and loaded.dim == 8 and loaded.model_hash == "sha256:aa"
    for m in ("audio", "text"):
        assert torch.equal(loaded.mu[m], index.mu[m]) and torch.equal(loaded.kappa[m], index.kappa[m])
        assert torch.equal(loaded.rows[m], index.rows[m])
    assert loaded.modalities == ["audio", "text"] and loaded.count("image") == 0
    on_disk = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert on_disk["vmfmir_version"] and on_disk["format_version"] == store.FORMAT_VERSION


def test_files_from_two_writes_are_refused(tmp_path):
    out = tmp_path / "idx"
    store.save_index(_index(3), out)
    other = tmp_path / "other"
    store.save_index(_index(4), other)
    # an interrupted rewrite: the new tensors are in place, the old items and index.json remain
    (out / store.TENSORS_FILE).write_bytes((other / store.TENSORS_FILE).read_bytes())
    with pytest.raises(CheckpointError, match="do not belong together"):
        store.load_index(out)
    store.save_index(_index(3), out)
    (out / store.ITEMS_FILE).write_text((out / store.ITEMS_FILE).read_text().replace("t1", "changed"))
    with pytest.raises(CheckpointError, match="do not belong together"):
        store.load_index(out)


def test_missing_and_foreign_folders(tmp_path):
    with pytest.raises(CheckpointError, match="no index at"):
        store.load_index(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a vmfmir index"):
        store.load_index(tmp_path / "empty")
    out = tmp_path / "idx"
    store.save_index(_index(), out)
    (out / store.TENSORS_FILE).unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        store.load_index(out)


def test_model_hash_check():
    info = {"model_hash": "sha256:" + "a" * 64, "run": "/runs/a"}
    store.check_model_hash(info, "sha256:" + "a" * 64, "/runs/a")
    with pytest.raises(CheckpointError, match="built by another model") as exc:
        store.check_model_hash(info, "sha256:" + "b" * 64, "/runs/b")
    assert "--run /runs/a" in str(exc.value)


def test_content_hashes(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc")
    assert store.hash_file(f) == store.sha256_bytes(b"abc") == store.hash_text("abc")
    assert store.hash_file(f).startswith("sha256:") and len(store.hash_file(f)) == 7 + 64


# -------------------------------------------------------------------------------------- files


def _write_media(folder):
    import soundfile as sf
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sub").mkdir(exist_ok=True)
    sr = 16000
    t = np.arange(sr // 2) / sr
    sf.write(folder / "song.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)
    sf.write(folder / "sub" / "tune.flac", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr)
    Image.new("L", (64, 32), 255).save(folder / "song.png")
    (folder / "notes.txt").write_text("  a slow melody played on flute \n", encoding="utf-8")
    (folder / "empty.txt").write_text("   ", encoding="utf-8")
    (folder / "README.md").write_text("not media")
    (folder / ".hidden.wav").write_bytes(b"")
    return folder


def test_collect_files_from_a_folder(tmp_path):
    folder = _write_media(tmp_path / "media")
    items, skipped = collect_files([str(folder)])
    by_id = {it.id: it for it in items}
    assert set(by_id) == {"song.wav", "song.png", "sub/tune", "notes"}  # song.* collide: extensions kept
    assert by_id["sub/tune"].audio == (folder / "sub" / "tune.flac").resolve()
    assert by_id["song.png"].image is not None and by_id["song.png"].audio is None
    assert by_id["notes"].text == "a slow melody played on flute"
    assert skipped == {"unknown": 1, "empty": 1}
    assert all(it.meta["file"] for it in items)


def test_collect_files_globs_files_and_modalities(tmp_path):
    folder = _write_media(tmp_path / "media")
    items, skipped = collect_files([str(folder / "**" / "*.flac"), str(folder / "song.wav"), str(folder / "song.wav")])
    assert [it.id for it in items] == ["sub/tune", "song"] and skipped == {"duplicate": 1}
    items, skipped = collect_files([str(folder)], modalities=("audio",))
    assert {it.id for it in items} == {"song", "sub/tune"}
    assert skipped["no_encoder:image"] == 1 and skipped["no_encoder:text"] == 2
    assert modality_of("a/B.JPG") == "image" and modality_of("x.mp3") == "audio" and modality_of("x.mid") is None


def test_collect_files_errors(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        collect_files([str(tmp_path / "missing")])
    with pytest.raises(DataError, match="matches no file"):
        collect_files([str(tmp_path / "*.wav")])
    (tmp_path / "only.md").write_text("x")
    with pytest.raises(DataError, match="found no audio, image or text file"):
        collect_files([str(tmp_path)])
    with pytest.raises(DataError, match="no files given"):
        collect_files([])
