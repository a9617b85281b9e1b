"""The library index: one SQLite file (WAL) with photos, their captions/labels, and FTS5 search.

A photo is identified by the sha256 of the bytes it was captioned from (`photos.hash`).
`hashes` maps every content a photo's file has been seen with (the original, and the bytes
after Loupe embedded metadata) to the photo, so moved, renamed and embedded-into photos are
recognised without running the models again.

Every sqlite3 error is turned into an `IndexUnavailable` (a LoupeError) with one clear line.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..errors import LoupeError, UsageError
from ..images import is_photo_name
from ..names import from_db, to_db
from ..results import Label

# 2: photos.caption_by (a caption the person wrote), failures, notices, the review's index
# 3: photos.task_keys (the key each task's result was made with; library/keys.py migrates 2's)
SCHEMA_VERSION = 3
BUSY_TIMEOUT_S = 10.0  # how long to wait for another Loupe holding the write lock
KEEP_SCAN_ITEMS = 20  # scans whose per-photo rows (status, reason) are kept for export
CAPTION_BY = ("loupe", "person")  # who wrote a photo's caption

_SCHEMA = """
CREATE TABLE IF NOT EXISTS photos(
    id INTEGER PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,          -- sha256 of the bytes the models saw (identity)
    path TEXT UNIQUE,                   -- where it is now; NULL once another file took the path
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    file_hash TEXT NOT NULL,            -- sha256 of the file at `path` as last seen
    caption TEXT NOT NULL,
    labels TEXT NOT NULL,               -- JSON [{"name", "score", "index"}]
    label_text TEXT NOT NULL,           -- label names, for full-text search
    settings_key TEXT NOT NULL,         -- every task's models + options together (keys.py combined)
    model_ids TEXT NOT NULL,            -- JSON, as the engine reported them
    written_key TEXT,                   -- what Loupe last wrote for it (writer:style:settings)
    scan_id INTEGER,
    done_at REAL NOT NULL,
    caption_by TEXT NOT NULL DEFAULT 'loupe',  -- "person": the person's own; a scan keeps it
    task_keys TEXT NOT NULL DEFAULT '{}'        -- JSON {task: key}: what made each result (keys.py)
);
CREATE TABLE IF NOT EXISTS hashes(
    hash TEXT PRIMARY KEY,
    photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    written_key TEXT                    -- set for bytes Loupe itself produced by embedding
);
CREATE TABLE IF NOT EXISTS scans(
    id INTEGER PRIMARY KEY,
    folder TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,               -- running, done, cancelled, failed
    settings_key TEXT NOT NULL,
    options TEXT NOT NULL,
    total INTEGER DEFAULT 0, done INTEGER DEFAULT 0, skipped INTEGER DEFAULT 0,
    failed INTEGER DEFAULT 0, written INTEGER DEFAULT 0, renamed INTEGER DEFAULT 0
);
CREATE TABLE IF NOT EXISTS scan_items(
    scan_id INTEGER NOT NULL,
    path TEXT NOT NULL,
    photo_id INTEGER,
    status TEXT NOT NULL,               -- done, skipped, failed
    written INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    PRIMARY KEY(scan_id, path)
);
CREATE TABLE IF NOT EXISTS failures(   -- photos the last scan of their folder could not read or write
    path TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    stage TEXT NOT NULL,                -- read, write, rename
    reason TEXT NOT NULL,
    scan_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS notices(    -- decisions already told, so a rescan does not repeat them
    path TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY(path, kind, message)
);
CREATE VIRTUAL TABLE IF NOT EXISTS photos_fts USING fts5(
    caption, label_text, name,
    content='photos', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS photos_ai AFTER INSERT ON photos BEGIN
    INSERT INTO photos_fts(rowid, caption, label_text, name)
    VALUES (new.id, new.caption, new.label_text, new.name);
END;
CREATE TRIGGER IF NOT EXISTS photos_ad AFTER DELETE ON photos BEGIN
    INSERT INTO photos_fts(photos_fts, rowid, caption, label_text, name)
    VALUES ('delete', old.id, old.caption, old.label_text, old.name);
END;
CREATE TRIGGER IF NOT EXISTS photos_au AFTER UPDATE OF caption, label_text, name ON photos BEGIN
    INSERT INTO photos_fts(photos_fts, rowid, caption, label_text, name)
    VALUES ('delete', old.id, old.caption, old.label_text, old.name);
    INSERT INTO photos_fts(rowid, caption, label_text, name)
    VALUES (new.id, new.caption, new.label_text, new.name);
END;
"""
# After any migration of `photos` (they name its newer columns). The review pages by scan, then name.
_INDEXES = """
CREATE INDEX IF NOT EXISTS photos_by_scan ON photos(scan_id DESC, name, path);
CREATE INDEX IF NOT EXISTS failures_by_scan ON failures(scan_id);
"""


# A scan's counts from its per-photo rows, for a scan that never reached finish_scan (`scans.id` = `id`).
_KEPT = {
    "done": "SELECT count(*) FROM scan_items i WHERE i.scan_id = scans.id AND i.status = 'done'",
    "skipped": "SELECT count(*) FROM scan_items i WHERE i.scan_id = scans.id AND i.status = 'skipped'",
    "failed": "SELECT count(*) FROM scan_items i WHERE i.scan_id = scans.id AND i.status = 'failed'",
    "written": "SELECT count(*) FROM scan_items i WHERE i.scan_id = scans.id AND i.written = 1",
}


class IndexUnavailable(LoupeError):
    """The index file cannot be used (damaged, locked, unwritable); the message says which."""


@dataclass(frozen=True)
class Hit:
    """One search result. `score` is bm25 relevance made positive: higher is better."""

    path: str
    name: str
    caption: str
    labels: tuple[Label, ...]
    score: float
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "name": self.name, "caption": self.caption,
            "labels": [l.to_dict() for l in self.labels], "score": self.score, "hash": self.hash,
        }


@dataclass(frozen=True)
class PhotoRow:
    """A photo's record: identity, where it is, what the models said, what Loupe wrote."""

    id: int
    hash: str
    path: str | None
    size: int
    mtime_ns: int
    file_hash: str
    caption: str
    labels: tuple[Label, ...]
    settings_key: str
    written_key: str | None
    caption_by: str = "loupe"  # one of CAPTION_BY
    task_keys: Mapping[str, str] = field(default_factory=dict)  # task -> the key its result was made with

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> "PhotoRow":
        return cls(r["id"], r["hash"], r["path"], r["size"], r["mtime_ns"], r["file_hash"], r["caption"],
                   _labels(r["labels"]), r["settings_key"], r["written_key"], r["caption_by"],
                   json.loads(r["task_keys"] or "{}"))


@dataclass(frozen=True)
class Known:
    """Bytes the index has seen: the photo they belong to, and whether Loupe produced them by
    embedding (`bytes_written_key`, the writer and settings they carry) or not (None)."""

    row: PhotoRow
    bytes_written_key: str | None


def _translate(exc: sqlite3.Error, path: Path) -> IndexUnavailable:
    msg = str(exc)
    low = msg.lower()
    if "locked" in low or "busy" in low:
        text = (
            f"The library index {path} is in use by another Loupe (database is locked). "
            "Wait for that scan to finish, then try again."
        )
    elif "not a database" in low or "malformed" in low or "corrupt" in low:
        text = (
            f"The library index {path} is damaged ({msg}). Move it aside or delete it and scan "
            "again to rebuild it; your photos and sidecars are not affected."
        )
    elif "full" in low:
        text = f"Cannot write the library index {path}: the disk is full."
    elif "readonly" in low or "read-only" in low:
        text = f"Cannot write the library index {path}: it or its folder is read-only."
    elif "unable to open" in low:
        text = f"Cannot open the library index {path} (check that its folder exists and is writable)."
    elif "no such module: fts5" in low:
        text = "This Python's SQLite has no FTS5 full-text search; the library needs it."
    else:
        text = f"The library index {path} cannot be used: {msg}"
    err = IndexUnavailable(text)
    err.__cause__ = exc
    return err


class Index:
    """An open index. Use from one thread (the scan's); `with Index(path) as idx: ...`."""

    def __init__(self, path: Path, *, timeout: float | None = None) -> None:
        self.path = Path(path)
        if is_photo_name(self.path):
            # `--db IMG_1.jpg`: SQLite would make an empty photo an index, and a real one would be
            # reported "damaged" with advice to delete it.
            raise UsageError(f"{self.path} is a photo's name, not a library index; choose another index file.")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise IndexUnavailable(f"Cannot create the folder for the library index {self.path}: {exc}") from None
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves (no implicit transactions).
            self.db = sqlite3.connect(
                str(self.path), timeout=BUSY_TIMEOUT_S if timeout is None else timeout, isolation_level=None,
                factory=_Connection,
            )
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from None
        self.db.row_factory = _row
        try:
            with self._errors():
                self.db.execute("PRAGMA journal_mode=WAL")
                # FULL: a commit is on disk before Loupe renames a photo over its original
                # (the embed protocol relies on that ordering; commits are per batch, so cheap).
                self.db.execute("PRAGMA synchronous=FULL")
                self.db.execute("PRAGMA foreign_keys=ON")
                version = self.db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise IndexUnavailable(
                        f"The library index {self.path} was made by a newer Loupe (schema {version})."
                    )
                if version < SCHEMA_VERSION:
                    with self.transaction():
                        self._migrate()
        except BaseException:
            self.db.close()
            raise

    def _migrate(self) -> None:
        """Create the schema, or bring an older index up to it in place (inside a transaction)."""
        for statement in _statements(_SCHEMA):
            self.db.execute(statement)  # new tables; a v1 `photos` is kept as it is
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(photos)")}
        if "caption_by" not in columns:  # v1: every caption so far is Loupe's
            self.db.execute("ALTER TABLE photos ADD COLUMN caption_by TEXT NOT NULL DEFAULT 'loupe'")
        if "task_keys" not in columns:  # v2: one combined key; keys.ResultKeys reads it as before
            self.db.execute("ALTER TABLE photos ADD COLUMN task_keys TEXT NOT NULL DEFAULT '{}'")
        for statement in _statements(_INDEXES):
            self.db.execute(statement)
        self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # -- plumbing

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE (take the write lock up front, so WAL never fails a lock upgrade)."""
        with self._errors():
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def query(self, sql: str, params: tuple | list = ()) -> list[sqlite3.Row]:
        with self._errors():
            cur = self.db.execute(sql, params)
            return cur.fetchall()

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scans

    def begin_scan(self, folder: str, settings_key: str, options: dict[str, Any]) -> int:
        with self.transaction() as db:
            # A scan still "running" in the index died (crash, kill, the window closed): say so,
            # with the photos it recorded before it ended (its counts are only set at its end).
            db.execute("UPDATE scans SET status='interrupted', " + ", ".join(
                f"{k}=({v})" for k, v in _KEPT.items()) + " WHERE status='running'")
            # Per-photo rows of old scans are only for exporting a recent scan: keep the last 20.
            db.execute(f"DELETE FROM scan_items WHERE scan_id <= (SELECT max(id) - {KEEP_SCAN_ITEMS} FROM scans)")
            cur = db.execute(
                "INSERT INTO scans(folder, started, status, settings_key, options) VALUES (?,?,?,?,?)",
                (folder, time.time(), "running", settings_key, json.dumps(options, sort_keys=True)),
            )
            return int(cur.lastrowid)

    def finish_scan(self, scan_id: int, status: str, counts: dict[str, int]) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE scans SET finished=?, status=?, total=?, done=?, skipped=?, failed=?, written=?, renamed=?"
                " WHERE id=?",
                (
                    time.time(), status, counts["total"], counts["done"], counts["skipped"],
                    counts["failed"], counts["written"], counts["renamed"], scan_id,
                ),
            )

    def scans(self) -> list[dict[str, Any]]:
        """Every scan, oldest first; one still running (or that died) counts what it has recorded."""
        live = ", ".join(f"CASE WHEN status='running' THEN ({v}) ELSE {k} END AS {k}" for k, v in _KEPT.items())
        rows = self.query(
            f"SELECT id, folder, started, finished, status, total, {live}, renamed FROM scans ORDER BY id"
        )
        return [dict(r) for r in rows]

    def record_item(
        self, db: sqlite3.Connection, scan_id: int, path: str, photo_id: int | None, status: str,
        reason: str | None = None,
    ) -> None:
        db.execute(
            "INSERT INTO scan_items(scan_id, path, photo_id, status, reason) VALUES (?,?,?,?,?)"
            " ON CONFLICT(scan_id, path) DO UPDATE SET photo_id=excluded.photo_id, status=excluded.status,"
            " reason=excluded.reason",
            (scan_id, path, photo_id, status, reason),
        )

    def mark_item_written(self, db: sqlite3.Connection, scan_id: int, path: str) -> None:
        db.execute("UPDATE scan_items SET written=1 WHERE scan_id=? AND path=?", (scan_id, path))

    def move_item(self, db: sqlite3.Connection, scan_id: int, old: str, new: str) -> None:
        db.execute("UPDATE OR REPLACE scan_items SET path=? WHERE scan_id=? AND path=?", (new, scan_id, old))

    # -- photos

    _ROW = ("p.id, p.hash, p.path, p.size, p.mtime_ns, p.file_hash, p.caption, p.labels, p.settings_key,"
            " p.written_key, p.caption_by, p.task_keys")

    def snapshot(self) -> tuple[dict[str, PhotoRow], dict[str, Known]]:
        """(path -> record, every content hash seen -> Known), read once at scan start so the
        scan's loader threads can skip finished photos without the database (a sqlite3
        connection stays on its thread); the scan keeps both up to date as it records."""
        by_path = {r["path"]: PhotoRow.from_row(r)
                   for r in self.query(f"SELECT {self._ROW} FROM photos p WHERE p.path IS NOT NULL")}
        known = {
            r["alias"]: Known(PhotoRow.from_row(r), r["bytes_written_key"])
            for r in self.query(
                f"SELECT {self._ROW}, h.hash AS alias, h.written_key AS bytes_written_key"
                " FROM hashes h JOIN photos p ON p.id=h.photo_id"
            )
        }
        return by_path, known

    def save_result(
        self, db: sqlite3.Connection, *, content_hash: str, path: str, size: int, mtime_ns: int,
        caption: str, labels: tuple[Label, ...], settings_key: str, model_ids: dict[str, str], scan_id: int,
        photo_id: int | None = None, caption_by: str = "loupe", task_keys: Mapping[str, str] | None = None,
    ) -> int:
        """Insert a photo's caption and labels, or refresh record `photo_id` (redone with new
        settings: it keeps its identity). `caption_by`: who wrote `caption` (CAPTION_BY).
        Inside the caller's transaction."""
        labels_json = json.dumps(
            [{"name": l.name, "score": round(float(l.score), 6), "index": int(l.index)} for l in labels]
        )
        label_text = " ; ".join(l.name for l in labels)
        values = (
            path, Path(path).name, size, mtime_ns, content_hash, caption, labels_json, label_text,
            settings_key, json.dumps(model_ids, sort_keys=True), scan_id, time.time(), caption_by,
            json.dumps(dict(task_keys or {}), sort_keys=True),
        )
        if photo_id is None:
            row = db.execute("SELECT id FROM photos WHERE hash=?", (content_hash,)).fetchone()
            photo_id = row[0] if row else None
        db.execute("UPDATE photos SET path=NULL WHERE path=? AND id IS NOT ?", (path, photo_id))
        if photo_id is None:
            cur = db.execute(
                "INSERT INTO photos(path, name, size, mtime_ns, file_hash, caption, labels, label_text,"
                " settings_key, model_ids, scan_id, done_at, caption_by, task_keys, hash)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (*values, content_hash),
            )
            photo_id = int(cur.lastrowid)
        else:
            db.execute(
                "UPDATE photos SET path=?, name=?, size=?, mtime_ns=?, file_hash=?, caption=?, labels=?,"
                " label_text=?, settings_key=?, model_ids=?, scan_id=?, done_at=?, caption_by=?, task_keys=?,"
                " written_key=NULL"
                " WHERE id=?",
                (*values, photo_id),
            )
        db.execute(
            "INSERT INTO hashes(hash, photo_id, written_key) VALUES (?,?,NULL)"
            " ON CONFLICT(hash) DO UPDATE SET photo_id=excluded.photo_id, written_key=NULL",
            (content_hash, photo_id),
        )
        return int(photo_id)

    def set_location(
        self, db: sqlite3.Connection, photo_id: int, path: str, size: int, mtime_ns: int, file_hash: str
    ) -> None:
        """The photo is now at `path` with these bytes (moved, renamed, or rewritten by Loupe)."""
        db.execute("UPDATE photos SET path=NULL WHERE path=? AND id<>?", (path, photo_id))
        db.execute(
            "UPDATE photos SET path=?, name=?, size=?, mtime_ns=?, file_hash=? WHERE id=?",
            (path, Path(path).name, size, mtime_ns, file_hash, photo_id),
        )

    def add_alias(self, db: sqlite3.Connection, content_hash: str, photo_id: int, written_key: str | None) -> None:
        db.execute(
            "INSERT INTO hashes(hash, photo_id, written_key) VALUES (?,?,?)"
            " ON CONFLICT(hash) DO UPDATE SET photo_id=excluded.photo_id, written_key=excluded.written_key",
            (content_hash, photo_id, written_key),
        )

    def set_task_keys(self, db: sqlite3.Connection, photo_id: int, task_keys: Mapping[str, str]) -> None:
        """Record which key each of the photo's results was made with (keys.py's migration)."""
        db.execute("UPDATE photos SET task_keys=? WHERE id=?", (json.dumps(dict(task_keys), sort_keys=True), photo_id))

    def set_written(self, db: sqlite3.Connection, photo_id: int, written_key: str | None) -> None:
        db.execute("UPDATE photos SET written_key=? WHERE id=?", (written_key, photo_id))

    def set_path_only(self, db: sqlite3.Connection, old: str, new: str) -> None:
        """After a rename or its undo: the record at `old` now lives at `new`."""
        if not db.execute("SELECT 1 FROM photos WHERE path=?", (old,)).fetchone():
            # Nothing at `old`: the record already took `new` (a scan saves the renamed path
            # in the same transaction); clearing `new` would orphan it.
            db.execute("UPDATE OR REPLACE failures SET path=?, name=? WHERE path=?", (new, Path(new).name, old))
            return
        db.execute("UPDATE photos SET path=NULL WHERE path=?", (new,))
        db.execute("UPDATE photos SET path=?, name=? WHERE path=?", (new, Path(new).name, old))
        db.execute("UPDATE OR REPLACE failures SET path=?, name=? WHERE path=?", (new, Path(new).name, old))

    def set_person_caption(self, db: sqlite3.Connection, photo_id: int, caption: str) -> None:
        """The person's own caption for record `photo_id` (searchable at once: the FTS trigger)."""
        db.execute("UPDATE photos SET caption=?, caption_by='person', done_at=? WHERE id=?",
                   (caption, time.time(), photo_id))

    def row_at(self, path: str) -> PhotoRow | None:
        """The record of the photo now at `path`, or None."""
        rows = self.query(f"SELECT {self._ROW} FROM photos p WHERE p.path=?", (path,))
        return PhotoRow.from_row(rows[0]) if rows else None

    # -- what went wrong, and what was told

    def set_failure(self, db: sqlite3.Connection, path: str, stage: str, reason: str, scan_id: int) -> None:
        db.execute(
            "INSERT INTO failures(path, name, stage, reason, scan_id) VALUES (?,?,?,?,?) ON CONFLICT(path)"
            " DO UPDATE SET stage=excluded.stage, reason=excluded.reason, scan_id=excluded.scan_id",
            (path, Path(path).name, stage, reason, scan_id),
        )

    def clear_failure(self, db: sqlite3.Connection, path: str) -> None:
        db.execute("DELETE FROM failures WHERE path=?", (path,))

    def clear_old_failures(self, db: sqlite3.Connection, folder: str, scan_id: int) -> None:
        """A finished scan of `folder` saw every photo under it: older failures there are gone."""
        lo, hi = under(folder)
        db.execute("DELETE FROM failures WHERE path >= ? AND path < ? AND scan_id <> ?", (lo, hi, scan_id))

    def notices_told(self) -> set[tuple[str, str, str]]:
        return {(r[0], r[1], r[2]) for r in self.query("SELECT path, kind, message FROM notices")}

    def add_notice(self, db: sqlite3.Connection, path: str, kind: str, message: str) -> None:
        db.execute("INSERT OR IGNORE INTO notices(path, kind, message) VALUES (?,?,?)", (path, kind, message))

    # -- search and export

    def drop_gone(self, db: sqlite3.Connection, folder: str, present: set[str],
                  unreadable: list[str]) -> list[str]:
        """Photos recorded under `folder` that are no longer on disk (not in `present`, the
        walk's paths, and no file at their path; folders in `unreadable` are not judged):
        their path is cleared, so search and export leave them out while scan history keeps
        them (and a photo that comes back is found again by its content hash). Their paths."""
        lo, hi = under(folder)
        skip = [under(u)[0] for u in unreadable]
        gone = []
        for r in db.execute("SELECT id, path FROM photos WHERE path >= ? AND path < ?", (lo, hi)).fetchall():
            path = r["path"]
            if path in present or os.path.lexists(path) or any(path.startswith(u) for u in skip):
                continue
            db.execute("UPDATE photos SET path=NULL WHERE id=?", (r["id"],))
            db.execute("DELETE FROM failures WHERE path=?", (path,))
            gone.append(path)
        return gone

    def search(self, words: str, limit: int = 50) -> list[Hit]:
        match = fts_query(words)
        if match is None:
            return []
        rows = self.query(
            "SELECT p.path, p.name, p.caption, p.labels, bm25(photos_fts, 2.0, 1.0, 0.5) AS rank, p.hash"
            " FROM photos_fts JOIN photos p ON p.id = photos_fts.rowid"
            " WHERE photos_fts MATCH ? AND p.path IS NOT NULL ORDER BY rank LIMIT ?",
            (match, limit),
        )
        return [Hit(r["path"], r["name"], r["caption"], _labels(r["labels"]), -float(r["rank"]), r["hash"]) for r in rows]

    def export_rows(self, scan_id: int | None) -> list[dict[str, Any]]:
        cols = "p.path, p.name, p.caption, p.caption_by, p.labels, p.hash, p.size, p.mtime_ns, p.settings_key, p.model_ids, p.done_at"
        if scan_id is None:
            rows = self.query(f"SELECT {cols} FROM photos p WHERE p.path IS NOT NULL ORDER BY p.path")
            return [_export_dict(r) for r in rows]
        if not self.query("SELECT 1 FROM scans WHERE id=?", (scan_id,)):
            raise UsageError(f"There is no scan {scan_id} in the library index.")
        rows = self.query(
            f"SELECT {cols}, i.status, i.reason, i.written, i.path AS item_path FROM scan_items i"
            " LEFT JOIN photos p ON p.id = i.photo_id WHERE i.scan_id=? ORDER BY i.path",
            (scan_id,),
        )
        out = []
        for r in rows:
            item = _export_dict(r)
            item["path"] = item["path"] or r["item_path"]
            item["name"] = item["name"] or Path(r["item_path"]).name
            item.update(status=r["status"], reason=r["reason"] or "", written=bool(r["written"]))
            out.append(item)
        return out

    def integrity(self) -> str:
        """'ok' when both SQLite's and FTS5's own checks pass, else the first complaint."""
        first = self.query("PRAGMA integrity_check")[0][0]
        if first != "ok":
            return first
        try:
            with self._errors():
                self.db.execute("INSERT INTO photos_fts(photos_fts, rank) VALUES ('integrity-check', 1)")
        except IndexUnavailable as exc:
            return str(exc)
        return "ok"


