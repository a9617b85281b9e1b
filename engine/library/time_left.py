"""Rate and time left for a scan, from measured work only: a clock-free unit the Reporter feeds.

Why not photos-done over seconds: photos arrive a batch at a time (on a bf16 CPU batches grow
from 1 to 8 as engine/stopping.py sizes them; 1 on an AVX2 int8 one), so a count-based rate jumps at each batch and a count-based time left counts
the photos of the batch in flight (and those computed but not yet written) as not started.
A batch's cost is not proportional to its photos. Once batches of two sizes are measured (the
scan's batches grow from one photo), a batch of n costs a + b * n, fitted over the completed
batches; with one size measured, a smaller batch (the last one) is taken as 0.2 of a full
batch's cost plus 0.8 of it per photo share (fits the bench's BLIP-base: batch 1 = 0.26 and
batch 4 = 0.6 of batch 8, bf16); a batch larger than any measured is priced no lower than the
largest measured one scaled by that shape (a line through batches of 1 and 2 prices 4 low).
Each photo still to caption is one of:
- waiting (not yet in a batch): in the batches the compute stage plans for them (`plan`; the
  scan's batches grow: engine/stopping.py), else in batches the size of the latest, at the measured cost,
  end to end (from the previous batch's results, or the first batch's start, to these results);
- in flight (the batch being computed): what its generation steps say is left, projected from
  the step rate seen so far in this batch (after one step: the last batch's step rate, scaled
  to this batch's size); before any step, the measured per-photo cost less the time the batch
  has run;
- computed, waiting to be written: nothing more.
"""
from __future__ import annotations

from collections import Counter, deque
from typing import Callable


