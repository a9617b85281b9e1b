"""The native window: pywebview with Qt, opened at once on a loading page.

`run_window(build_ui)` creates the window with a small inline page ("Loupe — Starting…"), and only
then, in the function handed to `webview.start`, imports gradio, builds the Blocks, serves them
behind the guard (desktop.server) and navigates the window to the server. Closing the window,
SIGINT or SIGTERM stop the server and return 0.

Navigation leaving the server's origin never happens inside the window: links to other sites
(plain or target=_blank) open in the system browser; anything else is refused.

Start-up steps are logged as "loupe.timing" lines (seconds after process start): window_shown,
loading_page_loaded, gradio_imported, server_up, app_mounted. The window has no test hooks; tests
act inside the page through QtWebEngine's own remote debugging (tests/devtools.py).
"""
from __future__ import annotations

import html
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

log = logging.getLogger("loupe.window")

# Gradio's app is mounted when its container holds blocks and its app-wide "Loading..."
# overlay (a translucent status wrap) is gone; pywebview's `loaded` fires long before.
MOUNTED_JS = (
    "(function(){var c=document.querySelector('gradio-app .gradio-container .contain');"
    "return !!(c && c.querySelector('.block')"
    " && !document.querySelector('gradio-app .wrap.default.full.translucent'));})()"
)


class NoDisplay(Exception):
    """There is no screen to open a window on."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (
            "Loupe cannot open its window: no display was found (DISPLAY and WAYLAND_DISPLAY "
            "are unset). Run `loupe --browser` to use Loupe in a web browser instead."))


def check_display() -> None:
    """Raise NoDisplay on Linux/BSD without an X or Wayland display (unless Qt is told where)."""
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or os.environ.get("QT_QPA_PLATFORM")):
            raise NoDisplay()


def _append_flags(var: str, *flags: str) -> None:
    current = os.environ.get(var, "").split()
    os.environ[var] = " ".join(current + [f for f in flags if f not in current])


def prepare_qt_env() -> None:
    """Chromium flags for QtWebEngine, set before Qt starts."""
    flags = []
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        flags.append("--no-sandbox")  # Chromium's sandbox refuses to run as root
    if sys.platform.startswith("linux") and not list(Path("/dev/dri").glob("renderD*")):
        flags.append("--disable-gpu")  # no GPU: skip the GL probing and its errors
    if os.environ.get("LOUPE_DISABLE_GPU"):
        flags.append("--disable-gpu")
    if flags:
        _append_flags("QTWEBENGINE_CHROMIUM_FLAGS", *flags)


def loading_html(title: str = "Loupe") -> str:
    name = html.escape(title)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{name}</title>
<style>
html,body{{height:100%;margin:0}}
body{{display:flex;align-items:center;justify-content:center;flex-direction:column;
 font-family:system-ui,-apple-system,"Segoe UI",sans-serif;background:#f7f7f8;color:#222}}
h1{{font-size:42px;font-weight:600;margin:0 0 12px;letter-spacing:.5px}}
p{{font-size:16px;color:#666;margin:0}}
.dot{{width:10px;height:10px;border-radius:50%;background:#f97316;display:inline-block;
 margin:18px 4px 0;animation:b 1.2s infinite ease-in-out}}
.dot:nth-child(2){{animation-delay:.2s}}.dot:nth-child(3){{animation-delay:.4s}}
@keyframes b{{0%,80%,100%{{opacity:.2}}40%{{opacity:1}}}}
</style></head><body><h1>{name}</h1><p id="loupe-status">Starting…</p>
<div><span class="dot"></span><span class="dot"></span><span class="dot"></span></div>
</body></html>"""


def _error_html(message: str) -> str:
    return (loading_html().replace("Starting…", "Loupe could not start.")
            .replace('<div><span class="dot">', f'<pre style="max-width:80%;white-space:pre-wrap">'
                     f'{html.escape(message)}</pre><div hidden><span class="dot">'))


