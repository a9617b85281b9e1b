"""The share's guard: Loupe's local guard (desktop.server.Guard: Host, Origin, Sec-Fetch-Site,
token cookie, temp-folder-only file routes), plus an allow-list of the routes the shared page
itself uses. Everything else (gradio's API and docs, MCP, monitoring, anything a later gradio
adds) is refused with 403 before gradio sees it."""
from __future__ import annotations

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


class ShareGuard(Guard):
    """Guard for one share: `hosts` is only the shared address; `on_visit()` is called once per
    browser that opens the link (its token traded for the cookie)."""

    def __init__(self, app: Any, *, on_visit: Callable[[], None] = lambda: None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.on_visit = on_visit

    def check(self, scope: dict) -> tuple[int, str] | None:
        refused = super().check(scope)
        if refused is None and not route_allowed(scope.get("path", "")):
            return 403, "route not shared"
        return refused

    async def _redirect_with_cookie(self, send: Callable) -> None:
        self.on_visit()
        await super()._redirect_with_cookie(send)

    def revoke(self) -> None:
        """The share ended: no token matches any more, even for a request already in flight."""
        import secrets

        self.token = secrets.token_bytes(32).hex().encode()
