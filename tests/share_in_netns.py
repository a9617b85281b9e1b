"""Run by test_share.py inside a private network namespace (`unshare --net`): two veth ends
(10.23.0.1, 10.23.0.2) are this "computer's" network addresses, so Loupe's own address list offers
them and nothing real is ever bound. Starts Loupe's window (Xvfb display from DISPLAY, remote
debugging on DEVTOOLS_PORT), presses Share like a person, captions a photo through the link as a
second client, presses Stop and times how long until the link is dead. Prints one JSON line.

    unshare --net python tests/share_in_netns.py ARTIFACTS_DIR
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import httpx  # noqa: E402

from app_process import AppProcess, wait_mounted  # noqa: E402
from devtools import DevToolsPage  # noqa: E402
from share_client import call, fn_index, upload, visitor  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "desktop" / "examples" / "cat.jpg"
OPEN_PANEL = """(() => { const b = [...document.querySelectorAll('#loupe-share button, #loupe-share .label-wrap')]
  .find((e) => e.textContent.includes('Share on this network')); b.click(); return !!b; })()"""


def network() -> None:
    for cmd in ("ip link set lo up", "ip link add loupe-a type veth peer name loupe-b",
                "ip addr add 10.23.0.1/24 dev loupe-a", "ip addr add 10.23.0.2/24 dev loupe-b",
                "ip link set loupe-a up", "ip link set loupe-b up"):
        subprocess.run(cmd.split(), check=True)


def main(artifacts: Path) -> dict:
    network()
    shot = lambda name: subprocess.run(  # noqa: E731
        ["import", "-display", os.environ["DISPLAY"], "-window", "root", str(artifacts / name)],
        check=True, timeout=30)
    home = Path(os.environ["LOUPE_HOME"])
    port = int(os.environ["DEVTOOLS_PORT"])
    out: dict = {}
    with AppProcess(env=dict(os.environ)) as app:
        try:
            return _drive(app, home, port, shot, out)
        except BaseException:
            log = home / "logs" / "loupe.log"
            print(app.output[-4000:], log.read_text()[-4000:] if log.exists() else "", file=sys.stderr)
            raise


def _drive(app, home, port, shot, out) -> dict:
    if True:
        marks = wait_mounted(home / "logs" / "loupe.log", lambda: app.proc.poll() is None, 120)
        assert "app_mounted" in marks, app.output[-3000:]
        with DevToolsPage.attach(port, timeout=60) as page:
            assert page.evaluate(OPEN_PANEL)
            page.wait_for("!!document.querySelector('#loupe-share-start')", 20)
            page.evaluate("document.querySelector('#loupe-share-start').scrollIntoView({block: 'center'})")
            time.sleep(0.5)
            shot("window-share-panel-open.png")
            out["address"] = page.evaluate(
                "document.querySelector('#loupe-share-address input').value")
            page.evaluate("document.querySelector('#loupe-share-start').click()")
            page.wait_for("!!document.querySelector('#loupe-share-qr svg')", 30)
            link = page.evaluate("document.querySelector('#loupe-share-link textarea, "
                                 "#loupe-share-link input').value")
            page.evaluate("document.querySelector('#loupe-share-qr').scrollIntoView({block: 'center'})")
            time.sleep(0.5)
            shot("window-share-panel-sharing.png")
            out["link"] = link
            with visitor(link) as c:  # a second client, on the shared address
                index = fn_index(c.get("/config").json(), "loupe-caption", 4)
                out["caption"] = call(c, index, [upload(c, EXAMPLE), "", 12, 1])
                out["library_route"] = c.get("/gradio_api/info").status_code
            page.wait_for("document.querySelector('#loupe-share-status').innerText"
                          ".includes('1 photos captioned')", 20)
            out["status"] = page.evaluate("document.querySelector('#loupe-share-status').innerText")
            t0 = time.monotonic()
            page.evaluate("document.querySelector('#loupe-share-stop').click()")
            base = link.split("?")[0]
            while time.monotonic() - t0 < 5:
                try:
                    httpx.get(base, timeout=1)
                except httpx.ConnectError:
                    break
                time.sleep(0.02)
            out["dead_after_s"] = round(time.monotonic() - t0, 3)
            page.wait_for("!!document.querySelector('#loupe-share-start') && "
                          "document.querySelector('#loupe-share-start').offsetParent !== null", 20)
            out["stopped_status"] = page.evaluate(
                "document.querySelector('#loupe-share-status').innerText")
            # shared again, then Loupe closes: the share ends with it
            page.evaluate("document.querySelector('#loupe-share-start').click()")
            page.wait_for("!!document.querySelector('#loupe-share-qr svg')", 30)
            again = page.evaluate("document.querySelector('#loupe-share-link textarea, "
                                  "#loupe-share-link input').value")
            out["new_token"] = again.split("token=")[1] != link.split("token=")[1]
            with visitor(again) as c:
                out["again"] = c.get("/").status_code
        code, _ = app.stop()
        out["exit"] = code
        try:
            httpx.get(again.split("?")[0], timeout=1)
            out["after_close"] = "answered"
        except httpx.ConnectError:
            out["after_close"] = "refused"
    return out


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(Path(sys.argv[1]))), flush=True)
