"""Scan progress: what the callback receives, the throughput meter, and a tqdm bar for the CLI."""
from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

from ..units import format_duration
from .time_left import TimeLeft


PHASES = ("finding", "checking", "captioning", "writing", "finished", "stopped")
#: the last report's phase: all done, or stopped (Stop, Ctrl-C) with photos left
ENDED = ("finished", "stopped")


@dataclass(frozen=True)
class ScanProgress:
    """One report. `done` counts every photo handled (captioned, already done, duplicate or
    failed) and moves photo by photo. Reports come at least once per photo handled and at the
    start of each batch, at most ~10 a second (a batch start, the first and the last always);
    the first comes before any model work, in phase "finding" with total 0."""

    done: int
    total: int
    rate: float  # photos captioned per second, measured over the last batches (skips do not count)
    eta_s: float | None  # seconds left for the photos still to caption; None until there is a rate
    path: str  # the photo just handled
    inferred: int = 0  # captioned in this run
    skipped: int = 0  # already done, or a duplicate of another photo
    failed: int = 0
    current: str = ""  # the file being worked on now ("" when none)
    phase: str = "checking"  # one of PHASES
    batch: int = 0  # photos being captioned together now (0 outside "captioning")
    working: float = 0.0  # how far that batch's captions are, 0-1 (by generation step)

    @property
    def name(self) -> str:
        """The current file's name, for one line of text."""
        return os.path.basename(self.current)

    @property
    def fraction(self) -> float:
        """Share of the folder handled: the count, photo by photo (never ahead of it)."""
        return min(1.0, self.done / self.total) if self.total else 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ProgressCallback = Callable[[ScanProgress], None]


class Reporter:
    """The scan's reports to `progress` (at most ~10 a second unless forced)."""

    def __init__(self, progress: ProgressCallback | None, summary: Any, clock: Callable[[], float] = time.perf_counter) -> None:
        self.progress = progress
        self.summary = summary
        self.clock = clock
        self.expect_skip: set[str] = set()  # photos likely done already: not counted in the time left
        self.computing: set[str] = set()  # in a batch (in flight, or computed and not yet handled)
        self.meter = TimeLeft()
        self.batch_now = 0  # photos in the batch being captioned
        self.batch_path = ""  # its first photo
        self.working = 0.0
        self.last = -1.0

    def batch(self, paths: list[str]) -> None:
        self.meter.started(len(paths), self.clock())
        self.computing.update(paths)
        self.expect_skip.difference_update(paths)
        self.batch_now, self.working = len(paths), 0.0
        self.batch_path = paths[0] if paths else ""
        if paths:
            self(self.batch_path, "captioning", force=True)

    def step(self, fraction: float) -> None:
        self.meter.step(fraction, self.clock())
        self.working = fraction
        self(self.batch_path, "captioning")

    def computed(self, photos: int) -> None:
        self.meter.finished(photos, self.clock())
        self.batch_now, self.working = 0, 0.0

    def handled(self, path: str) -> None:
        """One photo counted in the summary (done, skipped or failed): no longer ahead."""
        self.expect_skip.discard(path)
        self.computing.discard(path)

    def __call__(self, path: str, phase: str, force: bool = False) -> None:
        if self.progress is None:
            return
        now = self.clock()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        s = self.summary
        waiting = max(0, s.total - s.handled() - len(self.expect_skip) - len(self.computing))
        eta = self.meter.eta(waiting, now)
        if phase in ENDED:
            eta = 0.0
        batch = self.batch_now if phase == "captioning" else 0
        self.progress(ScanProgress(s.handled(), s.total, self.meter.rate(), eta, path, s.done,
                                   s.skipped + s.duplicates, s.failed, current="" if phase in ENDED else path,
                                   phase=phase, batch=batch, working=self.working if batch else 0.0))


@contextlib.contextmanager
def progress_bar(*, file: Any = None, disable: bool | None = None) -> Iterator[ProgressCallback]:
    """A callback drawing a tqdm bar on stderr: `with progress_bar() as cb: scan(..., progress=cb)`."""
    from tqdm import tqdm

    # tqdm's own rate and ETA would count photos already done; show the scan's instead.
    bar = tqdm(total=0, unit="photo", file=file or sys.stderr, disable=disable, dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt}{postfix}")  # tqdm puts ", " before a postfix

    def update(p: ScanProgress) -> None:
        if bar.total != p.total:
            bar.total = p.total
        bar.n = p.done
        speed = f"{p.rate:.2f} photos/s" if p.rate else "-"
        if p.phase in ENDED:  # no time left to say, and no last photo's name
            bar.set_postfix_str(f"{speed}, {p.failed} failed, {p.phase}", refresh=False)
        else:
            left = format_duration(p.eta_s) if p.eta_s is not None else "-"
            bar.set_postfix_str(f"{speed}, {left} left, {p.failed} failed {p.phase} {p.name}"[:120], refresh=False)
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()
