"""Helpers for testing the shell: a headless X display, the app in a subprocess, process trees,
the app's start-up timings from its log.

Used by the window, guard, browser, hardening and bundle tests and by bench/startup.py. Test code
only (not in the package). Linux only (Xvfb, /proc).
"""
from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
GREET_APP = Path(__file__).resolve().with_name("greet_app.py")

# tool -> the Debian package that ships it
APT = {
    "Xvfb": "xvfb",
    "xdotool": "xdotool",
    "import": "imagemagick",
    "openbox": "openbox",
    "chromium": "chromium",
    "xprop": "x11-utils",
    "xwininfo": "x11-utils",
}


def missing_tools(*tools: str) -> str | None:
    """None if all tools are on PATH, else a message naming the apt packages to install."""
    missing = [t for t in tools if shutil.which(t) is None]
    if not missing:
        return None
    packages = " ".join(sorted({APT.get(t, t) for t in missing}))
    return f"missing {', '.join(missing)}: run `apt-get install -y {packages}`"


def missing_qt_libs() -> str | None:
    """Qt's xcb plugin aborts (with a misleading message) without these system libraries."""
    libs = {"libxcb-icccm.so.4": "libxcb-icccm4", "libxcb-keysyms.so.1": "libxcb-keysyms1",
            "libxcb-cursor.so.0": "libxcb-cursor0"}
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    packages = [pkg for lib, pkg in libs.items() if lib not in out]
    return f"missing Qt libraries: run `apt-get install -y {' '.join(packages)}`" if packages else None


class XDisplay:
    """A private Xvfb display (free number chosen by Xvfb itself), optionally with openbox."""

    def __init__(self, size: str = "1280x800x24", window_manager: bool = True) -> None:
        self.size = size
        self.window_manager = window_manager
        self.display = ""
        self._xvfb: subprocess.Popen | None = None
        self._wm: subprocess.Popen | None = None

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, DISPLAY=self.display, **extra)
        env.pop("WAYLAND_DISPLAY", None)
        env.pop("QT_QPA_PLATFORM", None)
        return env

    def start(self, timeout: float = 20) -> "XDisplay":
        read_fd, write_fd = os.pipe()
        self._xvfb = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", self.size, "-nolisten", "tcp",
             "-noreset"], pass_fds=(write_fd,), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(write_fd)
        number = _read_line(read_fd, timeout)
        os.close(read_fd)
        if not number.strip().isdigit():
            self.stop()
            raise RuntimeError("Xvfb did not start (no display number)")
        self.display = f":{number.strip()}"
        if self.window_manager:
            self._wm = subprocess.Popen(["openbox", "--sm-disable"], env=self.env(),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:  # openbox sets _NET_CURRENT_DESKTOP when ready
                if subprocess.run(["xdotool", "get_desktop"], env=self.env(),
                                  capture_output=True, timeout=5).returncode == 0:
                    break
                time.sleep(0.1)
            else:
                self.stop()
                raise RuntimeError("openbox did not start")
        return self

    def stop(self) -> None:
        for proc in (self._wm, self._xvfb):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)

    def screenshot(self, path: Path) -> Path:
        subprocess.run(["import", "-display", self.display, "-window", "root", str(path)],
                       check=True, timeout=30, capture_output=True)
        return path

    def windows(self, name: str) -> list[str]:
        out = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", name],
                             env=self.env(), capture_output=True, text=True, timeout=10)
        return out.stdout.split()

    def __enter__(self) -> "XDisplay":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_line(fd: int, timeout: float) -> str:
    result: queue.Queue[str] = queue.Queue()

    def reader() -> None:
        data = b""
        while not data.endswith(b"\n"):
            chunk = os.read(fd, 64)
            if not chunk:
                break
            data += chunk
        result.put(data.decode())

    threading.Thread(target=reader, daemon=True).start()
    try:
        return result.get(timeout=timeout)
    except queue.Empty:
        return ""