# -- navigation policy ------------------------------------------------------------------------
class _NavPolicy:
    """Which URLs the window may show; the rest go to the system browser or nowhere."""

    def __init__(self) -> None:
        self.origins: set[tuple[str, int]] = set()  # (host, port) of the Loupe server

    def allow_server(self, port: int) -> None:
        self.origins = {(h, port) for h in ("127.0.0.1", "localhost", "::1")}

    def inside(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme in ("about", "data"):
            return True
        if parts.scheme == "file":  # only the inline loading page, before the server is up
            return not self.origins
        if parts.scheme == "http":
            try:
                return (parts.hostname or "", parts.port or 80) in self.origins
            except ValueError:
                return False
        return False

    def open_outside(self, url: str) -> None:
        if urlsplit(url).scheme not in ("http", "https", "mailto"):
            log.warning("refused to open %s", urlsplit(url).scheme + ":…")
            return
        import webbrowser

        log.info("opening in the system browser: %s", url)
        try:
            webbrowser.open(url, 2, True)
        except Exception:  # pragma: no cover - no browser at all
            log.exception("could not open the system browser")


_policy = _NavPolicy()


def _install_navigation_policy() -> None:
    """Patch pywebview's Qt page classes (before any window exists) with the policy above.

    pywebview 6.2 already sends target=_blank/window.open to the system browser (its
    NavigationHandler) but lets the main page navigate anywhere, and opens any scheme.
    """
    from webview.platforms import qt as wq

    if not getattr(wq, "is_webengine", False) or getattr(wq, "_loupe_patched", False):
        return
    from qtpy.QtWebEngineCore import QWebEnginePage

    link_types = {QWebEnginePage.NavigationType.NavigationTypeLinkClicked}

    def accept_main(self: Any, url: Any, nav_type: Any, is_main_frame: bool) -> bool:
        target = url.toString()
        if _policy.inside(target):
            return True
        if is_main_frame and nav_type in link_types:
            _policy.open_outside(target)
        else:
            log.warning("refused navigation away from Loupe (%s)", urlsplit(target).scheme)
        return False

    def accept_new_window(self: Any, url: Any, nav_type: Any, is_main_frame: bool) -> bool:
        target = url.toString()
        if target and target != "about:blank":
            _policy.open_outside(target)
        return False

    wq.BrowserView.WebPage.acceptNavigationRequest = accept_main
    wq.BrowserView.NavigationHandler.acceptNavigationRequest = accept_new_window
    wq._loupe_patched = True


# -- the window -------------------------------------------------------------------------------
class _State:
    def __init__(self) -> None:
        self.server: Any = None
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self.boot_thread: threading.Thread | None = None
        self.error: str | None = None


def _close_server(state: _State) -> None:
    with state.lock:
        server, state.server = state.server, None
    if server is not None:
        server.close()


_window: Any = None  # the open window, while run_window runs


def folder_dialog() -> Callable[[], str | None] | None:
    """A function opening the window's native folder chooser (the chosen path, or None when the
    person cancels); None when no window is open (browser mode), where the page has no such
    chooser. Call the returned function from a gradio handler thread, not the GUI thread."""
    window = _window
    if window is None:
        return None

    def pick() -> str | None:
        import webview

        chosen = window.create_file_dialog(webview.FileDialog.FOLDER)
        return chosen[0] if chosen else None

    return pick


def _boot(window: Any, state: _State, blocks_factory: Callable[[], Any], timings: Any,
          port: int | None) -> None:
    """Runs in pywebview's start thread: heavy imports, build, serve, navigate."""
    state.boot_thread = threading.current_thread()
    try:
        import gradio  # noqa: F401  (the slow import, timed on its own)

        timings.mark("gradio_imported")
        from desktop.server import serve

        server = serve(blocks_factory, port=port)
        timings.mark("server_up")
        with state.lock:
            if state.closing.is_set():
                late = server
            else:
                state.server, late = server, None
        if late is not None:  # the window was closed while we were starting
            late.close()
            return
        _policy.allow_server(server.port)
        window.events.shown.wait(15)
        window.load_url(server.url)
        threading.Thread(target=_watch_mount, args=(window, state, timings),
                         name="loupe-mount-watch", daemon=True).start()
    except Exception as exc:  # show it in the window, keep it in the log
        log.exception("Loupe could not start")
        state.error = f"{type(exc).__name__}: {exc}"
        if not state.closing.is_set():
            try:
                window.load_html(_error_html(state.error))
            except Exception:
                pass


def _watch_mount(window: Any, state: _State, timings: Any) -> None:
    """Poll the page until gradio's app has mounted (pywebview's `loaded` comes too early)."""
    deadline = time.monotonic() + 60
    while not state.closing.is_set() and time.monotonic() < deadline:
        try:
            if window.evaluate_js(MOUNTED_JS):
                timings.mark("app_mounted")
                return
        except Exception:
            pass
        time.sleep(0.05)
    if not state.closing.is_set():
        log.error("the app did not mount in the window within 60 s")


def run_window(blocks_factory: Callable[[], Any], *, title: str = "Loupe",
               icon: str | os.PathLike | None = None, port: int | None = None,
               timings: Any = None, width: int = 1100, height: int = 760) -> int:
    """Open the Loupe window, serve `blocks_factory()` in it, return the exit code (0).

    Raises NoDisplay when there is no screen (suggest `loupe --browser`).
    """
    from desktop.logs import Timings

    timings = timings or Timings()
    check_display()
    prepare_qt_env()
    import webview

    _install_navigation_policy()
    webview.settings["OPEN_EXTERNAL_LINKS_IN_BROWSER"] = True
    webview.settings["ALLOW_DOWNLOADS"] = True  # exports (CSV, ...) get a save dialog
    webview.settings["ALLOW_FILE_URLS"] = False
    global _window
    state = _State()
    window = _window = webview.create_window(title, html=loading_html(title), width=width,
                                             height=height, min_size=(640, 480), text_select=True,
                                             background_color="#F7F7F8")
    window.events.shown += lambda: timings.mark("window_shown")

    def on_loaded() -> None:  # the first page loaded is the inline "Starting…" page
        if "loading_page_loaded" not in timings.marks:
            timings.mark("loading_page_loaded")

    window.events.loaded += on_loaded

    def on_closing() -> None:
        state.closing.set()
        log.info("window closing")

    window.events.closing += on_closing

    def on_signal(signum: int, frame: Any) -> None:
        log.info("signal %d: closing the window", signum)
        state.closing.set()
        try:
            window.destroy()
        except Exception:
            pass

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT) + ((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ()):
        try:
            previous[sig] = signal.signal(sig, on_signal)
        except (ValueError, OSError):  # not the main thread / unsupported
            pass
    code = 0
    try:
        webview.start(_boot, (window, state, blocks_factory, timings, port), gui="qt",
                      private_mode=True, icon=str(icon) if icon else None)
    finally:
        t_closed = time.perf_counter()
        state.closing.set()
        _close_server(state)
        boot = state.boot_thread
        if boot is not None and boot is not threading.current_thread():
            boot.join(timeout=2)
        _close_server(state)
        _window = None
        for sig, handler in previous.items():
            try:
                signal.signal(sig, handler)
            except (ValueError, OSError, TypeError):
                pass
        log.info("window closed; server stopped %.3f s after the GUI loop ended",
                 time.perf_counter() - t_closed)
    if state.error:
        code = 1
    return code
