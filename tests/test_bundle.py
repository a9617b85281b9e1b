"""Smoke test of the PyInstaller bundle: the built Loupe opens, works, and closes cleanly.

    python -m pytest -m build tests/test_bundle.py -s            builds dist/Loupe first (~3 min)
    LOUPE_BUNDLE=dist/Loupe python -m pytest -m build tests/test_bundle.py -s   reuses a build

The bundle is copied to a read-only folder and started there with a clean environment
(`env -i` + DISPLAY, HOME, LOUPE_HOME, LOUPE_SOURCES and QTWEBENGINE_REMOTE_DEBUGGING, Qt
WebEngine's own DevTools server) on a private Xvfb display with openbox. The window must appear,
the app must mount in it (its log says so), and a script run inside the page through the DevTools
protocol (tests/devtools.py; the page has the per-launch token cookie, nothing outside has)
uploads a photo and calls the `caption` and `classify` endpoints. Then the window is closed like a
person would (Alt+F4 through the window manager): exit code 0, no process left, nothing written
next to the executable. The frozen CLI (`Loupe caption PHOTO`) is checked too. Build time,
bundle size and launch timings are printed (run with -s).
"""
from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest

from app_process import XDisplay, kill_tree, missing_qt_libs, missing_tools, wait_mounted
from devtools import DevToolsPage, remote_debugging_env, unused_port

# PyInstaller's analysis of torch + gradio + Qt takes 3-10 min on 2 busy cores: above the suite's
# default per-test limit, which would cut the build short.
pytestmark = [pytest.mark.build, pytest.mark.timeout(2700)]

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "desktop" / "examples" / "cat.jpg"
EXE_NAME = "Loupe.exe" if sys.platform == "win32" else "Loupe"
WINDOW_TIMEOUT = 120  # s, process start -> window on screen (cold start ~10 s)
USABLE_TIMEOUT = 240  # s, -> app mounted and the page script done (first caption loads torch)
CLOSE_TIMEOUT = 30


def _load_build_module():
    spec = importlib.util.spec_from_file_location("loupe_build", ROOT / "build" / "build.py")
    module = importlib.util.module_from_spec(spec)
    before, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # build/ holds no work files
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = before
    return module


@pytest.fixture(scope="module")
def bundle() -> Path:
    """dist/Loupe: the one LOUPE_BUNDLE names, else built now with build/build.py."""
    if not sys.platform.startswith("linux"):  # CI and this project's machines are Linux
        pytest.skip("the bundle smoke test drives Xvfb: Linux only")
    problem = missing_tools("Xvfb", "openbox", "xdotool") or missing_qt_libs()
    if problem:
        pytest.fail(problem)
    given = os.environ.get("LOUPE_BUNDLE")
    if given:
        path = Path(given).resolve()
    else:
        if importlib.util.find_spec("PyInstaller") is None:
            pytest.fail("PyInstaller missing: pip install pyinstaller==6.22.3 "
                        "pyinstaller-hooks-contrib==2026.9 (or set LOUPE_BUNDLE=dist/Loupe)")
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, str(ROOT / "build" / "build.py"), "--no-smoke"],
                              cwd=ROOT, capture_output=True, text=True, timeout=45 * 60)
        print(proc.stdout[-6000:])
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        print(f"build + report took {time.monotonic() - t0:.0f} s")
        path = ROOT / "dist" / "Loupe"
    assert (path / EXE_NAME).is_file(), f"no {EXE_NAME} in {path} (LOUPE_BUNDLE={given!r})"
    return path


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out


def _make_read_only(folder: Path) -> str:
    """Root ignores file modes, so as root bind-mount the folder read-only onto itself;
    otherwise take write permission away. Returns how ("mount" / "chmod")."""
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount"):
        ok = subprocess.run(["mount", "--bind", str(folder), str(folder)],
                            capture_output=True, timeout=30).returncode == 0
        if ok:
            if subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)],
                              capture_output=True, timeout=30).returncode == 0:
                return "mount"
            subprocess.run(["umount", str(folder)], capture_output=True, timeout=30)
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames:
            p = Path(dirpath, name)
            if not p.is_symlink():
                p.chmod(p.stat().st_mode & ~0o222)
        Path(dirpath).chmod(Path(dirpath).stat().st_mode & ~0o222)
    return "chmod"


