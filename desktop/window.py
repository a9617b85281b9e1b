"""The native window: pywebview with Qt, opened at once on a loading page.

`run_window(build_ui)` creates the window with a small inline page ("Loupe — Starting…"), and only
then, in the function handed to `webview.start`, imports gradio, builds the Blocks, serves them
behind the guard (desktop.server) and navigates the window to the server. Closing the window,
SIGINT or SIGTERM stop the server and return 0.

Navigation leaving the server's origin never happens inside the window: links to other sites
(plain or target=_blank) open in the system browser; anything else is refused. The page may use
the clipboard (copy buttons, paste a photo) only from the server's origin.

The window opens at the place and size saved when it was last closed (setting "window", see
choose_geometry) or centred at most 90 % of the screen; closing it while desktop.activity names
something running asks first (a native question; "Keep working" cancels the close).

Start-up steps are logged as "loupe.timing" lines (seconds after process start): window_shown,
loading_page_loaded, gradio_imported, server_up, app_mounted. The window has no test hooks; tests
act inside the page through QtWebEngine's own remote debugging (tests/devtools.py).
"""
from __future__ import annotations

import builtins
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
    """Chromium flags and Qt Quick's renderer for QtWebEngine, set before Qt starts."""
    flags = []
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        flags.append("--no-sandbox")  # Chromium's sandbox refuses to run as root
    no_gpu = sys.platform.startswith("linux") and not list(Path("/dev/dri").glob("renderD*"))
    if no_gpu or os.environ.get("LOUPE_DISABLE_GPU"):
        flags.append("--disable-gpu")  # no GPU: skip the GL probing and its errors
        # Without a GPU, Qt Quick (which shows the page in the window) draws through Mesa's
        # llvmpipe: OpenGL emulated on the CPU by one thread per core. Every frame of gradio's
        # progress animation then cost both cores a burst, stalling torch's threads (measured:
        # ~0.25 core while a scan's progress shows; bench/window_vs_browser.py). Qt Quick's own
        # software renderer draws the same page with a fraction of that, on the GUI thread.
        os.environ.setdefault("QT_QUICK_BACKEND", "software")
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

    def is_server_origin(self, origin: str) -> bool:
        """Whether `origin` ("http://127.0.0.1:PORT") is the Loupe server's."""
        parts = urlsplit(origin)
        try:
            return parts.scheme == "http" and (parts.hostname or "", parts.port or 80) in self.origins
        except ValueError:
            return False

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
    _install_clipboard_permission(wq.BrowserView.WebPage)
    wq.BrowserView.on_download_requested = _save_download
    wq._loupe_patched = True


def _install_clipboard_permission(page_class: Any) -> None:
    """Let Loupe's own page use the clipboard (gradio's copy button, paste into the photo drop).

    pywebview 6.2 answers `featurePermissionRequested` by calling `setFeaturePermission(url,
    feature, 1)` with plain ints, which PySide6 6.12 rejects (a TypeError on stderr), and it denies
    everything but camera and microphone anyway. Qt 6.8+ asks through `permissionRequested` (a
    QWebEnginePermission) instead when that signal has a receiver: grant ClipboardReadWrite to the
    Loupe server's origin only, deny the rest. The two settings let scripts reach the clipboard at
    all; the permission decides for which origin.
    """
    from qtpy.QtWebEngineCore import QWebEnginePage, QWebEngineSettings

    original_init = page_class.__init__
    clipboard = _clipboard_permission_type()

    def on_permission(permission: Any) -> None:
        origin = permission.origin().toString()
        kind = permission.permissionType()
        if clipboard is not None and kind == clipboard and _policy.is_server_origin(origin):
            permission.grant()
        else:
            log.info("refused the page's request for %s (%s)", getattr(kind, "name", kind),
                     urlsplit(origin).scheme + ":…")
            permission.deny()

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        if hasattr(QWebEnginePage, "permissionRequested"):  # Qt >= 6.8
            try:
                self.featurePermissionRequested.disconnect(self.onFeaturePermissionRequested)
            except (RuntimeError, TypeError, AttributeError):
                pass
            self.permissionRequested.connect(on_permission)
        settings = self.settings()
        settings.setAttribute(QWebEngineSettings.WebAttribute.JavascriptCanAccessClipboard, True)
        settings.setAttribute(QWebEngineSettings.WebAttribute.JavascriptCanPaste, True)

    page_class.__init__ = init


