"""Hardening, faults: each one gives a clear one-line message, loses nothing, and the next try
succeeds. Dropped and reset connections, a server answering an HTML error page (of the right
length and of a wrong one), a full disk during a download, a metadata write and an index write
(a real tmpfs of a few MB, mounted in a private mount namespace: `unshare -m`, as root), the
chosen port taken, the data folder read-only (a read-only bind mount: refused for root too),
the index database corrupt or locked through the CLI and the UI.

SIGKILL during a scan is tests/test_library_kill.py (LOUPE_KILL_ROUNDS=50 in `make harden`).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engine import paths, weights
from engine.errors import DownloadError, LoupeError
from hardening import record

ROOT = Path(__file__).resolve().parents[1]
SURVIVED: list[str] = []


def survived(name: str) -> None:
    SURVIVED.append(name)
    print(f"\n[hardening] fault survived ({len(SURVIVED)} so far): {name}")
    record("faults_survived", {"count": len(SURVIVED), "faults": SURVIVED}, quiet=True)


def one_line(text: str) -> str:
    """The message a person sees: exactly one non-empty line, no traceback."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert "Traceback" not in text, text[-3000:]
    assert len(lines) == 1, text[-3000:]
    return lines[0]


def stderr_message(stderr: str) -> str:
    """The CLI's message: tqdm's bar (carriage-return redraws) aside, one `loupe:` line."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line.split("\r")[-1] for line in stderr.splitlines()]
    messages = [line for line in lines if line.startswith("loupe:")]
    assert len(messages) == 1, stderr[-3000:]
    return messages[0]


def cli(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loupe", *args], cwd=ROOT, env=env or dict(os.environ),
                          capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- downloads



def _nothing_at_final_path(name: str) -> None:
    assert not weights.model_path(name).exists() and not weights.is_installed(name)


@pytest.mark.parametrize("name, filename", [("resnet18", "resnet18-f37072fd.pth"),
                                            ("blip-base", "pytorch_model.bin")])
def test_connection_reset_mid_download(own_hub, name, filename):
    """A reset (RST) mid-body: one line, nothing installed half-way, the other model untouched,
    and the next try resumes to a verified install (test_weights covers a clean close)."""
    other = "blip-base" if name == "resnet18" else "resnet18"
    weights.install(other)
    own_hub.faults[filename] = "reset"
    try:
        weights.install(name)
        resumed_inside = True  # the client retried by itself
    except DownloadError as exc:
        resumed_inside = False
        one_line(str(exc))
        assert "retry" in str(exc).lower()
        _nothing_at_final_path(name)
        weights.install(name)
    weights.verify(name)
    weights.verify(other)
    assert own_hub.fired.get(filename, 0) + own_hub.fired.get(Path(filename).name, 0) >= 1
    survived(f"connection reset during {name} download" + (" (client resumed)" if resumed_inside else ""))


class GarbageServer:
    """Answers 200 OK with an HTML error page to everything, like a captive portal or a proxy's
    error page. `sizes` (file name -> bytes) pads the page to the file's true length."""

    def __init__(self, sizes: dict[str, int] | None = None) -> None:
        sizes = sizes or {}
        page = b"<!doctype html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1>" \
               b"<p>The proxy could not reach the server.</p></body></html>\n"

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def _answer(self, head: bool) -> None:
                size = sizes.get(self.path.rsplit("/", 1)[-1].split("?")[0])
                body = page + b" " * (size - len(page)) if size and size > len(page) else page
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def do_GET(self):
                self._answer(False)

            def do_HEAD(self):
                self._answer(True)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("right_length", [True, False], ids=["same-length", "short"])
