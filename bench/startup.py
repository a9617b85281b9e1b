"""Start-up times: `loupe caption photo.jpg` end to end, and the window's time to visible."""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import fixtures


def loupe_command() -> list[str]:
    exe = Path(sys.executable).with_name("loupe")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "engine.cli"]


def cold_start(photo: Path, repeats: int) -> dict:
    """Process start to first caption printed, installed weights (file cache warm)."""
    cmd = loupe_command() + ["caption", str(photo), "--max-tokens", "20", "--beams", "1"]
    env = fixtures.env()
    from .sysinfo import Contention

    times, peaks = [], []
    with Contention() as busy:
        for _ in range(repeats):
            with tempfile.TemporaryFile() as err:
                t = time.perf_counter()
                proc = subprocess.Popen(cmd, env=env, cwd=fixtures.ROOT.parent, stdout=subprocess.PIPE,
                                        stderr=err, text=True)
                out_text = proc.stdout.read()
                _, status, usage = os.wait4(proc.pid, 0)  # wait4: the child's own peak RSS
                elapsed = time.perf_counter() - t
                proc.stdout.close()
                err.seek(0)
                err_text = err.read().decode(errors="replace")
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0 or not out_text.strip():
                return {"error": f"`{' '.join(cmd[-6:])}` exited {proc.returncode}: {err_text.strip()[-300:]}"}
            times.append(elapsed)
            peaks.append(usage.ru_maxrss / 1024)
    return {"s": statistics.median(times), "all": times, "peak_rss_mb": max(peaks), "others_cores": busy.others_cores,
            "command": "loupe caption photo.jpg --max-tokens 20 --beams 1"}


def window_visible(timeout: float = 120) -> dict:
    """`python -m desktop` (the real UI) under a private Xvfb; the app's own timing lines in its
    log give seconds after process start for window_shown and app_mounted."""
    sys.path.insert(0, str(fixtures.ROOT.parent / "tests"))  # the test suite's process helpers
    try:
        from app_process import (AppProcess, XDisplay, log_timings, missing_qt_libs,
                                 missing_tools, wait_mounted)
        import desktop.window  # noqa: F401
    except ImportError as exc:
        return {"skipped": f"the desktop window is not there yet ({exc})"}
    problem = missing_tools("Xvfb", "xdotool", "openbox") or missing_qt_libs()
    if problem:
        return {"skipped": problem}
    tmp = Path(tempfile.mkdtemp(prefix="loupe-bench-window-"))
    env = fixtures.env()
    log = Path(env["LOUPE_HOME"]) / "logs" / "loupe.log"
    since = log.stat().st_size if log.exists() else 0  # earlier launches stay in the log
    try:
        with XDisplay() as display:
            env = display.env(**{k: v for k, v in env.items() if k != "DISPLAY"})
            env.update(GRADIO_TEMP_DIR=str(tmp / "gradio"),
                       QTWEBENGINE_CHROMIUM_FLAGS="--no-sandbox --disable-gpu")
            with AppProcess(env=env) as app:
                wait_mounted(log, lambda: app.proc.poll() is None, timeout, since)
                app.stop()
        marks = log_timings(log, since)
        if "window_shown" not in marks:
            return {"error": f"no window timings in {log} ({marks or 'nothing logged'})"}
        return {"visible_s": marks["window_shown"], "mounted_s": marks.get("app_mounted"), "marks": marks}
    except Exception as exc:  # the bench goes on without this column
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
