"""The one thread that runs the models: every load and forward pass of the process's engine.

    out = compute_thread.call(model.forward, batch, on_step=compute_thread.relayed(on_step))

Why one thread: torch's Linux and Windows builds use GNU OpenMP, which gives every thread that
runs a parallel op a team of worker threads of its own, kept as long as that thread lives. Once
a process holds more of them than the machine has cores, libgomp shortens every team's
spin-wait to almost nothing, so each of the caption decoder's thousands of small ops waits for
its workers to be woken by the kernel. The Caption tab answered on gradio's worker threads (a
new one per request, kept alive) and the scan prepared photos on loader threads: both ended
up there, 1.4-1.8x slower per caption (bench/README.md, "One compute thread"). So the forward
passes of the CLI, the UI and the scan all run here, one at a time, and threads that only
prepare photos run torch on one thread (`cpu_share.one_thread_here`), which makes no team.

A caller waits for its call; callbacks wrapped with `relayed` (progress) run on the caller's
thread, not here, so UI code never runs on the compute thread. The thread is a daemon: a
process that ends (Ctrl-C twice) does not wait for a forward pass in flight.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, TypeVar

R = TypeVar("R")

NAME = "loupe-compute"

_start_lock = threading.Lock()
_jobs: "queue.SimpleQueue[tuple[Callable[[], Any], queue.SimpleQueue]]" = queue.SimpleQueue()
_thread: threading.Thread | None = None
_here = threading.local()  # on the compute thread: .replies, the queue of the call in flight


def is_current() -> bool:
    """Whether the calling thread is the compute thread."""
    return threading.current_thread() is _thread


def call(fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
    """`fn(*args, **kwargs)` on the compute thread (directly when already on it); the caller
    waits, running the callbacks `relayed` sends it, and gets fn's result or its exception."""
    if is_current():
        return fn(*args, **kwargs)
    replies: queue.SimpleQueue = queue.SimpleQueue()
    _jobs.put((lambda: fn(*args, **kwargs), replies))
    _ensure_started()
    while True:
        kind, value = replies.get()
        if kind == "relay":
            value()
        elif kind == "ok":
            return value
        else:
            raise value


def relayed(callback: Callable[..., None] | None) -> Callable[..., None] | None:
    """`callback` (None stays None), but when called on the compute thread during a `call`, it
    runs on that call's waiting thread instead (soon after, in order, before the result)."""
    if callback is None:
        return None

    def relay(*args: Any) -> None:
        replies = getattr(_here, "replies", None) if is_current() else None
        if replies is None:
            callback(*args)
        else:
            replies.put(("relay", lambda: callback(*args)))

    return relay


def _ensure_started() -> None:
    global _thread
    with _start_lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_serve, name=NAME, daemon=True)
            _thread.start()


def _serve() -> None:
    while True:
        job, replies = _jobs.get()
        _here.replies = replies
        try:
            replies.put(("ok", job()))
        except BaseException as exc:  # the caller raises it; this thread keeps serving
            replies.put(("error", exc))
        finally:
            _here.replies = None
            del job, replies  # no reference to the last call's tensors while idle