def test_server_answering_an_html_page(own_hub, tiny_dir, tmp_path, monkeypatch, right_length):
    from tiny_models import write_sources_json

    sizes = {f.name: f.size for src in weights.sources().values() for f in src.files} if right_length else None
    garbage = GarbageServer(sizes)
    bad = write_sources_json(tmp_path / "garbage.json", garbage.url, tiny_dir / "blip", tiny_dir / "resnet")
    messages = []
    try:
        for name, other in (("resnet18", "blip-base"), ("blip-base", "resnet18")):
            weights.remove(name)
            monkeypatch.setenv("LOUPE_SOURCES", str(own_hub.table))
            weights.install(other)
            monkeypatch.setenv("LOUPE_SOURCES", str(bad))
            with pytest.raises(DownloadError) as info:  # IntegrityError is a DownloadError
                weights.install(name)
            messages.append(one_line(str(info.value)))
            _nothing_at_final_path(name)
            weights.verify(other)  # nothing lost
            monkeypatch.setenv("LOUPE_SOURCES", str(own_hub.table))
            weights.install(name)  # the next try, against a working server
            weights.verify(name)
    finally:
        garbage.stop()
    record(f"fault_html_page_{'same_length' if right_length else 'short'}", {"messages": messages})
    survived(f"server answering an HTML page ({'same length' if right_length else 'short'})")


# --------------------------------------------------------------------------- mount namespaces


def _can_mount() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("unshare"):
        return "needs root and unshare (Linux) to mount a small tmpfs / read-only bind mount"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"mount is not permitted here: {probe.stderr.strip()}"
    return None


needs_mount = pytest.mark.skipif(_can_mount() is not None, reason=str(_can_mount()))


