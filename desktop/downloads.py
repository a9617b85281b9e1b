"""Getting the models from the page: one download job (used by the Caption and Classify tabs'
first-run panels, the Library tab's Download button and the Models tab), and its Cancel.

One person, one app: a Cancel button stops whichever download is running.
"""
from __future__ import annotations

import threading
from typing import Iterator

from desktop import jobs
from desktop.messages import progress_words, say
from engine import weights
from engine.errors import LoupeError

CANCEL = threading.Event()

CANCELLED_LINE = "Cancelled. What was downloaded is kept: press the download button again to continue from there."


def _install(names: list[str], report) -> list[str]:
    """Install each of `names` not yet installed, in turn; the titles installed."""
    done = []
    for name in names:
        if weights.is_installed(name):
            continue
        src = weights.source(name)
        report((src.title, weights.DownloadProgress(name, "", 0, 0, 0, src.size, phase=weights.CONNECTING,
                                                    host=src.host)))
        weights.install(name, progress=lambda p, title=src.title: report((title, p)), cancel=CANCEL)
        done.append(src.title)
    return done


def download(names: list[str]) -> Iterator[tuple[str, float | None, str | None]]:
    """Download `names` (those missing) on a thread: yields (line, fraction of the current model
    or None, end) a few times a second; end is None while it runs, and the last one's end is
    jobs.DONE, CANCELLED or FAILED, its line saying how it ended: installed, cancelled (what
    came is kept), or why not (offline, damaged, …) in one line."""
    CANCEL.clear()
    line, fraction = "Starting the download…", 0.0

    def words(exc: LoupeError) -> str:
        return f"Not downloaded. {say(exc)}"

    for step in jobs.run(lambda report: _install(names, report), what="a model download", cancel=CANCEL,
                         words=words):
        if isinstance(step, jobs.Outcome):
            if step.kind == jobs.CANCELLED:
                yield CANCELLED_LINE, None, step.kind
            elif step.kind == jobs.FAILED:
                yield step.message, None, step.kind
            else:
                done = step.value
                yield (f"{', '.join(done)}: installed and verified." if done else "Every model is installed."), 1.0, step.kind
            return
        if step:
            title, p = step[-1]
            line = progress_words(p, title)  # "connecting to …" until bytes flow
            fraction = 0.0 if p.phase == weights.CONNECTING else p.fraction
        yield line, fraction, None


def cancel() -> None:
    """Stop the running download at once; what came is kept and the next download resumes."""
    CANCEL.set()