def under(folder: str) -> tuple[str, str]:
    """(lo, hi): the paths strictly under `folder` are those with lo <= path < hi (an index range)."""
    lo = folder if folder.endswith(os.sep) else folder + os.sep
    return lo, lo[:-1] + chr(ord(os.sep) + 1)


def _statements(script: str) -> list[str]:
    """Split the schema into statements (triggers hold ';' inside BEGIN ... END)."""
    out, buf = [], []
    for line in script.strip().splitlines():
        buf.append(line)
        text = "\n".join(buf).strip()
        if text.endswith(";") and (not text.upper().startswith("CREATE TRIGGER") or text.upper().endswith("END;")):
            out.append(text)
            buf = []
    return out


def _labels(text: str | None) -> tuple[Label, ...]:
    if not text:
        return ()
    return tuple(Label(d["name"], float(d["score"]), int(d["index"])) for d in json.loads(text))


def _export_dict(r: sqlite3.Row) -> dict[str, Any]:
    """A photos row (possibly all NULL: a scan item with no record) -> the export's fields."""
    return {
        "path": r["path"],
        "name": r["name"],
        "caption": r["caption"] or "",  # what Loupe writes: the person's own where there is one
        "your_caption": (r["caption"] or "") if r["caption_by"] == "person" else "",
        "caption_by": r["caption_by"] or "",  # "loupe" | "person" ("" for a photo never read)
        "labels": [l.to_dict() for l in _labels(r["labels"])],
        "hash": r["hash"],
        "size": r["size"],
        "mtime": (time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(r["mtime_ns"] / 1e9)) if r["mtime_ns"] else None),
        "settings_key": r["settings_key"],
        "models": json.loads(r["model_ids"]) if r["model_ids"] else {},
        "done_at": (time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(r["done_at"])) if r["done_at"] else None),
    }


