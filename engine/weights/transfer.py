"""The HTTP transfer of one pinned file: Range resumes, connect and stall timeouts, Cancel
within POLL_S, offline told in seconds, progress reports."""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import Cancelled, DownloadError, IntegrityError, Unreachable
from ..models.spec import Source, WeightFile
from .stamps import POLL_S, _raise_if_cancelled

log = logging.getLogger("loupe.weights")


ProgressFn = Callable[["DownloadProgress"], None]

@dataclass(frozen=True)
class DownloadProgress:
    """Where a download stands: reported every POLL_S while it runs (in the caller's thread)."""

    model: str
    file: str
    done: int  # bytes of this file
    total: int
    overall_done: int  # bytes of the whole model
    overall_total: int
    phase: str = "downloading"  # CONNECTING (no byte yet), DOWNLOADING or VERIFYING (done: bytes hashed)
    host: str = ""  # the server, e.g. "huggingface.co"

    @property
    def fraction(self) -> float:
        return self.overall_done / self.overall_total if self.overall_total else 1.0

# How long a download may take to reach the server (resolve the name, open the connection),
# in seconds: offline must be said within a few seconds, not after the hub client's retries.
CONNECT_TIMEOUT_S = 5.0

# How long a server that answered may go without sending a byte before the attempt is given up.
STALL_TIMEOUT_S = 30.0

# Fresh attempts (each resuming) after a connection that broke while bytes were flowing.
_RESUMES = 4

class _Unreachable(Exception):
    """The server was not reached within CONNECT_TIMEOUT_S (name not resolved, no route, refused)."""

class _WrongSize(Exception):
    """The server announced a body that cannot be the pinned file (an error page, a proxy's answer)."""

