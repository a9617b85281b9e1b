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
largest, up to the registry's size for the setting, whose length at the last measured seconds
per photo is at most grace + alone. A larger batch costs less per photo, so the length is
over-estimated when growing: the bound holds. bench/README.md, "Stop and batch size", has
the figures (the throughput kept against fixed batches of 8).
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
        `cap`, the registry's size for this setting) whose expected length is within the grace
        plus one photo alone."""
        with self._lock:
            if self._alone is None or not self._per_photo:
                return 1
            return max(1, min(cap, int((self.grace_s + self._alone) / self._per_photo)))
