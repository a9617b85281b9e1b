"""An ordered map over loader threads, a few items ahead, that lets go at once on Stop.

The plan hashes and the local compute stage decodes with it: reading files overlaps the
models' work, and a Stop never waits for a slow read (a first model load, a huge decode)."""
from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def readahead(fn: Callable[[T], R], items: Iterable[T], *, workers: int, ahead: int, cancel: threading.Event,
              name: str = "loupe-load") -> Iterator[tuple[T, R | None]]:
    """(item, fn(item)) in order, `fn` run in `workers` threads up to `ahead` items early
    (`workers` 0: inline). Once `cancel` is set, a result still being computed comes as
    (item, None) and no more follow; the threads still running are not waited for."""
    if not workers:
        for item in items:
            if cancel.is_set():
                return
            yield item, fn(item)
        return
    queue: deque[tuple[T, Future]] = deque()
    pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
    try:
        for item in items:
            queue.append((item, pool.submit(fn, item)))
            if len(queue) >= ahead:
                yield _wait(*queue.popleft(), cancel)
        while queue:
            yield _wait(*queue.popleft(), cancel)
    finally:
        pool.shutdown(wait=not cancel.is_set(), cancel_futures=True)


def _wait(item: T, future: Future, cancel: threading.Event) -> tuple[T, R | None]:
    while True:
        try:
            return item, future.result(timeout=0.1)
        except FutureTimeout:
            if cancel.is_set():
                return item, None
