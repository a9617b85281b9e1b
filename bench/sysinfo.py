"""Process memory and CPU-contention readings from /proc (no psutil)."""
from __future__ import annotations

import os
import resource
import time

_TICK = os.sysconf("SC_CLK_TCK")


def rss_mb() -> dict[str, float]:
    """Current and peak resident memory of this process, in MB (VmRSS, VmHWM, RssAnon, RssFile)."""
    out = {}
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    out[key] = int(value.split()[0]) / 1024
    except OSError:
        out["VmHWM"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def peak_rss_mb() -> float:
    # ru_maxrss is in KB on Linux; it includes file-backed pages (mmapped weights) too.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _busy_ticks() -> tuple[int, int]:
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields[:8]) - idle, sum(fields[:8])


def _own_ticks() -> int:
    """CPU ticks of this process and its waited-for children."""
    t = os.times()
    return int((t.user + t.system + t.children_user + t.children_system) * _TICK)


class Contention:
    """How many cores *other* processes kept busy while a measurement ran (whole machine's busy
    time minus ours). A measurement taken with others at ~1 core on a 2-core box is ~2x slow."""

    def __enter__(self) -> "Contention":
        self._busy, _ = _busy_ticks()
        self._own = _own_ticks()
        self._t = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        busy, _ = _busy_ticks()
        own = _own_ticks()
        wall = max(time.monotonic() - self._t, 1e-6)
        self.others_cores = max(0.0, ((busy - self._busy) - (own - self._own)) / _TICK / wall)


def others_load(seconds: float = 1.0) -> float:
    """Cores used by other processes over `seconds` (we are idle meanwhile)."""
    with Contention() as c:
        time.sleep(seconds)
    return c.others_cores


def wait_quiet(limit_s: float = 30.0, threshold: float = 0.25) -> float:
    """Wait (up to limit_s) until other processes use less than `threshold` cores; returns the
    last reading. The machine is shared, so a measurement taken meanwhile would be slow."""
    deadline = time.monotonic() + limit_s
    load = others_load(0.5)
    while load > threshold and time.monotonic() < deadline:
        load = others_load(1.0)
    return load