def _undo_read_only(folder: Path, how: str) -> None:
    if how == "mount":
        subprocess.run(["umount", str(folder)], capture_output=True, timeout=60)
    for dirpath, dirnames, filenames in os.walk(folder):
        Path(dirpath).chmod(0o755)


@pytest.fixture(scope="module")
def read_only_bundle(bundle, tmp_path_factory) -> Path:
    """A copy of the bundle in a folder nobody can write to (what a system install looks like).

    One copy for the module, removed after it: the bundle is ~3.6 GB, and a copy per test plus
    pytest's kept temp folders of earlier runs once filled CI's disk."""
    folder = tmp_path_factory.mktemp("ro")
    target = folder / "Loupe"
    t0 = time.monotonic()
    shutil.copytree(bundle, target, symlinks=True)
    how = _make_read_only(target.parent)
    probe = target / ".loupe-write-probe"
    if how == "mount" or os.geteuid() != 0:
        with pytest.raises(OSError):
            probe.write_text("x")
    print(f"\ncopied the bundle to a read-only folder ({how}) in {time.monotonic() - t0:.0f} s")
    try:
        yield target
    finally:
        _undo_read_only(target.parent, how)
        shutil.rmtree(folder, ignore_errors=True)


def _clean_env(display: str, home: Path, loupe_home: Path, **extra: str) -> list[str]:
    env = {"DISPLAY": display, "HOME": str(home), "LOUPE_HOME": str(loupe_home),
           "LOUPE_SOURCES": os.environ["LOUPE_SOURCES"], **extra}
    return ["env", "-i"] + [f"{k}={v}" for k, v in env.items()]


