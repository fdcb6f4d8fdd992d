"""A plain folder (or glob) of media files as a collection: one item per file, no manifest.

Files are classified by extension: audio (``.wav .flac .ogg .oga .opus .mp3``), image (``.png .jpg
.jpeg .webp``) and text (``.txt``, whose UTF-8 content is the item's text). Other files are skipped
(and counted). An item's id is its path relative to the folder (or to the fixed part of a glob),
without the extension, with ``/`` separators (``piano/nocturne-1``); when two files would get the
same id (``song.wav`` and ``song.png``), they keep their extension (``song.wav``, ``song.png``).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterable, Optional, Sequence

from vmfmir_cli.data.manifest import Item
from vmfmir_cli.data.media import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS
from vmfmir_cli.errors import DataError

TEXT_EXTENSIONS = (".txt",)
EXTENSIONS = {
    **{ext: "audio" for ext in AUDIO_EXTENSIONS},
    **{ext: "image" for ext in IMAGE_EXTENSIONS},
    **{ext: "text" for ext in TEXT_EXTENSIONS},
}


def modality_of(path: str | Path) -> Optional[str]:
    """"audio", "image" or "text" from a file's extension (None for anything else)."""
    return EXTENSIONS.get(Path(path).suffix.lower())


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _expand(pattern: str) -> tuple[Path, list[Path]]:
    """(base folder, files) of one argument: a folder (recursive), a file, or a glob pattern."""
    path = Path(pattern).expanduser()
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file() and not _hidden(p.relative_to(path))]
        return path, sorted(files)
    if path.is_file():
        return path.parent, [path]
    if glob.has_magic(pattern):
        expanded = os.path.expanduser(pattern)
        parts = Path(expanded).parts
        fixed = []
        for part in parts:
            if glob.has_magic(part):
                break
            fixed.append(part)
        base = Path(*fixed) if fixed else Path(".")
        matches = sorted(Path(p) for p in glob.glob(expanded, recursive=True))
        files = [p for p in matches if p.is_file()]
        if not files:
            raise DataError(f"{pattern} matches no file")
        return base, files
    raise DataError(f"{pattern}: no such file or folder")


def _outside(f: Path, base: Path) -> bool:
    """True when ``f`` (found under ``base``) is a symlink that leads out of ``base``."""
    try:
        f.resolve().relative_to(base.resolve())
    except ValueError:
        return True
    return False


def collect_files(
    patterns: Sequence[str],
    modalities: Iterable[str] = ("audio", "image", "text"),
    follow_symlinks: bool = False,
    skip_invalid: bool = False,
) -> tuple[list[Item], dict[str, int]]:
    """Items (one per media file) from folders, files and glob patterns; plus counts of skipped files.

    Only files of ``modalities`` become items. The skipped counts have the keys ``unknown``
    (extension not recognised), ``empty`` (empty text files), ``duplicate`` (the same file named
    twice), ``no_encoder:<modality>`` (files of a modality outside ``modalities``), ``outside``
    (symlinks in a folder that lead out of it; followed only with ``follow_symlinks``) and
    ``invalid`` (undecodable files, with ``skip_invalid``: each file is decoded once to check it;
    without it the first one is a DataError).
    """
    if not patterns:
        raise DataError("no files given: pass a folder, files or a glob pattern after --files")
    wanted = set(modalities)
    skipped: dict[str, int] = {}
    found: list[tuple[Path, Path, str]] = []  # (file, relative path, modality)
    seen: set[Path] = set()
    for pattern in patterns:
        base, files = _expand(str(pattern))
        in_folder = Path(pattern).expanduser().is_dir()
        for f in files:
            if in_folder and not follow_symlinks and _outside(f, base):
                skipped["outside"] = skipped.get("outside", 0) + 1
                continue
            resolved = f.resolve()
            if resolved in seen:
                skipped["duplicate"] = skipped.get("duplicate", 0) + 1
                continue
            seen.add(resolved)
            modality = modality_of(f)
            if modality is None:
                skipped["unknown"] = skipped.get("unknown", 0) + 1
                continue
            if modality not in wanted:
                key = f"no_encoder:{modality}"
                skipped[key] = skipped.get(key, 0) + 1
                continue
            try:
                rel = f.relative_to(base)
            except ValueError:
                rel = Path(f.name)
            found.append((resolved, rel, modality))
    if not found:
        raise DataError(
            "found no audio, image or text file to embed in "
            + ", ".join(str(p) for p in patterns)
            + " (audio: .wav .flac .ogg .mp3; image: .png .jpg .jpeg .webp; text: .txt)"
        )
    stems: dict[str, int] = {}
    for _, rel, _ in found:
        stem = rel.with_suffix("").as_posix()
        stems[stem] = stems.get(stem, 0) + 1
    items: list[Item] = []
    used: set[str] = set()
    for path, rel, modality in found:
        stem = rel.with_suffix("").as_posix()
        ident = stem if stems[stem] == 1 else rel.as_posix()
        base_ident, n = ident, 1
        while ident in used:
            n += 1
            ident = f"{base_ident}#{n}"
        text = None
        if modality == "text":
            try:
                text = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise DataError(f"{path}: cannot read the text file ({exc}); save it as UTF-8") from None
            if not text:
                skipped["empty"] = skipped.get("empty", 0) + 1
                continue
        elif skip_invalid and not _decodes(path, modality):
            skipped["invalid"] = skipped.get("invalid", 0) + 1
            continue
        used.add(ident)
        items.append(
            Item(
                id=ident,
                group=ident,
                split=None,  # type: ignore[arg-type]  # a folder of files has no splits
                audio=path if modality == "audio" else None,
                image=path if modality == "image" else None,
                text=text,
                meta={"file": str(path)},
            )
        )
    if not items:
        raise DataError("none of the files given could be embedded (" + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())) + ")")
    return items, skipped


def _decodes(path: Path, modality: str) -> bool:
    from vmfmir_cli.data.media import load_image, read_audio

    try:
        read_audio(path) if modality == "audio" else load_image(path)
    except DataError:
        return False
    return True


__all__ = ["EXTENSIONS", "TEXT_EXTENSIONS", "collect_files", "modality_of"]