_dialog_folder: dict[str, str] = {}  # where the last save or folder dialog ended: the next starts there


def start_folder() -> str:
    """Where a file dialog opens: the folder the person last chose, else their home folder (never
    the folder Loupe happened to be started from)."""
    return _dialog_folder.get("last") or str(Path.home())


def _save_download(view: Any, download: Any) -> None:
    """Save a download from the page (an export) where the person chooses, and say so if it fails.

    Replaces pywebview 6.2's handler, which calls `setPath` (Qt 5 only): on PySide6 6.12 it raised
    AttributeError after the Save dialog, so nothing was written and nothing said. Qt 6 takes the
    folder and the name apart (`setDownloadDirectory`, `setDownloadFileName`)."""
    from qtpy.QtWidgets import QFileDialog

    name = (download.downloadFileName() if hasattr(download, "downloadFileName")
            else Path(download.url().path()).name) or "download"
    suffix = Path(name).suffix
    chosen, _ = QFileDialog.getSaveFileName(view, "Save file", str(Path(start_folder()) / name),
                                            f"*{suffix}" if suffix else "")
    if not chosen:
        download.cancel()
        return
    target = Path(chosen)
    _dialog_folder["last"] = str(target.parent)
    if hasattr(download, "setDownloadDirectory"):  # Qt 6
        download.setDownloadDirectory(str(target.parent))
        download.setDownloadFileName(target.name)
        download.isFinishedChanged.connect(lambda: _download_finished(view, download, target))
    else:  # Qt 5
        download.setPath(str(target))
    download.accept()


def _download_finished(view: Any, download: Any, target: Path) -> None:
    from qtpy.QtWebEngineCore import QWebEngineDownloadRequest
    from qtpy.QtWidgets import QMessageBox

    if download.state() == QWebEngineDownloadRequest.DownloadState.DownloadCompleted:
        log.info("saved a download to %s", target)
        return
    reason = download.interruptReasonString() or "the download was interrupted"
    log.warning("could not save a download to %s: %s", target, reason)
    if download.state() != QWebEngineDownloadRequest.DownloadState.DownloadCancelled:
        QMessageBox.warning(view, "Loupe", f"Could not save {target.name} in {target.parent}: {reason}.")


def _clipboard_permission_type() -> Any:
    try:
        from qtpy.QtWebEngineCore import QWebEnginePermission
    except ImportError:  # Qt < 6.8: no per-origin permission object; the settings suffice
        return None
    return QWebEnginePermission.PermissionType.ClipboardReadWrite


# -- size and place ---------------------------------------------------------------------------
GEOMETRY_SETTING = "window"  # engine.paths settings key: the last window size and place
DEFAULT_SIZE = (1100, 760)  # the page's own layout is comfortable at this size
SCREEN_FRACTION = 0.9  # never more of the screen than this, so the title bar stays reachable
MIN_SIZE = (640, 480)
FRAME_GUESS = (0, 32)  # title bar + borders (w, h) before the window manager has framed us

Rect = tuple[int, int, int, int]  # x, y, width, height in screen pixels


