"""The plain records the scan's stages pass each other, and the summary they add up to.

    plan.py     Path -> Found (identified: stat + content hash) -> Decision (what to do)
    compute.py  Decision "todo" -> (Decision, {task: result} | a per-photo problem)
    writers.py  one photo's result -> Files (what was written, renamed, said)
    record.py   a batch of Entry -> one index transaction

No behaviour here beyond counting: every record is data, so a stage can run anywhere (a
thread, a Ray worker's answer, a test) and the next one reads it without calling back.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import leave_out
from .index import Known, PhotoRow

# A photo not written because its folder is read-only (a card, a read-only share): the summary
# says it once per folder (ScanSummary.problem_lines), not once per photo.
READ_ONLY_FOLDER = "read-only folder: not written"


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
    "linked": ("linked, RAW or non-embeddable photo given a sidecar",
               "linked, RAW or non-embeddable photos given sidecars"),
    "gone-sidecar": ("sidecar of a photo no longer there kept", "sidecars of photos no longer there kept"),
    "gone-sidecar-removed": ("sidecar of a photo no longer there deleted",
                             "sidecars of photos no longer there deleted"),
}


@dataclass
class Found:
    """A photo found by the walk and identified: its stat and the sha256 of its bytes (taken
    from the index when size and mtime are unchanged), or why it cannot be read."""

    path: Path
    st: os.stat_result | None = None
    file_hash: str | None = None
    error: str | None = None


# what the plan decides for one photo
TODO, SKIP, DUPLICATE, FAILED, COPY = "todo", "skip", "duplicate", "failed", "copy"


@dataclass(frozen=True)
class Decision:
    """What the scan does with one photo.

    todo: compute `tasks` (the others' results are kept from `known`); skip: done before with
    these settings, only its files are brought up to date (`moved`: its record moves here);
    duplicate: the same bytes as a photo elsewhere, done once for both; failed: `found.error`;
    copy: the same bytes as a photo in flight in this scan, decided again once that one is
    recorded."""

    found: Found
    kind: str
    known: Known | None = None
    tasks: tuple[str, ...] = ()
    moved: bool = False
    relocate: bool = False  # skip: size, mtime, hash or path differ from the record's

    @property
    def path(self) -> str:
        return str(self.found.path)


@dataclass(frozen=True)
class Location:
    """A file as it is now: after Loupe embedded into it, its new bytes' hash and stat."""

    size: int
    mtime_ns: int
    file_hash: str
    bytes_written_key: str | None = None  # set for bytes Loupe produced by embedding


@dataclass
class Files:
    """What the writers did for one photo (writers.py); record.py turns it into index rows."""

    found_at: str  # where the scan found the photo
    path: str  # where it is now (after a rename)
    written_key: str | None = None  # the record's written key, set when a writer ran
    changed: bool = False  # a sidecar or the photo itself was changed
    location: Location | None = None  # new bytes (embedding)
    renamed_from: str | None = None
    problems: list[Problem] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)


@dataclass
class Entry:
    """One photo's line in a batch's transaction."""

    decision: Decision
    status: str  # "done", "skipped" or "failed"
    row: PhotoRow | None = None  # done: the results to save (id -1: a new record); skipped: the record
    files: Files | None = None
    problem: Problem | None = None  # failed: why
    notices: list[Notice] = field(default_factory=list)
    embedding: Any = None  # done with the "embed" task: the image embedding (float32 [D]) to store


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
    embedded: int = 0  # photos given an image embedding (search by meaning) in this run
    cancelled: bool = False
    elapsed_s: float = 0.0
    inference_s: float = 0.0  # of which in the engine's inference
    rate: float = 0.0  # photos captioned per second of this run, end to end
    problems: list[Problem] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # said once per scan (e.g. search by meaning is off)
    left_out: dict[str, int] = field(default_factory=dict)  # leave_out.REASONS key -> files not looked at
    gone: list[str] = field(default_factory=list)  # photos of this folder no longer there (dropped from search)
    gone_sidecars: list[str] = field(default_factory=list)  # sidecars Loupe wrote for them (kept)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["left_out_text"] = leave_out.words(self.left_out)
        out["problem_lines"] = [{"path": p, "reason": r} for p, r in self.problem_lines()]
        return out

    def problem_lines(self) -> list[tuple[str, str]]:
        """(path, reason) per problem, except that photos not written because their folder is
        read-only make one line per folder, with advice that works there."""
        lines, read_only = [], Counter()
        for p in self.problems:
            if p.reason == READ_ONLY_FOLDER:
                read_only[os.path.dirname(p.path)] += 1
            else:
                lines.append((p.path, p.reason))
        for folder, n in read_only.items():
            where = "the card" if any(part.upper() == "DCIM" for part in Path(folder).parts) else "the folder"
            lines.append((folder, f"{where} is read-only ({n} photo{'s' * (n != 1)} not written): copy the photos "
                                  "to a writable folder, or write results nowhere (--write none); the captions "
                                  "are kept in Loupe's index"))
        return lines

    def handled(self) -> int:
        return self.done + self.skipped + self.duplicates + self.failed

    def count(self, entry: Entry) -> None:
        """Add one photo's entry (its files, problems and notices) to the counts."""
        self.embedded += entry.embedding is not None
        if entry.status == "done" and not set(entry.decision.tasks) - {"embed"}:
            self.skipped += 1  # only its embedding was missing: its caption and labels were done before
        elif entry.status == "done":
            self.done += 1
        elif entry.status == "failed":
            self.failed += 1
        elif entry.decision.kind == DUPLICATE:
            self.duplicates += 1
        else:
            self.skipped += 1
        if entry.problem is not None:
            self.problems.append(entry.problem)
        self.notices.extend(entry.notices)
        files = entry.files
        if files is not None:
            self.written += files.changed
            self.renamed += files.renamed_from is not None
            self.write_failed += sum(p.stage == "write" for p in files.problems)
            self.problems.extend(files.problems)
            self.notices.extend(files.notices)

    def decisions_text(self) -> str:
        """", 1 descriptions kept, 2 duplicates": each kind of decision that occurred, counted."""
        counts = Counter(n.kind for n in self.notices if n.kind != "duplicate")
        counts["duplicate"] = self.duplicates  # every one, also those told by an earlier scan
        text = "".join(f", {counts[kind]} {words[counts[kind] != 1]}" for kind, words in NOTICE_KINDS.items()
                       if counts[kind])
        left = leave_out.words(self.left_out)
        if left:
            text += "; left out: " + ", ".join(left)
        if self.gone:
            text += f"; {len(self.gone)} photo{'s' * (len(self.gone) != 1)} no longer there"
        return text


class Told:
    """Decisions already told (by earlier scans or this one): each is told once."""

    def __init__(self, told: set[tuple[str, str, str]]) -> None:
        self.told = told

    def notice(self, path: str, kind: str, message: str) -> list[Notice]:
        """[the Notice], or [] when it was told before."""
        if (path, kind, message) in self.told:
            return []
        self.told.add((path, kind, message))
        return [Notice(path, kind, message)]