class TimeLeft:
    """Feed it `started` / `step` / `finished` with times in seconds (any monotonic clock);
    ask `rate()` (photos/s) and `eta(waiting, now)` (seconds, None until something is measured).
    `window`: completed batches the per-photo cost is measured over."""

    def __init__(self, window: int = 8) -> None:
        self.done: deque[tuple[float, int]] = deque(maxlen=window)  # (seconds, photos) per completed batch
        self.first: tuple[float, int] | None = None  # the scan's first batch: its first forward warms up
        self.last_finish: float | None = None
        self.batch_start: float | None = None  # the batch in flight (None between batches)
        self.batch_photos = 0
        self.first_step: tuple[float, float] | None = None  # (when, fraction) of its first step report
        self.last_step: tuple[float, float] | None = None
        self.tail = 0.0  # seconds from a batch's last step to its results (labels, embeddings), as last measured
        self.step_unit: tuple[float, int] | None = None  # (seconds per whole generation, photos) of the last batch
        #: the batch sizes `n` photos not yet in a batch will come in (the compute stage's
        #: `LocalCompute.plan`: batches grow); None: in batches the size of the latest
        self.plan: Callable[[int], list[int]] | None = None

    def started(self, photos: int, now: float) -> None:
        """A batch of `photos` starts computing."""
        self.batch_start, self.batch_photos = now, photos
        self.first_step = self.last_step = None

    def step(self, fraction: float, now: float) -> None:
        """The batch in flight is `fraction` (0-1) of the way through its generation steps."""
        if self.batch_start is None:
            return
        if self.first_step is None:
            self.first_step = (now, fraction)
        self.last_step = (now, fraction)

    def finished(self, photos: int, now: float) -> None:
        """The batch in flight has its results; `photos` of it were computed (failures do not count)."""
        if self.batch_start is not None and photos > 0:
            since = self.batch_start if self.last_finish is None else min(self.last_finish, self.batch_start)
            if now > since:
                self.done.append((now - since, photos))
                if self.first is None:
                    self.first = self.done[-1]
        if self.last_step is not None and self.last_step[1] >= 1.0:
            self.tail = max(0.0, now - self.last_step[0])
        if self.first_step is not None and self.last_step is not None and photos > 0:
            (t0, f0), (t1, f1) = self.first_step, self.last_step
            if f1 > f0 and t1 > t0:
                self.step_unit = ((t1 - t0) / (f1 - f0), self.batch_photos)
        if photos > 0 or self.last_finish is None:
            self.last_finish = now
        self.batch_start, self.batch_photos = None, 0
        self.first_step = self.last_step = None

    def per_photo(self) -> float | None:
        """Seconds per photo at the latest completed batch's size, from the completed batches;
        None before the first."""
        seconds, photos = sum(s for s, _ in self.done), sum(n for _, n in self.done)
        if not photos or seconds <= 0:
            return None
        size = self.done[-1][1]
        return self.batch_cost(size) / size

    def rate(self) -> float:
        """Photos per second over the completed batches (0.0 before the first)."""
        each = self.per_photo()
        return 1.0 / each if each else 0.0

    def in_flight(self, now: float) -> float | None:
        """Seconds until the batch in flight has its results (0.0 when none; None: no measure yet)."""
        if self.batch_start is None:
            return 0.0
        if self.first_step is not None and self.last_step is not None:
            (t0, f0), (t1, f1) = self.first_step, self.last_step
            if f1 >= 1.0:
                return max(0.0, self.tail - (now - t1))
            if f1 > f0 and t1 > t0:
                return max(0.0, (1.0 - f1) * (t1 - t0) / (f1 - f0) + self.tail - (now - t1))
            if self.step_unit is not None:  # one step so far: at the last batch's pace, for this size
                unit, photos = self.step_unit
                scale = self.batch_cost(self.batch_photos) / self.batch_cost(photos) if self.done else share(
                    self.batch_photos, photos)
                return max(0.0, (1.0 - f1) * unit * scale + self.tail - (now - t1))
        if self.per_photo() is None:
            return None
        return max(0.0, self.batch_cost(self.batch_photos) - (now - self.batch_start))

    def measured(self) -> list[tuple[float, int]]:
        """The completed batches the cost is fitted over: without the scan's first one once two
        more are in (its first forward pass warms up: a batch of one then takes up to twice as
        long as later ones, and a scan's last photo is often a batch of one)."""
        if self.first is not None and len(self.done) >= 3:
            return [d for d in self.done if d is not self.first]
        return list(self.done)

    def batch_cost(self, photos: int) -> float:
        """Seconds for one batch of `photos`, from the completed batches (see the module)."""
        done = self.measured()
        total_s, total_n = sum(s for s, _ in done), sum(n for _, n in done)
        mean = total_s / total_n if total_n else 0.0
        sizes = {n for _, n in done}
        if len(sizes) == 1:
            full = next(iter(sizes))
            return share(photos, full) * full * mean
        k = len(done)
        mx = total_n / k
        var = sum((n - mx) ** 2 for _, n in done)
        b = sum((n - mx) * (sec - total_s / k) for sec, n in done) / var if var else 0.0
        a = total_s / k - b * mx
        fitted = photos * mean if b <= 0 or a < 0 else a + b * photos  # b <= 0: noise, no fixed part seen
        largest = max(sizes)
        if photos <= largest:
            return fitted
        # Larger than any batch measured (batches grow): a line through batches of 1 and 2 prices
        # a batch of 4 low (BLIP's fixed part shows most at 1-2 photos), so a time left from it
        # runs short. Not below the largest batch's cost scaled by the bench's shape (share()).
        seconds = [sec for sec, n in done if n == largest]
        scaled = sum(seconds) / len(seconds) * share(photos, FULL_BATCH) / share(largest, FULL_BATCH)
        return max(fitted, scaled)

    def cost(self, photos: int, each: float) -> float:
        """Seconds for `photos` in the batches `plan` has for them, else in batches the size of
        the latest (in flight, else completed), at the measured batch cost; before any batch is
        complete, at `each` a photo."""
        if not self.done:
            return photos * each
        if self.plan is not None:  # a long scan's plan repeats a few sizes: price each size once
            return sum(count * self.batch_cost(n) for n, count in Counter(self.plan(photos)).items())
        size = self.batch_photos or self.done[-1][1]
        whole, rest = divmod(photos, max(1, size))
        return whole * self.batch_cost(size) + (self.batch_cost(rest) if rest else 0.0)

    def eta(self, waiting: int, now: float) -> float | None:
        """Seconds left: the batch in flight, then `waiting` photos not yet in a batch."""
        flight = self.in_flight(now)
        if flight is None:
            return None
        each = self.per_photo()
        if each is None:  # the first batch: its photos' cost as its steps project it
            if self.batch_start is None or not self.batch_photos:
                return None
            if not waiting:
                return flight
            each = (now - self.batch_start + flight) / self.batch_photos
        if self.batch_start is None and self.last_finish is not None:  # between batches: the gap is in `each`
            return max(0.0, self.cost(waiting, each) - min(now - self.last_finish, each))
        unit = self.projected(now, flight)
        if unit is not None:  # a size not measured yet (batches grow): as this batch's steps price it
            if self.plan is not None:
                return flight + sum(share(n, self.batch_photos) for n in self.plan(waiting)) * unit
            whole, rest = divmod(waiting, self.batch_photos)
            return flight + (whole + (share(rest, self.batch_photos) if rest else 0.0)) * unit
        return flight + self.cost(waiting, each)

    def projected(self, now: float, flight: float) -> float | None:
        """The batch in flight's whole cost as its own steps project it, when no completed
        batch had its size and two steps were seen; else None."""
        if (not self.done or self.batch_start is None or not self.batch_photos
                or any(n == self.batch_photos for _, n in self.done)
                or self.first_step is None or self.last_step is None or self.last_step[0] <= self.first_step[0]):
            return None
        return now - self.batch_start + flight


#: the largest batch the registry runs (BLIP in bf16 / fp32): share()'s reference size
FULL_BATCH = 8


def share(photos: int, full: int) -> float:
    """A batch of `photos`'s cost as a share of a batch of `full` (see the module)."""
    if photos >= full or full <= 0:
        return photos / full if full > 0 else 1.0
    return 0.2 + 0.8 * photos / full
