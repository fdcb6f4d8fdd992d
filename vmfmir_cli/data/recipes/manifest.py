"""``vmfmir prepare manifest FILE``: import a user's own collection into the dataset contract.

FILE is CSV (with a header row) or JSONL (one object per line) with one row per item:

* ``id`` (required, unique);
* any of ``audio`` and ``image``: paths relative to FILE (or absolute); audio in WAV, FLAC, OGG or
  MP3, images in PNG, JPEG or WebP;
* ``text``: the text itself (a value ending in ``.txt`` that names an existing file is read from it);
* ``group`` (optional): items of one group never straddle splits (default: the id);
* ``split`` (optional): train, val or test; rows without one are assigned 80/10/10 by group,
  deterministically from a hash of the group and the seed;
* ``meta`` (optional): a JSON object kept as is;
* ``captions`` (optional): a JSON list of more texts for the item, each a string or
  ``{"text", "level" (0-3, optional), "facts" (optional)}`` (see :mod:`vmfmir_cli.data.captions`);
  ``text`` is the first of them when given (it defaults to the first caption otherwise).

Every row is validated (missing or unknown column, duplicate id, missing file, unsupported format,
undecodable audio or image, empty text, a group in two splits) and all problems are reported at
once with file and line. Valid media are copied into the dataset folder: audio decoded, mixed to
mono, resampled to the dataset rate and stored as FLAC (full length); images stored as PNG. Media
files are named by a hash of their source, so rows that share a file share one copy and a rerun
reuses what an earlier run converted.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from vmfmir_cli.data.manifest import (
    DEFAULT_SAMPLE_RATE,
    SPLITS,
    Item,
    assign_splits,
    write_dataset,
)
from vmfmir_cli.data.media import (
    AUDIO_EXTENSIONS,
    IMAGE_EXTENSIONS,
    encode_flac,
    encode_png,
    load_image,
    read_audio,
    resample,
)
from vmfmir_cli.data.captions import Caption, parse_captions
from vmfmir_cli.errors import DataError
from vmfmir_cli.utils_io import write_bytes, write_jsonl

KNOWN_COLUMNS = ("id", "audio", "image", "text", "group", "split", "meta", "captions")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "dev": "val", "test": "test", "testing": "test"}
SKIPPED_REPORT = "skipped.jsonl"
ProgressFn = Callable[[int, int], None]


@dataclass
class Problem:
    """One invalid row: where it is and what is wrong."""

    file: str
    line: int
    id: str | None
    message: str
    fatal: bool = False  # a header problem: --skip-invalid cannot skip it

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class ManifestValidationError(DataError):
    """The manifest has invalid rows; ``problems`` lists them all."""

    def __init__(self, path: Path, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        fatal = [p for p in problems if p.fatal]
        n_rows = len({p.line for p in problems if not p.fatal})
        rows = f"{n_rows} invalid row{'s' if n_rows != 1 else ''}"
        if fatal:
            super().__init__(
                f"invalid header in {path}" + (f" (and {rows})" if n_rows else "") + f": {fatal[0].message}; fix the header row"
            )
        else:
            super().__init__(
                f"{rows} in {path} ({len(problems)} problem{'s' if len(problems) != 1 else ''}); "
                "fix them, or rerun with --skip-invalid to import only the valid rows"
            )


@dataclass
class ManifestOptions:
    file: Path
    out: Path = Path("data")
    sample_rate: int = DEFAULT_SAMPLE_RATE
    skip_invalid: bool = False
    seed: int = 0
    name: str | None = None


@dataclass
class ImportSummary:
    out: str
    items: int
    skipped_rows: int
    problems: list[str]
    splits: dict[str, int]
    modalities: dict[str, int]
    report: str | None
    seconds: float
    reused_media: int = 0
    converted_media: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Row:
    line: int
    values: dict[str, Any]
    problems: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------- reading
def read_rows(path: Path) -> tuple[list[_Row], list[Problem]]:
    """Parse a CSV or JSONL manifest into rows (with line numbers); file-level problems separately."""
    if not path.is_file():
        raise DataError(f"manifest file '{path}' not found; pass a CSV or JSONL file")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; save the manifest as UTF-8 CSV or JSONL") from None
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _read_jsonl(path, text)
    if suffix in (".csv", ".tsv"):
        return _read_csv(path, text, delimiter="\t" if suffix == ".tsv" else ",")
    raise DataError(f"{path}: unsupported manifest format '{suffix or 'none'}'; use .csv or .jsonl")


def _read_jsonl(path: Path, text: str) -> tuple[list[_Row], list[Problem]]:
    rows: list[_Row] = []
    problems: list[Problem] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            problems.append(Problem(str(path), line_no, None, f"invalid JSON ({exc.msg})"))
            continue
        if not isinstance(obj, dict):
            problems.append(Problem(str(path), line_no, None, "expected a JSON object"))
            continue
        rows.append(_Row(line_no, {str(k).strip().lower(): v for k, v in obj.items()}))
    if not rows and not problems:
        raise DataError(f"{path}: the manifest has no rows")
    return rows, problems


def _read_csv(path: Path, text: str, delimiter: str) -> tuple[list[_Row], list[Problem]]:
    import io

    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] = []
    for header in reader:
        if any(cell.strip() for cell in header):
            break
    if not any(cell.strip() for cell in header):
        raise DataError(f"{path}: the manifest is empty; add a header row (id,audio,image,text,...)")
    header_line = reader.line_num
    columns = [h.strip().lower() for h in header]
    rows: list[_Row] = []
    problems: list[Problem] = []
    unknown = [c for c in columns if c not in KNOWN_COLUMNS]
    if unknown:
        problems.append(
            Problem(str(path), header_line, None, f"unknown column{'s' if len(unknown) > 1 else ''} "
                    f"{', '.join(repr(c) for c in unknown)}; known columns: {', '.join(KNOWN_COLUMNS)}", fatal=True)
        )
    if "id" not in columns:
        problems.append(Problem(str(path), header_line, None, "the header has no 'id' column", fatal=True))
    line_no = header_line
    for record in reader:
        start = line_no + 1
        line_no = reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        if len(record) != len(columns):
            problems.append(
                Problem(str(path), start, None, f"expected {len(columns)} fields, found {len(record)}")
            )
            continue
        # an empty cell is a missing value; a blank (whitespace) cell is kept so it can be reported
        values = {c: (v if v != "" else None) for c, v in zip(columns, record) if c in KNOWN_COLUMNS}
        rows.append(_Row(start, values))
    if not rows and not problems:
        raise DataError(f"{path}: the manifest has a header but no rows")
    return rows, problems


# -------------------------------------------------------------------------------- validation
def _media_name(src: Path, kind: str, sample_rate: int) -> str:
    st = src.stat()
    h = hashlib.sha1(f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}|{sample_rate}".encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9]+", "-", src.stem).strip("-")[:40] or kind
    return f"{stem}-{h}"


def _resolve(base: Path, value: Any) -> Path:
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else base / p


def _check_row(row: _Row, base: Path) -> dict[str, Any]:
    """Structural checks of one row (no decoding); fills ``row.problems``; returns normalised fields."""
    v = row.values
    p = row.problems
    unknown = [k for k in v if k not in KNOWN_COLUMNS]
    if unknown:
        p.append(f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(repr(k) for k in unknown)}; "
                 f"known columns: {', '.join(KNOWN_COLUMNS)}")
    out: dict[str, Any] = {}
    rid = v.get("id")
    if rid is None or (isinstance(rid, str) and not rid.strip()):
        p.append("missing id")
    elif not isinstance(rid, (str, int)):
        p.append("id must be a string")
    else:
        out["id"] = str(rid).strip()
    has_any = False
    for kind, exts in (("audio", AUDIO_EXTENSIONS), ("image", IMAGE_EXTENSIONS)):
        value = v.get(kind)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        has_any = True
        if not isinstance(value, str):
            p.append(f"{kind} must be a file path")
            continue
        src = _resolve(base, value.strip())
        if src.suffix.lower() not in exts:
            p.append(f"{kind} file '{value}' has an unsupported format; use {', '.join(exts)}")
        elif not src.is_file():
            p.append(f"{kind} file '{value}' not found (paths are relative to the manifest)")
        else:
            out[kind] = src
    t = v.get("text")
    if t is not None:
        has_any = True
        if not isinstance(t, str):
            p.append("text must be a string")
        elif not t.strip():
            p.append("empty text")
        else:
            text: str | None = t.strip()
            candidate = _resolve(base, text) if text.lower().endswith(".txt") and "\n" not in text else None
            if candidate is not None and candidate.is_file():
                try:
                    text = candidate.read_text(encoding="utf-8").strip()
                except (OSError, UnicodeDecodeError) as exc:
                    p.append(f"cannot read text file '{t}' ({exc})")
                    text = None
                if text == "":
                    p.append(f"empty text (file '{t}' is empty)")
                    text = None
            if text:
                out["text"] = " ".join(text.split())
    if not has_any:
        p.append("the row has no audio, image or text")
    group = v.get("group")
    if group is not None:
        if isinstance(group, (str, int)) and str(group).strip():
            out["group"] = str(group).strip()
        else:
            p.append("group must be a non-empty string")
    split = v.get("split")
    if split is not None:
        s = SPLIT_ALIASES.get(str(split).strip().lower())
        if s is None:
            p.append(f"unknown split {split!r}; use train, val or test")
        else:
            out["split"] = s
    meta = _json_cell(v.get("meta"))
    if meta is not None:
        if not isinstance(meta, dict):
            p.append("meta must be a JSON object")
        else:
            out["meta"] = meta
    captions = _json_cell(v.get("captions"))
    if captions is not None:
        try:
            parsed = parse_captions(captions)
        except (TypeError, ValueError) as exc:
            p.append(f"captions: {exc}")
        else:
            if parsed:
                text = out.get("text")
                if text is None:
                    out["text"] = parsed[0].text
                elif text not in [c.text for c in parsed]:
                    parsed.insert(0, Caption(text, None, {}))
                out["captions"] = parsed
                p[:] = [x for x in p if x != "the row has no audio, image or text" or out.get("text") is None]
    return out


def _json_cell(value: Any) -> Any:
    """A CSV cell holding JSON (meta, captions) decoded; JSONL values as they are; invalid JSON -> "not JSON"."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return "not JSON"