def in_namespace(script: str, out: Path, env: dict, timeout: float = 400) -> dict[str, dict]:
    """Run `script` (sh) in a private mount namespace. Steps call `step NAME cmd...`, which
    saves each command's rc, stdout and stderr; returns {NAME: {rc, out, err}}."""
    out.mkdir(parents=True, exist_ok=True)
    prelude = textwrap.dedent("""
        set -u
        step() { name="$1"; shift; "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"; echo $? > "$OUT/$name.rc"; }
        PY="$PYTHON"
    """)
    env = {**env, "OUT": str(out), "PYTHON": sys.executable}
    proc = subprocess.run(["unshare", "-m", "sh", "-c", prelude + textwrap.dedent(script)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = {}
    for rc in sorted(out.glob("*.rc"), key=lambda p: p.stat().st_mtime_ns):
        name = rc.stem
        steps[name] = {"rc": int(rc.read_text()), "out": (out / f"{name}.out").read_text(),
                       "err": (out / f"{name}.err").read_text()}
    return steps


@needs_mount
def test_disk_full_during_downloads(own_hub, tmp_path):
    """Weights folder on an 8 MB tmpfs: BLIP (tiny) fits, ResNet (47 MB) does not; then on a
    64 KB one, BLIP does not. One line each; then the disk grows and the retry completes."""
    wdir = tmp_path / "weights"
    wdir.mkdir()
    paths.save_setting("weights_dir", str(wdir))
    steps = in_namespace("""
        mount -t tmpfs -o size=8m tmpfs "$W" || exit 99
        step a_blip $PY -m loupe models download blip-base
        step b_resnet_full $PY -m loupe models download resnet18
        step c_blip_kept $PY -m loupe models verify blip-base
        mount -o remount,size=120m "$W"
        step d_resnet_retry $PY -m loupe models download resnet18
        step e_verify $PY -m loupe models verify
        umount "$W"
        mount -t tmpfs -o size=64k tmpfs "$W"
        step f_blip_full $PY -m loupe models download blip-base
        mount -o remount,size=8m "$W"
        step g_blip_retry $PY -m loupe models download blip-base
        step h_verify $PY -m loupe models verify blip-base
    """, tmp_path / "steps", dict(os.environ, W=str(wdir)))
    assert steps["a_blip"]["rc"] == 0, steps["a_blip"]
    full = steps["b_resnet_full"]
    assert full["rc"] == DownloadError.exit_code, full
    msg_resnet = stderr_message(full["err"])
    assert "full" in msg_resnet, msg_resnet
    assert steps["c_blip_kept"]["rc"] == 0, steps["c_blip_kept"]
    assert steps["d_resnet_retry"]["rc"] == 0, steps["d_resnet_retry"]
    assert steps["e_verify"]["rc"] == 0 and "resnet18: ok" in steps["e_verify"]["out"], steps["e_verify"]
    msg_blip = stderr_message(steps["f_blip_full"]["err"])
    assert steps["f_blip_full"]["rc"] == DownloadError.exit_code and "full" in msg_blip, steps["f_blip_full"]
    assert steps["g_blip_retry"]["rc"] == 0, steps["g_blip_retry"]
    assert steps["h_verify"]["rc"] == 0, steps["h_verify"]
    record("fault_disk_full_download", {"resnet18": msg_resnet, "blip-base": msg_blip, "fs": "tmpfs 8m / 64k"})
    survived("disk full during a download (ResNet via http_get, BLIP via hf_hub_download)")


SCAN_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from library_fixtures import FakeEngine
from engine import library
from engine.errors import LoupeError
folder, db, mode = sys.argv[2:5]
try:
    s = library.scan(folder, engine=FakeEngine(), write=mode, db_path=db)
except LoupeError as exc:
    print(json.dumps({"error": str(exc)}))
else:
    print(json.dumps({k: getattr(s, k) for k in ("total", "done", "skipped", "failed", "written", "write_failed")}
                     | {"problems": [[p.path, p.stage, p.reason] for p in s.problems]}))
"""


@needs_mount
@pytest.mark.parametrize("mode", ["sidecar", "embed"])
def test_disk_full_during_metadata_writes(tmp_path, mode):
    """Photos on a 2 MB tmpfs filled to the last block: every write fails as 'disk full', the
    scan goes on, the photos are untouched and no temp file is left; with space again, the
    next scan writes them all without captioning again. The index on a full disk: one line."""
    from library_fixtures import decoded, save_photo, sha, tmp_files

    disk = tmp_path / "disk"
    disk.mkdir()
    child = tmp_path / "child.py"
    child.write_text(SCAN_CHILD)
    maker = tmp_path / "maker.py"
    maker.write_text(textwrap.dedent("""
        import sys; sys.path.insert(0, sys.argv[1])
        from pathlib import Path
        from library_fixtures import save_photo
        for i in range(8):
            save_photo(Path(sys.argv[2]) / f"p{i}.jpg", i, exif=True)
    """))
    steps = in_namespace("""
        mount -t tmpfs -o size=2m tmpfs "$D" || exit 99
        $PY "$MAKER" "$TESTS" "$D/photos"
        cp -a "$D/photos" "$ORIG"
        dd if=/dev/zero of="$D/filler" bs=4k 2>/dev/null
        step a_scan_full $PY "$CHILD" "$TESTS" "$D/photos" "$DB" "$MODE"
        find "$D/photos" -name '.loupe-tmp-*' > "$OUT/leftovers.txt"
        step b_index_full $PY "$CHILD" "$TESTS" "$D/photos" "$D/lib.db" none
        rm "$D/filler"
        step c_scan_again $PY "$CHILD" "$TESTS" "$D/photos" "$DB" "$MODE"
        step d_index_again $PY "$CHILD" "$TESTS" "$D/photos" "$D/lib.db" none
        cp -a "$D/photos" "$AFTER"
    """, tmp_path / "steps", dict(os.environ, D=str(disk), MAKER=str(maker), CHILD=str(child),
                                  TESTS=str(Path(__file__).parent), DB=str(tmp_path / "lib.db"), MODE=mode,
                                  ORIG=str(tmp_path / "orig"), AFTER=str(tmp_path / "after")))
    full = json.loads(steps["a_scan_full"]["out"].strip().splitlines()[-1])
    assert steps["a_scan_full"]["rc"] == 0, steps["a_scan_full"]
    assert "error" not in full, full
    assert full["done"] == 8 and full["written"] == 0 and full["write_failed"] == 8, full
    assert {p[2] for p in full["problems"]} == {"disk full"}, full["problems"]
    assert (tmp_path / "steps" / "leftovers.txt").read_text().strip() == ""
    idx = steps["b_index_full"]
    msg_index = one_line(json.loads(idx["out"].strip().splitlines()[-1]).get("error", "") or idx["out"])
    assert idx["rc"] == 0 and "disk is full" in msg_index, idx
    again = json.loads(steps["c_scan_again"]["out"].strip().splitlines()[-1])
    assert again.get("done") == 0 and again["skipped"] == 8 and again["written"] == 8, again
    assert not again["problems"], again
    index_again = json.loads(steps["d_index_again"]["out"].strip().splitlines()[-1])
    assert index_again.get("done") == 8 and not index_again["problems"], index_again  # with space: the index works
    orig, after = tmp_path / "orig", tmp_path / "after"
    for p in sorted(orig.glob("*.jpg")):
        q = after / p.name
        if mode == "sidecar":
            assert sha(q) == sha(p) and (after / (p.name + ".xmp")).is_file()
        else:
            import numpy as np

            assert np.array_equal(decoded(q), decoded(p)), p.name  # pixels kept, metadata added
    assert not tmp_files(after)
    record(f"fault_disk_full_writes_{mode}", {"write_failures": full["write_failed"], "reason": "disk full",
                                              "index_message": msg_index, "rewritten_after": again["written"]})
    survived(f"disk full during {mode} writes and during an index write")


# --------------------------------------------------------------------------- the app's port


def test_port_taken_is_one_line(tmp_path):
    from app_process import AppProcess

    env = dict(os.environ, LOUPE_HOME=str(tmp_path / "home"))
    env.pop("GRADIO_TEMP_DIR", None)
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        t0 = time.monotonic()
        taken = subprocess.run([sys.executable, "-m", "loupe", "--browser", "--port", str(port)], cwd=ROOT,
                               env=env, capture_output=True, text=True, timeout=120)
        seconds = time.monotonic() - t0
        bad = subprocess.run([sys.executable, "-m", "loupe", "--browser", "--port", "70000"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=120)
    finally:
        holder.close()
    assert taken.returncode != 0 and taken.stdout.strip() == "", (taken.stdout, taken.stderr)
    message = one_line(taken.stderr)
    assert message.startswith("loupe: ") and str(port) in message and "in use" in message, message
    assert bad.returncode == 2 and "'--port': 70000 is not in the range 1<=x<=65535" in one_line(bad.stderr), bad.stderr
    # the next try, on the same port now free, serves
    with AppProcess("--browser", "--port", str(port), greet=True, env=env) as app:
        app.wait_for_url(timeout=120)
        assert app.port == port
        code, _ = app.stop()
    assert code == 0
    record("fault_port_taken", {"message": message, "exit_code": taken.returncode, "seconds": round(seconds, 1)})
    survived("chosen port taken")


# --------------------------------------------------------------------------- read-only data


@needs_mount
def test_data_folder_read_only(own_hub, tiny_dir, tmp_path):
    """LOUPE_HOME/data read-only (a read-only bind mount: EROFS binds root as well): download,
    import, scan and search each end with one line and exit non-zero; then, writable again,
    the same commands succeed and nothing that was there before is gone."""
    from library_fixtures import save_photo

    photos = tmp_path / "photos"
    for i in range(3):
        save_photo(photos / f"p{i}.jpg", i)
    weights.install("blip-base")  # already there before the folder turns read-only
    data = paths.data_dir()
    (data / "library.db").parent.mkdir(parents=True, exist_ok=True)
    steps = in_namespace("""
        mount --bind "$DATA" "$DATA" && mount -o remount,bind,ro "$DATA" || exit 99
        step a_download $PY -m loupe models download resnet18
        step b_import $PY -m loupe models import "$TINY/resnet"
        step c_scan $PY -m loupe library scan "$PHOTOS" --write none
        step d_status $PY -m loupe models status
    """, tmp_path / "steps", dict(os.environ, DATA=str(data), TINY=str(tiny_dir), PHOTOS=str(photos)))
    messages = {}
    for name in ("a_download", "b_import", "c_scan"):
        step = steps[name]
        assert step["rc"] not in (0, None), (name, step)
        messages[name] = stderr_message(step["err"])
        assert "read-only" in messages[name].lower() or "writable" in messages[name].lower(), (name, messages[name])
    assert steps["d_status"]["rc"] == 0
    weights.verify("blip-base")  # nothing lost
    # writable again: the next tries succeed
    assert cli("models", "download", "resnet18").returncode == 0
    assert cli("library", "scan", str(photos), "--write", "none").returncode == 0
    # a read-only data folder holding an index: search still answers, or says why in one line
    steps = in_namespace("""
        mount --bind "$DATA" "$DATA" && mount -o remount,bind,ro "$DATA" || exit 99
        step e_search $PY -m loupe library search p1
    """, tmp_path / "steps2", dict(os.environ, DATA=str(data)))
    search = steps["e_search"]
    if search["rc"] != 0:
        messages["e_search"] = stderr_message(search["err"])
    record("fault_data_read_only", {"messages": messages, "search_exit": search["rc"]})
    survived("data folder read-only")


# --------------------------------------------------------------------------- the index


def _indexed_folder(tmp_path: Path) -> Path:
    from library_fixtures import FakeEngine, save_photo

    from engine import library

    photos = tmp_path / "photos"
    for i in range(3):
        save_photo(photos / f"p{i}.jpg", i)
    library.scan(photos, engine=FakeEngine(), write="none")
    return photos


def _scan_in_tab(photos: Path) -> str:
    """The Library tab's Scan, run to its end: the progress area's last line, as text."""
    import re

    from desktop.tabs import library as library_tab

    missing = library_tab._models_missing
    library_tab._models_missing = lambda: []  # the index answers before any model is loaded
    try:
        *_, last = library_tab.run_scan(str(photos), "quick", "", "none", "darktable", "keep", False, 10, "", "all")
    finally:
        library_tab._models_missing = missing
    return one_line(re.sub(r"<[^>]+>", " ", last[0]))


def test_corrupt_index_through_the_cli_and_the_ui(tmp_path):
    import gradio as gr

    from desktop import messages
    from desktop.tabs import library as library_tab
    from engine import library

    photos = _indexed_folder(tmp_path)
    db = library.default_db_path()
    saved = db.read_bytes()
    for extra in db.parent.glob("library.db-*"):  # -wal/-shm of the good index
        extra.unlink()
    db.write_bytes(b"SQLite format 3\x00" + os.urandom(4096 * 3))
    proc = cli("library", "search", "p1")
    message = stderr_message(proc.stderr)
    assert proc.returncode == 1 and "damaged" in message and str(db) in message, proc.stderr
    with pytest.raises(gr.Error) as info:
        messages.friendly(library_tab.page_view)(str(photos), "p1", "all", 0)
    ui_message = one_line(str(info.value.message))
    assert "damaged" in ui_message
    assert "damaged" in _scan_in_tab(photos)
    # the person moves it aside, as the message says: the next try works
    db.rename(db.with_name("library.db.damaged"))
    retry = cli("library", "search", "p1")  # a fresh, empty index: no error, just no match
    assert (retry.returncode, retry.stderr) == (1, "loupe: no photos match p1\n"), retry.stderr
    db.write_bytes(saved)  # the good copy back: nothing was lost but what the damage took
    assert [Path(h.path).name for h in library.search("p1")] == ["p1.jpg"]
    record("fault_index_corrupt", {"cli": message, "ui": ui_message})
    survived("index database corrupt (CLI and UI)")


LOCK_HOLDER = r"""
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("PRAGMA locking_mode=EXCLUSIVE")
con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
"""


def test_locked_index_through_the_cli_and_the_ui(tmp_path, monkeypatch, capsys):
    from engine import library
    from loupe.cli import main
    from engine.library import index as index_mod

    photos = _indexed_folder(tmp_path)
    monkeypatch.setattr(index_mod, "BUSY_TIMEOUT_S", 0.3)
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(library.default_db_path())],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        capsys.readouterr()
        assert main(["library", "search", "p1"]) == 1
        message = stderr_message(capsys.readouterr().err)
        assert "in use by another Loupe" in message
        ui_message = _scan_in_tab(photos)
        assert "in use by another Loupe" in ui_message
    finally:
        holder.stdin.close()
        holder.wait(10)
    capsys.readouterr()
    assert main(["library", "search", "p1"]) == 0  # the other Loupe is done: the next try works
    assert "p1.jpg" in capsys.readouterr().out
    record("fault_index_locked", {"cli": message, "ui": ui_message})
    survived("index database locked (CLI and UI)")
