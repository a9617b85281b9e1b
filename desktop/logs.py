"""The desktop app's logging (the file itself is engine.logs', shared with the CLI) and
start-up timings.

A windowed build has no console: `sys.stdout`/`sys.stderr` may be None, so they are pointed at
the log file. Every handler carries the server's `TokenFilter`, so a per-launch token never
reaches the log even if some library logs a URL.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

_IMPORTED_AT = time.time()


def process_start() -> float:
    """Wall-clock time the process started (Linux: from /proc; else when this module loaded)."""
    try:
        with open("/proc/self/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 overall: starttime, in clock ticks since boot
        with open("/proc/uptime", "rb") as fh:
            uptime = float(fh.read().split()[0])
        ticks = os.sysconf("SC_CLK_TCK")
        started = time.time() - (uptime - start_ticks / ticks)
        return min(started, _IMPORTED_AT)
    except (OSError, ValueError, IndexError):
        return _IMPORTED_AT


class Timings:
    """Seconds since process start for named start-up steps; logged as they happen."""

    def __init__(self, start: float | None = None) -> None:
        self.start = process_start() if start is None else start
        self.marks: dict[str, float] = {}

    def mark(self, name: str) -> float:
        value = round(time.time() - self.start, 3)
        self.marks.setdefault(name, value)
        logging.getLogger("loupe.timing").info("%s: %.3f s after process start", name, value)
        return value


def setup_logging(level: int = logging.INFO) -> Path:
    """The shared log file (engine.logs: <log_dir>/loupe.log, rotated, also the CLI's) with the
    server's token filter; give a windowed build a stdout/stderr."""
    from desktop.server import token_filter
    from engine.logs import log_file, setup_logging as setup_file

    path = setup_file(level, filters=[token_filter()])
    for name, threshold in (("stdout", logging.INFO), ("stderr", logging.WARNING)):
        if getattr(sys, name) is None:
            # With no log file, a _LogStream would feed logging's last resort, which writes
            # to this very stream: discard instead.
            stream = _LogStream(logging.getLogger(f"loupe.{name}"), threshold) if path else open(os.devnull, "w")
            setattr(sys, name, stream)
    return path or log_file()


class _LogStream:
    """A text stream for a windowed build's missing stdout/stderr: lines go to the log
    (through the token filter) instead of nowhere."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, logger: logging.Logger, level: int) -> None:
        self.logger, self.level, self._buf = logger, level, ""

    def write(self, text: str) -> int:
        self._buf += text
        *lines, self._buf = self._buf.split("\n")
        for line in lines:
            if line.strip():
                self.logger.log(self.level, "%s", line)
        return len(text)

    def flush(self) -> None:
        if self._buf.strip():
            self.logger.log(self.level, "%s", self._buf)
        self._buf = ""

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError("no file descriptor: a windowed build has no console")
