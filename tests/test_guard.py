"""The guard in front of Loupe's local server, tested against a real served greet app.

The server runs as `python tests/greet_app.py --browser` (Loupe's shell around the greet app) in
a subprocess (its own env, log and temp folder), like a user's `loupe --browser`.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from app_process import ROOT, AppProcess, alive, iter_temp_dirs

TIMEOUT = httpx.Timeout(20.0)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("guard-home")


@pytest.fixture(scope="module")
def app(home):
    env = dict(os.environ, LOUPE_HOME=str(home))
    env.pop("GRADIO_TEMP_DIR", None)
    proc = AppProcess("--browser", greet=True, env=env)
    try:
        proc.wait_for_url(timeout=120)
        yield proc
    finally:
        code, elapsed = proc.stop(signal.SIGINT, timeout=10)
        assert code == 0, proc.output
        assert elapsed < 3, f"--browser took {elapsed:.2f} s to stop"


@pytest.fixture(scope="module")
def client(app):
    """A client that went through the token handshake (holds the cookie)."""
    with httpx.Client(base_url=app.base_url, timeout=TIMEOUT) as c:
        r = c.get(f"/?token={app.token}")
        assert r.status_code == 303 and r.headers["location"] == "/"
        yield c


@pytest.fixture(scope="module")
def uploaded(client) -> str:
    """A file uploaded with the token: its path inside gradio's temp folder."""
    r = client.post("/gradio_api/upload", files={"files": ("hello.txt", b"hello loupe\n", "text/plain")})
    assert r.status_code == 200, r.text
    (path,) = r.json()
    return path


def cookie_header(app) -> dict[str, str]:
    return {"Cookie": f"loupe_token_{app.port}={app.token}"}


