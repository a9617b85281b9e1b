"""Quiet at rest: once Loupe's page has loaded and nothing is running, the page asks the browser
for no animation frames (each frame wakes the renderer and, in the window, Loupe's own process).

gradio 6.31's status tracker keeps re-arming a frame after its loading screen is destroyed
(desktop/assets/frames.js says why); `desktop.early_script` puts the fix at the top of every
page. CPU figures are bench/desktop_truth.py's (--parts idle,idle-browser), not asserted here.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import time

import pytest

from app_process import AppProcess
from desktop.early_script import FRAMES_JS, EarlyScript

# Counts the frames the page requests. An init script runs before any of the page's own scripts,
# so gradio's modules (and Loupe's frames.js) take this function as the browser's own.
COUNT_FRAMES = """(() => {
  window.__frames = 0;
  const request = window.requestAnimationFrame;
  window.requestAnimationFrame = function (callback) {
    window.__frames++;
    return request.call(window, callback);
  };
})();"""
QUIET_S, LIMIT_S, STEP_S = 2.0, 15.0, 0.5


@pytest.mark.browser
def test_loupe_page_at_rest_requests_no_animation_frames(installed, browser):
    """After the page has loaded (its load events done, the models warming up), a stretch of
    QUIET_S with no animation frame comes within LIMIT_S; before the fix there were 60 a second
    for as long as the page was open."""
    app = AppProcess("--browser", env=dict(os.environ))
    with app:
        url = app.wait_for_url(timeout=120)
        context = browser.new_context(viewport={"width": 1280, "height": 720})
        context.add_init_script(COUNT_FRAMES)
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(url)
        page.wait_for_selector("#loupe-caption")
        assert page.evaluate("window.__frames") > 0, "the counter saw no frame: it is not hooked in"
        quiet, seen = 0.0, []
        deadline = time.monotonic() + LIMIT_S
        while quiet < QUIET_S and time.monotonic() < deadline:
            page.evaluate("window.__frames = 0")
            time.sleep(STEP_S)
            seen.append(page.evaluate("window.__frames"))
            quiet = quiet + STEP_S if seen[-1] <= 1 else 0.0  # a stray frame now and then is harmless
        assert quiet >= QUIET_S, f"frames per {STEP_S} s, never quiet: {seen}"
        code, _ = app.stop(signal.SIGINT)
        assert code == 0, app.output


def _serve(app, headers: list[tuple[bytes, bytes]]) -> tuple[dict, bytes]:
    """One GET through `app` (ASGI): the response's start message and its whole body."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers}
    # a thread of its own: Playwright's sync API may hold this thread's event loop
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, app(scope, receive, send)).result()
    return sent[0], b"".join(m.get("body", b"") for m in sent[1:])


def _app(content_type: bytes, chunks: list[bytes]):
    """An ASGI app answering `chunks` as one response; it compresses ("br") when asked to."""
    async def app(scope, receive, send) -> None:
        asked = dict(scope["headers"]).get(b"accept-encoding", b"")
        headers = [(b"content-type", content_type),
                   (b"content-length", str(sum(map(len, chunks))).encode())]
        if b"br" in asked:
            headers.append((b"content-encoding", b"br"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})
    return app


def test_early_script_heads_the_page_and_leaves_the_rest_alone():
    page = [b"<!doctype html><html><HEAD lang='en'><meta charset='utf-8'>",
            b"<script type='module' src='./assets/index.js'></script></head><body></body></html>"]
    browser = [(b"accept", b"text/html,application/xhtml+xml"), (b"accept-encoding", b"gzip, br")]
    start, body = _serve(EarlyScript(_app(b"text/html; charset=utf-8", page)), browser)
    headers = dict(start["headers"])
    assert b"content-encoding" not in headers  # asked for uncompressed, so it can be edited
    assert int(headers[b"content-length"]) == len(body)
    tag = b"<script>" + FRAMES_JS.encode() + b"</script>"
    # ahead of gradio's scripts, behind the <meta charset> (browsers look for it in the first 1 KB)
    assert body == b"".join(page).replace(b"<script type='module'", tag + b"<script type='module'")
    _, body = _serve(EarlyScript(_app(b"text/html", [b"<html><head><title>x</title></head></html>"])), browser)
    assert body == b"<html><head>" + tag + b"<title>x</title></head></html>"  # no script: top of <head>
    # scripts, data and API calls pass through untouched, compressed as they were
    asset = [(b"accept", b"*/*"), (b"accept-encoding", b"gzip, br")]
    start, body = _serve(EarlyScript(_app(b"text/javascript", [b"let a = 1;"])), asset)
    assert dict(start["headers"])[b"content-encoding"] == b"br" and body == b"let a = 1;"
    with pytest.raises(ValueError):
        EarlyScript(_app(b"text/html", page), script="x = '</script>'")
