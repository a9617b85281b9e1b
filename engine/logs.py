"""Loupe's log file, shared by the command line and the app: `<log_dir>/loupe.log`, rotated.

    from engine import logs
    logs.setup_logging()                      # once per process; the app adds its token filter
    with logs.command_run("caption", {"beams": 3}) as run:
        run.exit_code = do_it()               # one line per command: options, counts, duration
    logs.note(photos=3, failed=0)             # counts for the current command's line

A bug (an exception that is no LoupeError) gets its full traceback in the file and one line
on the terminal (`report_unexpected`).
"""
from __future__ import annotations

import contextlib
import logging
import logging.handlers
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

LOG_NAME = "loupe.log"
MAX_BYTES = 2_000_000
BACKUPS = 3
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that log whole request URLs at INFO (the app's token rides in one; download URLs
# are noise): warnings only.
QUIET = ("httpx", "httpcore", "urllib3", "uvicorn.access")

log = logging.getLogger("loupe.cli")


def log_file() -> Path:
    """Where the log goes now: `engine.paths.log_dir() / "loupe.log"` (LOUPE_HOME aware)."""
    from .paths import log_dir

    return log_dir() / LOG_NAME


def _ours() -> logging.handlers.RotatingFileHandler | None:
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_loupe", False):
            return handler  # type: ignore[return-value]
    return None


def setup_logging(level: int = logging.INFO, filters: Iterable[logging.Filter] = ()) -> Path | None:
    """Send the root logger's records at `level` and up to the log file; idempotent.

    `filters` are added to the file handler (the app's token filter); a handler set up before
    keeps its filters. If LOUPE_HOME moved the log folder since, the handler follows it.
    Returns the file's path, or None when it cannot be opened (read-only home, full disk):
    logging is never a reason for a command to fail."""
    path = log_file()
    root = logging.getLogger()
    handler = _ours()
    if handler is not None and Path(handler.baseFilename) != path.absolute():
        root.removeHandler(handler)
        handler.close()
        old_filters, handler = list(handler.filters), None
    else:
        old_filters = []
    if handler is None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(
                path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
            )
        except OSError:
            return None
        handler._loupe = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    for item in [*old_filters, *filters]:
        if item not in handler.filters:
            handler.addFilter(item)
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    return path


class CommandRun:
    """One command's log line: set `exit_code`; counts come from `note()`."""

    def __init__(self, command: str, options: Mapping[str, Any]) -> None:
        self.command = command
        self.options = {k: _short(v) for k, v in options.items()}
        self.counts: dict[str, Any] = {}
        self.exit_code: int | None = None


_current: CommandRun | None = None


def note(**counts: Any) -> None:
    """Add result counts (photos=3, failed=1, hits=0) to the running command's log line."""
    if _current is not None:
        _current.counts.update(counts)


@contextlib.contextmanager
def command_run(command: str, options: Mapping[str, Any]) -> Iterator[CommandRun]:
    """Log one INFO line when the command ends (exit code, options, counts, seconds), also
    when it raises (then `exit_code` None; the exception goes on)."""
    global _current
    setup_logging()
    run = CommandRun(command, options)
    previous, _current = _current, run
    start = time.perf_counter()
    try:
        yield run
    finally:
        _current = previous
        log.info(
            "loupe %s: exit %s in %.2f s; options %s; %s", command, run.exit_code,
            time.perf_counter() - start, run.options,
            ", ".join(f"{k} {v}" for k, v in run.counts.items()) or "no counts",
        )


def report_unexpected(exc: BaseException) -> int:
    """A bug: the traceback to the log file, one line to stderr; returns the exit code (1)."""
    from .errors import LoupeError

    handler = _ours()
    where = ""
    if handler is not None:  # without it, logging's last resort would print the traceback
        log.error("unexpected error", exc_info=(type(exc), exc, exc.__traceback__))
        where = f"; details in {handler.baseFilename}"
    text = " ".join(str(exc).split())
    print(f"loupe: unexpected error ({type(exc).__name__}: {text}){where}", file=sys.stderr)
    return LoupeError.exit_code


def _short(value: Any) -> Any:
    """Long argument lists (a shell glob of photos) as a count, not thousands of paths."""
    if isinstance(value, (list, tuple)) and len(value) > 5:
        return f"{len(value)} items"
    return value