def choose_geometry(available: list[Rect], saved: dict[str, Any] | None = None,
                    default: tuple[int, int] = DEFAULT_SIZE) -> tuple[Rect, bool]:
    """Where to open the window: ((x, y, width, height), maximized).

    `available` holds each screen's available area (without panels), the first being the primary
    one. x, y place the frame's top-left corner (title bar included); width, height are the page's
    size. A `saved` geometry (as `geometry_to_save` wrote it) is used when its whole frame still
    lies on one screen; otherwise the window opens centred on the primary screen at `default`,
    shrunk to at most SCREEN_FRACTION of that screen.
    """
    if saved:
        try:
            x, y, w, h = (int(saved[k]) for k in ("x", "y", "width", "height"))
            fw, fh = int(saved.get("frame_width", w)), int(saved.get("frame_height", h + FRAME_GUESS[1]))
            for ax, ay, aw, ah in available:
                if (w >= MIN_SIZE[0] and h >= MIN_SIZE[1] and ax <= x and ay <= y
                        and x + fw <= ax + aw and y + fh <= ay + ah):
                    return (x, y, w, h), bool(saved.get("maximized"))
        except (KeyError, TypeError, ValueError):
            pass
        log.info("ignoring the saved window place %s: it fits no screen now", saved)
    ax, ay, aw, ah = available[0] if available else (0, 0, *default)
    w = min(default[0], int(aw * SCREEN_FRACTION))
    h = min(default[1], int(ah * SCREEN_FRACTION))
    fw, fh = w + FRAME_GUESS[0], h + FRAME_GUESS[1]
    return (ax + max(0, (aw - fw) // 2), ay + max(0, (ah - fh) // 2), w, h), False


def geometry_to_save(native: Any) -> dict[str, Any]:
    """The window's place and size (a QWidget), for `choose_geometry` next time. A maximized window
    keeps its normal place and size and says it was maximized."""
    maximized = bool(native.isMaximized())
    if maximized:  # normalGeometry() is the page's rect when not maximized
        normal = native.normalGeometry()
        frame = native.frameGeometry()
        dw, dh = frame.width() - native.width(), frame.height() - native.height()
        dx, dy = native.geometry().x() - frame.x(), native.geometry().y() - frame.y()
        x, y, w, h = normal.x() - dx, normal.y() - dy, normal.width(), normal.height()
    else:
        frame = native.frameGeometry()
        dw, dh = frame.width() - native.width(), frame.height() - native.height()
        x, y, w, h = frame.x(), frame.y(), native.width(), native.height()
    return {"x": x, "y": y, "width": w, "height": h, "frame_width": w + dw,
            "frame_height": h + dh, "maximized": maximized}


def _available_screens() -> list[Rect]:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    primary = app.primaryScreen() if app else None
    screens = ([primary] if primary else []) + [s for s in (app.screens() if app else [])
                                                 if s is not primary]
    out = []
    for screen in screens:
        r = screen.availableGeometry()
        out.append((r.x(), r.y(), r.width(), r.height()))
    return out


def _place(native: Any, default: tuple[int, int] = DEFAULT_SIZE) -> None:
    """Before the first show (GUI thread): size and place the window for the screen it opens on."""
    from engine import paths

    try:
        saved = paths.load_settings().get(GEOMETRY_SETTING)
    except Exception:  # an unreadable settings file must not keep the window shut
        log.exception("could not read the saved window place")
        saved = None
    (x, y, w, h), maximized = choose_geometry(
        _available_screens(), saved if isinstance(saved, dict) else None, default)
    native.setMinimumSize(min(MIN_SIZE[0], w), min(MIN_SIZE[1], h))
    native.resize(w, h)
    native.move(x, y)
    if maximized:
        from qtpy.QtCore import Qt

        native.setWindowState(native.windowState() | Qt.WindowState.WindowMaximized)
    log.info("window placed at %d,%d, %dx%d%s", x, y, w, h, " (maximized)" if maximized else "")


def _save_place(native: Any) -> None:
    from engine import paths

    try:
        paths.save_setting(GEOMETRY_SETTING, geometry_to_save(native))
    except Exception:  # losing the place is no reason to refuse closing
        log.exception("could not save the window place")


# -- closing while busy -----------------------------------------------------------------------
def close_question(what: str) -> str:
    """The close prompt's text for `what` is running (desktop.activity.current())."""
    return (f"{what[:1].upper()}{what[1:]} is running. Stop it and close Loupe? "
            "Photos already captioned are kept.")


def _confirm_close(native: Any, what: str) -> bool:
    """Ask (GUI thread, modal) whether to stop `what` and close; True for yes."""
    from qtpy.QtWidgets import QMessageBox

    box = QMessageBox(QMessageBox.Icon.Question, "Close Loupe?", close_question(what),
                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, native)
    box.button(QMessageBox.StandardButton.Yes).setText("&Stop and close")
    box.button(QMessageBox.StandardButton.No).setText("&Keep working")
    box.setDefaultButton(QMessageBox.StandardButton.No)
    box.setObjectName("loupe-close-question")
    return box.exec() == QMessageBox.StandardButton.Yes


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

# PySide6 replaces builtins.__import__ with a hook that, after every import in the process, reads
# the new module's whole source to see whether it mentions PySide6 (for its opt-in `from
# __feature__ import snake_case`; the same start-up tax napari met: napari/napari#8584). Neither
# Loupe nor pywebview uses __feature__, and the hook taxes every module the window imports after
# Qt: gradio, the UI, then torch and transformers for the first caption (bench/startup.py).
_PLAIN_IMPORT = builtins.__import__  # taken when this module loads, before any Qt import


def _drop_pyside_import_hook() -> bool:
    """Give Python's own `__import__` back once Qt is loaded; True when PySide6's hook was there."""
    current = builtins.__import__
    if getattr(current, "__name__", "") != "__feature_import__" or current is _PLAIN_IMPORT:
        return False
    if getattr(_PLAIN_IMPORT, "__name__", "") != "__import__":
        return False  # Qt was imported before this module: the plain import is not known
    builtins.__import__ = _PLAIN_IMPORT
    return True



def folder_dialog() -> Callable[[], str | None] | None:
    """A function opening the window's native folder chooser (the chosen path, or None when the
    person cancels); None when no window is open (browser mode), where the page has no such
    chooser. Call the returned function from a gradio handler thread, not the GUI thread."""
    window = _window
    if window is None:
        return None

    def pick() -> str | None:
        import webview

        chosen = window.create_file_dialog(webview.FileDialog.FOLDER, directory=start_folder())
        if chosen:
            _dialog_folder["last"] = str(Path(chosen[0]))
        return chosen[0] if chosen else None

    return pick


def _boot(window: Any, state: _State, blocks_factory: Callable[[], Any], timings: Any,
          port: int | None) -> None:
    """Runs in pywebview's start thread: heavy imports, build, serve, navigate."""
    state.boot_thread = threading.current_thread()
    if _drop_pyside_import_hook():
        log.debug("PySide6's import hook removed")
    try:
        from engine import long_lived

        with long_lived.imports():
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
               timings: Any = None, width: int = DEFAULT_SIZE[0], height: int = DEFAULT_SIZE[1]) -> int:
    """Open the Loupe window, serve `blocks_factory()` in it, return the exit code (0).

    The window opens where it was last closed when that still fits a screen, else centred at
    `width` x `height` shrunk to 90 % of the screen (choose_geometry). Closing it while
    desktop.activity says something runs asks first; what was running stops with the process.

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
                                             height=height, min_size=MIN_SIZE, text_select=True,
                                             background_color="#F7F7F8")
    window.events.before_show += lambda: _place(window.native, (width, height))
    window.events.shown += lambda: timings.mark("window_shown")

    def on_loaded() -> None:  # the first page loaded is the inline "Starting…" page
        if "loading_page_loaded" not in timings.marks:
            timings.mark("loading_page_loaded")

    window.events.loaded += on_loaded

    asking = threading.Lock()

    def on_closing() -> bool:
        """Runs in the GUI thread when the window is asked to close; False keeps it open."""
        from desktop import activity

        what = None if state.closing.is_set() else activity.current()  # a signal does not ask
        if what:
            if not asking.acquire(blocking=False):
                return False  # the question is already on screen
            try:
                log.info("close asked while busy: asking first (%s)", close_question(what))
                if not _confirm_close(window.native, what):
                    log.info("close cancelled: %s goes on", what)
                    return False
            finally:
                asking.release()
        _save_place(window.native)
        state.closing.set()
        log.info("window closing")
        return True

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
