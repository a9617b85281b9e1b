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


#: what each cold row runs after `loupe` (the photo is appended), and issue 24's target for it
COLD = {
    "caption": (["caption", "--max-tokens", "20", "--beams", "1"], 5.0),
    "classify": (["classify"], 2.5),
}


#: what this dev venv has that a user's install lacks and a cold start would import:
#: transformers imports scipy.optimize (~0.2 s) whenever scipy is installed, and scikit-image
#: (a dev extra: the suite's sample photos) brings it. Neither `pip install loupe` (its
#: dependencies never pull it) nor the bundle (build/loupe.spec excludes it) has it.
DEV_ONLY = ("scipy", "skimage")
#: `loupe` with DEV_ONLY made unimportable (None in sys.modules: find_spec says "not
#: installed", as transformers asks), the way the command starts in a user's install
AS_INSTALLED = ("import sys; sys.modules.update(dict.fromkeys(%r)); from loupe.cli import main; sys.exit(main())"
                % (DEV_ONLY,))


def cold_start(photo: Path, repeats: int, task: str = "caption", root: Path | None = None,
               as_installed: bool = False) -> dict:
    """Process start to the result printed, installed weights (file cache warm): `loupe caption`
    (20 greedy tokens) or `loupe classify` (the bench's ResNet-18: full-size shapes, the same
    work as the suite's tiny one). `root`: another checkout to time instead of this one (its
    code first on PYTHONPATH; same venv, same weights). `as_installed`: without this venv's
    dev-only packages (DEV_ONLY). Wall and CPU seconds (user + system, from wait4: the child's
    own), medians of `repeats`."""
    args, _ = COLD[task]
    start = [sys.executable, "-c", AS_INSTALLED] if as_installed else loupe_command()
    cmd = start + args[:1] + [str(photo)] + args[1:]
    env = fixtures.env()
    root = Path(root or fixtures.ROOT.parent)
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    from .sysinfo import Contention

    times, cpus, peaks = [], [], []
    with Contention() as busy:
        for _ in range(repeats):
            with tempfile.TemporaryFile() as err:
                t = time.perf_counter()
                proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=subprocess.PIPE,
                                        stderr=err, text=True)
                out_text = proc.stdout.read()
                _, status, usage = os.wait4(proc.pid, 0)  # wait4: the child's own peak RSS and CPU
                elapsed = time.perf_counter() - t
                proc.stdout.close()
                err.seek(0)
                err_text = err.read().decode(errors="replace")
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0 or not out_text.strip():
                return {"error": f"`{' '.join(cmd[-6:])}` exited {proc.returncode}: {err_text.strip()[-300:]}"}
            times.append(elapsed)
            cpus.append(usage.ru_utime + usage.ru_stime)
            peaks.append(usage.ru_maxrss / 1024)
    return {"s": statistics.median(times), "all": times, "cpu_s": statistics.median(cpus),
            "peak_rss_mb": max(peaks), "others_cores": busy.others_cores, "as_installed": as_installed,
            "command": "loupe " + " ".join(args[:1] + ["photo.jpg"] + args[1:])}


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


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.startup [--repeats N] [--against DIR]`: the cold rows and the window
    against issue 24's targets; with `--against`, another checkout (e.g. main) timed in the
    same loop, alternating, so a shared machine slows both alike."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench.startup", description=main.__doc__)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--against", type=Path, default=None, help="another checkout to time alternately")
    p.add_argument("--no-window", action="store_true")
    args = p.parse_args(argv)
    fixtures.ensure_models()  # the bench's installed models
    photo = Path(fixtures.ensure_photos(16)["12mp"][0])
    sides = [("this", None)] + ([("against", args.against)] if args.against else [])
    rows: dict[tuple[str, str, str], list[dict]] = {}
    for _ in range(args.repeats):  # alternate: A, B, A, B ...
        for task in COLD:
            for venv, as_installed in (("dev venv", False), ("installed", True)):
                for side, root in sides:
                    rows.setdefault((task, venv, side), []).append(cold_start(photo, 1, task, root, as_installed))
    from engine.device import cpu_description

    print(f"Cold start (CPU class {cpu_description()}; wall and CPU s, median of {args.repeats}, file cache warm;"
          f" 'installed': without the dev venv's {', '.join(DEV_ONLY)}):")
    for (task, venv, side), runs in rows.items():
        bad = [r for r in runs if "error" in r]
        if bad:
            print(f"  {task:9} {venv:9} {side:8} FAILED: {bad[0]['error']}")
            continue
        wall = statistics.median(r["s"] for r in runs)
        cpu = statistics.median(r["cpu_s"] for r in runs)
        target = COLD[task][1]
        print(f"  {task:9} {venv:9} {side:8} {wall:5.1f} s wall, {cpu:5.1f} CPU-s, "
              f"others {max(r['others_cores'] for r in runs):.2f} cores"
              f"  [{'met' if wall <= target else 'NOT met'} <= {target} s]  `{runs[0]['command']}`")
    if not args.no_window:
        win = window_visible()
        if "mounted_s" in win and win["mounted_s"]:
            print(f"  window   this     visible {win['visible_s']:.2f} s, UI mounted {win['mounted_s']:.1f} s"
                  f"  [{'met' if win['mounted_s'] <= 5.0 else 'NOT met'} <= 5.0 s]  {win['marks']}")
        else:
            print(f"  window: {win}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
