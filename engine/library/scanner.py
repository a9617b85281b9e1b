"""Scanning a folder, as a pipeline that reads top to bottom:

    walk    every photo under the folder, once
    hash    sha256 of its bytes (taken from the index when size and mtime are unchanged)
    skip    photos already done with the same models and settings are not decoded again;
            only their files are brought up to date (sidecar, embed, rename, location)
    decode  in loader threads: `engine.prepare` for each model, the same decode and
            preprocessing `loupe caption` and the Caption tab use (same tensor, same answer)
    infer   in batches through `engine.infer`; a photo the models choke on is found by
            running the failed batch one photo at a time, and the others go on
    write   sidecar or embedded metadata, then rename, per photo, each write atomic
    record  one index transaction per batch, after the files: the index never claims a
            write that is not on disk (a kill before it only means that batch is redone)

Cancellation (`cancel.set()`, Stop, Ctrl-C) is checked between photos and inside caption
generation; what was recorded stays recorded and the next scan resumes from there.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import stat
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from ..errors import Cancelled, LoupeError, UnreadableImage, UsageError
from ..models.registry import TASKS
from ..results import Caption, Labels
from . import xmp
from .descriptions import WriteResult, check_policy
from ..files import atomic_write, cleanup_stale, hash_bytes, sha256_file, is_read_only, link_count, os_reason, walk_photos
from .limits import IPTC_LIMIT_NOTE
from .index import Index, IndexUnavailable, Known, PhotoRow
from .progress import Meter, ScanProgress, ProgressCallback
from .settings import (DEFAULT_CAPTION_STYLE, HIERARCHY_ROOT, KEYWORD_THRESHOLD, check_caption_style,
                       check_hierarchy_root, keyword_names)
from .rename import Renamer, RenameLog, recover, sidecars_of, stem_counts

WRITERS = ("sidecar", "embed", "none")
STOP_WRITES_S = 1.0  # after Stop, how long a batch's finished captions may still be written


@dataclass(frozen=True)
class Problem:
    """A photo Loupe could not read, write or rename; the scan went on without it."""

    path: str
    stage: str  # "read", "write" or "rename"
    reason: str


@dataclass(frozen=True)
class Notice:
    """Something Loupe decided on the person's behalf; shown in every front end's summary."""

    path: str
    kind: str  # one of NOTICE_KINDS
    message: str


# kind -> how the summary counts it (one, several)
NOTICE_KINDS = {
    "kept": ("description kept", "descriptions kept"),
    "appended": ("description appended to", "descriptions appended to"),
    "replaced": ("description replaced", "descriptions replaced"),
    "sidecar-name": ("sidecar name changed", "sidecar names changed"),
    "duplicate": ("duplicate", "duplicates"),
    "own-caption": ("own caption kept", "own captions kept"),
    "hard-links": ("hard-linked photo given a sidecar", "hard-linked photos given sidecars"),
    "iptc-limit": ("note on IPTC's size limits", "notes on IPTC's size limits"),
}


@dataclass
class ScanSummary:
    scan_id: int
    folder: str
    total: int = 0  # photos found
    done: int = 0  # captioned and labelled in this run
    skipped: int = 0  # already done with the same models and settings
    duplicates: int = 0  # the same photo as another one found (captioned once, for the other)
    failed: int = 0  # could not be read (listed in problems)
    written: int = 0  # sidecars written or photos embedded into
    write_failed: int = 0  # results not written (read-only, disk full...; in problems)
    renamed: int = 0
    cancelled: bool = False
    elapsed_s: float = 0.0
    inference_s: float = 0.0  # of which in the engine's inference
    rate: float = 0.0  # photos captioned per second of this run, end to end
    problems: list[Problem] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def decisions_text(self) -> str:
        """", 1 descriptions kept, 2 duplicates": each kind of decision that occurred, counted."""
        counts = Counter(n.kind for n in self.notices if n.kind != "duplicate")
        counts["duplicate"] = self.duplicates  # every one, also those told by an earlier scan
        return "".join(f", {counts[kind]} {words[counts[kind] != 1]}" for kind, words in NOTICE_KINDS.items()
                       if counts[kind])


@dataclass(frozen=True)
class Options:
    write: str = "sidecar"
    sidecar_style: str = "darktable"
    rename: bool = False
    existing: str = "keep"  # a description someone else wrote: keep, replace or append (descriptions.py)
    caption_style: str = DEFAULT_CAPTION_STYLE  # a key of CAPTION_STYLES (already folded into `models`)
    keyword_threshold: int = KEYWORD_THRESHOLD.default  # percent: labels below it are not written as keywords
    hierarchy_root: str = HIERARCHY_ROOT.default  # labels' root in an existing keyword hierarchy
    batch_size: int = 8
    workers: int = 2
    # task -> that model's options, checked by the registry (defaults filled in)
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def validate(self) -> None:
        if self.write not in WRITERS:
            raise UsageError(f"Unknown writer {self.write!r}; choose one of {', '.join(WRITERS)}.")
        if self.sidecar_style not in xmp.SIDECAR_STYLES:
            raise UsageError(f"Unknown sidecar style {self.sidecar_style!r}; choose darktable or lightroom.")
        check_policy(self.existing)
        check_caption_style(self.caption_style)
        KEYWORD_THRESHOLD.check(self.keyword_threshold)
        check_hierarchy_root(self.hierarchy_root)
        if self.batch_size < 1 or self.workers < 0:
            raise UsageError("batch_size must be at least 1, workers at least 0.")


def settings_key(model_ids: Mapping[str, str], options: Options) -> str:
    """What makes a result: the models and every option that changes captions or labels."""
    payload = {"models": dict(model_ids), **{task: dict(options.models[task]) for task in TASKS}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Photo:
    """One photo on its way through the pipeline."""

    path: Path
    st: os.stat_result | None = None
    file_hash: str | None = None
    known: Known | None = None  # what the index knows of these bytes
    inputs: dict[str, Any] | None = None  # task -> the model's prepared input
    error: str | None = None


class Scan:
    """One run over one folder. Built with everything it needs; `run()` once."""

    def __init__(
        self, folder: Path, engine: Any, options: Options, index: Index, log: RenameLog,
        progress: ProgressCallback | None = None, cancel: threading.Event | None = None,
    ) -> None:
        self.folder = folder
        self.engine = engine
        self.options = options
        self.index = index
        self.progress = progress
        self.cancel = cancel or threading.Event()
        self.renamer = Renamer(log) if options.rename else None
        self.model_ids = {str(k): str(v) for k, v in dict(engine.model_ids()).items()}
        self.key = settings_key(self.model_ids, options)
        policy = f"{options.existing}:k{options.keyword_threshold}"  # what else changes the files
        if options.hierarchy_root != HIERARCHY_ROOT.default:
            policy += f":h{hashlib.sha256(options.hierarchy_root.encode()).hexdigest()[:8]}"
        self.written_key = {
            "embed": f"embed:{policy}:{self.key}",
            "sidecar": f"sidecar:{options.sidecar_style}:{policy}:{self.key}",
        }.get(options.write)
        self.by_path, self.known = index.snapshot()
        self.told = index.notices_told()  # decisions told by earlier scans are not told again
        self.expect_skip: set[str] = set()  # photos likely done already: not counted in the time left
        self.scan_id = index.begin_scan(str(folder), self.key, {**asdict(options), "models": self.model_ids})
        self.summary = ScanSummary(scan_id=self.scan_id, folder=str(folder))
        self.stems: Counter[tuple[Path, str]] = Counter()
        self.pending: list[Callable[[Any], None]] = []  # index writes waiting for the next transaction
        self.meter = Meter()
        self.last_report = -1.0
        self.batches = 0
        self.batch_now = 0  # photos in the batch being captioned, for progress within it
        self.working = 0.0
        # the real engine tells how far generation is; a stand-in engine (tests, the Ray
        # driver's, which only names the models) may not
        infer = getattr(engine, "infer", None)
        self.steps = infer is not None and "on_step" in inspect.signature(infer).parameters
        self.failures_in_a_row = 0

    # ------------------------------------------------------------------ the pipeline
    def run(self) -> ScanSummary:
        started = time.perf_counter()
        self.report("", "finding", force=True)
        paths = walk_photos(self.folder, self.unreadable_folder)
        self.summary.total = len(paths)
        self.stems.update(stem_counts({p.parent for p in paths}))  # RAWs and videos share photo.xmp too
        self.expect_skip = {str(p) for p in paths if self.likely_done(p)}
        self.report("", "checking", force=True)
        batch: list[Photo] = []
        waiting: list[Photo] = []  # same bytes as a photo in the batch: routed once it is recorded
        photos = self.load(paths)
        try:
            for photo in photos:
                if self.cancel.is_set():
                    self.summary.cancelled = True
                    break
                if photo.error is None and any(b.file_hash == photo.file_hash for b in batch):
                    waiting.append(photo)
                    continue
                self.route(photo, batch)
                if len(batch) >= self.options.batch_size:
                    self.finish(batch)
                    batch = self.reroute(waiting)
                    waiting = []
        finally:
            photos.close()  # stops the loader threads
        if not self.summary.cancelled:
            while batch:
                self.finish(batch)
                batch = self.reroute(waiting)
                waiting = []
        if not self.summary.cancelled:
            folder, scan_id = str(self.folder), self.scan_id
            self.later(lambda db: self.index.clear_old_failures(db, folder, scan_id))
        return self.wrap_up(started)

    def wrap_up(self, started: float) -> ScanSummary:
        """Record what waits, time the run, send the last report; the summary."""
        self.record_pending()
        s = self.summary
        s.elapsed_s = time.perf_counter() - started
        s.rate = s.done / s.elapsed_s if s.elapsed_s and s.done else 0.0
        self.report(str(self.folder), "finished", force=True)
        return s

    def likely_done(self, path: Path) -> bool:
        """Done before with these settings and unchanged since (a stat, no read)."""
        row = self.by_path.get(str(path))
        if row is None or row.settings_key != self.key:
            return False
        try:
            st = path.stat()
        except OSError:
            return False
        return (st.st_size, st.st_mtime_ns) == (row.size, row.mtime_ns)

    def load(self, paths: list[Path]) -> Iterator[Photo]:
        """Photos in walk order, hashed and (unless done before) decoded, a few ahead of use."""
        workers = self.options.workers
        if not workers:
            yield from map(self.hash_and_decode, paths)
            return
        ahead = self.options.batch_size * 2 + workers
        queue: deque[tuple[Path, Future]] = deque()
        pool = ThreadPoolExecutor(workers, thread_name_prefix="loupe-load")
        try:
            for path in paths:
                queue.append((path, pool.submit(self.hash_and_decode, path)))
                if len(queue) >= ahead:
                    yield self.wait(*queue.popleft())
            while queue:
                yield self.wait(*queue.popleft())
        finally:
            # After Stop, a loader may be deep in a first model load or a huge decode: do not
            # wait for it (its result is dropped); otherwise let the running ones finish.
            pool.shutdown(wait=not self.cancel.is_set(), cancel_futures=True)

    def wait(self, path: Path, future: Future) -> Photo:
        """The loaded photo; an empty one (never routed) as soon as Stop is pressed meanwhile."""
        while True:
            try:
                return future.result(timeout=0.1)
            except FutureTimeout:
                if self.cancel.is_set():
                    return Photo(path)

    def hash_and_decode(self, path: Path) -> Photo:
        """In a loader thread: no database here (`by_path` and `known` are only read)."""
        photo = Photo(path)
        if self.cancel.is_set():
            return photo
        try:
            photo.st = path.stat()
            if not stat.S_ISREG(photo.st.st_mode):
                # A FIFO or device named like a photo: reading it would block or never end.
                photo.error = "not a regular file"
                return photo
            row = self.by_path.get(str(path))
            if row is not None and row.size == photo.st.st_size and row.mtime_ns == photo.st.st_mtime_ns:
                photo.file_hash = row.file_hash  # unchanged since last seen: no re-read
            else:
                photo.file_hash = sha256_file(path)
        except OSError as exc:
            photo.error = f"cannot read ({os_reason(exc)})"
            return photo
        known = self.known.get(photo.file_hash)
        if known is None or known.row.settings_key != self.key:
            self.decode(photo)
        return photo

    def decode(self, photo: Photo) -> None:
        try:
            photo.inputs = {task: self.engine.prepare(task, photo.path, self.options.models[task]) for task in TASKS}
        except UnreadableImage as exc:
            photo.error = exc.reason

    def route(self, photo: Photo, batch: list[Photo]) -> None:
        """A loaded photo goes to the problems, to the files-only path, or into the batch."""
        if photo.error is not None:
            self.fail(photo)
            return
        photo.known = self.known.get(photo.file_hash)  # type: ignore[arg-type]
        if photo.known is not None and photo.known.row.settings_key == self.key:
            self.skip(photo)
            return
        if photo.inputs is None:  # its bytes were known when loaded, not any more: decode here
            self.decode(photo)
            if photo.error is not None:
                self.fail(photo)
                return
        batch.append(photo)

    def reroute(self, waiting: list[Photo]) -> list[Photo]:
        batch: list[Photo] = []
        for photo in waiting:
            self.route(photo, batch)
        return batch

    def finish(self, batch: list[Photo]) -> None:
        """Infer, write the files, then record the batch in one transaction. Stop between two
        photos' writes: the photos written so far are recorded, the others redone next time."""
        if not self.summary.done and not self.batches:
            self.meter = Meter()  # speed from the first batch on: not the time spent finding and checking
        self.batches += 1
        self.batch_now, self.working = len(batch), 0.0
        self.report(str(batch[0].path), "captioning", force=True)
        try:
            results = self.infer(batch)
        except Cancelled:
            if not self.cancel.is_set():
                raise
            self.summary.cancelled = True  # Stop during generation: this batch is not recorded
            return
        self.commit(batch, results)

    def commit(self, batch: list[Photo], results: list[tuple[Caption | None, Labels | None]]) -> None:
        """Write the files for a batch's results, then record them in one transaction.
        `results` is one (caption, labels) per photo, (None, None) for a photo already failed;
        they come from `infer` here, or from model actors elsewhere (ray_scan.py)."""
        updates: list[Callable[[Any], None]] = []
        recorded: list[Photo] = []
        stop_by: float | None = None
        for photo, (caption, labels) in zip(batch, results):
            if self.cancel.is_set():
                # Captions already made are worth their writes, for about a second (slow disks,
                # big embeds): then stop, and the rest is redone next time.
                now = time.perf_counter()
                stop_by = stop_by or now + STOP_WRITES_S
                if now >= stop_by:
                    self.summary.cancelled = True
                    break
            if caption is None:
                continue  # the models failed on this one photo: already a problem
            self.report(str(photo.path), "writing")
            row = self.new_row(photo, caption, labels)
            found_at = str(photo.path)  # the scan's item is recorded here; the rename's update moves it
            files = self.write_and_rename(photo, row)  # may rename: the record takes the new path
            updates.append(self.result_update(photo, row, found_at))
            updates.extend(files)
            self.summary.done += 1
            self.expect_skip.discard(found_at)
            recorded.append(photo)
        with self.index.transaction() as db:
            for update in updates:
                update(db)
            self.flush(db)
        for photo in batch:
            photo.inputs = None  # free memory early
        for photo in recorded:
            self.report(str(photo.path), "writing")

    # ------------------------------------------------------------------ stages
    def infer(self, batch: list[Photo]) -> list[tuple[Caption | None, Labels | None]]:
        """(caption, labels) per photo; (None, None) for a photo the models failed on."""
        t = time.perf_counter()
        step = {}
        if self.steps and self.progress is not None:
            def on_step(fraction: float, path: str = str(batch[0].path)) -> None:
                self.working = fraction
                self.report(path, "captioning")

            step = {"on_step": on_step}
        try:
            captions = self.engine.infer("caption", [p.inputs["caption"] for p in batch],
                                         self.options.models["caption"], cancel=self.cancel, **step)
            self.batch_now, self.working = 0, 0.0
            labels = self.engine.infer("classify", [p.inputs["classify"] for p in batch],
                                       self.options.models["classify"], cancel=self.cancel)
        except (LoupeError, KeyboardInterrupt):
            raise  # the engine's own errors (weights missing, cancelled...) concern every photo
        except Exception as exc:
            self.summary.inference_s += time.perf_counter() - t
            if len(batch) > 1:  # find the photo the models choke on; the others go on
                return [pair for photo in batch for pair in self.infer([photo])]
            self.failures_in_a_row += 1
            if self.failures_in_a_row >= 3:
                raise LoupeError(f"The models keep failing ({type(exc).__name__}: {exc}); scan stopped.") from exc
            photo = batch[0]
            photo.error = f"the models failed on it ({type(exc).__name__}: {exc})"
            self.fail(photo)
            return [(None, None)]
        self.summary.inference_s += time.perf_counter() - t
        if len(captions) != len(batch) or len(labels) != len(batch):
            raise LoupeError("The engine returned a different number of results than photos given.")
        self.failures_in_a_row = 0
        return list(zip(captions, labels))

    def skip(self, photo: Photo) -> None:
        """Done before with these settings: update where it is, bring its files up to date."""
        s = self.summary
        assert photo.known is not None and photo.st is not None and photo.file_hash is not None
        row, path = photo.known.row, str(photo.path)
        self.expect_skip.discard(path)
        moved = row.path != path and (row.path is None or not os.path.exists(row.path))
        if row.path == path or moved:
            s.skipped += 1
            st, file_hash = photo.st, photo.file_hash
            if moved or (row.size, row.mtime_ns, row.file_hash) != (st.st_size, st.st_mtime_ns, file_hash):
                self.later(lambda db: self.index.set_location(db, row.id, path, st.st_size, st.st_mtime_ns, file_hash))
        else:
            s.duplicates += 1
            self.notice(path, "duplicate", f"skipped, same photo as {row.path}")
        self.later(lambda db: self.index.record_item(db, s.scan_id, path, row.id, "skipped"))
        self.pending.extend(self.write_and_rename(photo, row))
        if len(self.pending) >= 256:
            self.record_pending()
        self.report(path, "checking")

    def fail(self, photo: Photo) -> None:
        s, path, reason = self.summary, str(photo.path), photo.error or "unreadable"
        s.failed += 1
        self.expect_skip.discard(path)
        s.problems.append(Problem(path, "read", reason))
        self.later(lambda db: self.index.record_item(db, s.scan_id, path, None, "failed", reason))
        self.later(lambda db: self.index.set_failure(db, path, "read", reason, s.scan_id))
        self.report(path, "checking")

    def write_and_rename(self, photo: Photo, row: PhotoRow) -> list[Callable[[Any], None]]:
        """The files for one photo, in order; returns the index updates that record them."""
        path, scan_id = str(photo.path), self.scan_id
        updates: list[Callable[[Any], None]] = [lambda db: self.index.clear_failure(db, path)]
        if self.written_key is not None:
            try:
                writer = self.write_sidecar if self.options.write == "sidecar" else self.write_embedded
                updates.extend(writer(photo, row))
            except IndexUnavailable:
                raise  # the index itself failed: not this photo's problem, stop
            except (OSError, LoupeError) as exc:
                reason = _reason(exc)
                self.summary.write_failed += 1
                self.summary.problems.append(Problem(path, "write", reason))
                updates.append(lambda db: self.index.set_failure(db, path, "write", reason, scan_id))
        if self.renamer is not None and row.caption:
            updates.extend(self.rename(photo, row))
        return updates

    def keywords(self, row: PhotoRow) -> list[str]:
        return keyword_names(row.labels, self.options.keyword_threshold)

    def write_sidecar(self, photo: Photo, row: PhotoRow) -> list[Callable[[Any], None]]:
        path, style = photo.path, self.options.sidecar_style
        if style == "lightroom" and self.stems[(path.parent, path.stem.lower())] > 1:
            # photo.jpg and photo.png would share photo.xmp: give this one photo.jpg.xmp.
            style = "darktable"
            self.notice(str(path), "sidecar-name",
                        f"another photo has the name stem {path.stem!r}, so this one got {path.name}.xmp, "
                        "which Lightroom does not read; rename one of them and scan again for photo.xmp")
        target = xmp.sidecar_path(path, style)
        if row.written_key == self.written_key and row.path == str(path) and target.exists():
            return []  # (the written key is the record's: a copy elsewhere has its own sidecar)
        result = xmp.write_sidecar(path, row.caption, self.keywords(row), style=style, settings=self.key,
                                   existing=self.options.existing, persons=row.caption_by == "person",
                                   hierarchy_root=self.options.hierarchy_root)
        self.decided(target, result)
        changed = result.changed
        if changed:
            self.summary.written += 1
        scan_id, key, content_hash = self.scan_id, self.written_key, row.hash

        def record(db: Any) -> None:
            self.index.set_written(db, self.id_of(content_hash), key)
            if changed:
                self.index.mark_item_written(db, scan_id, str(path))

        return [record]

    def write_embedded(self, photo: Photo, row: PhotoRow) -> list[Callable[[Any], None]]:
        path = photo.path
        if photo.known is not None and photo.known.bytes_written_key == self.written_key:
            return []  # these very bytes are Loupe's embed for these settings
        if is_read_only(path):
            raise LoupeError("read-only file: not changed (make it writable, or use sidecars)")
        links = link_count(path)
        if links > 1:  # rewriting it would split its names into separate files (see README)
            self.notice(str(path), "hard-links", f"has {links} hard links: embedding would split them into separate "
                        f"files, so its caption went to a sidecar ({xmp.sidecar_path(path, self.options.sidecar_style).name})")
            return self.write_sidecar(photo, row)
        data = path.read_bytes()
        if hash_bytes(data) != photo.file_hash:
            raise LoupeError("the file changed during the scan: not written (scan again)")
        result = xmp.embed(data, row.caption, self.keywords(row), suffix=path.suffix, settings=self.key,
                           existing=self.options.existing, persons=row.caption_by == "person",
                           hierarchy_root=self.options.hierarchy_root)
        self.decided(path, result)
        new = result.data if result.data is not None else data
        if new != data:
            atomic_write(path, new, like=path)
            self.summary.written += 1
        st, new_hash = path.stat(), hash_bytes(new)
        scan_id, key, content_hash, changed = self.scan_id, self.written_key, row.hash, new != data

        def record(db: Any) -> None:
            pid = self.id_of(content_hash)
            self.known[new_hash] = Known(self.known[content_hash].row, key)
            self.index.add_alias(db, new_hash, pid, key)
            self.index.set_location(db, pid, str(path), st.st_size, st.st_mtime_ns, new_hash)
            self.index.set_written(db, pid, key)
            if changed:
                self.index.mark_item_written(db, scan_id, str(path))

        return [record]

    def rename(self, photo: Photo, row: PhotoRow) -> list[Callable[[Any], None]]:
        old = photo.path
        try:
            if is_read_only(old):
                raise LoupeError("read-only file: not renamed")
            new = self.renamer.rename(old, row.caption, sidecars_of(old))  # type: ignore[union-attr]
        except (OSError, LoupeError) as exc:
            reason, scan_id = _reason(exc), self.scan_id
            self.summary.problems.append(Problem(str(old), "rename", reason))
            return [lambda db: self.index.set_failure(db, str(old), "rename", reason, scan_id)]
        if new is None:
            return []
        self.summary.renamed += 1
        photo.path = new
        scan_id = self.scan_id

        def record(db: Any) -> None:
            self.index.set_path_only(db, str(old), str(new))
            self.index.move_item(db, scan_id, str(old), str(new))

        return [record]

    # ------------------------------------------------------------------ the index
    def new_row(self, photo: Photo, caption: Caption, labels: Labels) -> PhotoRow:
        """The record `result_update` will write, as the writers and renamer need it now."""
        st, known = photo.st, photo.known
        assert st is not None and photo.file_hash is not None
        text, by = caption.text, "loupe"
        if known is not None and known.row.caption_by == "person":
            # Redone with new settings: new labels, but the caption stays the person's own.
            text, by = known.row.caption, "person"
            self.notice(str(photo.path), "own-caption",
                        f"kept your own caption ({_quote(text)}); Loupe's new caption was not used")
        return PhotoRow(
            id=known.row.id if known is not None else -1, hash=photo.file_hash, path=str(photo.path),
            size=st.st_size, mtime_ns=st.st_mtime_ns, file_hash=photo.file_hash, caption=text,
            labels=tuple(labels.top), settings_key=self.key, written_key=None, caption_by=by,
        )

    def id_of(self, content_hash: str) -> int:
        """The record id of these bytes. A new photo's id exists only once `result_update` has
        inserted it, so the writers' updates (queued after it, same transaction) ask here."""
        return self.known[content_hash].row.id

    def result_update(self, photo: Photo, row: PhotoRow, found_at: str) -> Callable[[Any], None]:
        path, scan_id = str(photo.path), self.scan_id

        def save(db: Any) -> None:
            pid = self.index.save_result(
                db, content_hash=row.hash, path=path, size=row.size, mtime_ns=row.mtime_ns,
                caption=row.caption, labels=row.labels, settings_key=self.key, model_ids=self.model_ids,
                scan_id=scan_id, photo_id=row.id if row.id >= 0 else None, caption_by=row.caption_by,
            )
            self.index.record_item(db, scan_id, found_at, pid, "done")
            saved = PhotoRow(**{**asdict(row), "id": pid, "path": path, "labels": row.labels})
            self.known[row.hash] = Known(saved, None)
            self.by_path[path] = saved

        return save

    def later(self, update: Callable[[Any], None]) -> None:
        self.pending.append(update)

    def flush(self, db: Any) -> None:
        updates, self.pending = self.pending, []
        for update in updates:
            update(db)

    def record_pending(self) -> None:
        if self.pending:
            with self.index.transaction() as db:
                self.flush(db)

    # ------------------------------------------------------------------ reporting
    def notice(self, path: str, kind: str, message: str) -> None:
        """Tell a decision once: the same one for the same photo is not repeated by later scans."""
        if (path, kind, message) in self.told:
            return
        self.told.add((path, kind, message))
        self.summary.notices.append(Notice(path, kind, message))
        self.later(lambda db: self.index.add_notice(db, path, kind, message))

    def decided(self, where: Path, result: WriteResult) -> None:
        """Say what was done with a description someone else wrote (kept, appended, replaced)."""
        note = result.note()
        if note is not None:
            self.notice(str(where), result.decision, note)
        if result.cut:  # said once per scan, for its folder
            self.notice(str(self.folder), "iptc-limit", IPTC_LIMIT_NOTE)

    def unreadable_folder(self, exc: OSError) -> None:
        self.summary.problems.append(Problem(str(exc.filename), "read", f"folder cannot be read ({os_reason(exc)})"))

    def report(self, path: str, phase: str, force: bool = False) -> None:
        """Tell the progress callback; at most ~10 a second unless `force`."""
        if self.progress is None:
            return
        now = time.perf_counter()
        if not force and now - self.last_report < 0.1:
            return
        self.last_report = now
        s = self.summary
        handled = s.done + s.skipped + s.duplicates + s.failed
        # Only photos captioned count for speed and time left: photos already done go by fast.
        rate = self.meter.rate(s.done, now)
        to_caption = max(0, s.total - handled - len(self.expect_skip))
        eta = to_caption / rate if rate > 0 else (0.0 if phase == "finished" else None)
        current = "" if phase == "finished" else path
        batch = self.batch_now if phase == "captioning" else 0
        self.progress(ScanProgress(handled, s.total, rate, eta, path, s.done, s.skipped + s.duplicates, s.failed,
                                   current=current, phase=phase, batch=batch, working=self.working if batch else 0.0))


