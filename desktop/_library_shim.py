"""TEMPORARY: the libengine contract on top of the current engine, until wt-libengine lands.
Delete before the final commit."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from engine import library as _real
from engine.errors import UsageError
from engine.models.registry import Option
from engine.results import Label

REVIEW_STATES = ("all", "done", "failed", "changed", "edited")
CAPTION_STYLES = {"detailed": ("Detailed (slower)", {"num_beams": 3}), "quick": ("Quick", {"num_beams": 1})}
KEYWORD_THRESHOLD = Option("keyword_threshold", "Keywords from labels above", int, 10, 0, 100,
                           "Labels less sure than this (percent) are not written as keywords.", "--keyword-threshold")


@dataclass(frozen=True)
class PhotoItem:
    path: str
    name: str
    caption: str
    caption_by: str
    labels: tuple
    state: str
    reason: str | None
    done_at: float | None


@dataclass(frozen=True)
class PhotoPage:
    total: int
    items: list


@dataclass(frozen=True)
class EditResult:
    path: str
    written: str | None
    message: str


_edited: dict[str, str] = {}


def _rows(folder):
    from engine.library.index import Index
    db = _real.default_db_path()
    if not db.exists():
        return []
    with Index(db) as index:
        rows = index.query("SELECT path, name, caption, labels, done_at, size, mtime_ns FROM photos WHERE path IS NOT NULL ORDER BY scan_id DESC, name")
        failed = index.query("SELECT path, reason FROM scan_items WHERE status='failed' AND scan_id=(SELECT max(id) FROM scans)")
    out = []
    for r in rows:
        p = r["path"]
        if folder and not p.startswith(str(Path(folder).expanduser().resolve()) + os.sep):
            continue
        labels = tuple(Label(d["name"], d["score"], d["index"]) for d in json.loads(r["labels"]))
        try:
            st = os.stat(p)
            changed = st.st_size != r["size"] or st.st_mtime_ns != r["mtime_ns"]
        except OSError:
            changed = True
        by = "person" if p in _edited else "loupe"
        cap = _edited.get(p, r["caption"])
        state = "edited" if by == "person" else "changed" if changed else "done"
        out.append(PhotoItem(p, r["name"], cap, by, labels, state, None, r["done_at"]))
    for r in failed:
        if folder and not r["path"].startswith(str(Path(folder).expanduser().resolve()) + os.sep):
            continue
        out.append(PhotoItem(r["path"], Path(r["path"]).name, "", "loupe", (), "failed", r["reason"], None))
    return out


def photos(*, folder=None, text="", state="all", offset=0, limit=48, db_path=None):
    if state not in REVIEW_STATES:
        raise UsageError(f"unknown state {state}")
    items = _rows(folder)
    if state != "all":
        items = [i for i in items if i.state == state]
    words = text.lower().split()
    items = [i for i in items if all(w in (i.caption + " " + i.name + " " + " ".join(l.name for l in i.labels)).lower() for w in words)]
    return PhotoPage(len(items), items[offset:offset + limit])


def photo(path, *, db_path=None):
    return next((i for i in _rows(None) if i.path == path), None)


def set_caption(path, caption, *, write=None, sidecar_style=None, db_path=None):
    from engine.library import xmp
    if not caption.strip():
        raise UsageError("Type a caption first.")
    item = photo(path)
    if item is None:
        raise UsageError("not in the index")
    res = xmp.write_sidecar(Path(path), caption.strip(), [l.name for l in item.labels], existing="replace")
    _edited[path] = caption.strip()
    return EditResult(path, str(res.path), f"Saved; written to {res.path.name}.")


def thumbnail(path, size=320):
    from engine import paths
    from engine.images import load_image
    st = os.stat(path)
    out = paths.data_dir() / "thumbnails" / f"{abs(hash((path, st.st_size, st.st_mtime_ns, size)))}.jpg"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        img = load_image(path, draft_size=(size, size))
        img.thumbnail((size, size))
        img.save(out, "JPEG", quality=85)
    return out


def scan(folder, *, caption_style="detailed", keyword_threshold=10, progress=None, **kw):
    kw.update(CAPTION_STYLES[caption_style][1])
    if kw.get("prefix") == "":
        kw.pop("prefix")

    def report(p):
        if progress:
            progress(SimpleNamespace(**p.to_dict(), current=Path(p.path).name, phase="captioning",
                                     fraction=p.fraction))
    if progress:
        progress(SimpleNamespace(done=0, total=0, rate=0.0, eta_s=None, path="", current="", phase="finding",
                                 inferred=0, skipped=0, failed=0, fraction=0.0))
    return _real.scan(folder, progress=report, **kw)


def __getattr__(name: str) -> Any:
    return getattr(_real, name)
