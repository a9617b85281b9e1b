"""The scan's first stage: walk -> identify -> a decision per photo.

    walk      every photo under the folder, once, links followed; what is left out counted by
              reason (walk.py, leave_out.py; unreadable folders said)
    identify  stat + sha256 of the bytes, taken from the index when size and mtime are
              unchanged (no re-read), in loader threads
    decide    todo (which tasks), skip (done with these settings: files only), duplicate
              (same bytes as a photo elsewhere), failed (cannot be read), copy (same bytes as
              a photo in flight in this scan: decided again once that one is recorded)

`Plan` holds what the index knew at scan start (read once, so loader threads never touch the
database) and is kept up to date by the record stage (`remember`)."""
from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..files import os_reason, sha256_file
from .index import Index, Known, PhotoRow
from .keys import ResultKeys
from .leave_out import Excludes, parse_patterns
from .readahead import readahead
from .records import COPY, DUPLICATE, FAILED, SKIP, TODO, Decision, Found
from .walk import Walked, walk


class Plan:
    def __init__(self, index: Index, keys: ResultKeys) -> None:
        self.keys = keys
        self.by_path, self.known = index.snapshot()
        self.in_flight: set[str] = set()  # content hashes sent to compute, not yet recorded

    def walk(self, folder: Path, exclude: str | None, on_error: Callable[[OSError], None]) -> Walked:
        """The photos under `folder` and what was left out (walk.py); `exclude`: the person's
        patterns (options.EXCLUDE), beside any .loupeignore files."""
        excludes = Excludes()
        excludes.add(folder, parse_patterns(exclude))
        return walk(folder, excludes, on_error)

    def likely_done(self, path: Path) -> bool:
        """Done before with these settings and unchanged since (a stat, no read)."""
        row = self.by_path.get(str(path))
        if row is None or self.keys.missing(row):
            return False
        try:
            st = path.stat()
        except OSError:
            return False
        return (st.st_size, st.st_mtime_ns) == (row.size, row.mtime_ns)

    def identify(self, path: Path) -> Found:
        """In a loader thread: no database here (`by_path` is only read)."""
        found = Found(path)
        try:
            found.st = path.stat()
            if not stat.S_ISREG(found.st.st_mode):
                # A FIFO or device named like a photo: reading it would block or never end.
                found.error = "not a regular file"
                return found
            row = self.by_path.get(str(path))
            if row is not None and (row.size, row.mtime_ns) == (found.st.st_size, found.st.st_mtime_ns):
                found.file_hash = row.file_hash  # unchanged since last seen: no re-read
            else:
                found.file_hash = sha256_file(path)
        except OSError as exc:
            found.error = f"cannot read ({os_reason(exc)})"
        return found

    def identified(self, paths: Iterable[Path], *, workers: int, ahead: int,
                   cancel: threading.Event) -> Iterator[Found]:
        """Found per path, in walk order, hashed in `workers` threads; stops on `cancel`."""
        for path, found in readahead(self.identify, paths, workers=workers, ahead=ahead, cancel=cancel,
                                     name="loupe-hash"):
            if found is None:
                return
            yield found

    def decide(self, found: Found) -> Decision:
        """One photo's decision (see the module's docstring)."""
        if found.error is not None:
            return Decision(found, FAILED)
        assert found.file_hash is not None and found.st is not None
        if found.file_hash in self.in_flight:
            return Decision(found, COPY)
        known = self.known.get(found.file_hash)
        tasks = self.keys.missing(known.row) if known is not None else self.keys.tasks
        if tasks:
            self.in_flight.add(found.file_hash)
            return Decision(found, TODO, known, tasks)
        row, path = known.row, str(found.path)  # type: ignore[union-attr]
        moved = row.path != path and (row.path is None or not os.path.exists(row.path))
        if row.path != path and not moved:
            return Decision(found, DUPLICATE, known)
        relocate = moved or (row.size, row.mtime_ns, row.file_hash) != (
            found.st.st_size, found.st.st_mtime_ns, found.file_hash)
        return Decision(found, SKIP, known, moved=moved, relocate=relocate)

    def remember(self, row: PhotoRow, written: tuple[str, str | None] | None = None) -> None:
        """The record stage saved `row` (and, embedding, new bytes `written` = (hash, key))."""
        self.in_flight.discard(row.hash)
        self.known[row.hash] = Known(row, None)
        if row.path is not None:
            self.by_path[row.path] = row
        if written is not None:
            self.known[written[0]] = Known(row, written[1])

    def forget(self, decision: Decision) -> None:
        """A photo sent to compute was not recorded (failed, stopped): its copies go again."""
        if decision.found.file_hash is not None:
            self.in_flight.discard(decision.found.file_hash)