def routes(app, uploaded):
    """(name, method, path, request kwargs) covering page, config, api, upload, queue, files, assets."""
    config = httpx.get(app.base_url + "config", headers=cookie_header(app), timeout=TIMEOUT).json()
    fn_index = next(i for i, d in enumerate(config["dependencies"]) if d.get("api_name") == "greet")
    asset = "/assets/" + next(Path(p).name for p in _asset_paths(app))
    join = {"data": ["Ada", 3], "fn_index": fn_index, "session_hash": "guardtest",
            "event_data": None, "trigger_id": None}
    return [
        ("page", "GET", "/", {}),
        ("config", "GET", "/config", {}),
        ("info", "GET", "/gradio_api/info", {}),
        ("upload", "POST", "/gradio_api/upload",
         {"files": {"files": ("x.txt", b"x", "text/plain")}}),
        ("queue_join", "POST", "/gradio_api/queue/join", {"json": join}),
        ("queue_data", "GET", "/gradio_api/queue/data?session_hash=guardtest", {}),
        ("file", "GET", f"/gradio_api/file={uploaded}", {}),
        ("asset", "GET", asset, {}),
        ("theme", "GET", "/theme.css", {}),
        ("websocket", "GET", "/gradio_api/queue/data",
         {"headers": {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                      "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}}),
    ]


def _asset_paths(app) -> list[str]:
    import re

    page = httpx.get(app.base_url, headers=cookie_header(app), timeout=TIMEOUT).text
    found = re.findall(r'(?:src|href)="[^"]*?(/assets/[^"]+\.(?:js|css))"', page)
    assert found, page[:2000]
    return found


def send(app, method, path, kwargs, headers=None, cookie=True):
    hdrs = dict(kwargs.get("headers", {}))
    if cookie:
        hdrs.update(cookie_header(app))
    hdrs.update(headers or {})
    kw = {k: v for k, v in kwargs.items() if k != "headers"}
    with httpx.Client(base_url=app.base_url, timeout=TIMEOUT) as c:
        with c.stream(method, path, headers=hdrs, **kw) as r:
            if r.status_code >= 400:
                return r.status_code, r.read().decode(errors="replace")
            return r.status_code, ""


REFUSED = {
    "host evil.example": ({"Host": "evil.example"}, True),
    "host 127.0.0.1.evil.example": ({"Host": "127.0.0.1.evil.example"}, True),
    "host with our port on a foreign name": ({"Host": "evil.example:{port}"}, True),
    "host localhost, another port": ({"Host": "localhost:1"}, True),
    "host 127.0.0.1 without port": ({"Host": "127.0.0.1"}, True),
    "origin evil.example": ({"Origin": "http://evil.example"}, True),
    "origin null": ({"Origin": "null"}, True),
    "origin another local port": ({"Origin": "http://127.0.0.1:1"}, True),
    "origin https same host": ({"Origin": "https://127.0.0.1:{port}"}, True),
    "sec-fetch-site cross-site": ({"Sec-Fetch-Site": "cross-site"}, True),
    "sec-fetch-site same-site": ({"Sec-Fetch-Site": "same-site"}, True),
    "no cookie": ({}, False),
    "wrong cookie": ({"Cookie": "loupe_token_{port}=not-the-token"}, False),
    "token in a cookie for another port": ({"Cookie": "loupe_token_1={token}"}, False),
}


def test_normal_requests_pass(app, uploaded):
    for name, method, path, kwargs in routes(app, uploaded):
        if name in ("queue_data", "websocket"):
            continue  # streams: covered by the greet round trip below
        status, body = send(app, method, path, kwargs,
                            headers={"Origin": f"http://127.0.0.1:{app.port}",
                                     "Sec-Fetch-Site": "same-origin"})
        assert status < 400, (name, status, body)


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_on_every_route(app, uploaded, case):
    extra, with_cookie = REFUSED[case]
    headers = {k: v.format(port=app.port, token=app.token) for k, v in extra.items()}
    for name, method, path, kwargs in routes(app, uploaded):
        status, body = send(app, method, path, kwargs, headers=headers, cookie=with_cookie)
        # refused by the guard itself (its own body), not by some later 4xx of gradio's
        assert status in (400, 403) and body.startswith("Forbidden:"), (case, name, status, body)


def test_guard_refuses_websockets():
    """uvicorn here has no websocket library, so check the ASGI websocket path directly."""
    import asyncio

    from desktop.server import Guard

    reached = []

    async def inner(scope, receive, send):
        reached.append(scope["type"])

    guard = Guard(inner, port=5000, token="secret-token", temp_dir=Path("/nonexistent"))

    def run(headers):
        sent = []

        async def send(message):
            sent.append(message)

        async def receive():
            return {"type": "websocket.connect"}

        scope = {"type": "websocket", "path": "/ws", "query_string": b"",
                 "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
        asyncio.run(guard(scope, receive, send))
        return sent

    good = {"host": "127.0.0.1:5000", "cookie": "loupe_token_5000=secret-token",
            "origin": "http://127.0.0.1:5000"}
    for bad in ({"origin": "http://evil.example"}, {"origin": "null"}, {"host": "evil.example"},
                {"cookie": "loupe_token_5000=nope"}, {"sec-fetch-site": "cross-site"}):
        assert run({**good, **bad}) == [{"type": "websocket.close", "code": 1008}], bad
    assert reached == []
    assert run(good) == [] and reached == ["websocket"]


def test_token_handshake_sets_strict_httponly_cookie(app):
    with httpx.Client(base_url=app.base_url, timeout=TIMEOUT) as c:
        assert c.get("/").status_code == 403
        assert c.get("/?token=wrong").status_code == 403
        assert c.get("/?token=" + app.token[:-1]).status_code == 403
        r = c.get(f"/?token={app.token}")
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        attrs = {a.strip().lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= attrs, cookie
        assert cookie.startswith(f"loupe_token_{app.port}={app.token};")
        page = c.get("/")
        assert page.status_code == 200 and "<gradio-app" in page.text
        assert page.headers["x-frame-options"] == "DENY"
        # the token is only accepted on the first page, not as a key to other routes
        with httpx.Client(base_url=app.base_url, timeout=TIMEOUT) as fresh:
            assert fresh.get(f"/config?token={app.token}").status_code == 403


def test_greet_through_the_queue(app, client):
    config = client.get("/config").json()
    fn_index = next(i for i, d in enumerate(config["dependencies"]) if d.get("api_name") == "greet")
    r = client.post("/gradio_api/queue/join", json={
        "data": ["Ada", 4], "fn_index": fn_index, "session_hash": "roundtrip",
        "event_data": None, "trigger_id": None})
    assert r.status_code == 200, r.text
    output = None
    with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": "roundtrip"}) as s:
        for line in s.iter_lines():
            if not line.startswith("data:"):
                continue
            msg = json.loads(line[5:])
            if msg.get("msg") == "process_completed":
                output = msg["output"]["data"][0]
                break
    assert output == "Hello, Ada!!!!"


def test_gradio_client_with_the_cookie(app):
    from gradio_client import Client

    c = Client(app.base_url, headers=cookie_header(app), verbose=False, download_files=False)
    assert c.predict("Grace", 2, api_name="/greet") == "Hello, Grace!!"
    with pytest.raises(Exception):
        Client(app.base_url, verbose=False, download_files=False)  # no cookie: refused


def test_only_the_greet_endpoint_is_listed(client):
    info = client.get("/gradio_api/info").json()
    assert list(info["named_endpoints"]) == ["/greet"]
    assert info["unnamed_endpoints"] == {}
    config = client.get("/config").json()
    assert config.get("footer_links") == []


def test_no_remote_fonts_or_scripts(client):
    for path in ("/", "/theme.css"):
        text = client.get(path).text
        assert "fonts.googleapis.com" not in text and "fonts.gstatic.com" not in text, path


def raw_get(app, path: str, cookie: bool = True) -> tuple[int, bytes]:
    """http.client sends the path as is (httpx would normalise the dots away)."""
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=20)
    try:
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", f"127.0.0.1:{app.port}")
        if cookie:
            conn.putheader("Cookie", f"loupe_token_{app.port}={app.token}")
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_file_route_serves_only_gradio_files(app, uploaded):
    temp_dir = Path(uploaded).parents[1]
    while not temp_dir.name.startswith("loupe-"):
        temp_dir = temp_dir.parent
    link = temp_dir / "escape-link"
    link.symlink_to("/etc/passwd")
    inner = Path(uploaded).parent / "dir-link"
    inner.symlink_to("/etc", target_is_directory=True)
    rel = os.path.relpath("/etc/passwd", Path(uploaded).parent)
    attempts = [
        "/gradio_api/file=/etc/passwd",
        "/gradio_api/file=../../etc/passwd",
        "/gradio_api/file=../../../../../../../../etc/passwd",
        f"/gradio_api/file={temp_dir}/../../etc/passwd",
        f"/gradio_api/file={Path(uploaded).parent}/{rel}",
        "/gradio_api/file=%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/gradio_api/file=%2fetc%2fpasswd",
        "/gradio_api/file=%252fetc%252fpasswd",
        f"/gradio_api/file={temp_dir}%2f..%2f..%2fetc%2fpasswd",
        f"/gradio_api/file={temp_dir}/%2e%2e/%2e%2e/etc/passwd",
        "/gradio_api/file/etc/passwd",
        "/gradio_api/file//etc/passwd",
        "/file=/etc/passwd",
        f"/gradio_api/file={link}",
        f"/gradio_api/file={inner}/passwd",
        "/gradio_api/file=http://example.com/x.png",
        "/gradio_api/file=https:%2F%2Fexample.com%2Fx.png",
        "/gradio_api/file=//example.com/x.png",
        "/gradio_api/proxy=https://example.com/",
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/assets/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/gradio_api/vibe-code",
        "/gradio_api/openapi.json",
        "/monitoring",
    ]
    for path in attempts:
        status, body = raw_get(app, path)
        assert status >= 400, (path, status, body[:200])
        assert b"root:" not in body, path
    status, body = raw_get(app, f"/gradio_api/file={uploaded}")
    assert status == 200 and body == b"hello loupe\n"


def test_token_never_logged(app, client, home):
    client.get("/")
    log = (home / "logs" / "loupe.log").read_text(encoding="utf-8")
    assert "serving on" in log
    assert app.token not in log


def test_browser_mode_cleans_up(tmp_path):
    env = dict(os.environ, LOUPE_HOME=str(tmp_path))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        wanted = s.getsockname()[1]
    with AppProcess("--browser", "--port", str(wanted), greet=True, env=env) as proc:
        proc.wait_for_url(timeout=120)
        assert proc.port == wanted
        dirs = list(iter_temp_dirs(proc.proc.pid))
        assert len(dirs) == 1
        port = proc.port
        code, elapsed = proc.stop(signal.SIGTERM, timeout=10)
    assert code == 0, proc.output
    assert elapsed < 3
    assert not dirs[0].exists()
    with socket.socket() as s:  # the port is free again
        s.bind(("127.0.0.1", port))
    assert proc.token not in (tmp_path / "logs" / "loupe.log").read_text(encoding="utf-8")


def test_server_api_in_process(loupe_home):
    from greet_app import build_greet
    from desktop.server import serve

    before = os.environ.get("GRADIO_TEMP_DIR")
    with serve(build_greet) as one, serve(build_greet) as two:
        assert one.port != two.port  # a second launch gets its own port and cookie name
        assert one.cookie_name != two.cookie_name
        assert one.url == f"{one.base_url}?token={one.token}"
        assert one.token not in repr(one)
        assert one.temp_dir.is_dir() and one.temp_dir != two.temp_dir
        r = httpx.get(one.url, timeout=TIMEOUT, follow_redirects=True)
        assert r.status_code == 200
        # a cookie from one server does not open the other
        h = {"Cookie": f"{two.cookie_name}={one.token}"}
        assert httpx.get(two.base_url, headers=h, timeout=TIMEOUT).status_code == 403
        t0 = time.perf_counter()
        one.close()
        closed_in = time.perf_counter() - t0
        assert not one.temp_dir.exists()
        with socket.socket() as s:
            s.bind(("127.0.0.1", one.port))
    assert closed_in < 1.0, closed_in
    assert not two.temp_dir.exists()
    assert os.environ.get("GRADIO_TEMP_DIR") == before
    with pytest.raises(ValueError):
        serve(build_greet, host="0.0.0.0")
    with serve(build_greet, max_file_size=1000) as small:
        with httpx.Client(base_url=small.base_url, timeout=TIMEOUT) as c:
            c.get(f"/?token={small.token}")
            ok = c.post("/gradio_api/upload", files={"files": ("a.bin", b"a" * 500)})
            big = c.post("/gradio_api/upload", files={"files": ("b.bin", b"b" * 5000)})
    assert ok.status_code == 200 and big.status_code == 413, (ok.text, big.text)
    assert not one.temp_dir.exists()  # not recreated by a later server in this process


AUDIT_SCRIPT = textwrap.dedent("""
    import json, sys, ipaddress
    record = open(sys.argv[1], "a", buffering=1)
    def loopback(host):
        if isinstance(host, bytes):
            host = host.decode()
        if host in ("localhost",):
            return True
        try:
            return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            return False
    def hook(event, args):
        if event == "socket.connect":
            addr = args[1]
            if isinstance(addr, tuple) and not loopback(addr[0]):
                record.write(json.dumps(["connect", str(addr)]) + "\\n")
        elif event == "socket.getaddrinfo":
            if args[0] is not None and not loopback(args[0]):
                record.write(json.dumps(["getaddrinfo", str(args[0])]) + "\\n")
    sys.addaudithook(hook)
    from desktop.__main__ import main
    from greet_app import build_greet
    sys.exit(main(["--browser"], factory=build_greet))
""")


def test_no_outbound_connections(tmp_path):
    script = tmp_path / "audited.py"
    script.write_text(AUDIT_SCRIPT)
    record = tmp_path / "outbound.jsonl"
    record.touch()
    env = dict(os.environ, LOUPE_HOME=str(tmp_path / "home"),
               PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(var, None)
    proc = subprocess.Popen([sys.executable, str(script), str(record)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        url = None
        deadline = time.monotonic() + 120
        lines = []
        while time.monotonic() < deadline and url is None:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "?token=" in line:
                url = line.strip()
        assert url, "".join(lines)
        with httpx.Client(timeout=TIMEOUT, follow_redirects=True) as c:
            page = c.get(url)
            assert page.status_code == 200
            base = str(page.url)
            for asset in __import__("re").findall(r'(?:src|href)="([^"]+\.(?:js|css))"', page.text)[:10]:
                c.get(httpx.URL(base).join(asset))
            c.get(base + "theme.css")
            config = c.get(base + "config").json()
            fn = next(i for i, d in enumerate(config["dependencies"]) if d.get("api_name") == "greet")
            up = c.post(base + "gradio_api/upload", files={"files": ("a.txt", b"a", "text/plain")})
            assert up.status_code == 200
            c.post(base + "gradio_api/queue/join", json={
                "data": ["Net", 1], "fn_index": fn, "session_hash": "audit",
                "event_data": None, "trigger_id": None})
            with c.stream("GET", base + "gradio_api/queue/data",
                          params={"session_hash": "audit"}) as s:
                for line in s.iter_lines():
                    if "process_completed" in line:
                        assert "Hello, Net!" in line
                        break
            # routes that would fetch from the network are refused before gradio sees them
            assert c.get(base + "gradio_api/file=https://example.com/a.png").status_code == 403
            assert c.get(base + "gradio_api/proxy=https://example.com/").status_code == 403
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    outbound = [json.loads(line) for line in record.read_text().splitlines()]
    assert outbound == [], outbound
    assert not alive(proc.pid)
