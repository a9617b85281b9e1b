"""One share: a second guarded server on a network address, serving only the shared page.

    share = start_share("192.168.1.20", seconds=3600)   # stops any earlier share first
    share.url          # http://192.168.1.20:PORT/?token=...  (the link; the token is the access)
    share.visitors, share.captioned, share.classified
    stop_share()       # or the timer, or Loupe closing (atexit): the port closes, the token dies

Each share has a fresh 256-bit token and its own temp folder (inside the local server's, see
desktop.server.serve `inside`) that holds the visitors' photos and is deleted when it ends.
Nothing a visitor sends is logged: only counts, at the end.
"""
from __future__ import annotations

import atexit
import functools
import logging
import threading
import time
from pathlib import Path
from typing import Any

from desktop.share.addresses import network_addresses, shareable

log = logging.getLogger("loupe.share")

DEFAULT_SECONDS = 3600
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # a visitor's photo; pixels are capped by engine.images


class ShareError(Exception):
    """A share cannot start; `str()` is one line for a person."""


class Share:
    """A running share (see the module docstring). Thread-safe; `stop()` is idempotent."""

    def __init__(self, host: str, seconds: float) -> None:
        self.host = host
        self.seconds = seconds
        self.visitors = self.captioned = self.classified = self.refused = 0
        self.started = time.time()
        self.ends_at = self.started + seconds
        self.ended = threading.Event()  # set first: waiting visitors give up
        self.closed = threading.Event()  # set once the port is closed and the photos gone
        self.end_reason = ""
        self._lock = threading.Lock()
        self._server: Any = None
        self._guard: Any = None
        self._timer: threading.Timer | None = None

    # -- life -------------------------------------------------------------------------------
    def _start(self) -> None:
        from desktop.server import serve
        from desktop.share.guard import ShareGuard
        from desktop.share.page import build_share_ui
        from gradio.utils import get_upload_folder

        def guard(*args: Any, **kwargs: Any) -> ShareGuard:
            self._guard = ShareGuard(*args, on_visit=self._visited, **kwargs)
            return self._guard

        inside = Path(get_upload_folder())  # the local server's folder, gradio's at run time
        inside.mkdir(parents=True, exist_ok=True)
        try:
            self._server = serve(functools.partial(build_share_ui, self), host=self.host,
                                 network=True, inside=inside, guard=guard,
                                 max_file_size=MAX_UPLOAD_BYTES)
        except OSError as exc:
            raise ShareError(f"cannot share on {self.host} ({exc.strerror or exc}).") from None
        self._timer = threading.Timer(self.seconds, self.stop, kwargs={"reason": "time is up"})
        self._timer.daemon = True
        self._timer.start()
        log.info("sharing on %s for %d min", self._server.base_url, round(self.seconds / 60))

    def stop(self, reason: str = "stopped") -> None:
        """End the share: refuse every token, close the port, delete the visitors' photos."""
        with self._lock:
            if self.ended.is_set():
                return
            self.ended.set()
            self.end_reason = reason
        if self._timer is not None:
            self._timer.cancel()
        if self._guard is not None:
            self._guard.revoke()
        if self._server is not None:
            self._server.close()
        self.closed.set()
        log.info("share ended (%s) after %.0f s: %d visitors, %d captioned, %d classified, "
                 "%d refused", reason, time.time() - self.started, self.visitors, self.captioned,
                 self.classified, self.refused)

    # -- what the panel shows ---------------------------------------------------------------
    @property
    def running(self) -> bool:
        return not self.ended.is_set()

    @property
    def base_url(self) -> str:
        return self._server.base_url

    @property
    def url(self) -> str:
        """The link to give: it carries the token."""
        return self._server.url

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def token(self) -> str:
        return self._server.token

    @property
    def temp_dir(self) -> Path:
        return self._server.temp_dir

    def _visited(self) -> None:
        with self._lock:
            self.visitors += 1

    def count(self, task: str) -> None:
        with self._lock:
            if task == "caption":
                self.captioned += 1
            else:
                self.classified += 1

    def count_refused(self) -> None:
        with self._lock:
            self.refused += 1

    def __repr__(self) -> str:  # never the token
        state = "running" if self.running else f"ended ({self.end_reason})"
        return f"<Share {self.host} {state}>"


_current: Share | None = None
_current_lock = threading.Lock()


def start_share(host: str, seconds: float = DEFAULT_SECONDS) -> Share:
    """Stop any running share, then share on `host` for `seconds`. Raises ShareError when `host`
    is not an address of this computer or cannot be listened on. The person chooses among
    `network_addresses()`; any address of this computer that can be bound is accepted (tests use
    a second loopback address, 127.0.0.2)."""
    global _current
    if seconds <= 0:
        raise ShareError("a share lasts at least a moment: choose how long.")
    with _current_lock:
        if _current is not None:
            _current.stop("replaced by a new share")
        share = Share(host.strip("[]"), seconds)
        share._start()
        _current = share
    return share


def current() -> Share | None:
    """The running share, or None."""
    share = _current
    return share if share is not None and share.running else None


def stop_share(reason: str = "stopped") -> None:
    """Stop the running share, if any."""
    share = _current
    if share is not None:
        share.stop(reason)


def choose_address(wanted: str | None) -> str:
    """The address for `loupe --share [ADDRESS]`: `wanted` when it is one of this computer's
    shareable ones, the only one when there is one; else ShareError saying which to choose."""
    found = network_addresses()
    if wanted:
        if not shareable(wanted):
            raise ShareError(f"{wanted} is not an address others on a network can reach "
                             "(loopback and link-local addresses are never shared).")
        if all(a.ip != wanted.strip("[]") for a in found):
            choices = ", ".join(a.ip for a in found) or "none"
            raise ShareError(f"{wanted} is not an address of this computer (its addresses: {choices}).")
        return wanted.strip("[]")
    if not found:
        raise ShareError("this computer has no network address to share on (is it connected?).")
    ipv4 = [a for a in found if ":" not in a.ip]
    if len(ipv4) == 1 or (not ipv4 and len(found) == 1):
        return (ipv4 or found)[0].ip
    choices = ", ".join(a.label for a in found)
    raise ShareError(f"this computer has several network addresses ({choices}): "
                     "choose one with --share ADDRESS.")


atexit.register(stop_share, "Loupe closed")
