"""Serve a Gradio Blocks on 127.0.0.1 behind Loupe's guard.

`serve(build_ui)` picks a free loopback port, mounts the Blocks inside Loupe's own ASGI app and
runs it with uvicorn on a background thread. Every request (HTTP and websocket, every route:
page, config, uploads, the queue's join/data SSE, /file=, static assets) goes through `Guard`:

* the Host must be a loopback name with this server's port (DNS rebinding);
* an Origin header, when present, must be this server's own origin (`null` is refused);
* `Sec-Fetch-Site` must be absent, `same-origin` or `none`;
* the per-launch secret must come along: the first visit to `/?token=TOKEN` sets an HttpOnly,
  SameSite=Strict cookie and redirects to `/`; every later request needs that cookie.

Gradio is imported here lazily, after its environment is set, so `loupe caption` never pays
for it. The token is never logged: uvicorn's access log is off and `TokenFilter` redacts it.
"""
from __future__ import annotations

import hmac
import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, unquote

from desktop.early_script import EarlyScript
from engine.files import pid_alive

log = logging.getLogger("loupe.server")

MAX_FILE_SIZE = 200 * 1024 * 1024
SESSION_CAPACITY = 100  # browser tabs / API sessions whose state gradio keeps in memory
# gradio's queue polls for work while idle: every 1 ms (and for progress every 10 ms) on Linux
# and macOS, ~1,100 wake-ups a second, several % of a core at rest; on Windows gradio itself
# polls every 50 ms and 100 ms. Loupe uses gradio's Windows intervals everywhere: a click waits
# at most 50 ms longer to start, and the app sleeps at rest (bench/desktop_truth.py measures it).
QUEUE_IDLE_POLL_S = 0.05
PROGRESS_IDLE_POLL_S = 0.1
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
TEMP_DIR_PREFIX = "loupe-"

# Gradio routes Loupe never uses that can reach the network or run tools (proxying to Spaces,
# AI "vibe" editing, dev reload, screen-recording processing, monitoring). Refused outright.
_DENIED_PREFIXES = (
    "/gradio_api/proxy=",
    "/gradio_api/vibe",
    "/gradio_api/undo-vibe",
    "/gradio_api/dev/",
    "/gradio_api/process_recording",
    "/monitoring",
    "/gradio_api/openapi.json",
    "/openapi.json",
    "/docs",
    "/redoc",
)
# Routes that serve files by path: only files inside this launch's temp folder are served.
_FILE_ROUTES = ("/gradio_api/file=", "/gradio_api/file/", "/file=", "/file/")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:")


_TEMP_KEYS = ("GRADIO_TEMP_DIR", "GRADIO_EXAMPLES_CACHE")
_live_dirs: list[Path] = []  # temp folders of the servers running in this process, oldest first
_env_before_loupe: dict[str, str | None] = {}
_env_lock = threading.Lock()


def gradio_env() -> None:
    """The environment gradio reads once, at import: no telemetry or version check, no proxy
    for loopback, no Node SSR, no MCP, no run history. Call before anything imports gradio."""
    os.environ.update({
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_SSR_MODE": "False",
        "GRADIO_MCP_SERVER": "False",
        "GRADIO_RUN_HISTORY": "False",
    })
    for var in ("NO_PROXY", "no_proxy"):
        parts = [p for p in (os.environ.get(var) or "").split(",") if p]
        for host in ("127.0.0.1", "localhost", "::1"):
            if host not in parts:
                parts.append(host)
        os.environ[var] = ",".join(parts)


def _set_gradio_env(temp_dir: Path) -> None:
    """gradio_env() plus this launch's temp folder (read at Blocks/App creation)."""
    gradio_env()
    with _env_lock:
        if not _live_dirs:
            _env_before_loupe.clear()
            _env_before_loupe.update({k: os.environ.get(k) for k in _TEMP_KEYS})
        _live_dirs.append(temp_dir)
        os.environ["GRADIO_TEMP_DIR"] = str(temp_dir)
        os.environ["GRADIO_EXAMPLES_CACHE"] = str(temp_dir / "examples")


def _release_env(temp_dir: Path) -> None:
    """Point gradio's temp env at the newest server still running, or back to what it was."""
    with _env_lock:
        if temp_dir in _live_dirs:
            _live_dirs.remove(temp_dir)
        if _live_dirs:
            os.environ["GRADIO_TEMP_DIR"] = str(_live_dirs[-1])
            os.environ["GRADIO_EXAMPLES_CACHE"] = str(_live_dirs[-1] / "examples")
            return
        for key in _TEMP_KEYS:
            value = _env_before_loupe.get(key)
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _point_gradio_constants_at(temp_dir: Path) -> None:
    """Some gradio modules copy GRADIO_TEMP_DIR into a constant at import (e.g. every App
    creation makes DEFAULT_TEMP_DIR/vibe_edit_history); point them at this launch's folder."""
    import sys

    for name in ("gradio.route_utils", "gradio.routes", "gradio.mcp",
                 "gradio.screen_recording_utils"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "DEFAULT_TEMP_DIR"):
            module.DEFAULT_TEMP_DIR = str(temp_dir)