class _Transfer:
    """One HTTP GET of a pinned file into `part` (appending from its current size), run in a
    worker thread that only moves bytes. The caller's thread waits, reports and decides: it
    can abandon the transfer at any moment (`abort`), which shuts the socket down so the
    worker's blocking read returns at once."""

    def __init__(self, url: str, part: Path, size: int) -> None:
        self.url, self.part, self.size = url, part, size
        self.received = 0  # bytes of the file now in `part`
        self.connected = threading.Event()  # a TCP connection to the server is up
        self.flowing = threading.Event()  # the answer's headers came; bytes follow
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._sockets: list = []
        self._lock = threading.Lock()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # handed to the waiting thread
            self.error = exc
        finally:
            self.done.set()

    def abort(self) -> None:
        """Stop the worker: it writes nothing more, and a blocked read or wait ends now."""
        import socket

        self._stop.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _trace(self, event: str, info: dict) -> None:
        # httpcore's trace hook hands over each new connection's stream: keep its socket so
        # abort() can end a read that would otherwise block until STALL_TIMEOUT_S.
        if event == "connection.connect_tcp.complete" and info.get("return_value") is not None:
            sock = info["return_value"].get_extra_info("socket")
            if sock is not None:
                with self._lock:
                    self._sockets.append(sock)
                if self._stop.is_set():
                    self.abort()
            self.connected.set()

    def _run(self) -> None:
        import httpx2  # huggingface_hub's own HTTP client library (pinned with it)

        try:
            resume = self.part.stat().st_size
        except FileNotFoundError:
            resume = 0
        if resume >= self.size:  # more than the file can be: not a prefix of it
            self.part.unlink(missing_ok=True)
            resume = 0
        self.received = resume
        headers = {"Accept-Encoding": "identity", "User-Agent": "loupe"}
        if resume:
            headers["Range"] = f"bytes={resume}-"
        timeout = httpx2.Timeout(STALL_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        with httpx2.Client(follow_redirects=True, timeout=timeout, headers=headers) as client, \
                client.stream("GET", self.url, extensions={"trace": self._trace}) as r:
            self.connected.set()
            if self._stop.is_set():
                return
            if r.status_code not in (200, 206):
                r.raise_for_status()
            start = 0
            if r.status_code == 206:
                cr = r.headers.get("Content-Range", "")
                start = int(cr.split()[1].split("-")[0]) if cr.startswith("bytes ") else -1
                if start != resume:
                    raise _WrongSize(f"the server resumed at another place ({cr or 'no Content-Range'})")
            length = r.headers.get("Content-Length")
            if length is not None and start + int(length) != self.size:
                # Never written: those bytes are no part of the pinned file.
                raise _WrongSize(f"the server sent {int(length):,} bytes where {self.size - start:,} were expected")
            self.flowing.set()  # before the stop check: abort() reads them the other way round
            if self._stop.is_set():
                return
            with open(self.part, "r+b" if self.part.exists() else "wb") as fh:
                fh.truncate(start)  # a 200 to a resume starts over
                fh.seek(start)
                self.received = start
                for chunk in r.iter_raw():  # as each read returns: what came is on disk
                    if self._stop.is_set():
                        return
                    if self.received + len(chunk) > self.size:
                        raise _WrongSize("the server sent more bytes than the file has")
                    fh.write(chunk)
                    self.received += len(chunk)
        if not self._stop.is_set() and self.received != self.size:
            raise httpx2.RemoteProtocolError(f"the connection ended after {self.received:,} of {self.size:,} bytes")

# Phases of a download, as DownloadProgress.phase.
CONNECTING = "connecting"  # resolving the server's name, connecting, waiting for its answer

DOWNLOADING = "downloading"  # bytes are flowing

VERIFYING = "verifying"  # hashing the received file against its pinned sha256

def _fetch(src: Source, wf: WeightFile, staging: Path, report: Callable[[str, int], None],
           cancel: threading.Event | None) -> None:
    """Fetch one file into `staging/name`, resuming `staging/.name.incomplete`.

    The pins already say each file's URL, size and sha256, so this is a plain HTTP GET with a
    Range header (huggingface.co answers a `resolve` URL with a redirect to its CDN). Offline
    is told within about CONNECT_TIMEOUT_S; `cancel` is honoured within POLL_S in every phase;
    a connection that breaks while bytes flow is resumed a few times before giving up."""
    part = staging / f".{wf.name}.incomplete"
    url = src.url_for(wf.name)
    attempts = 0
    while True:
        transfer = _Transfer(url, part, wf.size)
        before = part.stat().st_size if part.exists() else 0
        try:
            _wait(transfer, wf, report, cancel)
        except (Cancelled, IntegrityError):
            raise
        except _Unreachable:
            raise Unreachable(_offline_message(src), host=src.host) from None
        except Exception as exc:
            attempts += 1
            if _transient(exc) and transfer.received > before and attempts <= _RESUMES:
                log.info("download of %s broke after %d bytes (%s); resuming", wf.name, transfer.received, exc)
                continue
            if isinstance(exc, _WrongSize):
                part.unlink(missing_ok=True)
            if _is_offline(exc):
                raise Unreachable(_offline_message(src), host=src.host) from exc
            raise DownloadError(_describe_failure(src, wf, exc)) from exc
        os.replace(part, staging / wf.name)
        return

def _wait(transfer: _Transfer, wf: WeightFile, report: Callable[[str, int], None],
          cancel: threading.Event | None) -> None:
    """Run `transfer` in a worker thread and wait for it here, reporting progress every POLL_S;
    raises Cancelled, _Unreachable, or the worker's own error."""
    worker = threading.Thread(target=transfer.run, name=f"loupe-download-{wf.name}", daemon=True)
    started = time.monotonic()
    worker.start()
    try:
        while not transfer.done.wait(POLL_S):
            _raise_if_cancelled(cancel)
            # The worker may sit in the resolver, which no socket timeout bounds: the deadline is kept here.
            if not transfer.connected.is_set() and time.monotonic() - started > CONNECT_TIMEOUT_S:
                raise _Unreachable()
            report(DOWNLOADING if transfer.flowing.is_set() else CONNECTING, transfer.received)
        _raise_if_cancelled(cancel)
        if transfer.error is not None:
            raise transfer.error
    finally:
        transfer.abort()
        # A worker that may hold the file gets its moment to close it (its read ends at once).
        # One that never got an answer (in the resolver, in connect) is left behind: it has
        # not opened the file and, its stop flag set, never will.
        if transfer.flowing.is_set():
            worker.join(1.0)

def _transient(exc: BaseException) -> bool:
    """A broken connection (worth resuming), not an answer (an HTTP status, a wrong size)."""
    import httpx2

    return isinstance(exc, (httpx2.ReadError, httpx2.RemoteProtocolError, httpx2.ReadTimeout, httpx2.WriteError))

def _is_offline(exc: BaseException) -> bool:
    import httpx2

    return isinstance(exc, (httpx2.ConnectError, httpx2.ConnectTimeout))

def _offline_message(src: Source) -> str:
    return (f"{src.title}: cannot reach {src.host}: this computer seems to be offline. Connect and retry, "
            f"or copy the files and run `loupe models import FOLDER`.")

def _describe_failure(src: Source, wf: WeightFile, exc: Exception) -> str:
    import httpx2

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    host = src.host
    if any(isinstance(e, OSError) and getattr(e, "errno", None) == 28 for e in _causes(exc)):
        return f"{src.title}: the disk is full while saving {wf.name}. Free some space and retry."
    if isinstance(exc, httpx2.HTTPStatusError):
        text = f"the server answered {exc.response.status_code} {exc.response.reason_phrase}".strip()
    elif isinstance(exc, httpx2.ReadTimeout):
        text = f"no data for {STALL_TIMEOUT_S:.0f} s"
    return f"{src.title}: download of {wf.name} from {host} failed ({text[:200]}). Retry to resume."

def _causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen and len(seen) < 10:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen
