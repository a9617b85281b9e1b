"""Stop, where photos are captioned in batches: ends within GRACE_S and loses about one photo's work.

    stop = GracefulStop(cancel)             # cancel: the person's Stop (the Stop button, Ctrl-C)
    size = stop.next_batch(cap)             # before each batch: how many photos to put in it
    stop.started(photos) / stop.step(f) / stop.finished(photos)   # the batch loop's hooks
    engine.infer(..., cancel=stop)          # what the models poll: `is_set()`, as an Event's

A batch's captions come all at once, so Stop inside a batch either waits for it or throws it
away. When Stop is pressed with a batch in flight that is expected to end within `grace_s`,
the batch is let finish (its photos are kept) and nothing starts after it; otherwise the
models stop at once (Cancelled), as they do when no batch is in flight. "Expected" comes from
the batch's own generation steps (left = elapsed * (1 - f) / f, plus the tail after the last
step that the previous batch took), or before its first step from the previous batch's seconds
per photo; with nothing measured yet it stops at once. The grace is a deadline whatever the
estimate said: once it passes `is_set()` is True, and the models poll it at every layer and
generation step, so an overrunning batch is stopped within one layer of it (no timer thread).

So a batch that Stop cannot wait for loses at most its length less the grace. `next_batch`
keeps that within what one photo alone takes (the one-at-a-time loss): the first batch is one
photo (its result is on screen soonest, and it measures `alone`); after that the batch is the
largest, up to the registry's size for the setting and twice the largest batch measured so
far, whose expected length is at most grace + alone. The length of a batch of n is a + b * n, fitted over the latest batch of each
size measured; with one size measured, its seconds per photo times n (a larger batch costs
less per photo: safe). When a photo alone takes longer than the grace, that allows no
growth, so one batch of two is tried to find the fixed part (BLIP's decoder costs much the
same for 1 or 2 photos): that one batch may lose up to 2 x alone - grace. bench/README.md,
"Stop and batch size", has the figures (the throughput kept against fixed batches of 8).
"""
from __future__ import annotations

import threading
import time
from typing import Callable

GRACE_S = 1.5  # the longest Stop waits for a batch in flight: Stop ends within ~2 s with writes


