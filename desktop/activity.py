"""What the app is busy with right now (a scan, a download), so the window can ask before closing.

    with activity.busy("a scan of Pictures"):
        ...
    activity.current()  # "a scan of Pictures" or None
"""
from __future__ import annotations

import contextlib
import itertools
import threading
from typing import Iterator

_lock = threading.Lock()
_running: dict[int, str] = {}
_ids = itertools.count()


@contextlib.contextmanager
def busy(what: str) -> Iterator[None]:
    """Mark `what` as running for the block's duration: a noun phrase that reads well in "… is
    running" (the window's close question), e.g. "a scan of Pictures", "the model download"."""
    key = next(_ids)
    with _lock:
        _running[key] = what
    try:
        yield
    finally:
        with _lock:
            _running.pop(key, None)


def current() -> str | None:
    """The phrases of what is running, joined with " and ", or None when the app is idle."""
    with _lock:
        return " and ".join(_running.values()) or None
