"""``vmfmir prepare music21``: a three-modality benchmark built offline from the music21 corpus.

Every item is one performance of one piece excerpt (the first ``bars`` bars):

* ``audio/<item>.flac``: the excerpt synthesised with a General MIDI SoundFont (mono, dataset rate);
* ``image/<piece>.png``: the excerpt engraved (shared by the variants of the piece);
* ``text``: an English description of the piece and the performance.

Pieces are sampled across collections (see :mod:`.music21_catalog`), rendered in worker processes
(spawn-safe), and every finished piece is recorded in ``DIR/.state/music21/pieces/<piece>.json``
after its media are written (all writes atomic). The manifest is rebuilt from these records at the
end, so an interrupted run loses nothing and a rerun resumes where it stopped. Pieces that cannot be
parsed, engraved or synthesised, or are too short, are skipped, recorded and counted.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from vmfmir_cli.data.manifest import (
    DEFAULT_SAMPLE_RATE,
    MANIFEST_NAME,
    Item,
    assign_splits,
    write_dataset,
)
from vmfmir_cli.data.recipes.music21_captions import music21_captions
from vmfmir_cli.data.recipes.music21_catalog import (
    COLLECTIONS,
    PieceRef,
    corpus_root,
    interleave,
    list_corpus_pieces,
)
from vmfmir_cli.errors import DataError
from vmfmir_cli.utils_io import write_bytes, write_json

RECIPE_VERSION = 1
STATE_DIR = Path(".state") / "music21"
DATASET_NAME = "music21-benchmark"
#: the distributions that make this recipe's media; dataset.json records their versions
RENDER_PACKAGES = ("music21", "verovio", "resvg-py", "midirenderer", "pretty-midi")
SKIP_REASONS = ("parse", "too_short", "engrave", "synth", "error", "crash")

ProgressFn = Callable[[int, int], None]


@dataclass
class Music21Options:
    """Options of ``vmfmir prepare music21`` (see the command's help)."""

    out: Path = Path("data")
    pieces: int | None = 2000  # None: every piece of the corpus
    variants: int = 2
    bars: int = 4
    seed: int = 0
    workers: int | None = None  # None: all cores
    sample_rate: int = DEFAULT_SAMPLE_RATE
    image_height: int = 256
    collections: tuple[str, ...] | None = None  # collection keys to sample from; None: all

    def validate(self) -> None:
        if self.pieces is not None and self.pieces < 1:
            raise DataError(f"--pieces must be a positive number or 'all', got {self.pieces}")
        if not 1 <= self.variants <= 8:
            raise DataError(f"--variants must be between 1 and 8, got {self.variants}")
        if not 1 <= self.bars <= 32:
            raise DataError(f"--bars must be between 1 and 32, got {self.bars}")
        if self.workers is not None and self.workers < 1:
            raise DataError(f"--workers must be at least 1, got {self.workers}")
        if not 4000 <= self.sample_rate <= 96000:
            raise DataError(f"--sample-rate must be between 4000 and 96000 Hz, got {self.sample_rate}")
        if not 32 <= self.image_height <= 2048:
            raise DataError(f"the image height must be between 32 and 2048 pixels, got {self.image_height}")

    def content_key(self) -> dict[str, Any]:
        """The options that change what a piece's files contain (a resume must match them)."""
        return {
            "recipe_version": RECIPE_VERSION,
            "variants": self.variants,
            "bars": self.bars,
            "seed": self.seed,
            "sample_rate": self.sample_rate,
            "image_height": self.image_height,
        }


@dataclass
class PrepareSummary:
    """What a build did: counts, per-collection kept/skipped, time."""

    out: str
    items: int
    pieces_kept: int
    pieces_skipped: int
    pieces_reused: int
    skipped_by_reason: dict[str, int]
    collections: dict[str, dict[str, Any]]
    splits: dict[str, int]
    seconds: float
    examples: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------- worker
_WORKER_READY = False


def _init_worker() -> None:
    """Per-process setup: quiet warnings, one thread, heavy imports once."""
    global _WORKER_READY
    if _WORKER_READY:
        return
    warnings.simplefilter("ignore")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:  # pragma: no cover
        pass
    import music21  # noqa: F401  (imported once per worker, before the first piece)

    from vmfmir_cli.data.recipes.music21_render import soundfont_bytes

    soundfont_bytes()
    _WORKER_READY = True


def _record_path(out: Path, piece_id: str) -> Path:
    return out / STATE_DIR / "pieces" / f"{piece_id}.json"


def _is_broken_install(exc: BaseException) -> bool:
    """An import or shared-library failure: the environment is broken, not the piece."""
    text = str(exc)
    return isinstance(exc, ImportError) or (
        isinstance(exc, OSError) and ("Could not load this library" in text or "undefined symbol" in text)
    )


def process_piece(task: dict[str, Any]) -> dict[str, Any]:
    """Render one piece in all its variants, write its media and its record; return the record.

    Piece-level failures become a ``skipped`` record; only I/O errors on the dataset folder raise.
    """
    _init_worker()
    from vmfmir_cli.data.media import encode_flac, encode_png
    from vmfmir_cli.data.recipes import music21_render as R
    from vmfmir_cli.data.recipes import music21_text as T

    t0, c0 = time.perf_counter(), time.process_time()
    ref = PieceRef(**task["ref"])
    out = Path(task["out"])
    opts = task["options"]
    pid = ref.piece_id
    record: dict[str, Any] = {"piece_id": pid, "collection": ref.collection.key, "source": ref.corpus_path}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = Path(task["corpus_root"]) / ref.corpus_path
            headers = T.abc_headers(str(path), ref.number) if path.suffix.lower() == ".abc" else {}
            score = R.parse_piece(path, ref.number, max_measures=max(int(opts["bars"]) + 2, 16))
            ex = R.make_excerpt(score, int(opts["bars"]))
            facts = T.piece_facts(ref, headers, ex.key_name, ex.time_signature, ex.num_parts)
            image = R.engrave(ex, int(opts["image_height"]))
            png = encode_png(image)
            perfs = T.choose_performances(
                pid, ref.collection.style, facts.palette, int(opts["variants"]), int(opts["seed"]), ex.marked_bpm
            )
            rendered = []
            for perf in perfs:
                y, dur = R.synthesize(ex, perf.instrument.program, perf.bpm, int(opts["sample_rate"]))
                rendered.append((perf, encode_flac(y, int(opts["sample_rate"])), dur, y.shape[0]))
    except R.SkipPiece as exc:
        record.update(status="skipped", reason=exc.reason, detail=exc.detail)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # a bug in a third-party parser must not stop the build
        if _is_broken_install(exc):  # ... but a broken installation fails every piece: stop now
            raise DataError(
                f"the renderer cannot run in this environment ({type(exc).__name__}: {str(exc)[:200]}); "
                "reinstall with `make install` (torch and torchaudio must be the pinned matching versions)"
            ) from None
        record.update(status="skipped", reason="error", detail=f"{type(exc).__name__}: {str(exc)[:160]}")
    else:
        image_rel = f"image/{pid}.png"
        write_bytes(out / image_rel, png)
        rows = []
        for perf, flac, dur, n_samples in rendered:
            item_id = f"{pid}-v{perf.variant}"
            audio_rel = f"audio/{item_id}.flac"
            write_bytes(out / audio_rel, flac)
            meta = {
                "piece_id": pid,
                "variant": perf.variant,
                "collection": facts.collection,
                "collection_name": facts.collection_name,
                "title": facts.title,
                "work": facts.work,
                "composer": facts.composer,
                "country": facts.country,
                "region": facts.region,
                "genre": facts.genre,
                "key": facts.key,
                "key_source": ex.key_source,
                "metre": facts.metre,
                "tempo_bpm": perf.bpm,
                "tempo_word": perf.tempo_word,
                "beat_quarter_length": ex.beat_quarter_length,
                "instrument": {
                    "program": perf.instrument.program,
                    "name": T.gm_name(perf.instrument.program),
                    "noun": perf.instrument.noun,
                },
                "bars": ex.bars,
                "parts": ex.num_parts,
                "duration_s": round(dur, 6),
                "num_samples": int(n_samples),
                "image_size": [image.width, image.height],
                "source": ref.corpus_path + (f"#{ref.number}" if ref.number is not None else ""),
            }
            rows.append(
                {
                    "id": item_id,
                    "group": pid,
                    "audio": audio_rel,
                    "image": image_rel,
                    "text": T.describe(facts, perf, int(opts["seed"]), item_id),
                    "meta": meta,
                }
            )
        record.update(status="ok", items=rows)
    record["seconds"] = round(time.perf_counter() - t0, 4)
    record["cpu_seconds"] = round(time.process_time() - c0, 4)
    write_json(_record_path(out, pid), record)
    return record


# ------------------------------------------------------------------------------------- driver
def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def _check_state(out: Path, opts: Music21Options) -> None:
    state_opts = out / STATE_DIR / "options.json"
    if state_opts.is_file():
        try:
            previous = json.loads(state_opts.read_text(encoding="utf-8"))
        except ValueError:
            previous = None
        current = opts.content_key()
        if previous != current:
            diff = ", ".join(
                f"{k}={previous.get(k)!r}" for k in current if isinstance(previous, dict) and previous.get(k) != current[k]
            )
            raise DataError(
                f"'{out}' holds a music21 benchmark built with other options ({diff or 'unreadable state'}); "
                "rerun with the same options to resume it, or choose another --out"
            )
    elif (out / MANIFEST_NAME).is_file():
        raise DataError(
            f"'{out}' already holds a dataset that 'vmfmir prepare music21' did not build; choose another --out"
        )
    write_json(state_opts, opts.content_key())


def _load_record(out: Path, ref: PieceRef) -> dict[str, Any] | None:
    path = _record_path(out, ref.piece_id)
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return None
    if rec.get("status") == "ok":
        for row in rec.get("items", []):
            for key in ("audio", "image"):
                if not (out / row[key]).is_file():
                    return None
    elif rec.get("status") != "skipped":
        return None
    return rec


class _Runner:
    """Runs :func:`process_piece` over tasks in-process (1 worker) or in a spawn process pool."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        import multiprocessing

        kwargs: dict[str, Any] = {
            "max_workers": self.workers,
            "mp_context": multiprocessing.get_context("spawn"),
            "initializer": _init_worker,
        }
        if sys.version_info >= (3, 11):
            kwargs["max_tasks_per_child"] = 250  # bounds any memory growth in the parsers
        return ProcessPoolExecutor(**kwargs)

    def run(self, tasks: list[dict[str, Any]], on_record: Callable[[dict[str, Any]], None]) -> None:
        if not tasks:
            return
        if self.workers <= 1:
            for task in tasks:
                on_record(process_piece(task))
            return
        pending = list(reversed(tasks))
        attempts: dict[str, int] = {}
        window = 2 * self.workers
        while pending:
            if self.pool is None:
                self.pool = self._new_pool()
            inflight: dict[Future, dict[str, Any]] = {}
            try:
                while pending or inflight:
                    while pending and len(inflight) < window:
                        task = pending.pop()
                        inflight[self.pool.submit(process_piece, task)] = task
                    done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                    for fut in done:
                        task = inflight.pop(fut)
                        on_record(fut.result())
            except BrokenProcessPool:
                # a worker died (e.g. a crash in a native renderer): retry the pieces that were in
                # flight once; a piece that is in flight at two crashes is recorded as skipped
                self.pool = None
                for task in inflight.values():
                    pid = task["ref"]["piece_id"]
                    attempts[pid] = attempts.get(pid, 0) + 1
                    if attempts[pid] >= 2:
                        rec = {
                            "piece_id": pid,
                            "collection": task["collection"],
                            "source": task["ref"]["corpus_path"],
                            "status": "skipped",
                            "reason": "crash",
                            "detail": "the renderer process crashed",
                        }
                        write_json(_record_path(Path(task["out"]), pid), rec)
                        on_record(rec)
                    else:
                        pending.append(task)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def build_music21_benchmark(opts: Music21Options, on_progress: ProgressFn | None = None) -> PrepareSummary:
    """Build (or resume) the music21 benchmark in ``opts.out``; returns a summary."""
    opts.validate()
    if opts.collections:
        known = sorted({c.key for c in COLLECTIONS.values()})
        unknown = [c for c in opts.collections if c not in known]
        if unknown:
            raise DataError(f"unknown collection '{unknown[0]}'; choose from: {', '.join(known)}")
    t0 = time.perf_counter()
    out = Path(opts.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the output folder '{out}': {exc.strerror or exc}") from None
    _check_state(out, opts)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refs = list_corpus_pieces()
    if opts.collections:
        refs = [r for r in refs if r.collection.key in set(opts.collections)]
    refs = interleave(refs, opts.seed)
    root = str(corpus_root())
    target = len(refs) if opts.pieces is None else min(opts.pieces, len(refs))
    workers = opts.workers or _default_workers()
    records: dict[str, dict[str, Any]] = {}
    reused = 0
    done = 0
    total = 0
    cursor = 0
    kept = 0
    progress = on_progress or (lambda d, t: None)
    runner = _Runner(workers)
    content = {"bars": opts.bars, "variants": opts.variants, "seed": opts.seed,
               "sample_rate": opts.sample_rate, "image_height": opts.image_height}
    try:
        while kept < target and cursor < len(refs):
            wave = refs[cursor : cursor + (target - kept)]
            cursor += len(wave)
            total += len(wave)
            todo = []
            for ref in wave:
                rec = _load_record(out, ref)
                if rec is not None:
                    records[ref.piece_id] = rec
                    reused += 1
                    done += 1
                else:
                    todo.append(
                        {
                            "ref": asdict(ref),
                            "collection": ref.collection.key,
                            "out": str(out),
                            "corpus_root": root,
                            "options": content,
                        }
                    )
            progress(done, total)

            def on_record(rec: dict[str, Any]) -> None:
                nonlocal done
                records[rec["piece_id"]] = rec
                done += 1
                progress(done, total)

            runner.run(todo, on_record)
            kept = sum(1 for r in refs[:cursor] if records.get(r.piece_id, {}).get("status") == "ok")
    finally:
        runner.close()

    attempted = refs[:cursor]
    ok_refs = [r for r in attempted if records[r.piece_id]["status"] == "ok"][:target]
    if not ok_refs:
        raise DataError(
            f"none of the {len(attempted)} pieces tried could be rendered (see {out / STATE_DIR / 'pieces'}); "
            "try fewer --bars"
        )
    splits = assign_splits([r.piece_id for r in ok_refs], opts.seed)
    items: list[Item] = []
    for r in ok_refs:
        for row in records[r.piece_id]["items"]:
            captions, facts = music21_captions(row["text"], row["meta"], opts.seed, row["id"])
            items.append(
                Item(
                    id=row["id"],
                    group=row["group"],
                    split=splits[r.piece_id],
                    audio=out / row["audio"],
                    image=out / row["image"],
                    text=row["text"],
                    meta={**row["meta"], "facts": facts},
                    captions=captions,
                )
            )

    collections: dict[str, dict[str, Any]] = {}
    by_reason = {k: 0 for k in SKIP_REASONS}
    for r in attempted:
        rec = records[r.piece_id]
        c = collections.setdefault(
            r.collection.key, {"name": r.collection.name, "kept": 0, "skipped": 0, "reasons": {}}
        )
        if rec["status"] == "ok":
            c["kept"] += 1
        else:
            c["skipped"] += 1
            reason = rec.get("reason", "error")
            c["reasons"][reason] = c["reasons"].get(reason, 0) + 1
            by_reason[reason] = by_reason.get(reason, 0) + 1
    n_skipped = sum(c["skipped"] for c in collections.values())
    split_counts = {s: sum(1 for it in items if it.split == s) for s in ("train", "val", "test")}
    seconds = time.perf_counter() - t0
    import music21

    options = {
        "pieces": "all" if opts.pieces is None else opts.pieces,
        "variants": opts.variants,
        "bars": opts.bars,
        "seed": opts.seed,
        "workers": workers,
        "sample_rate": opts.sample_rate,
        "image_height": opts.image_height,
        "collections": list(opts.collections) if opts.collections else "all",
    }
    write_dataset(
        out,
        items,
        name=DATASET_NAME,
        sample_rate=opts.sample_rate,
        source="music21",
        options=options,
        extra={
            "description": (
                "Excerpts of the music21 corpus: engraved score (verovio), synthesised audio "
                "(TimGM6mb General MIDI SoundFont via midirenderer) and English descriptions."
            ),
            "music21_version": str(music21.__version__),
            "pieces": {"kept": len(ok_refs), "skipped": n_skipped, "tried": len(attempted)},
            "skipped_by_reason": {k: v for k, v in by_reason.items() if v},
            "collections": collections,
            "build_seconds": round(seconds, 2),
        },
        packages=RENDER_PACKAGES,
    )
    examples = [{"id": it.id, "text": it.text or ""} for it in items[: min(3, len(items))]]
    return PrepareSummary(
        out=str(out),
        items=len(items),
        pieces_kept=len(ok_refs),
        pieces_skipped=n_skipped,
        pieces_reused=reused,
        skipped_by_reason={k: v for k, v in by_reason.items() if v},
        collections=collections,
        splits=split_counts,
        seconds=round(seconds, 2),
        examples=examples,
    )


__all__ = ["Music21Options", "RENDER_PACKAGES", "PrepareSummary", "build_music21_benchmark", "process_piece"]
