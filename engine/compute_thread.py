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

Where two passes gain from running at the same time on one torch thread each (int8 beam
search, photo by photo), the compute thread runs them with a helper (`side_by_side`); no other
job runs meanwhile. A caller waits for its call; callbacks wrapped with `relayed` (progress) run on the caller's
thread, not here, so UI code never runs on the compute thread. The thread is a daemon: a
process that ends does not wait for it. But Python 3.11 ends a daemon thread that is still
running at exit by unwinding it from inside whatever C++ it is in, and inside torch that aborts
the whole process ("terminate called without an active exception", exit by SIGABRT instead of
130). So a caller that is interrupted while it waits (Ctrl-C: KeyboardInterrupt) lets its job
end first: it stops it where it can (`call_stopping`: a forward pass given a Stop ends within a
layer), else waits for it (a model load: seconds); one more Ctrl-C stops waiting.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, TypeVar

R = TypeVar("R")

NAME = "loupe-compute"
#: how long an interrupted caller waits for its job to end (s): stopped (a layer, with room), or
#: not stoppable (a model load)
STOPPED_WAIT_S = 5.0
FINISH_WAIT_S = 60.0

_start_lock = threading.Lock()
_jobs: "queue.SimpleQueue[tuple[Callable[[], Any], queue.SimpleQueue]]" = queue.SimpleQueue()
_thread: threading.Thread | None = None
_here = threading.local()  # on the compute thread: .replies, the queue of the call in flight


def is_current() -> bool:
    """Whether the calling thread is the compute thread."""
    return threading.current_thread() is _thread


def call(fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
    """`fn(*args, **kwargs)` on the compute thread (directly when already on it); the caller
    waits, running the callbacks `relayed` sends it, and gets fn's result or its exception.
    When the waiting ends in an exception first (Ctrl-C), the caller waits for fn to end (at
    most FINISH_WAIT_S, or until one more Ctrl-C) before the exception goes on."""
    return _call(lambda: fn(*args, **kwargs), None)


def call_stopping(stop: Callable[[], None] | None, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
    """`call`, for a job that ends soon after `stop()` (e.g. sets the Stop a forward pass polls).
    When the waiting ends in an exception before the job does (Ctrl-C: KeyboardInterrupt on the
    main thread; a relayed callback raising), `stop()` is called and the caller waits for the
    job to end (at most STOPPED_WAIT_S) before the exception goes on: no pass is left running
    while the process exits (see the module's docstring)."""
    return _call(lambda: fn(*args, **kwargs), stop)


def _call(job: Callable[[], R], stop: Callable[[], None] | None) -> R:
    if is_current():
        return job()
    replies: queue.SimpleQueue = queue.SimpleQueue()
    _jobs.put((job, replies))
    _ensure_started()
    ended = False
    try:
        while True:
            kind, value = replies.get()
            if kind == "relay":
                value()
                continue
            ended = True
            if kind == "ok":
                return value
            raise value
    except BaseException:
        if not ended:
            if stop is not None:
                stop()
            _wait_end(replies, STOPPED_WAIT_S if stop is not None else FINISH_WAIT_S)
        raise


def _wait_end(replies: queue.SimpleQueue, timeout: float) -> None:
    """Wait for the job answering on `replies` to end (its relays dropped: their caller is gone)."""
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        try:
            kind, _ = replies.get(timeout=left)
        except (queue.Empty, KeyboardInterrupt):  # one more Ctrl-C: stop waiting
            return
        if kind != "relay":
            return


def relayed(callback: Callable[..., None] | None) -> Callable[..., None] | None:
    """`callback` (None stays None), but when called on the compute thread during a `call`, it
    runs on that call's waiting thread instead (soon after, in order, before the result)."""
    if callback is None:
        return None

    def relay(*args: Any) -> None:
        replies = getattr(_here, "replies", None)  # set on the compute thread and its helpers only
        if replies is None:
            callback(*args)
        else:
            replies.put(("relay", lambda: callback(*args)))

    return relay


def side_by_side(jobs: list[Callable[[], R]]) -> list[R]:
    """On the compute thread: `jobs` at the same time, the first on this thread, each other on
    a helper thread of its own (started once, kept); their results in order. Every job is
    waited for before the first exception (in job order) goes on. Callbacks `relayed` in them
    reach the waiting caller as from this thread. For passes that gain from running beside each
    other on one torch thread each (the models' own one-pass-at-a-time rule is the caller's)."""
    if not is_current():
        raise RuntimeError("side_by_side runs on the compute thread")
    replies = getattr(_here, "replies", None)
    boxes = []
    for i, job in enumerate(jobs[1:]):
        box: queue.SimpleQueue = queue.SimpleQueue()
        _helper(i).put((job, box, replies))
        boxes.append(box)
    outcomes: list[tuple[bool, Any]] = []
    try:
        outcomes.append((True, jobs[0]()))
    except BaseException as exc:  # the others are waited for first
        outcomes.append((False, exc))
    outcomes += [box.get() for box in boxes]
    for ok, value in outcomes:
        if not ok:
            raise value
    return [value for _, value in outcomes]


_helpers: list["queue.SimpleQueue[tuple[Callable[[], Any], queue.SimpleQueue, Any]]"] = []


def _helper(i: int) -> "queue.SimpleQueue":
    """The job queue of helper thread `i` (started on first use; only the compute thread asks)."""
    while len(_helpers) <= i:
        jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=_serve_helper, args=(jobs,), name=f"{NAME}-{len(_helpers) + 2}", daemon=True).start()
        _helpers.append(jobs)
    return _helpers[i]


def _serve_helper(jobs: queue.SimpleQueue) -> None:
    while True:
        job, box, replies = jobs.get()
        _here.replies = replies
        try:
            box.put((True, job()))
        except BaseException as exc:
            box.put((False, exc))
        finally:
            _here.replies = None
            del job, box, replies


def _ensure_started() -> None:
    global _thread
    with _start_lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_serve, name=NAME, daemon=True)
            _thread.start()


def busy() -> bool:
    """Whether the compute thread is inside a job now (a model load or a pass; its side-by-side
    helpers only run inside one)."""
    return _busy.is_set()


_busy = threading.Event()


def _serve() -> None:
    while True:
        job, replies = _jobs.get()
        _here.replies = replies
        _busy.set()
        try:
            replies.put(("ok", job()))
        except BaseException as exc:  # the caller raises it; this thread keeps serving
            replies.put(("error", exc))
        finally:
            _busy.clear()
            _here.replies = None
            del job, replies  # no reference to the last call's tensors while idle
