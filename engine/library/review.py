"""The review: the index's photos one page at a time, with what state each is in.

A photo's state, first that applies:
    failed   the last scan of its folder could not read, write or rename it (`reason` says why)
    changed  the file on disk differs from what was captioned (size or mtime), or is gone
    edited   its caption is the person's own (caption_by "person")
    done     captioned and unchanged
"""
from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..results import Label
from .index import Index, _labels, fts_query, under

REVIEW_STATES = ("all", "done", "failed", "changed", "edited")
MAX_PAGE = 1000  # photos per page at most


@dataclass(frozen=True)
class PhotoItem:
    """One photo as the review shows it."""

    path: str  # absolute, where it is now
    name: str  # file name
    caption: str  # "" when there is none (a photo that could not be read)
    caption_by: str  # "loupe" | "person"
    labels: tuple[Label, ...]  # best first, score 0..1
    state: str  # one of REVIEW_STATES[1:]
    reason: str | None  # why it failed, plain words
    done_at: float | None  # epoch seconds the caption was made or edited

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "name": self.name, "caption": self.caption, "caption_by": self.caption_by,
            "labels": [label.to_dict() for label in self.labels], "state": self.state, "reason": self.reason,
            "done_at": self.done_at,
        }


@dataclass(frozen=True)
class PhotoPage:
    total: int  # how many photos match the filter (for "page 2 of 7")
    items: list[PhotoItem]


# Photos known only by a failure (never read) come first; then photos with a record. Each part
# by folder, then name, as a file manager lists them (a folder's own photos together, not split
# around its subfolders as a plain path order would); rtrim(path, <path without separators>)
# is the path's folder.
_FAILED_ONLY = """
SELECT NULL AS pid, f.path AS path, f.name AS name, '' AS caption, 'loupe' AS caption_by, NULL AS labels,
       NULL AS size, NULL AS mtime_ns, NULL AS done_at, f.reason AS reason
  FROM failures f
 WHERE NOT EXISTS (SELECT 1 FROM photos q WHERE q.path = f.path) {where}
"""
_RECORDED = """
SELECT p.id AS pid, p.path AS path, p.name AS name, p.caption AS caption, p.caption_by AS caption_by,
       p.labels AS labels, p.size AS size, p.mtime_ns AS mtime_ns, p.done_at AS done_at, f.reason AS reason
  FROM photos p LEFT JOIN failures f ON f.path = p.path
 WHERE p.path IS NOT NULL {where}
"""
def _by_folder(t: str) -> str:
    sep = os.sep.replace("'", "''")
    return f" ORDER BY rtrim({t}.path, replace({t}.path, '{sep}', '')), {t}.name, {t}.path"


_FAILED_ORDER = _by_folder("f")
_RECORDED_ORDER = _by_folder("p")


def check_query(state: str, offset: int, limit: int) -> None:
    if state not in REVIEW_STATES:
        raise UsageError(f"Unknown state {state!r}; choose one of {', '.join(REVIEW_STATES)}.")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise UsageError("offset must be a whole number of at least 0.")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise UsageError(f"limit must be a whole number from 1 to {MAX_PAGE}.")


