"""CSV and JSON export of the index (or of one scan), written atomically."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ..errors import LoupeError, UsageError
from ..files import atomic_write
from ..images import is_photo_name
from ..names import json_text
from .index import Index

FORMATS = ("csv", "json")
_CSV_COLUMNS = ("path", "name", "caption", "your_caption", "caption_by", "labels", "hash", "size", "mtime", "settings_key", "done_at")
_SCAN_COLUMNS = ("status", "written", "reason")


def format_for(path: Path, fmt: str | None) -> str:
    """"csv" or "json" for an export to `path`: `fmt` if given, else the extension. UsageError
    for any other format, and for a photo's name (`IMG_1.jpg` with format csv would replace
    the photo with a table)."""
    if is_photo_name(path):
        raise UsageError(f"Will not export to {path.name!r}: that is a photo's name. Choose a .csv or .json name.")
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise UsageError(f"Cannot tell the export format from {path.name!r}: use a .csv or .json name, "
                         "or give the format (csv or json).")
    return fmt


def _cell(value: Any) -> Any:
    # Spreadsheets run cells starting with = + - @ as formulas (CSV injection); a file name
    # like "=HYPERLINK(...).jpg" must stay text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def render(rows: list[dict[str, Any]], fmt: str, *, scan: bool) -> bytes:
    if fmt == "json":
        # a name that is not UTF-8 keeps its exact str as a \udcXX escape (names.py)
        return (json_text(json.dumps(rows, indent=2, ensure_ascii=False)) + "\n").encode("utf-8")
    buf = io.StringIO()
    columns = _CSV_COLUMNS + (_SCAN_COLUMNS if scan else ())
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        flat = dict(row)
        flat["labels"] = "; ".join(f"{l['name']} ({l['score']:.3f})" for l in row["labels"])
        writer.writerow([_cell("" if flat.get(c) is None else flat.get(c)) for c in columns])
    # utf-8-sig: Excel opens UTF-8 captions correctly only with the BOM. A name that is not
    # UTF-8 is written as the OS's own bytes (surrogateescape), so the path in the cell opens the file.
    return buf.getvalue().encode("utf-8-sig", "surrogateescape")


def export_index(index: Index, path: Path, fmt: str | None = None, scan_id: int | None = None) -> int:
    fmt = format_for(path, fmt)
    rows = index.export_rows(scan_id)
    data = render(rows, fmt, scan=scan_id is not None)
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise LoupeError(f"Cannot write {path}: {exc.strerror or exc}") from None
    return len(rows)
