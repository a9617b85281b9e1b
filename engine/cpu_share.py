"""torch threads for the CPU cores that other programs leave free.

On a CPU that another program keeps busy, torch's OpenMP threads wait for each other at every
operation: one preempted thread stalls the rest, so two threads beside a busy neighbour on two
cores are far slower than one (bench/README.md, "A busy CPU"). So before each
forward pass Loupe measures how much CPU the rest of the machine used since the last look
(psutil: the whole machine's busy time minus this process's own) and runs torch on the cores
left over: all of them on an idle machine (torch's default, so an idle machine is not made
slower), fewer while others compute, never less than one.

`LOUPE_THREADS=N` fixes the count (no measuring).

Only the compute thread runs torch on several threads (engine/compute_thread.py says why);
threads that prepare photos or search run it on one (`one_thread_here`).
"""
from __future__ import annotations

import os
import threading
import time

#: at least this long between looks (s): shorter windows are too noisy to act on
MIN_WINDOW_S = 0.5
#: a core counts as free when others left at least this much of it (of 1.0)
FREE_ENOUGH = 0.75

_lock = threading.Lock()
_last: tuple[float, float, float] | None = None  # (wall s, machine busy CPU-s, own CPU-s)
_ceiling: int | None = None  # torch's own thread count, read once
_chosen: int | None = None


def _sample() -> tuple[float, float, float]:
    import psutil

    machine = psutil.cpu_times()
    idle = machine.idle + getattr(machine, "iowait", 0.0)
    busy = sum(machine) - idle - getattr(machine, "guest", 0.0) - getattr(machine, "guest_nice", 0.0)
    own = psutil.Process().cpu_times()
    return time.monotonic(), busy, own.user + own.system


def others_busy(window: tuple[float, float, float], now: tuple[float, float, float]) -> float:
    """Cores other processes kept busy between two samples (wall s, machine busy CPU-s, own
    CPU-s): >= 0."""
    wall = now[0] - window[0]
    if wall <= 0:
        return 0.0
    return max(0.0, ((now[1] - window[1]) - (now[2] - window[2])) / wall)


def threads_for(cores: int, busy_elsewhere: float) -> int:
    """Threads for `cores` (torch's default count) when others use `busy_elsewhere` cores."""
    return max(1, min(cores, int(cores - busy_elsewhere + (1 - FREE_ENOUGH))))


def first_look() -> None:
    """Take the first look now (a model starts loading), so the first `fit_threads` measures
    over the load instead of sleeping 0.1 s for a window of its own. No-op once looked."""
    global _last
    with _lock:
        if _last is None:
            try:
                _last = _sample()
            except Exception:  # psutil unable to read here: fit_threads copes
                pass


def _read_ceiling() -> int:
    """torch's own thread count, read once, before Loupe changes any thread's (under _lock)."""
    global _ceiling
    if _ceiling is None:
        import torch

        _ceiling = torch.get_num_threads()
    return _ceiling


def fixed_threads() -> int | None:
    """The count LOUPE_THREADS fixes (a positive integer), else None (measured)."""
    fixed = os.environ.get("LOUPE_THREADS", "").strip()
    return int(fixed) if fixed.isdigit() and int(fixed) > 0 else None


def cores() -> int:
    """torch's own thread count (its default: the cores it would use), read once."""
    with _lock:
        return _read_ceiling()


def one_thread_here() -> None:
    """torch on one thread for the calling thread (not the compute thread): its ops then make
    no OpenMP team of their own (compute_thread.py). Cheap when already so; no-op on the
    compute thread."""
    from .compute_thread import is_current

    if is_current():
        return
    import torch

    if torch.get_num_threads() != 1:
        with _lock:
            _read_ceiling()  # torch's default, not the 1 set here (new threads start from it)
        torch.set_num_threads(1)


def fit_threads() -> int:
    """Set torch's intra-op threads to the cores free right now and return the count. Cheap
    (two psutil reads); looks again only after MIN_WINDOW_S, else keeps the last choice. Run
    on the thread that runs the model (OpenMP keeps the count per thread)."""
    global _chosen
    import torch

    with _lock:
        _read_ceiling()
        wanted = fixed_threads() or _free_cores()
        if wanted != torch.get_num_threads():
            torch.set_num_threads(wanted)
        _chosen = wanted
        return wanted


def _free_cores() -> int:
    """Threads for the cores others leave free since the last look (under _lock); torch's
    default when psutil cannot read here."""
    global _last
    ceiling = _read_ceiling()
    try:
        now = _sample()
        if _last is None:
            _last = now
            time.sleep(0.1)  # a first look: a short window beats none
            now = _sample()
    except Exception:  # psutil unable to read here
        return ceiling
    if _chosen is not None and now[0] - _last[0] < MIN_WINDOW_S:
        return _chosen
    free = threads_for(ceiling, others_busy(_last, now))
    _last = now
    return free
