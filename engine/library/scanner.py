"""Scanning a folder: find photos, caption and label the new ones in batches, write results.

Flow per photo: a loader thread stats and hashes it, and, unless the index already has it
with the same settings, decodes it (`load_image` with a draft size) and shrinks it for the
models. The scan thread batches decoded photos, runs the engine, commits the batch to the
index, then writes (sidecar or embedded XMP) and renames. Loading the next photos overlaps
with inference.

Resume rests on commit order: a photo counts as finished only once its batch is committed,
so after a kill only the batch in flight is redone. Embedding records the hash of the new
bytes in the index *before* renaming them over the original, so a photo killed right after
that rename is still recognised (and known to be written).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from ..errors import Cancelled, LoupeError, UnreadableImage, UsageError
from ..images import load_image
from . import xmp
from .files import atomic_write, cleanup_stale, hash_bytes, hash_file, is_read_only, walk_photos
from .index import Index, IndexUnavailable, PhotoRow
from .progress import Meter, Progress, ProgressCallback
from .rename import Renamer, RenameLog, recover, sidecars_of

WRITERS = ("sidecar", "embed", "none")


@dataclass(frozen=True)
class Problem:
    """A photo Loupe could not read, write or rename; the scan went on without it."""

    path: str
    stage: str  # "read", "write" or "rename"
    reason: str


@dataclass
class ScanSummary:
    scan_id: int
    folder: str
    total: int = 0  # photos found
    done: int = 0  # captioned and labelled in this run
    skipped: int = 0  # already done with the same models and settings
    failed: int = 0  # could not be read (listed in problems)
    written: int = 0  # sidecars written or photos embedded into
    write_failed: int = 0  # results not written (read-only, disk full...; in problems)
    renamed: int = 0
    cancelled: bool = False
    elapsed_s: float = 0.0
    inference_s: float = 0.0  # of which in the engine's caption/classify calls
    rate: float = 0.0  # photos captioned per second of this run, end to end
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Options:
    write: str = "sidecar"
    sidecar_style: str = "darktable"
    rename: bool = False
    batch_size: int = 8
    workers: int = 2
    top: int = 3
    max_new_tokens: int = 30
    num_beams: int = 3
    prefix: str | None = None

    def inference(self) -> dict[str, Any]:
        """The options that change captions or labels (part of the settings key)."""
        return {
            "caption": {"prefix": self.prefix, "max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams},
            "classify": {"top": self.top},
        }

    def validate(self) -> None:
        if self.write not in WRITERS:
            raise UsageError(f"Unknown writer {self.write!r}; choose one of {', '.join(WRITERS)}.")
        if self.sidecar_style not in xmp.SIDECAR_STYLES:
            raise UsageError(f"Unknown sidecar style {self.sidecar_style!r}; choose darktable or lightroom.")
        if self.batch_size < 1 or self.workers < 0 or self.top < 1:
            raise UsageError("batch_size and top must be at least 1, workers at least 0.")


def settings_key(model_ids: dict[str, str], options: Options) -> str:
    payload = {"models": model_ids, **options.inference()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class _Prepared:
    path: Path
    st: os.stat_result | None = None
    file_hash: str | None = None
    image: Image.Image | None = None
    error: str | None = None
    known_id: int | None = None  # the index's record when it is being redone (new settings)


def _shrink(image: Image.Image, size: int) -> Image.Image:
    """Shorter side down to `size`: the models resize to <= 384 anyway, and doing it here (in a
    loader thread) keeps big PNG/TIFF photos from sitting full-size in the prefetch queue."""
    w, h = image.size
    short = min(w, h)
    if short <= size:
        return image
    scale = size / short
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    return image.resize(new, Image.Resampling.BICUBIC, reducing_gap=2.0)


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "disk full"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    return exc.strerror or str(exc)


class _Scan:
    def __init__(
        self, folder: Path, engine: Any, options: Options, index: Index, log: RenameLog,
        progress: ProgressCallback | None, cancel: threading.Event | None,
    ) -> None:
        self.folder = folder
        self.engine = engine
        self.o = options
        self.index = index
        self.progress = progress
        self.cancel = cancel
        self.renamer = Renamer(log) if options.rename else None
        self.model_ids = {str(k): str(v) for k, v in dict(engine.model_ids()).items()}
        self.key = settings_key(self.model_ids, options)
        self.size = max(int(getattr(engine, "caption_size", 384)), int(getattr(engine, "classify_size", 256)))
        if options.write == "embed":
            self.written_key: str | None = f"embed:{self.key}"
        elif options.write == "sidecar":
            self.written_key = f"sidecar:{options.sidecar_style}:{self.key}"
        else:
            self.written_key = None
        self.meter = Meter()
        self.last_report = 0.0
        self.infer_s = 0.0
        self.engine_failures = 0  # in a row, on single photos

    # -- loader threads: no database here (the snapshot dicts are read-only)

    def prepare(self, path: Path) -> _Prepared:
        item = _Prepared(path)
        try:
            item.st = path.stat()
            if not stat.S_ISREG(item.st.st_mode):
                # A FIFO or device named like a photo: reading it would block or never end.
                item.error = "not a regular file"
                return item
            row = self.by_path.get(str(path))
            if row is not None and row.size == item.st.st_size and row.mtime_ns == item.st.st_mtime_ns:
                item.file_hash = row.file_hash  # unchanged since last seen (size + mtime): no re-read
            else:
                item.file_hash = hash_file(path)
        except OSError as exc:
            item.error = f"cannot read ({_os_reason(exc)})"
            return item
        known = self.by_hash.get(item.file_hash)
        if known is not None and known[1] == self.key:
            return item  # finished before: no decode
        try:
            item.image = _shrink(load_image(path, draft_size=(self.size, self.size)), self.size)
        except UnreadableImage as exc:
            item.error = exc.reason
        return item

    # -- the scan thread

    def run(self, summary: ScanSummary) -> None:
        def unreadable(exc: OSError) -> None:
            summary.problems.append(Problem(str(exc.filename), "read", f"folder cannot be read ({_os_reason(exc)})"))

        paths = walk_photos(self.folder, unreadable)
        summary.total = len(paths)
        self.summary = summary
        self.t0 = time.perf_counter()
        self.by_path, self.by_hash = self.index.snapshot()
        self.stems = Counter((p.parent, p.stem.lower()) for p in paths)
        # Index updates that may wait for the next commit (a kill before it only means a
        # sidecar is re-merged to the same bytes, or a location is looked up again).
        self.pending: list[Callable[[Any], None]] = []
        workers = self.o.workers
        window = self.o.batch_size * 2 + max(workers, 1)
        executor = ThreadPoolExecutor(workers, thread_name_prefix="loupe-load") if workers else None
        queue: deque[Future | Path] = deque()
        source = iter(paths)

        def refill() -> None:
            while len(queue) < window:
                nxt = next(source, None)
                if nxt is None:
                    return
                queue.append(executor.submit(self.prepare, nxt) if executor else nxt)

        batch: list[_Prepared] = []
        later: list[_Prepared] = []  # duplicates of a photo in the current batch
        try:
            refill()
            while queue:
                if self.cancel is not None and self.cancel.is_set():
                    summary.cancelled = True
                    break
                head = queue.popleft()
                item = head.result() if isinstance(head, Future) else self.prepare(head)
                refill()
                if self.handle(item, batch):
                    later.append(item)
                if len(batch) >= self.o.batch_size:
                    self.infer(batch)
                    batch = []
                    for dup in later:
                        self.handle(dup, batch)
                    later = []
            if not summary.cancelled and batch:
                self.infer(batch)
                batch = []
                for dup in later:  # now in the index: they are skipped (or batched if not)
                    self.handle(dup, batch)
                if batch:
                    self.infer(batch)
            self.flush_items()
        finally:
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)
        summary.elapsed_s = time.perf_counter() - self.t0
        summary.inference_s = self.infer_s
        summary.rate = summary.done / summary.elapsed_s if summary.elapsed_s and summary.done else 0.0
        self.report(str(self.folder), force=True)

    def handle(self, item: _Prepared, batch: list[_Prepared]) -> bool:
        """Route one loaded photo: failed, already done (write/rename only), or into the batch.
        Returns True when it must wait for the current batch (same bytes already in it)."""
        s = self.summary
        path = str(item.path)
        if item.error is not None:
            s.failed += 1
            s.problems.append(Problem(path, "read", item.error))
            self.later(lambda db: self.index.record_item(db, s.scan_id, path, None, "failed", item.error))
            self.report(path)
            return False
        found = self.index.lookup(item.file_hash)
        if found is not None and found[0].settings_key == self.key:
            row, bytes_written_key = found
            self.skip(item, row, bytes_written_key)
            return False
        if any(b.file_hash == item.file_hash for b in batch):
            return True
        if item.image is None:  # the index changed since the snapshot: load here
            try:
                item.image = _shrink(load_image(item.path, draft_size=(self.size, self.size)), self.size)
            except UnreadableImage as exc:
                item.error = exc.reason
                return self.handle(item, batch)
        item.known_id = found[0].id if found is not None else None
        batch.append(item)
        return False

    def skip(self, item: _Prepared, row: PhotoRow, bytes_written_key: str | None) -> None:
        s = self.summary
        path = str(item.path)
        st = item.st
        assert st is not None and item.file_hash is not None
        s.skipped += 1
        moved = row.path != path and (row.path is None or not os.path.exists(row.path))
        if row.path == path or moved:
            if moved or row.size != st.st_size or row.mtime_ns != st.st_mtime_ns or row.file_hash != item.file_hash:
                fh = item.file_hash
                self.later(lambda db: self.index.set_location(db, row.id, path, st.st_size, st.st_mtime_ns, fh))
        else:
            s.notes.append(f"{path} has the same content as {row.path}")
        self.later(lambda db: self.index.record_item(db, s.scan_id, path, row.id, "skipped"))
        self.after(item.path, row, item.file_hash, bytes_written_key)
        self.report(path)

    def infer(self, batch: list[_Prepared]) -> None:
        images = [b.image for b in batch]
        t = time.perf_counter()
        try:
            captions = self.engine.caption(
                images, prefix=self.o.prefix, max_new_tokens=self.o.max_new_tokens, num_beams=self.o.num_beams
            )
            labels = self.engine.classify(images, top=self.o.top)
        except LoupeError:
            raise  # the engine's own errors (weights missing...) concern every photo: stop
        except Exception as exc:
            self.infer_s += time.perf_counter() - t
            if len(batch) > 1:  # find the photo the models choke on; the others go on
                for item in batch:
                    self.infer([item])
                return
            self.engine_failures += 1
            if self.engine_failures >= 3:
                raise LoupeError(f"The models keep failing ({type(exc).__name__}: {exc}); scan stopped.") from exc
            item = batch[0]
            item.image = None
            item.error = f"the models failed on it ({type(exc).__name__}: {exc})"
            self.handle(item, [])
            return
        self.engine_failures = 0
        self.infer_s += time.perf_counter() - t
        if len(captions) != len(batch) or len(labels) != len(batch):
            raise LoupeError("The engine returned a different number of results than photos given.")
        rows: list[tuple[_Prepared, int]] = []
        with self.index.transaction() as db:
            for item, cap, lab in zip(batch, captions, labels):
                st = item.st
                assert st is not None and item.file_hash is not None
                pid = self.index.save_result(
                    db, content_hash=item.file_hash, path=str(item.path), size=st.st_size, mtime_ns=st.st_mtime_ns,
                    caption=cap.text, labels=tuple(lab.top), settings_key=self.key, model_ids=self.model_ids,
                    scan_id=self.summary.scan_id, photo_id=item.known_id,
                )
                self.index.record_item(db, self.summary.scan_id, str(item.path), pid, "done")
                rows.append((item, pid))
            self._flush(db)
        self.summary.done += len(batch)
        for item, pid in rows:
            item.image = None  # free memory early
            self.after(item.path, self.index.get(pid), item.file_hash, None)
            self.report(str(item.path))

    def later(self, op: Callable[[Any], None]) -> None:
        self.pending.append(op)

    def flush_items(self) -> None:
        if self.pending:
            with self.index.transaction() as db:
                self._flush(db)

    def _flush(self, db: Any) -> None:
        ops, self.pending = self.pending, []
        for op in ops:
            op(db)

    # -- writing and renaming, per photo, after its result is in the index

    def after(self, path: Path, row: PhotoRow, file_hash: str, bytes_written_key: str | None) -> None:
        s = self.summary
        if self.written_key is not None:
            try:
                if self.o.write == "sidecar":
                    wrote = self.write_sidecar(path, row)
                else:
                    wrote = self.write_embedded(path, row, file_hash, bytes_written_key)
                if wrote:
                    s.written += 1
            except IndexUnavailable:
                raise  # the index itself failed: not this photo's problem, stop
            except (OSError, LoupeError) as exc:
                reason = _os_reason(exc) if isinstance(exc, OSError) else str(exc)
                s.write_failed += 1
                s.problems.append(Problem(str(path), "write", reason))
        if self.renamer is not None and row.caption:
            self.rename(path, row)
        if len(self.pending) >= 256:
            self.flush_items()

    def write_sidecar(self, path: Path, row: PhotoRow) -> bool:
        style = self.o.sidecar_style
        if style == "lightroom" and self.stems[(path.parent, path.stem.lower())] > 1:
            # photo.jpg and photo.png would share photo.xmp: give this one photo.jpg.xmp.
            style = "darktable"
            self.summary.notes.append(f"{path}: another photo has the same name stem; wrote {path.name}.xmp")
        target = xmp.sidecar_path(path, style)
        if row.written_key == self.written_key and target.exists():
            return False
        result = xmp.write_sidecar(path, row.caption, [l.name for l in row.labels], style=style, settings=self.key)
        changed = result.changed
        if note := result.note():
            self.summary.notes.append(f"{target}: {note}")
        scan_id, key = self.summary.scan_id, self.written_key

        def record(db: Any) -> None:
            self.index.set_written(db, row.id, key)
            if changed:
                self.index.mark_item_written(db, scan_id, str(path))

        self.later(record)
        return changed

    def write_embedded(self, path: Path, row: PhotoRow, file_hash: str, bytes_written_key: str | None) -> bool:
        if bytes_written_key == self.written_key:
            return False  # these very bytes are Loupe's embed for these settings
        if is_read_only(path):
            raise LoupeError("read-only file: not changed (make it writable, or use sidecars)")
        data = path.read_bytes()
        if hash_bytes(data) != file_hash:
            raise LoupeError("the file changed during the scan: not written (scan again)")
        result = xmp.embed(data, row.caption, [l.name for l in row.labels], suffix=path.suffix, settings=self.key)
        new = result.data
        if note := result.note():
            self.summary.notes.append(f"{path}: {note}")
        new_hash = hash_bytes(new)
        # Known before it exists: a kill right after the rename still finds this photo.
        with self.index.transaction() as db:
            self.index.add_alias(db, new_hash, row.id, self.written_key)
        atomic_write(path, new, like=path)
        st = path.stat()
        scan_id = self.summary.scan_id

        def record(db: Any) -> None:
            self.index.set_location(db, row.id, str(path), st.st_size, st.st_mtime_ns, new_hash)
            self.index.set_written(db, row.id, self.written_key)
            self.index.mark_item_written(db, scan_id, str(path))

        self.later(record)
        return True

    def rename(self, path: Path, row: PhotoRow) -> None:
        s = self.summary
        try:
            if is_read_only(path):
                raise LoupeError("read-only file: not renamed")
            new = self.renamer.rename(path, row.caption, sidecars_of(path))  # type: ignore[union-attr]
        except (OSError, LoupeError) as exc:
            reason = _os_reason(exc) if isinstance(exc, OSError) else str(exc)
            s.problems.append(Problem(str(path), "rename", reason))
            return
        if new is None:
            return
        s.renamed += 1
        self.flush_items()
        with self.index.transaction() as db:
            self.index.set_path_only(db, str(path), str(new))
            self.index.move_item(db, s.scan_id, str(path), str(new))

    # -- progress

    def report(self, path: str, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.perf_counter()
        if not force and now - self.last_report < 0.1:
            return
        self.last_report = now
        s = self.summary
        handled = s.done + s.skipped + s.failed
        rate = self.meter.rate(handled, now)
        eta = (s.total - handled) / rate if rate > 0 else None
        self.progress(Progress(handled, s.total, rate, eta, path, s.done, s.skipped, s.failed))


def run_scan(
    folder: Path, engine: Any, options: Options, index: Index, log: RenameLog,
    progress: ProgressCallback | None = None, cancel: threading.Event | None = None,
) -> ScanSummary:
    started = time.time()
    cleanup_stale(folder, older_than=started)

    def moved(old: str, new: str) -> None:
        with index.transaction() as db:
            index.set_path_only(db, old, new)

    recover(log, moved)
    job = _Scan(folder, engine, options, index, log, progress, cancel)
    scan_id = index.begin_scan(str(folder), job.key, {**asdict(options), "models": job.model_ids})
    summary = ScanSummary(scan_id=scan_id, folder=str(folder))
    status = "failed"
    try:
        job.run(summary)
        status = "cancelled" if summary.cancelled else "done"
    except (KeyboardInterrupt, Cancelled):  # Ctrl-C, or a progress callback raising Cancelled
        status = "cancelled"
        raise
    finally:
        counts = {k: getattr(summary, k) for k in ("total", "done", "skipped", "failed", "written", "renamed")}
        try:
            index.finish_scan(scan_id, status, counts)
        except LoupeError:
            if status != "failed":
                raise
    return summary
