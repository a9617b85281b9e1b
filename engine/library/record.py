"""The record stage: a batch's entries -> the index, in one transaction, after the files.

The index never claims a write that is not on disk: the writers have run before this (a kill
in between only means the batch is redone, and the files are found up to date). `row_for`
turns a photo's results into the record the writers write from and this stage saves.

A new task's result is one line in `row_for` (where its result goes in the record) and its
column or table in index.py; its key comes from keys.py.
"""
from __future__ import annotations

import sqlite3
from dataclasses import replace
from typing import Any, Mapping

from ..results import Caption, Labels
from .descriptions import quote
from .index import Index, PhotoRow
from .keys import ResultKeys
from .plan import Plan
from .records import Entry, Notice, Problem, Told


def row_for(entry_path: str, decision: Any, results: Mapping[str, Any], keys: ResultKeys,
            told: Told) -> tuple[PhotoRow, list[Notice]]:
    """The record for a photo's new results: the tasks computed now from `results`, the others
    kept from its record; a caption the person wrote stays theirs (said once)."""
    found, known = decision.found, decision.known
    old = known.row if known is not None else None
    done = keys.done(old) if old is not None else {}
    caption: Caption | None = results.get("caption")
    labels: Labels | None = results.get("classify")
    text = caption.text if caption is not None else (old.caption if old is not None else "")
    by, notices = "loupe", []
    if old is not None and old.caption_by == "person":
        # Redone with new settings: new labels, but the caption stays the person's own.
        text, by = old.caption, "person"
        if caption is not None:
            notices = told.notice(entry_path, "own-caption",
                                  f"kept your own caption ({quote(text)}); Loupe's new caption was not used")
    assert found.st is not None and found.file_hash is not None
    row = PhotoRow(
        id=old.id if old is not None else -1, hash=found.file_hash, path=entry_path, size=found.st.st_size,
        mtime_ns=found.st.st_mtime_ns, file_hash=found.file_hash, caption=text,
        labels=tuple(labels.top) if labels is not None else (old.labels if old is not None else ()),
        settings_key=keys.combined, written_key=None, caption_by=by,
        task_keys={**done, **{task: keys.per_task[task] for task in results}},
    )
    return row, notices


# What one photo's record can raise that is about that photo's data, not the index as a whole
# (a full disk or a damaged index still stops the scan, through Index.transaction).
_ONE_PHOTO_ERRORS = (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.DataError, ValueError, TypeError)


def record(index: Index, plan: Plan, keys: ResultKeys, scan_id: int, entries: list[Entry],
           notices: list[Notice] = ()) -> list[Problem]:  # type: ignore[assignment]
    """Every entry (and `notices` told outside them) in one transaction; then `plan` knows.
    Each photo is its own savepoint: one that cannot be recorded is rolled back alone and
    returned as a Problem (stage "record"); its batch-mates are recorded."""
    if not entries and not notices:
        return []
    remember: list[tuple[PhotoRow, Any]] = []
    problems: list[Problem] = []
    with index.transaction() as db:
        for entry in entries:
            db.execute("SAVEPOINT photo")
            try:
                remember += _one(index, db, keys, scan_id, entry)
            except _ONE_PHOTO_ERRORS as exc:
                db.execute("ROLLBACK TO photo")
                problems.append(Problem(entry.decision.path, "record", f"not recorded in the index ({exc})"))
            db.execute("RELEASE photo")
        for n in [*notices, *(n for e in entries for n in e.notices),
                  *(n for e in entries if e.files is not None for n in e.files.notices)]:
            index.add_notice(db, n.path, n.kind, n.message)
    for row, written in remember:
        plan.remember(row, written)
    return problems


def clear_old_failures(index: Index, folder: str, scan_id: int) -> None:
    """A finished scan of `folder` saw every photo under it: older failures there are gone."""
    with index.transaction() as db:
        index.clear_old_failures(db, folder, scan_id)


def _one(index: Index, db: Any, keys: ResultKeys, scan_id: int, entry: Entry) -> list[tuple[PhotoRow, Any]]:
    decision, found_at = entry.decision, entry.decision.path
    if entry.status == "failed":
        assert entry.problem is not None
        index.record_item(db, scan_id, found_at, None, "failed", entry.problem.reason)
        index.set_failure(db, found_at, "read", entry.problem.reason, scan_id)
        return []
    row = entry.row
    assert row is not None
    saved: list[tuple[PhotoRow, Any]] = []
    if entry.status == "done":
        files = entry.files
        path = files.path if files is not None else found_at  # a rename: the record takes the new path
        pid = index.save_result(
            db, content_hash=row.hash, path=path, size=row.size, mtime_ns=row.mtime_ns, caption=row.caption,
            labels=row.labels, settings_key=row.settings_key, model_ids=keys.model_ids, scan_id=scan_id,
            photo_id=row.id if row.id >= 0 else None, caption_by=row.caption_by, task_keys=row.task_keys)
        index.record_item(db, scan_id, found_at, pid, "done")
        row = replace(row, id=pid, path=path)
        saved.append((row, None))
    else:  # skipped or duplicate: done before; its record may have moved here
        st, file_hash = decision.found.st, decision.found.file_hash
        if decision.relocate:
            assert st is not None and file_hash is not None
            index.set_location(db, row.id, found_at, st.st_size, st.st_mtime_ns, file_hash)
        if not row.task_keys:  # a record from before per-task keys: say which keys it was made with
            index.set_task_keys(db, row.id, keys.done(row))
        index.record_item(db, scan_id, found_at, row.id, "skipped")
    files = entry.files
    if files is None:
        return saved
    index.clear_failure(db, found_at)
    for problem in files.problems:
        index.set_failure(db, problem.path, problem.stage, problem.reason, scan_id)
    if files.location is not None:
        loc = files.location
        index.add_alias(db, loc.file_hash, row.id, loc.bytes_written_key)
        index.set_location(db, row.id, found_at, loc.size, loc.mtime_ns, loc.file_hash)
        saved.append((row, (loc.file_hash, loc.bytes_written_key)))
    if files.written_key is not None:
        index.set_written(db, row.id, files.written_key)
        if files.changed:
            index.mark_item_written(db, scan_id, found_at)
    if files.renamed_from is not None:
        index.set_path_only(db, files.renamed_from, files.path)
        index.move_item(db, scan_id, files.renamed_from, files.path)
    return saved