def _clean_stale_temp_dirs() -> None:
    """Remove temp folders left by Loupe processes that died without closing (ours only)."""
    root = Path(tempfile.gettempdir())
    try:
        entries = list(root.glob(TEMP_DIR_PREFIX + "*"))
    except OSError:
        return
    for entry in entries:
        match = re.fullmatch(re.escape(TEMP_DIR_PREFIX) + r"(\d+)-.+", entry.name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        try:
            st = entry.lstat()
            if not entry.is_dir() or entry.is_symlink():
                continue
            if hasattr(os, "getuid") and st.st_uid != os.getuid():
                continue
        except OSError:
            continue
        if not pid_alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


def free_port(host: str = "127.0.0.1") -> socket.socket:
    """A listening socket on a free port of `host` (kept open: no race with another process)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host.strip("[]"), 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class PortUnavailable(Exception):
    """The port asked for (--port N) cannot be served on; `str()` is one line for a person."""

    def __init__(self, port: int, exc: BaseException) -> None:
        reason = getattr(exc, "strerror", None) or str(exc)
        super().__init__(f"cannot serve on port {port} ({reason}). Choose another port with "
                         "--port N, or leave --port out to use a free one.")
        self.port = port


class TokenFilter(logging.Filter):
    """Redacts secrets from every log record that passes through a handler."""

    def __init__(self, *secrets_: str) -> None:
        super().__init__()
        self.secrets = [s for s in secrets_ if s]

    def add(self, secret: str) -> None:
        self.secrets.append(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        if any(s in message for s in self.secrets):
            for s in self.secrets:
                message = message.replace(s, "[redacted]")
            record.msg, record.args = message, None
        return True


_token_filter = TokenFilter()


def token_filter() -> TokenFilter:
    """The process-wide filter that knows every token served; add it to log handlers."""
    return _token_filter


class Guard:
    """Pure-ASGI middleware in front of everything: Host, Origin, Sec-Fetch-Site, token cookie."""

    def __init__(self, app: Any, *, port: int, token: str, temp_dir: Path,
                 hosts: Iterable[str] | None = None) -> None:
        self.app = app
        self.port = port
        self.token = token.encode()
        self.cookie_name = f"loupe_token_{port}"
        # "host:port" values a request may name; default: the loopback names
        self.hosts = set(hosts) if hosts else {f"{h}:{port}" for h in LOOPBACK_HOSTS}
        self.temp_dir = Path(os.path.realpath(temp_dir))

    # -- checks ---------------------------------------------------------------------------
    @staticmethod
    def _headers(scope: dict) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for key, value in scope.get("headers", []):
            out.setdefault(key.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        return out

    def _cookie_ok(self, headers: dict[str, list[str]]) -> bool:
        ok = False
        for header in headers.get("cookie", []):
            for part in header.split(";"):
                name, _, value = part.strip().partition("=")
                if name == self.cookie_name:
                    ok |= hmac.compare_digest(value.strip().encode(), self.token)
        return ok

    def _file_ok(self, path: str) -> bool:
        for prefix in _FILE_ROUTES:
            if path.startswith(prefix):
                target = path[len(prefix):]
                break
        else:
            return True
        for _ in range(3):  # undo any double encoding before judging
            target = unquote(target)
        is_drive = os.name == "nt" and re.match(r"^[a-zA-Z]:[\\/]", target)
        if not target or (_SCHEME.match(target) and not is_drive) or target.startswith("//"):
            return False  # a URL: gradio would fetch it from the network
        try:
            real = Path(os.path.realpath(target))
            real.relative_to(self.temp_dir)
        except (ValueError, OSError):
            return False
        return True

    def check(self, scope: dict) -> tuple[int, str] | None:
        """None when the request may pass, else (status, reason)."""
        headers = self._headers(scope)
        hosts = headers.get("host", [])
        if len(hosts) != 1 or hosts[0].lower() not in self.hosts:
            return 400, "bad host"
        host = hosts[0].lower()
        origins = headers.get("origin", [])
        if len(origins) > 1 or (origins and origins[0] != f"http://{host}"):
            return 403, "foreign origin"
        site = headers.get("sec-fetch-site", [])
        if any(v.strip().lower() not in ("same-origin", "none") for v in site):
            return 403, "cross-site request"
        path = scope.get("path", "")
        if any(path.startswith(p) for p in _DENIED_PREFIXES):
            return 403, "route not available"
        if not self._file_ok(path):
            return 403, "file not allowed"
        return None

    # -- ASGI -----------------------------------------------------------------------------
    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        kind = scope.get("type")
        if kind not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        refused = self.check(scope)
        if refused is None and kind == "http" and scope.get("path") == "/":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            if "token" in query:
                given = query["token"][-1].encode()
                if len(query["token"]) == 1 and hmac.compare_digest(given, self.token):
                    await self._redirect_with_cookie(send)
                    return
                refused = (403, "bad token")
        if refused is None and not self._cookie_ok(self._headers(scope)):
            refused = (403, "no token")
        if refused is not None:
            status, reason = refused
            log.info("refused %s %s: %s", kind, scope.get("path", "")[:80], reason)
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            else:
                await _plain(send, status, reason)
            return
        if kind == "http":
            await self.app(scope, receive, _with_headers(send))
        else:
            await self.app(scope, receive, send)

    async def _redirect_with_cookie(self, send: Callable) -> None:
        cookie = (f"{self.cookie_name}={self.token.decode()}; HttpOnly; SameSite=Strict; Path=/")
        await send({
            "type": "http.response.start",
            "status": 303,
            "headers": [
                (b"location", b"/"),
                (b"set-cookie", cookie.encode()),
                (b"cache-control", b"no-store"),
                (b"referrer-policy", b"no-referrer"),
                (b"content-length", b"0"),
            ],
        })
        await send({"type": "http.response.body", "body": b""})


_EXTRA_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
]


def _with_headers(send: Callable) -> Callable:
    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start":
            names = {k.lower() for k, _ in message.get("headers", [])}
            extra = [(k, v) for k, v in _EXTRA_HEADERS if k not in names]
            message = {**message, "headers": list(message.get("headers", [])) + extra}
        await send(message)

    return wrapped


async def _plain(send: Callable, status: int, text: str) -> None:
    body = f"Forbidden: {text}\n".encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store")],
    })
    await send({"type": "http.response.body", "body": body})


class Server:
    """A running, guarded Loupe server. Use as a context manager or call close()."""

    def __init__(self, *, host: str, port: int, token: str, temp_dir: Path, blocks: Any,
                 gradio_app: Any, uvicorn_server: Any, thread: threading.Thread,
                 sock: socket.socket) -> None:
        self.host, self.port, self.token = host, port, token
        self.temp_dir = temp_dir
        self.blocks = blocks
        self._gradio_app = gradio_app
        self._uvicorn = uvicorn_server
        self._thread = thread
        self._sock = sock
        self._lock = threading.Lock()
        self.closed = False

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def url(self) -> str:
        """The URL to open once: it carries the token, which the server trades for a cookie."""
        return f"{self.base_url}?token={self.token}"

    @property
    def cookie_name(self) -> str:
        return f"loupe_token_{self.port}"

    def __repr__(self) -> str:  # never shows the token
        return f"<Server {self.base_url} {'closed' if self.closed else 'running'}>"

    def close(self) -> None:
        """Stop uvicorn and the gradio queue, free the port, remove the temp folder."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        t0 = time.perf_counter()
        try:
            self.blocks._queue.close()
            self.blocks.is_running = False
            self._gradio_app.stop_event.set()
        except Exception:  # pragma: no cover - a half-started gradio
            log.exception("stopping gradio's queue")
        self._uvicorn.should_exit = True
        self._thread.join(timeout=3)
        if self._thread.is_alive():
            self._uvicorn.force_exit = True
            self._thread.join(timeout=2)
        try:
            self._sock.close()
        except OSError:
            pass
        self.blocks.server = None
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        _release_env(self.temp_dir)
        log.info("server on port %d closed in %.3f s", self.port, time.perf_counter() - t0)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def quiet_at_rest(blocks: Any) -> None:
    """Poll gradio's queue at gradio's own Windows intervals (see QUEUE_IDLE_POLL_S)."""
    queue = blocks._queue
    queue.sleep_when_free = max(queue.sleep_when_free, QUEUE_IDLE_POLL_S)
    queue.progress_update_sleep_when_free = max(queue.progress_update_sleep_when_free, PROGRESS_IDLE_POLL_S)


def serve(blocks_factory: Callable[[], Any], *, host: str = "127.0.0.1", port: int | None = None,
          max_file_size: int | str = MAX_FILE_SIZE, start_timeout: float = 20.0,
          network: bool = False, inside: Path | None = None, guard: Callable[..., Guard] = Guard,
          **mount_kwargs: Any) -> Server:
    """Build the Blocks from `blocks_factory()` and serve it guarded on a loopback port.

    `port=None` picks a free one. `mount_kwargs` go to `gr.mount_gradio_app` (theme, css, js,
    head, ...): in gradio 6 those belong to launch/mount, not to `gr.Blocks`.
    `network=True` allows an address that is not loopback (desktop.share); then only
    `host:port` itself is an accepted Host. `inside`: make the temp folder inside that one
    (gradio's upload checks read GRADIO_TEMP_DIR at run time, process-wide, so a second server's
    uploads must lie inside the first's); gradio's environment is left pointing there.
    `guard(app, port=, token=, temp_dir=, hosts=)` builds the guard (a Guard subclass).
    """
    if not network and host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        raise ValueError(f"Loupe only serves on a loopback address, not {host!r}")
    bind_host = "127.0.0.1" if host == "localhost" else host.strip("[]")
    url_host = f"[{bind_host}]" if ":" in bind_host else host
    _clean_stale_temp_dirs()
    temp_dir = Path(tempfile.mkdtemp(prefix=f"{TEMP_DIR_PREFIX}{os.getpid()}-", dir=inside))
    _set_gradio_env(temp_dir)
    sock = None
    try:
        if port:
            sock = socket.socket(socket.AF_INET6 if ":" in bind_host else socket.AF_INET)
            try:
                sock.bind((bind_host.strip("[]"), port))
                sock.listen(128)
            except (OSError, OverflowError) as exc:
                raise PortUnavailable(port, exc) from None
        else:
            sock = free_port(bind_host)
        port = sock.getsockname()[1]
        token = secrets.token_urlsafe(32)
        _token_filter.add(token)

        from engine import long_lived

        with long_lived.imports():
            import fastapi
            import gradio as gr
            import uvicorn
            from gradio.routes import App as GradioApp

        _point_gradio_constants_at(temp_dir)
        blocks = blocks_factory()
        # gradio keeps a copy of every block's config per session (~0.25 MB for Loupe's UI) and
        # each /gradio_api/call/ request is a new session: 10,000 by default, i.e. RSS growing
        # by gigabytes under an API client. One person's app needs few; the oldest go first.
        blocks.state_session_capacity = min(blocks.state_session_capacity, SESSION_CAPACITY)
        # A UI may carry its own theme/css (gradio 6 takes them at mount, not on Blocks).
        for key, value in getattr(blocks, "loupe_mount_kwargs", {}).items():
            mount_kwargs.setdefault(key, value)
        no_docs = dict(docs_url=None, redoc_url=None, openapi_url=None)
        app = fastapi.FastAPI(**no_docs)
        mount_kwargs.setdefault("footer_links", [])
        gr.mount_gradio_app(
            app, blocks, path="/", server_name=bind_host, server_port=port,
            run_history=False, app_kwargs=dict(no_docs), allowed_paths=[], blocked_paths=[],
            max_file_size=max_file_size, ssr_mode=False, mcp_server=False,
            enable_monitoring=False, pwa=False, **mount_kwargs,
        )
        gradio_app = next(r.app for r in app.routes if isinstance(getattr(r, "app", None), GradioApp))
        # gradio accepts a file named by path in an event's data only from its upload folder, but
        # checks that only for Blocks it launched itself (processing_utils._check_allowed): a
        # mounted app would copy any file of this computer into its cache for whoever names it.
        blocks.has_launched = True
        quiet_at_rest(blocks)
        if inside is not None:  # gradio's env and constants back to the folder holding this one
            _release_env(temp_dir)
            _point_gradio_constants_at(inside)
        hosts = {f"{url_host}:{port}"} if network else None
        # frames.js must run before gradio's modules load, i.e. from the page itself
        guarded = guard(EarlyScript(app), port=port, token=token, temp_dir=temp_dir, hosts=hosts)
        config = uvicorn.Config(guarded, log_config=None, access_log=False, lifespan="on",
                                log_level="warning", timeout_graceful_shutdown=1,
                                server_header=False, proxy_headers=False)
        userver = uvicorn.Server(config)
        thread = threading.Thread(target=userver.run, kwargs={"sockets": [sock]},
                                  name=f"loupe-uvicorn-{port}", daemon=True)
        thread.start()
        deadline = time.monotonic() + start_timeout
        while not userver.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                userver.should_exit = True
                raise RuntimeError("the Loupe server did not start (see the log)")
            time.sleep(0.005)
    except BaseException:
        if sock is not None:
            sock.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
        _release_env(temp_dir)
        raise
    server = Server(host=url_host, port=port, token=token, temp_dir=temp_dir, blocks=blocks,
                    gradio_app=gradio_app, uvicorn_server=userver, thread=thread, sock=sock)
    log.info("serving on %s", server.base_url)
    return server