def import_manifest(opts: ManifestOptions, on_progress: ProgressFn | None = None) -> ImportSummary:
    """Validate FILE, convert its media into ``opts.out`` and write the dataset contract.

    Holds the write lock of ``opts.out`` throughout (one writer at a time); when the import fails
    and this call created ``opts.out``, the folder and the media converted into it are removed.
    """
    import shutil

    from vmfmir_cli.locks import folder_lock
    from vmfmir_cli.utils_io import ensure_writable

    out = Path(opts.out)
    created = not out.exists()
    try:
        with folder_lock(out, "dataset", "vmfmir prepare manifest"):
            ensure_writable(out, "folder")  # before converting any media
            return _import_manifest(opts, on_progress)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise


def _import_manifest(opts: ManifestOptions, on_progress: ProgressFn | None = None) -> ImportSummary:
    import time

    t0 = time.perf_counter()
    path = Path(opts.file).expanduser()
    if not 4000 <= opts.sample_rate <= 96000:
        raise DataError(f"--sample-rate must be between 4000 and 96000 Hz, got {opts.sample_rate}")
    out = Path(opts.out)
    if (out / ".state" / "music21").exists():
        raise DataError(f"'{out}' holds a music21 benchmark; choose another --out for your collection")
    rows, file_problems = read_rows(path)
    base = path.resolve().parent
    shown = str(opts.file)

    # 1. structure, duplicates, groups
    fields: dict[int, dict[str, Any]] = {}
    first_line_of_id: dict[str, int] = {}
    for row in rows:
        f = _check_row(row, base)
        fields[row.line] = f
        rid = f.get("id")
        if rid is not None:
            if rid in first_line_of_id:
                row.problems.append(f"duplicate id '{rid}' (first used on line {first_line_of_id[rid]})")
            else:
                first_line_of_id[rid] = row.line
    group_splits: dict[str, dict[str, int]] = {}
    for row in rows:
        f = fields[row.line]
        if "id" in f:
            g = f.get("group", f["id"])
            if "split" in f:
                group_splits.setdefault(g, {}).setdefault(f["split"], row.line)
    for row in rows:
        f = fields[row.line]
        g = f.get("group", f.get("id"))
        splits_of_g = group_splits.get(g, {})
        if g is not None and len(splits_of_g) > 1 and "split" in f:
            others = ", ".join(f"{s} (line {ln})" for s, ln in sorted(splits_of_g.items()) if s != f["split"])
            row.problems.append(f"group '{g}' is in split {f['split']} here but also in {others}")

    # 2. decode and convert media of the structurally valid rows
    out.mkdir(parents=True, exist_ok=True)
    progress = on_progress or (lambda d, t: None)
    converted: dict[tuple[str, Path], str] = {}
    stats = {"reused": 0, "converted": 0}
    durations: dict[Path, float] = {}
    total = len(rows)
    for i, row in enumerate(rows, start=1):
        f = fields[row.line]
        if not row.problems:
            for kind in ("audio", "image"):
                src = f.get(kind)
                if src is None:
                    continue
                try:
                    f[kind + "_rel"] = _convert(src, kind, out, opts.sample_rate, converted, stats, durations)
                except DataError as exc:
                    msg = str(exc)
                    if msg.startswith(f"{src}: "):
                        msg = msg[len(f"{src}: "):]
                    row.problems.append(f"{kind} file '{str(row.values.get(kind)).strip()}': {msg}")
        progress(i, total)

    problems = list(file_problems)
    for row in rows:
        for msg in row.problems:
            problems.append(Problem(shown, row.line, fields[row.line].get("id"), msg))
    problems.sort(key=lambda p: p.line)
    valid = [row for row in rows if not row.problems]
    if problems and (not opts.skip_invalid or any(p.fatal for p in problems)):
        raise ManifestValidationError(Path(shown), problems)
    if not valid:
        raise ManifestValidationError(Path(shown), problems or [Problem(shown, 1, None, "no valid rows")])

    # 3. splits: explicit ones stay, their groups follow them, the rest 80/10/10 by group
    fixed: dict[str, str] = {}
    for row in valid:
        f = fields[row.line]
        if "split" in f:
            fixed[f.get("group", f["id"])] = f["split"]
    free = [fields[r.line].get("group", fields[r.line]["id"]) for r in valid]
    assigned = assign_splits([g for g in free if g not in fixed], opts.seed)
    items: list[Item] = []
    for row in valid:
        f = fields[row.line]
        g = f.get("group", f["id"])
        meta = dict(f.get("meta", {}))
        meta.setdefault("source_line", row.line)
        if "audio" in f:
            meta.setdefault("source_audio", str(row.values.get("audio")))
            meta.setdefault("duration_s", round(durations[f["audio"]], 6))
        if "image" in f:
            meta.setdefault("source_image", str(row.values.get("image")))
        items.append(
            Item(
                id=f["id"],
                group=g,
                split=fixed.get(g) or assigned[g],
                audio=out / f["audio_rel"] if "audio_rel" in f else None,
                image=out / f["image_rel"] if "image_rel" in f else None,
                text=f.get("text"),
                meta=meta,
                captions=list(f.get("captions", [])),
            )
        )

    report = None
    if problems:
        report_path = out / SKIPPED_REPORT
        by_line: dict[int, list[Problem]] = {}
        for pr in problems:
            by_line.setdefault(pr.line, []).append(pr)
        write_jsonl(
            report_path,
            ({"file": shown, "line": ln, "id": prs[0].id, "problems": [p.message for p in prs]} for ln, prs in sorted(by_line.items())),
        )
        report = str(report_path)
    elif (out / SKIPPED_REPORT).exists():
        (out / SKIPPED_REPORT).unlink()

    name = opts.name or path.stem
    info = write_dataset(
        out,
        items,
        name=name,
        sample_rate=opts.sample_rate,
        source="manifest",
        options={
            "file": str(path.resolve()),
            "sample_rate": opts.sample_rate,
            "skip_invalid": opts.skip_invalid,
            "seed": opts.seed,
        },
        extra={"skipped_rows": len({p.line for p in problems})},
    )
    counts = info["counts"]
    return ImportSummary(
        out=str(out),
        items=len(items),
        skipped_rows=len({p.line for p in problems}),
        problems=[str(p) for p in problems],
        splits={s: counts[s]["items"] for s in SPLITS},
        modalities={m: counts["total"][m] for m in ("audio", "image", "text")},
        report=report,
        seconds=round(time.perf_counter() - t0, 2),
        reused_media=stats["reused"],
        converted_media=stats["converted"],
        examples=[{"id": it.id, "split": it.split} for it in items[:3]],
    )


