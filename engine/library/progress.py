"""Scan progress: what the callback receives, the rate/ETA meter, and a tqdm bar for the CLI."""
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
    failed). Reports come at least once per photo handled and at the start of each batch,
    at most ~10 a second (a batch start, the first and the last always); the first comes
    before any model work, in phase "finding" with total 0."""

    done: int
    total: int
    rate: float  # photos captioned per second over the last ~20 s (photos already done do not count)
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
        """Share of the folder handled, counting the batch being captioned by its progress."""
        return min(1.0, (self.done + self.working * self.batch) / self.total) if self.total else 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ProgressCallback = Callable[[ScanProgress], None]


class Meter:
    """Rate over a sliding window, so a resumed scan's fast skips do not distort the ETA for long."""

    def __init__(self, window_s: float = 20.0) -> None:
        self.window_s = window_s
        self.samples: deque[tuple[float, int]] = deque()

    def rate(self, done: int, now: float | None = None) -> float:
        now = time.perf_counter() if now is None else now
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[1][0] > self.window_s:
            self.samples.popleft()
        t0, d0 = self.samples[0]
        return (done - d0) / (now - t0) if now > t0 else 0.0


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
