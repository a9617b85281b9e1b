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


# Photos with a record, and photos known only by a failure (never read). `sid` orders by scan.
_ROWS = """
SELECT p.id AS pid, p.path AS path, p.name AS name, p.caption AS caption, p.caption_by AS caption_by,
       p.labels AS labels, p.size AS size, p.mtime_ns AS mtime_ns, p.done_at AS done_at,
       COALESCE(f.scan_id, p.scan_id) AS sid, f.reason AS reason
  FROM photos p LEFT JOIN failures f ON f.path = p.path
 WHERE p.path IS NOT NULL {photo_filter}
UNION ALL
SELECT NULL, f.path, f.name, '', 'loupe', NULL, NULL, NULL, NULL, f.scan_id, f.reason
  FROM failures f
 WHERE NOT EXISTS (SELECT 1 FROM photos q WHERE q.path = f.path) {failure_filter}
"""
_ORDER = " ORDER BY sid DESC, name, path"


def check_query(state: str, offset: int, limit: int) -> None:
    if state not in REVIEW_STATES:
        raise UsageError(f"Unknown state {state!r}; choose one of {', '.join(REVIEW_STATES)}.")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise UsageError("offset must be a whole number of at least 0.")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise UsageError(f"limit must be a whole number from 1 to {MAX_PAGE}.")


def page(index: Index, *, folder: str | None, text: str, state: str, offset: int, limit: int) -> PhotoPage:
    """One page of photos, newest scan first then by name. See `engine.library.photos`."""
    check_query(state, offset, limit)
    photo_filter, failure_filter, params_p, params_f = [], [], [], []
    if folder is not None:
        lo, hi = under(folder)
        photo_filter.append("p.path >= ? AND p.path < ?")
        failure_filter.append("f.path >= ? AND f.path < ?")
        params_p += [lo, hi]
        params_f += [lo, hi]
    match = fts_query(text)
    if text.strip():
        # A photo never read has no caption or labels to match: only photos with a record.
        photo_filter.append("p.id IN (SELECT rowid FROM photos_fts WHERE photos_fts MATCH ?)" if match else "0")
        if match:
            params_p.append(match)
        failure_filter.append("0")
    if state == "failed":
        photo_filter.append("f.path IS NOT NULL")
    elif state != "all":
        photo_filter.append("f.path IS NULL")
        failure_filter.append("0")  # never read: always "failed"
    sql = _ROWS.format(photo_filter="".join(" AND " + f for f in photo_filter),
                       failure_filter="".join(" AND " + f for f in failure_filter))
    params = params_p + params_f
    if state in ("all", "failed"):
        total = index.query(f"SELECT count(*) FROM ({sql})", params)[0][0]
        rows = index.query(sql + _ORDER + " LIMIT ? OFFSET ?", [*params, limit, offset])
        return PhotoPage(total, [_item(r, _state(r)) for r in rows])
    # done / changed / edited need the file on disk: state every candidate (a stat each),
    # then page in memory. 10,000 stats take a few tens of milliseconds.
    rows = index.query(sql + _ORDER, params)
    matching = [(r, s) for r in rows if (s := _state(r)) == state]
    return PhotoPage(len(matching), [_item(r, s) for r, s in matching[offset:offset + limit]])


def one(index: Index, path: str) -> PhotoItem | None:
    rows = index.query(
        _ROWS.format(photo_filter=" AND p.path = ?", failure_filter=" AND f.path = ?"), [path, path]
    )
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
