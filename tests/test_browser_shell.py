"""The served greet app in a real browser (Debian's chromium through Playwright)."""
from __future__ import annotations

import http.server
import os
import signal
import threading

import pytest

from app_process import AppProcess, missing_tools

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    env = dict(os.environ, LOUPE_HOME=str(tmp_path_factory.mktemp("browser-home")))
    with AppProcess("--browser", greet=True, env=env) as proc:
        proc.wait_for_url(timeout=120)
        yield proc
        code, _ = proc.stop(signal.SIGINT)
        assert code == 0, proc.output


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(missing_tools("chromium") or f"{CHROMIUM} missing: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright missing: pip install playwright==1.65.2 (the dev extra); "
                    "never `playwright install`: Debian's chromium is used")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=60_000)
        yield b
        b.close()


def test_greet_in_chromium(app, browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    hosts = set()
    page.on("request", lambda r: hosts.add(r.url.split("/")[2]))
    page.goto(app.url)
    assert page.url == app.base_url  # the token left the address bar
    page.fill("#name textarea", "Chromium")
    page.click("#greet")
    page.wait_for_function(
        "document.querySelector('#output textarea').value.startsWith('Hello')")
    assert page.input_value("#output textarea") == "Hello, Chromium!!!"
    assert page.evaluate("document.cookie") == ""  # HttpOnly
    assert hosts == {f"127.0.0.1:{app.port}"}, hosts  # no fonts/CDN/telemetry from the page
    context.close()


class _Attack(http.server.BaseHTTPRequestHandler):
    target = ""

    def do_GET(self):  # noqa: N802
        body = f"""<!doctype html><script>
        async function go() {{
          const fd = new FormData(); fd.append('files', new Blob(['x']), 'x.txt');
          const out = {{}};
          for (const [name, init, path] of [
              ['upload', {{method: 'POST', body: fd}}, 'gradio_api/upload'],
              ['config', {{}}, 'config']]) {{
            try {{ await fetch('{self.target}' + path, {{...init, mode: 'no-cors', credentials: 'include'}});
                  out[name] = 'sent'; }} catch (e) {{ out[name] = 'error'; }}
          }}
          window.done = out;
        }}
        go();
        </script>""".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_other_local_site_is_refused(app, browser):
    """A page from another local port is 'same-site' for cookies: the Origin check stops it."""
    _Attack.target = app.base_url
    attacker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Attack)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(app.url)  # the victim has the cookie
        assert any(c["name"] == f"loupe_token_{app.port}" for c in context.cookies())
        statuses = {}
        evil = context.new_page()
        evil.on("response", lambda r: statuses.setdefault(r.url.replace(app.base_url, ""), r.status)
                if r.url.startswith(app.base_url) else None)
        evil.goto(f"http://127.0.0.1:{attacker.server_address[1]}/")
        evil.wait_for_function("window.done !== undefined")
        evil.wait_for_timeout(300)
        assert statuses.get("gradio_api/upload") == 403, statuses
        assert statuses.get("config") == 403, statuses
        context.close()
    finally:
        attacker.shutdown()

