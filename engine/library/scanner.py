"""A scan: the stages wired top to bottom, over plain records (records.py).

    plan     walk -> identify (content hash, reused from the index when size and mtime are
             unchanged) -> a decision per photo: todo, skip, duplicate, failed, copy  (plan.py)
    compute  decode + infer the photos to do, a batch at a time            (compute.py; on a
             Ray cluster ray_scan.RayCompute: the only stage `--ray` replaces)
    write    one photo: sidecar | embed | none, then rename                 (writers.py)
    record   one index transaction per batch, after the files              (record.py)

Photos done before go plan -> write -> record; copies of a photo in flight are decided again
once it is recorded. Stop (`cancel`, Ctrl-C) is checked between photos and inside the models;
a batch expected to end within stopping.GRACE_S is let finish first (engine/stopping.py);
results already in are written for up to STOP_WRITES_S and kept, the next scan does the rest.
"""
from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..batching import Inference
from ..errors import Cancelled, LoupeError, ModelFailed, UnreadableImage
from ..files import cleanup_stale, os_reason
from .compute import Compute, LocalCompute, Out
from .index import Index
from .keys import ResultKeys
from .options import Options
from .plan import Plan
from .progress import ProgressCallback, Reporter, ScanProgress
from .record import clear_old_failures, record, row_for
from .records import COPY, FAILED, TODO, Decision, Entry, Found, Problem, ScanSummary, Told
from .rename import Renamer, RenameLog, recover, stem_counts
from .walk import Walked
from .writers import How, Writer, loupe_sidecars

STOP_WRITES_S = 1.0  # after Stop, how long finished results may still be written
SKIPS_PER_RECORD = 256  # photos done before, recorded together