class GracefulStop:
    """The stop flag the batch loop and the models see, over the person's `asked` Event; see
    the module. Times in seconds on `clock` (monotonic). Thread-safe."""

    def __init__(self, asked: threading.Event, grace_s: float = GRACE_S,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.asked = asked
        self.grace_s = grace_s
        self.clock = clock
        self._lock = threading.Lock()
        self._start: float | None = None  # the batch in flight (None between batches)
        self._photos = 0
        self._step: tuple[float, float] | None = None  # (when, fraction) of its last step report
        self._per_photo: float | None = None  # seconds per photo of the last batch
        self._alone: float | None = None  # seconds of the last batch of one photo
        self._lengths: dict[int, float] = {}  # photos -> seconds, the latest batch of each size
        self._tail = 0.0  # seconds from the last batch's last step to its results (labels, embeddings)
        self._deadline: float | None = None  # set when Stop is first seen: the flag is up from then
        self.waited = False  # Stop waited for a batch in flight (said by `waiting`)

    # -- the batch loop's hooks
    def started(self, photos: int) -> None:
        """A batch of `photos` starts computing."""
        with self._lock:
            self._start, self._photos, self._step = self.clock(), photos, None

    def step(self, fraction: float) -> None:
        """The batch in flight is `fraction` (0-1) of the way through its generation steps."""
        with self._lock:
            if self._start is not None:
                self._step = (self.clock(), fraction)

    def finished(self, photos: int) -> None:
        """The batch in flight has its results (`photos` of them computed): its time is measured."""
        with self._lock:
            if self._start is None:
                return
            now = self.clock()
            if photos > 0 and now > self._start:
                self._per_photo = (now - self._start) / photos
                self._lengths[photos] = now - self._start
                if photos == 1:
                    self._alone = now - self._start
            if self._step is not None and self._step[1] >= 1.0:
                self._tail = max(0.0, now - self._step[0])
            self._start, self._photos, self._step = None, 0, None

    # -- the flag
    def is_set(self) -> bool:
        """Whether the models should stop now: Stop was asked and either no batch is in flight,
        the one in flight is not expected to end within the grace, or the grace is over."""
        if not self.asked.is_set():
            return False
        with self._lock:
            now = self.clock()
            if self._start is None:
                return True
            if self._deadline is None:
                left = self._left(now)
                self.waited = left is not None and left <= self.grace_s
                self._deadline = now + self.grace_s if self.waited else now
            return now >= self._deadline

    @property
    def waiting(self) -> bool:
        """Stop was asked and the batch in flight is being let finish (the progress line says so)."""
        with self._lock:
            return self._start is not None and self._deadline is not None and self.clock() < self._deadline

    def _left(self, now: float) -> float | None:
        """Seconds until the batch in flight has its results; None when nothing says."""
        assert self._start is not None
        if self._step is not None:
            when, f = self._step
            if f >= 1.0:
                return max(0.0, self._tail - (now - when))
            if f > 0:
                return max(0.0, (when - self._start) * (1 - f) / f + self._tail - (now - when))
        if self._per_photo is None:
            return None
        return max(0.0, self._per_photo * self._photos - (now - self._start))

    # -- the batch size
    def next_batch(self, cap: int) -> int:
        """Photos for the next batch: 1 until a batch of one is measured, then the most (up to
        `cap`, the registry's size for this setting, and twice the largest batch measured)
        whose expected length is within the grace plus one photo alone (see the module)."""
        with self._lock:
            return self._size(cap, max(self._lengths, default=0))

    def plan(self, photos: int, cap: int) -> list[int]:
        """The batch sizes `photos` still to compute would come in if nothing new were measured
        (the next batch's size, then growing as `next_batch` lets it): what the time left
        prices them at (library/time_left.py)."""
        sizes: list[int] = []
        with self._lock:
            largest = max(self._lengths, default=0)
            while photos > 0:
                n = min(photos, self._size(cap, largest))
                if sizes and n == sizes[-1] and n <= largest:  # settled: the rest in batches of n
                    whole, rest = divmod(photos, n)
                    sizes.extend([n] * whole + ([rest] if rest else []))
                    break
                sizes.append(n)
                photos -= n
                largest = max(largest, n)
        return sizes

    def _size(self, cap: int, largest: int) -> int:
        """`next_batch` with `largest` as the largest batch measured (call with the lock held)."""
        if self._alone is None or not self._per_photo:
            return 1
        budget = self.grace_s + self._alone
        # a line fitted over small batches under-prices large ones (BLIP's cost per photo
        # grows with the batch past a few photos): grow at most twofold per measured size
        cap = min(cap, 2 * max(largest, 1))
        if len(self._lengths) < 2:
            # one size seen: at its seconds per photo (a larger batch costs less per photo,
            # so this is safe); when that allows no growth, one batch of two finds the fixed part
            n = int(budget / self._per_photo)
            return max(1, min(cap, n if n > 1 else 2))
        a, b = fit(self._lengths)
        if b <= 0:  # times from a busier moment mixed in: the latest batch's pace alone (safe)
            return max(1, min(cap, int(budget / self._per_photo)))
        return max(1, min(cap, int((budget - a) / b)))


def fit(lengths: dict[int, float]) -> tuple[float, float]:
    """(a, b): a batch of n photos takes a + b * n seconds, least squares over {n: seconds}
    (two sizes or more); a is kept >= 0 (no batch costs less than its photos' share)."""
    k = len(lengths)
    mx, my = sum(lengths) / k, sum(lengths.values()) / k
    var = sum((n - mx) ** 2 for n in lengths)
    b = sum((n - mx) * (y - my) for n, y in lengths.items()) / var
    a = my - b * mx
    if a < 0:
        return 0.0, my / mx
    return a, b