def _convert(
    src: Path,
    kind: str,
    out: Path,
    sample_rate: int,
    done: dict[tuple[str, Path], str],
    stats: dict[str, int],
    durations: dict[Path, float],
) -> str:
    """Decode ``src`` and store it in ``out/<kind>/``; returns the path relative to ``out``."""
    key = (kind, src)
    if key in done:
        return done[key]
    name = _media_name(src, kind, sample_rate)
    if kind == "audio":
        rel = f"audio/{name}.flac"
        dest = out / rel
        if dest.is_file():
            import soundfile as sf

            try:
                durations[src] = sf.info(str(dest)).duration
                stats["reused"] += 1
                done[key] = rel
                return rel
            except Exception:
                pass
        x, sr = read_audio(src)
        y = resample(x, sr, sample_rate)
        if y.size == 0 or not _finite(y):
            raise DataError(f"{src}: the audio holds no usable samples")
        write_bytes(dest, encode_flac(y, sample_rate))
        durations[src] = y.shape[0] / float(sample_rate)
    else:
        rel = f"image/{name}.png"
        dest = out / rel
        if dest.is_file():
            stats["reused"] += 1
            done[key] = rel
            return rel
        img = load_image(src)
        if img.width < 1 or img.height < 1:
            raise DataError(f"{src}: the image is empty")
        write_bytes(dest, encode_png(img))
    stats["converted"] += 1
    done[key] = rel
    return rel


def _finite(y) -> bool:
    import numpy as np

    return bool(np.isfinite(y).all())


__all__ = [
    "KNOWN_COLUMNS",
    "ManifestOptions",
    "ManifestValidationError",
    "ImportSummary",
    "Problem",
    "import_manifest",
    "read_rows",
]