class Scan:
    """One run over one folder: `run()` once. `compute` is the compute stage (LocalCompute
    unless given: ray_scan.RayCompute); `model_ids` what makes the results there."""

    def __init__(self, folder: Path, model_ids: dict[str, str], options: Options, index: Index, log: RenameLog,
                 compute: Callable[["Scan"], Compute], progress: ProgressCallback | None = None,
                 cancel: threading.Event | None = None) -> None:
        self.folder, self.options, self.index = folder, options, index
        self.cancel = cancel or threading.Event()
        self.keys = ResultKeys(model_ids, options.models, tuple(options.models))  # the tasks this scan runs
        self.plan = Plan(index, self.keys)
        self.told = Told(index.notices_told())  # decisions told by earlier scans are not told again
        self.scan_id = index.begin_scan(str(folder), self.keys.combined,
                                        {**asdict(options), "models": self.keys.model_ids})
        self.summary = ScanSummary(scan_id=self.scan_id, folder=str(folder))
        self.report = Reporter(progress, self.summary)
        self.stems: Counter[tuple[Path, str]] = Counter()
        how = How(options.write, options.sidecar_style, options.existing, options.keyword_threshold,
                  self.keys.combined, options.hierarchy_root)
        self.write = Writer(how, self.told, self.stems, Renamer(log) if options.rename else None, str(folder))
        self.compute = compute(self)
        self.entries: list[Entry] = []  # waiting for the next transaction

    def run(self) -> ScanSummary:
        started = time.perf_counter()
        self.report("", "finding", force=True)
        walked = self.plan.walk(self.folder, self.options.exclude, self.unreadable_folder)
        paths = walked.photos
        self.summary.total = len(paths)
        self.summary.left_out = dict(walked.left_out)
        self.write.pairs = walked.pairs
        self.stems.update(stem_counts({p.parent for p in paths}))  # RAWs and videos share photo.xmp too
        self.report.expect_skip = {str(p) for p in paths if self.plan.likely_done(p)}
        self.report("", "checking", force=True)
        o = self.options
        found: Iterable[Found] = self.plan.identified(paths, workers=o.workers, ahead=o.batch_size * 2 + o.workers,
                                                      cancel=self.cancel)
        try:
            while found is not None and not self.summary.cancelled:
                copies: list[Found] = []
                for group in self.compute(self.decided(found, copies)):
                    self.computed(group)
                found = copies or None  # copies of photos now recorded: decided again
        except Cancelled:
            if not self.cancel.is_set():
                raise
            self.summary.cancelled = True  # Stop during generation: that batch is not recorded
        s = self.summary
        s.cancelled = s.cancelled or (self.cancel.is_set() and s.handled() < s.total)  # stopped while planning
        self.record()
        s.inference_s = self.compute.inference_s
        if not s.cancelled:
            clear_old_failures(self.index, str(self.folder), self.scan_id)
            self.gone(walked)
        s.elapsed_s = time.perf_counter() - started
        s.rate = s.done / s.elapsed_s if s.elapsed_s and s.done else 0.0
        self.report(str(self.folder), "stopped" if s.cancelled else "finished", force=True)
        return s

    def decided(self, found: Iterable[Found], copies: list[Found]) -> Iterator[Decision]:
        """Plan each photo: the ones to compute go on; the others are handled here."""
        for one in found:
            if self.cancel.is_set():
                return
            decision = self.plan.decide(one)
            if decision.kind == TODO:
                yield decision
            elif decision.kind == COPY:
                copies.append(one)
            elif decision.kind == FAILED:
                self.add(Entry(decision, "failed", problem=Problem(decision.path, "read", one.error or "unreadable")))
            else:
                self.done_before(decision)

    def done_before(self, decision: Decision) -> None:
        """Skip or duplicate: done before with these settings; its files brought up to date."""
        assert decision.known is not None
        row, notices = decision.known.row, []
        if decision.kind != "skip":
            notices = self.told.notice(decision.path, "duplicate", f"skipped, same photo as {row.path}")
        self.add(Entry(decision, "skipped", row=row, files=self.write(decision, row), notices=notices))
        if len(self.entries) >= SKIPS_PER_RECORD:
            self.record()

    def computed(self, group: list[tuple[Decision, Out]]) -> None:
        """A batch's results: write each photo's files, then record them in one transaction.
        After Stop, writing goes on for STOP_WRITES_S; the rest is redone next time."""
        self.report.computed(sum(not isinstance(out, (ModelFailed, UnreadableImage)) for _, out in group))
        stop_by: float | None = None
        for decision, out in group:
            if self.cancel.is_set():
                stop_by = stop_by or time.perf_counter() + STOP_WRITES_S
                if time.perf_counter() >= stop_by:
                    self.summary.cancelled = True
                    break
            if isinstance(out, (ModelFailed, UnreadableImage)):
                self.plan.forget(decision)
                self.add(Entry(decision, "failed", problem=Problem(decision.path, "read", out.reason)))
                continue
            row, notices = row_for(decision.path, decision, out, self.keys, self.told)
            self.add(Entry(decision, "done", row=row, files=self.write(decision, row), notices=notices,
                           embedding=out.get("embed")), force=decision is group[0][0])
        self.record()
        for decision, _ in group:
            self.plan.forget(decision)  # not recorded (stopped): its copies are not waiting on it

    def add(self, entry: Entry, force: bool = False) -> None:
        """One photo handled: counted (the count moves photo by photo) and reported."""
        self.entries.append(entry)
        self.summary.count(entry)
        self.report.handled(entry.decision.path)
        self.report(entry.decision.path, "writing" if entry.status == "done" else "checking", force=force)

    def record(self) -> None:
        entries, self.entries = self.entries, []
        for problem in record(self.index, self.plan, self.keys, self.scan_id, entries):
            self.summary.problems.append(problem)
            self.summary.failed += 1  # counted as done or skipped, but not recorded: done again next time
            self.summary.done -= any(e.decision.path == problem.path and e.status == "done" for e in entries)
            self.summary.skipped -= any(e.decision.path == problem.path and e.status == "skipped"
                                        and e.decision.kind != "duplicate" for e in entries)

    def gone(self, walked: Walked) -> None:
        """Photos of this folder that are no longer there: out of search and export, said, and
        the sidecars Loupe wrote for them listed (kept: a person may want them)."""
        s = self.summary
        present = {str(p) for p in walked.photos}
        with self.index.transaction() as db:
            s.gone = self.index.drop_gone(db, str(self.folder), present, walked.unreadable)
        s.gone_sidecars = [str(x) for path in s.gone for x in loupe_sidecars(Path(path))]
        if self.options.remove_gone_sidecars:  # asked for: Loupe's own sidecars of gone photos go too
            removed = []
            for x in s.gone_sidecars:
                try:
                    os.unlink(x)
                    removed.append(x)
                except OSError as exc:
                    s.problems.append(Problem(x, "write", f"sidecar not deleted ({os_reason(exc)})"))
            told = [n for x in removed for n in self.told.notice(
                x, "gone-sidecar-removed", "its photo is no longer there; this sidecar Loupe wrote was deleted, as asked")]
        else:
            told = [n for x in s.gone_sidecars for n in self.told.notice(
                x, "gone-sidecar", "its photo is no longer there; this sidecar Loupe wrote is kept (delete it, "
                "or scan with --remove-gone-sidecars)")]
        s.notices += told
        record(self.index, self.plan, self.keys, self.scan_id, [], told)

    def unreadable_folder(self, exc: OSError) -> None:
        self.summary.problems.append(Problem(str(exc.filename), "read", f"folder cannot be read ({os_reason(exc)})"))


def local(engine: Inference) -> Callable[[Scan], Compute]:
    """The compute stage on this machine, with `engine`."""
    def make(scan: Scan) -> Compute:
        o = scan.options
        stage = LocalCompute(engine, o.models, batch_size=o.batch_size, workers=o.workers, cancel=scan.cancel,
                             on_batch=lambda ds: scan.report.batch([d.path for d in ds]), on_step=scan.report.step)
        scan.report.meter.plan = stage.plan  # the time left prices waiting photos in the batches to come
        return stage
    return make


def run_scan(folder: Path, model_ids: Callable[[], dict[str, str]], compute: Callable[[Scan], Compute],
             options: Options, index: Index, log: RenameLog, progress: ProgressCallback | None = None,
             cancel: threading.Event | None = None) -> ScanSummary:
    """Clean up after an earlier killed run, then scan; the index records how it ended."""
    if progress is not None:  # at once: the engine may import torch and load models next
        progress(ScanProgress(0, 0, 0.0, None, "", current="", phase="finding"))
    cleanup_stale(folder, older_than=time.time())

    def moved(old: str, new: str) -> None:
        with index.transaction() as db:
            index.set_path_only(db, old, new)

    recover(log, moved)
    scan = Scan(folder, model_ids(), options, index, log, compute, progress, cancel)
    status = "failed"
    try:
        scan.run()
        status = "cancelled" if scan.summary.cancelled else "done"
    except (KeyboardInterrupt, Cancelled):  # Ctrl-C
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
