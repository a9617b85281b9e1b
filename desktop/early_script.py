"""A script of Loupe's at the very top of every HTML page the server sends, ahead of gradio's
own modules.

Gradio puts a Blocks' `head` into the page only after its app has loaded (the frontend appends
it), which is too late for a fix that must be in place when gradio's modules load:
`desktop/assets/frames.js` (gradio's status tracker keeps asking for animation frames after its
loading screen is gone) is one. `EarlyScript` is pure ASGI around the mounted app: a page
request is answered uncompressed (it comes from 127.0.0.1; compression gains nothing there) and
the script goes in ahead of the page's first script. Every other response passes through
untouched.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

FRAMES_JS = (Path(__file__).parent / "assets" / "frames.js").read_text(encoding="utf-8")

_HEAD = re.compile(rb"<head(\s[^>]*)?>", re.IGNORECASE)
_SCRIPT = re.compile(rb"<script[\s>]", re.IGNORECASE)


def _wants_html(scope: dict) -> bool:
    """A GET that a browser makes to show a page (navigation requests accept text/html)."""
    if scope.get("type") != "http" or scope.get("method") != "GET":
        return False
    return any(k.lower() == b"accept" and b"text/html" in v.lower() for k, v in scope.get("headers", []))


class EarlyScript:
    """Wraps an ASGI app; `script` (JavaScript, no `</script>` inside) runs first on its pages."""

    def __init__(self, app: Any, script: str = FRAMES_JS) -> None:
        if "</script" in script.lower():
            raise ValueError("the script would end its own <script> element")
        self.app = app
        self.tag = b"<script>" + script.encode("utf-8") + b"</script>"

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if not _wants_html(scope):
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"accept-encoding"]
        scope = {**scope, "headers": headers}
        start: dict | None = None
        body: list[bytes] = []

        async def edit(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                names = {k.lower(): v for k, v in message.get("headers", [])}
                is_page = (names.get(b"content-type", b"").lower().startswith(b"text/html")
                           and names.get(b"content-encoding", b"identity").lower() == b"identity")
                if not is_page:
                    await send(message)
                    return
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            page = b"".join(body)
            # before the page's first script, so the <meta charset> above it stays in the first
            # 1024 bytes where browsers look for it; else at the top of <head>
            head = _HEAD.search(page)
            script = _SCRIPT.search(page, head.end()) if head else None
            at = script.start() if script else head.end() if head else None
            if at is not None:
                page = page[:at] + self.tag + page[at:]
            out = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            out.append((b"content-length", str(len(page)).encode()))
            await send({**start, "headers": out})
            await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, edit)