def _reason(exc: BaseException) -> str:
    return os_reason(exc) if isinstance(exc, OSError) else str(exc)


def _quote(text: str, limit: int = 60) -> str:
    one_line = " ".join(text.split())
    return '"' + (one_line if len(one_line) <= limit else one_line[: limit - 1] + "…") + '"'  # one line



def run_scan(
    folder: Path, engine: Any, options: Options, index: Index, log: RenameLog,
    progress: ProgressCallback | None = None, cancel: threading.Event | None = None,
    make: Callable[..., Scan] = Scan,
) -> ScanSummary:
    """Clean up after an earlier killed run, then scan; the index records how it ended.
    `make` builds the Scan (a subclass runs the same stages elsewhere: ray_scan.RayScan)."""
    if progress is not None:  # at once: the engine may import torch and load models next
        progress(ScanProgress(0, 0, 0.0, None, "", current="", phase="finding"))
    cleanup_stale(folder, older_than=time.time())

    def moved(old: str, new: str) -> None:
        with index.transaction() as db:
            index.set_path_only(db, old, new)

    recover(log, moved)
    scan = make(folder, engine, options, index, log, progress, cancel)
    status = "failed"
    try:
        scan.run()
        status = "cancelled" if scan.summary.cancelled else "done"
    except (KeyboardInterrupt, Cancelled):  # Ctrl-C, or Stop during generation
        status = "cancelled"
        raise
    finally:
        s = scan.summary
        counts = {k: getattr(s, k) for k in ("total", "done", "skipped", "failed", "written", "renamed")}
        try:
            index.finish_scan(scan.scan_id, status, counts)
        except LoupeError:
            if status != "failed":
                raise
    return scan.summary
