"""Run one long job (a scan, a model download) on a thread while a gradio handler redraws the page.

    for step in jobs.run(work, what="a scan of Pictures", cancel=stop, words=str):
        if isinstance(step, jobs.Outcome):
            ...  # the end: done (step.value), cancelled, or failed (step.message, one line)
        else:
            ...  # step: the reports that came since the last tick (maybe none); redraw

The handler is a generator: gradio's own `gr.Progress` needs a visible output and animates in a
way that is costly when the window renders in software, so the page is redrawn from the job's
reports a few times a second instead. While the job runs the app counts as busy (closing the
window asks first); when the page goes away mid-job (the generator is closed) the job is asked
to stop.
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from desktop import activity
from desktop.messages import UNEXPECTED
from engine.errors import Cancelled, LoupeError

log = logging.getLogger("loupe.ui")

TICK_S = 0.3  # how often the handler redraws while the job runs
DONE, CANCELLED, FAILED = "done", "cancelled", "failed"


@dataclass(frozen=True)
class Outcome:
    """How a job ended: `kind` DONE (`value` is what the job returned), CANCELLED, or FAILED
    (`message`: the one line for the page)."""

    kind: str
    value: Any = None
    message: str = ""


def run(work: Callable[[Callable[[Any], None]], Any], *, what: str, cancel: threading.Event,
        words: Callable[[LoupeError], str] = str, tick: float = TICK_S) -> Iterator[list[Any] | Outcome]:
    """Run `work(report)` on a daemon thread; yield the list of reports it made since the last
    yield (possibly empty) every `tick` seconds, then one `Outcome`.

    `what` names the job for the close question ("a scan of Pictures"). `cancel` is the job's
    stop flag: the job raising `Cancelled` ends CANCELLED; a Loupe error ends FAILED with
    `words(error)`; anything else is logged with its traceback and ends FAILED with a short
    line. Closing the generator early sets `cancel` and waits up to 30 s for the thread."""
    reports: queue.Queue = queue.Queue()
    end: list[Outcome] = []

    def body() -> None:
        try:
            end.append(Outcome(DONE, value=work(reports.put)))
        except Cancelled:
            end.append(Outcome(CANCELLED))
        except LoupeError as exc:
            log.info("%s: %s", what, exc)
            end.append(Outcome(FAILED, message=words(exc)))
        except Exception as exc:  # a bug: keep the app alive, put the details in the log
            log.exception("%s failed", what)
            end.append(Outcome(FAILED, message=UNEXPECTED.format(type(exc).__name__)))
        finally:
            reports.put(_END)

    thread = threading.Thread(target=body, name="loupe-job", daemon=True)
    finished = False
    try:
        with activity.busy(what):
            thread.start()
            while not finished:
                batch: list[Any] = []
                try:
                    item = reports.get(timeout=tick)
                    while True:
                        if item is _END:
                            finished = True
                            break
                        batch.append(item)
                        item = reports.get_nowait()
                except queue.Empty:
                    pass
                if batch or not finished:
                    yield batch
    finally:
        if not finished:
            cancel.set()  # the page went away mid-job: stop the thread too
            thread.join(timeout=30)
    yield end[0]


_END = object()
