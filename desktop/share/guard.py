"""The share's guard: Loupe's local guard (desktop.server.Guard: Host, Origin, Sec-Fetch-Site,
token cookie, temp-folder-only file routes), plus an allow-list of the routes the shared page
itself uses. Everything else (gradio's API and docs, MCP, monitoring, anything a later gradio
adds) is refused with 403 before gradio sees it."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from desktop.server import Guard

# Exactly what the shared page loads and calls (read from a real page load in Chromium).
ALLOWED_PATHS = frozenset({"/", "/config", "/theme.css", "/favicon.ico",
                           "/gradio_api/queue/join", "/gradio_api/queue/data",
                           "/gradio_api/upload", "/gradio_api/upload_progress",
                           "/gradio_api/heartbeat"})
ALLOWED_PREFIXES = ("/assets/", "/static/", "/gradio_api/file=", "/gradio_api/heartbeat/")


def route_allowed(path: str) -> bool:
    """Whether the shared page may use `path` (its file routes are judged by Guard as well)."""
    return path in ALLOWED_PATHS or path.startswith(ALLOWED_PREFIXES)


MAX_FOLDER_BYTES = 2 * 1024 ** 3  # all visitors' uploads together, while a share runs


def _folder_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


_COOKIE_PAGE = (b'<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=/">'
                b'<title>Loupe</title><a href="/">Open Loupe</a>')


def _opens_link(scope: dict) -> bool:
    """A top-level GET of the link itself ("/?token=..."), as a browser opens it."""
    if scope.get("type") != "http" or scope.get("method") != "GET" or scope.get("path") != "/":
        return False
    if b"token=" not in scope.get("query_string", b""):
        return False
    headers = {k.lower(): v.lower() for k, v in scope.get("headers", [])}
    return (headers.get(b"sec-fetch-mode", b"navigate") == b"navigate"
            and headers.get(b"sec-fetch-dest", b"document") == b"document")


class ShareGuard(Guard):
    """Guard for one share: `hosts` is only the shared address; `on_visit()` is called once per
    browser that opens the link (its token traded for the cookie)."""

    def __init__(self, app: Any, *, on_visit: Callable[[], None] = lambda: None,
                 max_folder_bytes: int = MAX_FOLDER_BYTES, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.on_visit = on_visit
        self.max_folder_bytes = max_folder_bytes

    def check(self, scope: dict) -> tuple[int, str] | None:
        if _opens_link(scope):
            # The link opened from another page (a web chat, a mail): a cross-site navigation.
            # It carries the token, so it may pass; the cookie page below then moves to "/" as
            # a same-origin navigation, which every other check applies to.
            scope = {**scope, "headers": [(k, v) for k, v in scope.get("headers", [])
                                          if k.lower() != b"sec-fetch-site"]}
        refused = super().check(scope)
        if refused is None and not route_allowed(scope.get("path", "")):
            return 403, "route not shared"
        if refused is None and scope.get("path") == "/gradio_api/upload" and \
                _folder_bytes(self.temp_dir) >= self.max_folder_bytes:
            return 507, "the share's folder is full"  # each upload is capped; so is their sum
        return refused

    async def _redirect_with_cookie(self, send: Callable) -> None:
        """The local guard's cookie answer, as a small page that moves on to "/" itself: a 303
        after a cross-site navigation would stay cross-site, and the SameSite=Strict cookie unsent."""
        self.on_visit()

        async def as_page(message: dict) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", [])
                        if k not in (b"location", b"content-length")]
                message = {**message, "status": 200, "headers": kept + [
                    (b"content-type", b"text/html; charset=utf-8"), (b"x-frame-options", b"DENY"),
                    (b"content-length", str(len(_COOKIE_PAGE)).encode())]}
            else:
                message = {**message, "body": _COOKIE_PAGE}
            await send(message)

        await super()._redirect_with_cookie(as_page)

    def revoke(self) -> None:
        """The share ended: no token matches any more, even for a request already in flight."""
        import secrets

        self.token = secrets.token_bytes(32).hex().encode()