def page(index: Index, *, folder: str | None, text: str, state: str, offset: int, limit: int) -> PhotoPage:
    """One page of photos: those never read first, then the others; each by folder, then name.
    See `engine.library.photos`."""
    check_query(state, offset, limit)
    recorded, failed_only, params_r, params_f = [], [], [], []
    if folder is not None:
        lo, hi = under(folder)
        recorded.append("p.path >= ? AND p.path < ?")
        failed_only.append("f.path >= ? AND f.path < ?")
        params_r += [lo, hi]
        params_f += [lo, hi]
    if text.strip():
        match = fts_query(text)
        # A photo never read has no caption or labels to match: only photos with a record.
        recorded.append("p.id IN (SELECT rowid FROM photos_fts WHERE photos_fts MATCH ?)" if match else "0")
        params_r += [match] if match else []
        failed_only.append("0")
    if state == "failed":
        recorded.append("f.path IS NOT NULL")
    elif state != "all":
        recorded.append("f.path IS NULL")
        failed_only.append("0")  # never read: always "failed"
    sql_r = _RECORDED.format(where="".join(" AND " + w for w in recorded))
    sql_f = _FAILED_ONLY.format(where="".join(" AND " + w for w in failed_only))
    if state in ("all", "failed"):
        n_failed = index.query(f"SELECT count(*) FROM ({sql_f})", params_f)[0][0]
        n_recorded = index.query(
            f"SELECT count(*) FROM ({sql_r})" if state == "failed" else
            "SELECT count(*) FROM photos p WHERE p.path IS NOT NULL" + "".join(" AND " + w for w in recorded),
            params_r)[0][0]
        rows = []
        if offset < n_failed:
            rows = index.query(sql_f + _FAILED_ORDER + " LIMIT ? OFFSET ?", [*params_f, limit, offset])
        if len(rows) < limit:
            rows += _recorded_page(index, sql_r, recorded, params_r, limit - len(rows), max(0, offset - n_failed))
        return PhotoPage(n_failed + n_recorded, [_item(r, _state(r)) for r in rows])
    # done / changed / edited need the file on disk: state every candidate (a stat each),
    # then page in memory. 10,000 stats take a few tens of milliseconds.
    rows = index.query(sql_r + _RECORDED_ORDER, params_r)
    matching = [(r, s) for r in rows if (s := _state(r)) == state]
    return PhotoPage(len(matching), [_item(r, s) for r, s in matching[offset:offset + limit]])


def _recorded_page(index: Index, sql_r: str, where: list[str], params: list, limit: int, offset: int) -> list:
    """A page of recorded photos. Without a condition on failures, the ids are paged first on
    the covering index (no join per skipped row: a deep page of 10,000 stays a few ms)."""
    if any("f." in w for w in where):
        return index.query(sql_r + _RECORDED_ORDER + " LIMIT ? OFFSET ?", [*params, limit, offset])
    ids = [r[0] for r in index.query(
        "SELECT p.id FROM photos p WHERE p.path IS NOT NULL" + "".join(" AND " + w for w in where)
        + _RECORDED_ORDER + " LIMIT ? OFFSET ?", [*params, limit, offset])]
    if not ids:
        return []
    found = {r["pid"]: r for r in index.query(
        _RECORDED.format(where=f" AND p.id IN ({','.join('?' * len(ids))})"), ids)}
    return [found[i] for i in ids if i in found]


def one(index: Index, path: str) -> PhotoItem | None:
    rows = index.query(_RECORDED.format(where=" AND p.path = ?"), [path]) \
        or index.query(_FAILED_ONLY.format(where=" AND f.path = ?"), [path])
    return _item(rows[0], _state(rows[0])) if rows else None


def _state(r: sqlite3.Row) -> str:
    if r["reason"] is not None or r["pid"] is None:
        return "failed"
    try:
        st = os.stat(r["path"])
    except OSError:
        return "changed"  # gone (or unreachable)
    if (st.st_size, st.st_mtime_ns) != (r["size"], r["mtime_ns"]):
        return "changed"
    return "edited" if r["caption_by"] == "person" else "done"


def _item(r: sqlite3.Row, state: str) -> PhotoItem:
    return PhotoItem(
        path=r["path"], name=r["name"] or Path(r["path"]).name, caption=r["caption"] or "",
        caption_by=r["caption_by"] or "loupe", labels=_labels(r["labels"]), state=state, reason=r["reason"],
        done_at=r["done_at"],
    )


def ids_in_state(index: Index, state: str, folder: str | None = None) -> set[int] | None:
    """Record ids of the photos in `state` (under `folder`), for search's filter; None for "all"
    (no filter). A photo never read has no record, so "failed" gives only recorded ones."""
    check_query(state, 0, 1)
    if state == "all":
        return None
    where, params = [], []
    if folder is not None:
        lo, hi = under(folder)
        where.append("p.path >= ? AND p.path < ?")
        params += [lo, hi]
    rows = index.query(_RECORDED.format(where="".join(" AND " + w for w in where)), params)
    return {int(r["pid"]) for r in rows if _state(r) == state}