# A whitespace-separated token counts when it holds a letter or digit (FTS5's unicode61 token
# characters); "*", "-" or "()" alone hold nothing to search for.
_TOKEN_PART = re.compile(r"[^\W_]+")
# Words too common in captions to narrow anything ("a dog on the beach"); dropped from a
# query unless the query has nothing else.
_STOPWORDS = frozenset("a an the and or of on in at with to by for is are from".split())

NO_MATCH = "no photos match {words}"
"""What a front end says when a search finds nothing; `.format(words=the text typed)`."""


class _Connection(sqlite3.Connection):
    """Paths are the OS's bytes (surrogate escapes, engine/names.py), which SQLite's UTF-8 text
    cannot hold: every text parameter goes in through names.to_db, every text column comes
    out through names.from_db (_row), so the index keeps the exact name."""

    def execute(self, sql: str, parameters: Any = ()) -> sqlite3.Cursor:  # type: ignore[override]
        return super().execute(sql, _params(parameters))

    def executemany(self, sql: str, seq: Any) -> sqlite3.Cursor:  # type: ignore[override]
        return super().executemany(sql, (_params(p) for p in seq))


def _params(parameters: Any) -> Any:
    if isinstance(parameters, dict):
        return {k: to_db(v) if isinstance(v, str) else v for k, v in parameters.items()}
    return tuple(to_db(v) if isinstance(v, str) else v for v in parameters)


