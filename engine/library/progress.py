"""Scan progress: what the callback receives, the rate/ETA meter, and a tqdm bar for the CLI."""
from __future__ import annotations

import contextlib
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator


@dataclass(frozen=True)
class ScanProgress:
    """One report. `done` counts every photo handled (captioned, already done, or failed)."""

    done: int
    total: int
    rate: float  # photos handled per second, over the last ~20 s
    eta_s: float | None  # seconds left at that rate; None until there is a rate
    path: str  # the photo just handled
    inferred: int = 0
    skipped: int = 0
    failed: int = 0

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

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

    bar = tqdm(total=0, unit="photo", file=file or sys.stderr, disable=disable, dynamic_ncols=True)

    def update(p: ScanProgress) -> None:
        if bar.total != p.total:
            bar.total = p.total
        bar.n = p.done
        bar.set_postfix(failed=p.failed, skipped=p.skipped, refresh=False)
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()