def _session_processes(sid: int) -> list[tuple[int, str]]:
    """Processes of session `sid` (the app was started as a session leader)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != b"Z":
                found.append((int(entry.name), (entry / "comm").read_text().strip()))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _processes_running_from(folder: Path) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                exe = os.readlink(entry / "exe")
            except OSError:
                continue
            if exe.startswith(str(folder)):
                found.append((int(entry.name), exe))
    return found


def _page_script(photo: Path) -> str:
    """Runs inside the Loupe page (same origin, token cookie): upload a photo, call the app's
    `caption` and `classify` endpoints with their defaults for every other input; the results."""
    data = base64.b64encode(photo.read_bytes()).decode()
    return """(async function () {
  const PHOTO = "%s", NAME = "%s";
  const isFile = (p) => ["Image", "File", "Files", "Gallery", "UploadButton"].includes(p.component)
      || /FileData|filepath/i.test(JSON.stringify(p.python_type || {}));
  const isList = (p) => p.component === "Gallery" || p.component === "Files"
      || /^(list|List)/.test((p.python_type || {}).type || "");
  async function call(name, info, file) {
    const ep = (info.named_endpoints || {})["/" + name];
    if (!ep) return {error: "the app has no '" + name + "' endpoint (api_name)"};
    const data = ep.parameters.map((p) => isFile(p) ? (isList(p) ? [file] : file)
        : (p.parameter_has_default ? p.parameter_default : null));
    const t0 = performance.now();
    const r = await fetch("/gradio_api/call/" + name, {method: "POST",
        headers: {"Content-Type": "application/json"}, body: JSON.stringify({data: data})});
    if (!r.ok) return {error: "call " + r.status + ": " + (await r.text()).slice(0, 300)};
    const id = (await r.json()).event_id;
    const sse = await (await fetch("/gradio_api/call/" + name + "/" + id)).text();
    let event = null, result = null;
    for (const line of sse.split("\\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      if (line.startsWith("data:") && (event === "complete" || event === "error"))
        result = {event: event, data: JSON.parse(line.slice(5).trim() || "null")};
    }
    return Object.assign({seconds: (performance.now() - t0) / 1000,
                          inputs: ep.parameters.map((p) => p.component)},
                         result || {error: "no result", sse: sse.slice(0, 500)});
  }
  const out = {};
  try {
    const info = await (await fetch("/gradio_api/info")).json();
    out.endpoints = Object.keys(info.named_endpoints || {});
    const bytes = Uint8Array.from(atob(PHOTO), (c) => c.charCodeAt(0));
    const form = new FormData();
    form.append("files", new Blob([bytes], {type: "image/jpeg"}), NAME);
    const up = await fetch("/gradio_api/upload", {method: "POST", body: form});
    if (!up.ok) throw new Error("upload " + up.status);
    const path = (await up.json())[0];
    const file = {path: path, orig_name: NAME, mime_type: "image/jpeg",
                  meta: {_type: "gradio.FileData"}};
    out.caption = await call("caption", info, file);
    out.classify = await call("classify", info, file);
  } catch (e) {
    out.error = String(e && e.stack || e);
  }
  return out;
})()
""" % (data, photo.name)


def _wait_window(xd: XDisplay, proc: subprocess.Popen, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        ids = xd.windows("^Loupe$")
        if ids:
            return ids[0]
        time.sleep(0.1)
    return None


def _refused_without_token(href: str) -> int:
    base = href.split("/?")[0].rstrip("/") + "/"
    try:
        with urlopen(Request(base + "config"), timeout=10) as resp:  # noqa: S310 (loopback)
            return resp.status
    except HTTPError as exc:
        return exc.code


def _print_bundle_facts(bundle: Path) -> None:
    report_file = ROOT / "dist" / "build-report.json"
    report = None
    if report_file.is_file():
        report = json.loads(report_file.read_text(encoding="utf-8"))
        if Path(report.get("bundle", "")).resolve() != bundle.resolve():
            report = None
    if report is None:
        report = _load_build_module().size_report(bundle)
    _load_build_module().print_report(report)


def test_frozen_app_opens_works_and_closes(read_only_bundle, bundle, installed, tmp_path,
                                           artifacts):
    _print_bundle_facts(bundle)
    exe = read_only_bundle / EXE_NAME
    home, loupe_home = tmp_path / "home", Path(os.environ["LOUPE_HOME"])
    home.mkdir()
    app_log = loupe_home / "logs" / "loupe.log"
    devtools_port = unused_port()
    before = _tree(read_only_bundle)
    log = tmp_path / "app-output.txt"

    with XDisplay(window_manager=True) as xd, open(log, "w") as out:
        cmd = _clean_env(xd.display, home, loupe_home,
                         **remote_debugging_env(devtools_port)) + [str(exe)]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            wid = _wait_window(xd, proc, WINDOW_TIMEOUT)
            t_window = time.monotonic() - t0
            assert wid, f"no Loupe window within {WINDOW_TIMEOUT} s:\n{log.read_text()[-4000:]}"
            marks = wait_mounted(app_log, lambda: proc.poll() is None, USABLE_TIMEOUT)
            assert "app_mounted" in marks, (
                f"the app did not mount:\n{log.read_text()[-4000:]}\n"
                + (app_log.read_text()[-4000:] if app_log.exists() else "no log"))
            with DevToolsPage.attach(devtools_port, timeout=30,
                                     alive=lambda: proc.poll() is None) as page:
                href = page.evaluate("location.href")
                assert "?" not in href and "token" not in href, href  # the token left the address
                assert page.evaluate("document.cookie") == ""  # the token cookie is HttpOnly
                assert [c["httpOnly"] for c in page.cookies()
                        if c["name"].startswith("loupe_token_")] == [True], page.cookies()
                result = page.evaluate(_page_script(PHOTO), timeout=USABLE_TIMEOUT) or {}
            t_report = time.monotonic() - t0
            shot = xd.screenshot(artifacts / "bundle-window.png")
            assert _refused_without_token(href) == 403  # the guard is in the bundle

            print(f"\nfrozen app endpoints: {result.get('endpoints')}")
            print(f"caption:  {json.dumps(result.get('caption'))[:300]}")
            print(f"classify: {json.dumps(result.get('classify'))[:300]}")
            assert "error" not in result, result
            for name in ("caption", "classify"):
                assert result[name].get("event") == "complete", (name, result[name])
            caption = result["caption"]["data"][0]
            assert isinstance(caption, str) and caption.strip(), result["caption"]
            labels = result["classify"]["data"][0]
            assert labels and (labels.get("confidences") or labels.get("label")), labels

            # Close it like a person: Alt+F4, which openbox turns into WM_DELETE_WINDOW. Under
            # load a synthetic key is now and then lost before openbox sees it (the app's log then
            # never says "window closing"; 1 run in 11 here): press again, up to 3 times, as
            # test_window does.
            for presses in range(1, 4):
                t_close = time.monotonic()
                subprocess.run(["xdotool", "windowactivate", "--sync", wid, "key", "--clearmodifiers",
                                "alt+F4"], env=xd.env(), capture_output=True, timeout=20)
                deadline = t_close + 5
                while (proc.poll() is None and time.monotonic() < deadline
                       and "window closing" not in app_log.read_text(errors="replace")):
                    time.sleep(0.1)
                if proc.poll() is not None or "window closing" in app_log.read_text(errors="replace"):
                    break
            try:
                code = proc.wait(CLOSE_TIMEOUT)
            except subprocess.TimeoutExpired:
                code = None
            t_closed = time.monotonic() - t_close
            assert code == 0, (f"exit code {code} after Alt+F4 (pressed {presses} time(s)):\n"
                               f"{log.read_text()[-4000:]}")
            deadline = time.monotonic() + 10
            while _session_processes(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            left = _session_processes(proc.pid) + _processes_running_from(read_only_bundle)
            assert not left, f"processes left after closing: {left}"
        finally:
            if proc.poll() is None:
                kill_tree(proc.pid)
                proc.wait(10)
            for pid, _ in _session_processes(proc.pid):
                kill_tree(pid)

    assert _tree(read_only_bundle) == before, "the app wrote next to its executable"
    assert (loupe_home / "logs" / "loupe.log").is_file(), "the log did not go to LOUPE_HOME"
    print(f"\nlaunch (frozen, {read_only_bundle}):")
    print(f"  window on screen   {t_window:6.2f} s after spawn (xdotool saw it); "
          f"app's own mark window_shown {marks.get('window_shown', float('nan')):.2f} s")
    print(f"  gradio imported    {marks.get('gradio_imported', float('nan')):6.2f} s, server up "
          f"{marks.get('server_up', float('nan')):.2f} s")
    print(f"  app usable         {marks.get('app_mounted', float('nan')):6.2f} s (gradio app mounted "
          f"in the window, from process start)")
    print(f"  caption call       {result['caption']['seconds']:6.2f} s (first: loads torch + "
          f"BLIP), classify {result['classify']['seconds']:.2f} s; all done "
          f"{t_report:.1f} s after spawn")
    print(f"  closed (Alt+F4)    exit 0 in {t_closed:.2f} s, no process left (pressed {presses} time(s))")
    print(f"  screenshot         {shot}")


def test_frozen_cli_answers_from_a_terminal(read_only_bundle, installed, tmp_path):
    """`Loupe caption PHOTO` / `Loupe classify PHOTO` run the bundled torch without a window."""
    exe = read_only_bundle / EXE_NAME
    home = tmp_path / "home"
    home.mkdir()
    env = _clean_env("", home, Path(os.environ["LOUPE_HOME"]))
    env = [e for e in env if not e.startswith("DISPLAY=")]
    for command, check in (
        (["caption", str(PHOTO), "--json", "--beams", "1"],
         lambda data: isinstance(data[0]["text"], str) and data[0]["text"].strip()),
        (["classify", str(PHOTO), "--json", "--top", "3"],
         lambda data: len(data[0]["labels"]) == 3),
    ):
        t0 = time.monotonic()
        proc = subprocess.run(env + [str(exe), *command], capture_output=True, text=True,
                              timeout=180, cwd=tmp_path)
        seconds = time.monotonic() - t0
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        data = json.loads(proc.stdout)
        assert check(data), data
        print(f"\nLoupe {command[0]}: {seconds:.1f} s -> {json.dumps(data[0])[:200]}")
    # No display and no command: one clear line and exit 2, not a crash.
    proc = subprocess.run(env + [str(exe)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 2 and "--browser" in proc.stderr + proc.stdout, proc
