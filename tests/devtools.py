"""Acting inside the window's page from a test, through QtWebEngine's own remote debugging.

The test starts the app with `QTWEBENGINE_REMOTE_DEBUGGING=127.0.0.1:PORT` in the child's
environment (`remote_debugging_env()`): Qt WebEngine reads it and serves the Chrome DevTools
Protocol on that port; Loupe has no code for it. `DevToolsPage.attach(port)` finds the page target
showing Loupe's server (http://127.0.0.1:...) in `/json/list` and speaks CDP to it over a websocket
(websocket-client): `Runtime.evaluate` runs a script in the page, with its origin and its
per-launch HttpOnly token cookie, exactly like the person's own clicks would.

Playwright's `chromium.connect_over_cdp` cannot drive QtWebEngine (6.12 answers
"Browser context management is not supported" to `Browser.setDownloadBehavior`), hence the plain
client. Qt refuses port 0 ("Invalid port given for the inspector server"), so the test picks a free
port itself.
"""
from __future__ import annotations

import itertools
import json
import socket
import time
import urllib.request
from typing import Any

REMOTE_DEBUGGING = "QTWEBENGINE_REMOTE_DEBUGGING"
SERVER_PREFIX = "http://127.0.0.1:"

# Loopback only, never through a proxy the environment may name.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class PageError(AssertionError):
    """The page's script threw, or the page could not be reached; the message says which."""


def unused_port() -> int:
    """A TCP port free on 127.0.0.1 right now (closed again: Qt binds it itself, shortly after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def remote_debugging_env(port: int) -> dict[str, str]:
    """The child's environment entry that turns on Qt WebEngine's DevTools server on `port`."""
    return {REMOTE_DEBUGGING: f"127.0.0.1:{port}"}


def page_targets(port: int) -> list[dict[str, Any]]:
    """The page targets the DevTools server lists (each with url, title, webSocketDebuggerUrl);
    [] while it is not answering yet."""
    try:
        with _opener.open(f"http://127.0.0.1:{port}/json/list", timeout=5) as resp:
            targets = json.load(resp)
    except (OSError, ValueError):
        return []
    return [t for t in targets if t.get("type") == "page"]


class DevToolsPage:
    """One CDP session with the window's page. Use as a context manager; `evaluate` a script."""

    def __init__(self, ws_url: str, timeout: float = 30) -> None:
        import websocket  # websocket-client (dev extra)

        self._ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self._ids = itertools.count(1)

    @classmethod
    def attach(cls, port: int, timeout: float = 120, prefix: str = SERVER_PREFIX,
               alive: Any = None) -> "DevToolsPage":
        """Wait (up to `timeout` s) until the page shows a URL starting with `prefix` (Loupe's
        server by default), then connect to it. `alive()`, when given, is polled too: the wait
        ends at once when it says the app has exited. Raises PageError naming what was seen."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline and (alive is None or alive()):
            seen = page_targets(port)
            for target in seen:
                if target.get("url", "").startswith(prefix) and target.get("webSocketDebuggerUrl"):
                    return cls(target["webSocketDebuggerUrl"])
            time.sleep(0.2)
        raise PageError(f"no page at {prefix}... on the DevTools port {port} within {timeout} s "
                        f"(targets: {[t.get('url') for t in seen]})")

    def send(self, method: str, params: dict[str, Any] | None = None,
             wait: float = 30) -> dict[str, Any]:
        """One CDP command; its `result` object, waited for up to `wait` s. Events arriving
        meanwhile are dropped."""
        call_id = next(self._ids)
        self._ws.settimeout(wait)
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params or {}}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise PageError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str, timeout: float = 30) -> Any:
        """Run `expression` in the page (a Promise is awaited) and return its value as JSON
        data. Raises PageError with the page's exception text when the script throws."""
        result = self.send("Runtime.evaluate", {
            "expression": expression, "awaitPromise": True, "returnByValue": True,
            "userGesture": True, "timeout": int(timeout * 1000)}, wait=timeout + 5)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = (details.get("exception") or {}).get("description") or details.get("text")
            raise PageError(f"the page's script threw: {text}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 30, interval: float = 0.1) -> Any:
        """Evaluate `expression` until it is truthy; its value. Raises PageError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise PageError(f"still false after {timeout} s: {expression}")
            time.sleep(interval)

    def cookies(self) -> list[dict[str, Any]]:
        """The page's cookies as the browser holds them (HttpOnly ones included)."""
        return self.send("Network.getCookies").get("cookies", [])

    def close(self) -> None:
        self._ws.close()

    def __enter__(self) -> "DevToolsPage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the X clipboard, through Qt in a helper process ------------------------------------------
# A helper process, not the test's own: a QApplication in the test process would stay for the
# whole session, and an X selection lives only as long as its owner process does.
_READ_CLIPBOARD = """
import sys
from PySide6.QtGui import QGuiApplication
app = QGuiApplication(["loupe-test-clipboard"])
sys.stdout.write(QGuiApplication.clipboard().text())
"""

_OWN_CLIPBOARD = """
import sys
from PySide6.QtGui import QGuiApplication, QImage
app = QGuiApplication(["loupe-test-clipboard"])
image = QImage(sys.argv[1])
assert not image.isNull(), sys.argv[1]
QGuiApplication.clipboard().setImage(image)
print("ready", flush=True)
app.exec()
"""


def _clipboard_env(env: dict[str, str]) -> dict[str, str]:
    out = dict(env, QT_QPA_PLATFORM="xcb")
    out.pop("WAYLAND_DISPLAY", None)
    return out


def clipboard_text(env: dict[str, str], timeout: float = 20) -> str:
    """The text on the X clipboard of the display named in `env` (DISPLAY=...)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _READ_CLIPBOARD], env=_clipboard_env(env),
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise PageError(f"could not read the clipboard: {out.stderr.strip()[-500:]}")
    return out.stdout


class ClipboardImage:
    """Puts the image file `path` on the X clipboard of `env`'s display and keeps it there (the
    helper process owns the selection) until the block ends."""

    def __init__(self, path: str, env: dict[str, str]) -> None:
        import subprocess
        import sys

        self._proc = subprocess.Popen([sys.executable, "-c", _OWN_CLIPBOARD, str(path)],
                                      env=_clipboard_env(env), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if line.strip() != "ready":
            self.close()
            raise PageError(f"could not put an image on the clipboard: {self._proc.stderr.read()[-500:]}")

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(10)

    def __enter__(self) -> "ClipboardImage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
