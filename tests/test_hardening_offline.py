"""Hardening, offline: after the first run (weights installed), a whole session of the real app
(`python -m desktop --browser`; caption, classify, a library scan, a search, close) makes no
connection and no name lookup for anything but loopback. Checked from inside the server process
by an audit hook, installed through a `sitecustomize.py` on PYTHONPATH, that records every
`socket.connect` and `socket.getaddrinfo`. The same session shows the token differs per launch
and never reaches the log file.
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from app_process import AppProcess
from hardening import record

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = httpx.Timeout(120.0)

SITECUSTOMIZE = textwrap.dedent('''
    """Test hook (tests/test_hardening_offline.py): record socket.connect and getaddrinfo."""
    import ipaddress, json, os, sys

    _path = os.environ.get("LOUPE_NET_AUDIT")
    if _path:
        _out = open(_path, "a", buffering=1)
        _out.write(json.dumps({"event": "hook-installed", "pid": os.getpid()}) + "\\n")

        def _loopback(host):
            if isinstance(host, bytes):
                host = host.decode(errors="replace")
            if host is None:
                return True
            host = str(host)
            if host in ("localhost", "localhost.localdomain", "ip6-localhost"):
                return True
            try:
                return ipaddress.ip_address(host.split("%")[0].strip("[]")).is_loopback
            except ValueError:
                return False

        def _hook(event, args):
            if event == "socket.connect":
                addr = args[1]
                host = addr[0] if isinstance(addr, tuple) else addr  # AF_UNIX: a path
                local = not isinstance(addr, tuple) or _loopback(host)
                _out.write(json.dumps({"event": event, "host": str(host), "loopback": local}) + "\\n")
            elif event == "socket.getaddrinfo":
                _out.write(json.dumps({"event": event, "host": str(args[0]), "loopback": _loopback(args[0])}) + "\\n")

        sys.addaudithook(_hook)
''')


def _jpeg(seed: int) -> bytes:
    from image_corpus import gradient

    buf = io.BytesIO()
    gradient(96, 72, seed).save(buf, "JPEG")
    return buf.getvalue()


def _run_queued(c: httpx.Client, fn_index: int, data: list, session: str) -> dict:
    """Join the queue as the page does and wait for process_completed."""
    r = c.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                               "event_data": None, "trigger_id": None})
    assert r.status_code == 200, r.text
    event_id = r.json()["event_id"]
    with c.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as s:
        for line in s.iter_lines():
            if not line.startswith("data:"):
                continue
            msg = json.loads(line[5:])
            if msg.get("msg") == "process_completed" and msg.get("event_id") == event_id:
                assert msg.get("success"), msg
                return msg["output"]
    raise AssertionError("no process_completed")


def _call(c: httpx.Client, api: str, data: list) -> str:
    r = c.post(f"/gradio_api/call/{api}", json={"data": data})
    assert r.status_code == 200, r.text
    with c.stream("GET", f"/gradio_api/call/{api}/{r.json()['event_id']}") as s:
        text = "".join(line + "\n" for line in s.iter_lines())
    assert "event: complete" in text, text[:500]
    return text


def _dep(config: dict, *, input_labels: list[str]) -> int:
    labels = {c["id"]: (c.get("props") or {}).get("label") for c in config["components"]}
    for d in config["dependencies"]:
        if [labels.get(i) for i in d["inputs"]] == input_labels and d.get("backend_fn"):
            return d["id"]
    raise AssertionError(f"no event with inputs {input_labels}")


def test_a_whole_session_stays_on_loopback(tmp_path, sources_file, _installed_weights):
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
    audit = tmp_path / "net.jsonl"
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    (home / "config" / "settings.json").write_text(json.dumps({"weights_dir": str(_installed_weights)}))
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, name in enumerate(["beach", "garden", "kitchen"]):
        (photos / f"{name}.jpg").write_bytes(_jpeg(40 + i))
    # The pins of the tiny models, but the real hosts: any attempt to fetch would leave loopback.
    table = json.loads(Path(sources_file).read_text())
    table["blip-base"]["endpoint"] = "https://huggingface.co"
    table["resnet18"]["base_url"] = "https://download.pytorch.org/models"
    real_hosts = tmp_path / "sources.json"
    real_hosts.write_text(json.dumps(table))
    env = dict(os.environ, LOUPE_HOME=str(home), LOUPE_SOURCES=str(real_hosts), LOUPE_NET_AUDIT=str(audit),
               PYTHONPATH=str(hook_dir))
    for var in ("GRADIO_TEMP_DIR", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTP_PROXY", "HTTPS_PROXY",
                "http_proxy", "https_proxy", "GRADIO_ANALYTICS_ENABLED"):
        env.pop(var, None)  # the app must be offline-safe by itself

    # the hook itself: audit events raised by hand (no traffic) are recorded and classified
    probe_log = tmp_path / "probe.jsonl"
    probe = subprocess.run([sys.executable, "-c", "import sys, socket; "
                            "sys.audit('socket.getaddrinfo', 'example.invalid', 80, 0, 0, 0); "
                            "sys.audit('socket.connect', socket.socket(), ('127.0.0.1', 9))"],
                           env={**env, "LOUPE_NET_AUDIT": str(probe_log)}, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    seen = [json.loads(line) for line in probe_log.read_text().splitlines()]
    assert [(e["event"], e.get("loopback")) for e in seen[1:]] == [("socket.getaddrinfo", False),
                                                                 ("socket.connect", True)], seen

    # a first, short launch: only its token matters
    with AppProcess("--browser", env=env) as first:
        first.wait_for_url(timeout=180)
        first_token = first.token
        assert first.stop()[0] == 0

    t0 = time.monotonic()
    app = AppProcess("--browser", env=env)
    try:
        app.wait_for_url(timeout=180)
        assert app.token != first_token
        with httpx.Client(base_url=app.base_url, timeout=TIMEOUT) as c:
            page = c.get(f"/?token={app.token}", follow_redirects=True)  # the handshake, as a browser
            assert page.status_code == 200 and "<gradio-app" in page.text
            config = c.get("/config").json()
            up = c.post("/gradio_api/upload", files={"files": ("p.jpg", _jpeg(1), "image/jpeg")}).json()[0]
            photo = {"path": up, "meta": {"_type": "gradio.FileData"}}
            caption = _call(c, "caption", [photo, "", 10, 1])
            labels = _call(c, "classify", [photo])
            from engine.library import KEYWORD_THRESHOLD
            from engine.models.registry import for_task

            CAPTIONER = for_task("caption")
            scan_labels = ["Folder of photos", "Captions", f"{CAPTIONER.option('prefix').label} (optional)",
                           "Write results", "Sidecar name", "A description someone already wrote",
                           "Rename files from captions", KEYWORD_THRESHOLD.label, "Search by words and meaning", "Show",
                           "Ray cluster address (optional)"]  # left empty: this computer
            scan = _run_queued(c, _dep(config, input_labels=scan_labels),
                               [str(photos), "quick", "", "sidecar", "darktable", "keep", False, 10, "", "all", ""],
                               "offline-session")
            summary = json.dumps(scan["data"])
            assert "3 photos, 3 captioned" in summary, summary
            found = _run_queued(c, _dep(config, input_labels=["Folder of photos", "Search by words and meaning", "Show", None]),
                                [str(photos), "beach", "all", 0], "offline-session")
            # ranked by words and meaning: the photo whose name says it comes first
            grid, line = found["data"][0], json.dumps(found["data"][1])
            assert "ranked by words and meaning" in line, found
            assert grid.index("beach.jpg") < min(grid.index("garden.jpg"), grid.index("kitchen.jpg")), grid
        code, _ = app.stop(signal.SIGINT, timeout=15)
    finally:
        if app.proc.poll() is None:
            app.stop(signal.SIGKILL)
    session_s = time.monotonic() - t0
    assert code == 0, app.output[-3000:]
    assert "Traceback" not in app.output, app.output[-3000:]
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    installed = [e for e in events if e["event"] == "hook-installed"]
    assert len(installed) >= 2, "the audit hook did not load in the server processes"
    outside = [e for e in events if e["event"] != "hook-installed" and not e["loopback"]]
    looked = [e for e in events if e["event"] != "hook-installed"]
    log = (home / "logs" / "loupe.log").read_text(encoding="utf-8")
    assert "serving on" in log
    assert app.token not in log and first_token not in log, "a token reached the log file"
    figures = {"session_s": round(session_s, 1), "socket_events": len(looked),
               "non_loopback": outside, "steps": ["launch", "caption", "classify", "library scan", "search", "close"],
               "token_in_log": False, "tokens_differ": app.token != first_token,
               "caption_ok": "event: complete" in caption, "classify_ok": "event: complete" in labels}
    record("offline_session", figures)
    assert outside == [], outside
