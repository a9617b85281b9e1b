"""Who goes first on this computer's models: the person at it, then visitors of a share.

The local app's Caption and Classify handlers run inside `local_turn()`; a share's handlers run
inside `visitor_turn()`, which waits while any local request is running and for a short
`GRACE` after the last one ended (so a person captioning photo after photo is not overtaken
between two of them). Visitors are then served one at a time by the share's own queue.
No gradio, no model: plain threading, so the engine's run locks stay the only model locks.
"""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterator

GRACE = 0.3  # s after a local request ends before a visitor's photo may start

_cond = threading.Condition()
_local_running = 0
_local_ended = 0.0  # time.monotonic() when the last local request ended


@contextlib.contextmanager
def local_turn() -> Iterator[None]:
    """Mark a request of the person at this computer as running (never waits)."""
    global _local_running, _local_ended
    with _cond:
        _local_running += 1
    try:
        yield
    finally:
        with _cond:
            _local_running -= 1
            _local_ended = time.monotonic()
            _cond.notify_all()


@contextlib.contextmanager
def visitor_turn(cancel: threading.Event | None = None) -> Iterator[None]:
    """Wait until no local request runs (and none ended within GRACE s), then run the block.

    `cancel`: stop waiting and raise `ShareEnded` when it is set (the share was stopped)."""
    with _cond:
        while True:
            if cancel is not None and cancel.is_set():
                raise ShareEnded()
            idle_for = time.monotonic() - _local_ended
            if _local_running == 0 and idle_for >= GRACE:
                break
            _cond.wait(timeout=0.1 if _local_running else max(0.01, GRACE - idle_for))
    yield


def local_busy() -> bool:
    """Whether a local request is running now."""
    with _cond:
        return _local_running > 0


class ShareEnded(Exception):
    """The share stopped while a visitor's photo waited for its turn."""