class AppProcess:
    """`python -m desktop ARGS` (Loupe's UI) or, with greet=True, `python tests/greet_app.py ARGS`
    (the same shell around the tiny greet app) in a subprocess, its output collected line by line.
    """

    def __init__(self, *args: str, env: dict[str, str] | None = None,
                 python: list[str] | None = None, greet: bool = False) -> None:
        target = [str(GREET_APP)] if greet else ["-m", "desktop"]
        cmd = (python or [sys.executable]) + [*target, *args]
        environment = dict(env or os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
        environment.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(cmd, env=environment, cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1,
                                     start_new_session=True)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.url = self.base_url = self.token = ""
        self.port = 0

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_url(self, timeout: float = 90) -> str:
        """For --browser: wait for the printed URL (with its token)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            match = re.search(r"(http://[^\s/]+:(\d+)/)\?token=([A-Za-z0-9_\-]+)", line)
            if match:
                self.base_url, self.port, self.token = match[1], int(match[2]), match[3]
                self.url = match[0]
                return self.url
        self.stop()
        raise RuntimeError(f"no URL from the app within {timeout} s; output:\n{self.output}")

    def descendants(self) -> list[int]:
        return descendants(self.proc.pid)

    def send_signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, signum: int = signal.SIGINT, timeout: float = 10) -> tuple[int | None, float]:
        """Signal, wait; returns (exit code or None if it had to be killed, seconds taken)."""
        t0 = time.monotonic()
        self.send_signal(signum)
        code = self.wait(timeout)
        elapsed = time.monotonic() - t0
        if code is None:
            kill_tree(self.proc.pid)
            self.proc.wait(10)
        return code, elapsed

    def __enter__(self) -> "AppProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()


def _ppid_map() -> dict[int, int]:
    out: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
            out[int(entry.name)] = int(stat.rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return out


def descendants(pid: int) -> list[int]:
    parents = _ppid_map()
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        children = [p for p, pp in parents.items() if pp == current]
        found += children
        frontier += children
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat.rsplit(b")", 1)[1].split()[0] != b"Z"


def kill_tree(pid: int) -> None:
    for p in [pid, *descendants(pid)]:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


def distinct_colours(png: Path) -> int:
    from PIL import Image

    with Image.open(png) as img:
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    return len(colours or [])


def wait_for(predicate, timeout: float, interval: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


START_FAILED = ("Loupe could not start", "did not mount in the window")


def _log_text(log: Path, since: int = 0) -> str:
    try:
        with open(log, "rb") as fh:
            fh.seek(since)
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


TIMING_LINE = re.compile(r" loupe\.timing: (\w+): ([0-9.]+) s after process start")


def log_timings(log: Path, since: int = 0) -> dict[str, float]:
    """The start-up marks the app logged (desktop.logs.Timings), name -> seconds after process
    start; the first of each name after byte offset `since` (a log may hold earlier launches:
    pass its size before this one). {} when there is no log yet."""
    marks: dict[str, float] = {}
    for name, seconds in TIMING_LINE.findall(_log_text(log, since)):
        marks.setdefault(name, float(seconds))
    return marks


def wait_mounted(log: Path, running: Callable[[], bool], timeout: float,
                 since: int = 0) -> dict[str, float]:
    """Wait up to `timeout` s until the app has logged `app_mounted` (checked by the window from
    inside the page), a start-up failure, or `running()` is false; the marks logged by then
    (after byte offset `since`, as in log_timings)."""
    def settled() -> bool:
        if not running() or "app_mounted" in log_timings(log, since):
            return True
        return any(line in _log_text(log, since) for line in START_FAILED)

    wait_for(settled, timeout, interval=0.2)
    return log_timings(log, since)


def iter_temp_dirs(pid: int) -> Iterator[Path]:
    import tempfile

    yield from Path(tempfile.gettempdir()).glob(f"loupe-{pid}-*")
