"""Scan progress: what the callback receives, the throughput meter, and a tqdm bar for the CLI."""
from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

from ..units import format_duration


PHASES = ("finding", "checking", "captioning", "writing", "finished")


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


class Throughput:
    """Photos per second, end to end (decode, models, writes), measured between batches'
    results over the last `window` batches. The first batch carries the models' first load:
    it counts (from its start) only until a second batch has finished."""

    def __init__(self, window: int = 8) -> None:
        self.finished: deque[tuple[float, int]] = deque(maxlen=window + 1)  # (when, photos)
        self.origin: float | None = None  # the first batch's start

    def start(self, now: float) -> None:
        if self.origin is None:
            self.origin = now

    def finish(self, photos: int, now: float) -> None:
        if photos > 0 and self.origin is not None:
            self.finished.append((now, photos))

    def rate(self) -> float:
        if not self.finished:
            return 0.0
        if len(self.finished) == 1:
            (when, photos), = self.finished
            return photos / (when - self.origin) if when > self.origin else 0.0  # type: ignore[operator]
        seconds = self.finished[-1][0] - self.finished[0][0]
        return sum(n for _, n in list(self.finished)[1:]) / seconds if seconds > 0 else 0.0

    def eta(self, photos: int, now: float) -> float | None:
        """Seconds for `photos` more, less the time since the last batch's results."""
        rate = self.rate()
        if rate <= 0:
            return None
        return max(0.0, photos / rate - (now - self.finished[-1][0]))


class Reporter:
    """The scan's reports to `progress` (at most ~10 a second unless forced)."""

    def __init__(self, progress: ProgressCallback | None, summary: Any) -> None:
        self.progress = progress
        self.summary = summary
        self.expect_skip: set[str] = set()  # photos likely done already: not counted in the time left
        self.meter = Throughput()
        self.batch_now = 0  # photos in the batch being captioned
        self.batch_path = ""  # its first photo
        self.working = 0.0
        self.last = -1.0

    def batch(self, paths: list[str]) -> None:
        self.meter.start(time.perf_counter())
        self.batch_now, self.working = len(paths), 0.0
        self.batch_path = paths[0] if paths else ""
        if paths:
            self(self.batch_path, "captioning", force=True)

    def step(self, fraction: float) -> None:
        self.working = fraction
        self(self.batch_path, "captioning")

    def computed(self, photos: int) -> None:
        self.meter.finish(photos, time.perf_counter())
        self.batch_now, self.working = 0, 0.0

    def __call__(self, path: str, phase: str, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.perf_counter()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        s = self.summary
        to_caption = max(0, s.total - s.handled() - len(self.expect_skip))
        eta = self.meter.eta(to_caption, now)
        if eta is None and phase == "finished":
            eta = 0.0
        batch = self.batch_now if phase == "captioning" else 0
        self.progress(ScanProgress(s.handled(), s.total, self.meter.rate(), eta, path, s.done,
                                   s.skipped + s.duplicates, s.failed, current="" if phase == "finished" else path,
                                   phase=phase, batch=batch, working=self.working if batch else 0.0))


@contextlib.contextmanager
def progress_bar(*, file: Any = None, disable: bool | None = None) -> Iterator[ProgressCallback]:
    """A callback drawing a tqdm bar on stderr: `with progress_bar() as cb: scan(..., progress=cb)`."""
    from tqdm import tqdm

    # tqdm's own rate and ETA would count photos already done; show the scan's instead.
    bar = tqdm(total=0, unit="photo", file=file or sys.stderr, disable=disable, dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} {postfix}")

    def update(p: ScanProgress) -> None:
        if bar.total != p.total:
            bar.total = p.total
        bar.n = p.done
        speed = f"{p.rate:.2f} photos/s" if p.rate else "-"
        left = format_duration(p.eta_s) if p.eta_s is not None else "-"
        bar.set_postfix_str(f"{speed}, {left} left, {p.failed} failed {p.phase} {p.name}"[:120], refresh=False)
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()