def _row(cursor: sqlite3.Cursor, values: tuple) -> sqlite3.Row:
    return sqlite3.Row(cursor, tuple(from_db(v) if isinstance(v, str) else v for v in values))


def fts_query(words: str) -> str | None:
    """Text a person typed -> an FTS5 MATCH expression: every whitespace-separated token must
    match (AND), stemmed ("boats" finds "boat").

    Each token goes to FTS5 as one quoted string, which FTS5 splits with the index's own
    tokenizer: a punctuated token (green-boat, e-mail, "t-shirt", plage.jpeg) becomes a
    phrase of its parts, in that order, and everything else is plain text — a leading "-",
    quotes, *, ^, :, parentheses, AND/OR/NOT/NEAR are never syntax and never an error.
    Tokens that are one stop word ("the", "of,") are dropped unless nothing else is left.
    Returns None when the text holds no letter or digit at all.
    """
    # sqlite3 cannot bind lone surrogates (undecodable bytes in argv) and FTS5 stops a
    # string at NUL: neither can be in an index entry, so neither may break the query.
    text = (words or "").encode("utf-8", "replace").decode("utf-8").replace("\x00", " ")
    tokens = [t for t in text.split() if _TOKEN_PART.search(t)]
    if not tokens:
        return None
    kept = [t for t in tokens if not _is_stopword(t)]
    return " ".join('"' + t.replace('"', '""') + '"' for t in kept or tokens)


def _is_stopword(token: str) -> bool:
    parts = _TOKEN_PART.findall(token.lower())
    return len(parts) == 1 and parts[0] in _STOPWORDS
