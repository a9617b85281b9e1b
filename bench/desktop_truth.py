"""What a person meets in the desktop app, measured with the bench's full-size models (random
weights, real compute): idle CPU of the window at rest, the first caption's delay and where it
goes, and the Library scan's progress (cadence, time-left error, Stop latency, work lost).

    .venv/bin/python bench/desktop_truth.py                       # this checkout
    .venv/bin/python bench/desktop_truth.py --code /work/main     # "before": another checkout
    .venv/bin/python bench/desktop_truth.py --parts idle,first --idle-s 20 --photos 22
    .venv/bin/python bench/desktop_truth.py --parts idle,idle-browser --against /path/to/main --rounds 3

Parts:
- idle: the real window (`python -m desktop`, Xvfb + openbox, 1280x720) with both models
  installed; after the page is mounted and the models are warm (`--settle-s`), CPU seconds over
  `--idle-s` of the app process and of its helpers (QtWebEngine's renderer, GPU process), as %
  of one core.
- idle-browser: the same at rest for `python -m desktop --browser` shown in Debian's Chromium
  (1280x720 window on the same kind of display); helpers are Chromium's browser, renderer and
  GPU processes. `--wakeups`: then the app's system calls per second (strace -c, 5 s; in the
  window that includes Qt's threads).
  With `--against OTHER` (a checkout before a change) each round runs both, alternated, and the
  medians over `--rounds` are printed.
- first: a fresh process captions desktop/examples/cat.jpg at the Caption tab's defaults twice;
  once with the int8 cache removed (the very first start) and once with it (every later start).
  Reports the model load, the first and the second caption: the first minus the second is the
  first forward pass's warm-up.
- scan: `library.scan` of `--photos` 640x480 photos (write none, fresh index) as the Library tab
  runs it: seconds between count changes (cadence), the time-left error from the second photo on
  (|said - actual| / actual), then a second scan stopped at 40 % of the first one's time: Stop
  latency (press to return) and the work lost (seconds of compute since the last photo kept).

The machine may be shared: each part prints the load of the rest of the machine beside it.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bench import fixtures  # noqa: E402
from bench.window_vs_browser import CpuWindow, close_chromium, open_chromium  # noqa: E402

CAT = ROOT / "desktop" / "examples" / "cat.jpg"


def _env(code: Path, home: Path, **extra: str) -> dict[str, str]:
    env = fixtures.env()
    env.update(PYTHONPATH=str(code), LOUPE_HOME=str(home), **extra)
    env.pop("GRADIO_TEMP_DIR", None)
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "settings.json").write_text(json.dumps({"weights_dir": str(fixtures.MODELS)}))
    return env


# --------------------------------------------------------------------------- idle


def _idle_figures(used: dict) -> dict:
    wall = used["wall_s"]

    def pct(cpu_s: float) -> float:
        return round(100 * cpu_s / wall, 2)

    kinds = used["helpers_by_kind"]
    return {"app_pct": pct(used["app_cpu_s"]), "renderer_pct": pct(kinds.get("renderer", 0.0)),
            "gpu_pct": pct(kinds.get("gpu-process", 0.0)),
            "browser_pct": pct(kinds.get("browser", 0.0)),
            "helpers_pct": pct(used["helpers_cpu_s"]),
            "others_pct": round(100 * used["others_cpu_s"] / wall, 1), "threads": used["threads"]}


def _wakeups(pid: int, seconds: float = 5.0) -> dict | None:
    """System calls of process `pid` (all its threads) over `seconds`, by strace -c: the total
    per second and the three most frequent. None without strace."""
    if not shutil.which("strace"):
        return None
    out = subprocess.run(["timeout", "-s", "INT", str(seconds), "strace", "-c", "-f", "-p", str(pid)],
                         capture_output=True, text=True).stderr
    calls: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            try:
                calls[parts[-1]] = int(parts[3])
            except ValueError:
                continue
    top = sorted(calls.items(), key=lambda kv: -kv[1])[:3]
    return {"syscalls_per_s": round(sum(calls.values()) / seconds), "top": dict(top)}


def _at_rest(pid: int, helper_roots: list[int], idle_s: float, settle_s: float, wakeups: bool) -> dict:
    """After `settle_s` (the models warm up after the page loads), the CPU of the app `pid` and its
    helpers over `idle_s` as % of a core; with `wakeups`, then the app's system calls."""
    time.sleep(settle_s)
    cpu = CpuWindow(pid, helper_roots)
    cpu.start()
    time.sleep(idle_s)
    out = _idle_figures(cpu.stop())
    if wakeups:
        out["app_syscalls"] = _wakeups(pid)
    return out


def idle(code: Path, idle_s: float, settle_s: float, wakeups: bool = False) -> dict:
    """The window at rest: Xvfb + openbox at 1280x720, `python -m desktop`. With `wakeups`, then
    the app's system calls over 5 s (all its threads: Qt's as well as the server's)."""
    from app_process import XDisplay, wait_mounted

    with tempfile.TemporaryDirectory(prefix="loupe-idle-") as tmp, XDisplay(size="1280x720x24") as x:
        home = Path(tmp) / "home"
        env = {**x.env(), **_env(code, home)}
        env["DISPLAY"] = x.env()["DISPLAY"]
        proc = subprocess.Popen([sys.executable, "-m", "desktop"], cwd=code, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            marks = wait_mounted(home / "logs" / "loupe.log", lambda: proc.poll() is None, 300)
            if "app_mounted" not in marks:
                return {"error": "not mounted"}
            return _at_rest(proc.pid, [proc.pid], idle_s, settle_s, wakeups)
        finally:
            proc.terminate()
            proc.wait(30)


def idle_browser(code: Path, idle_s: float, settle_s: float, wakeups: bool = False) -> dict:
    """`python -m desktop --browser` with Debian's Chromium showing it (1280x720 window on Xvfb +
    openbox) at rest; helpers are Chromium's processes. With `wakeups`, then the server's system
    calls over 5 s (strace; after the CPU window: strace costs CPU itself)."""
    from app_process import XDisplay
    from devtools import DevToolsPage, unused_port

    mounted = ("!!document.querySelector('#loupe-caption') && "
               "!document.querySelector('gradio-app .wrap.default.full.translucent')")
    with tempfile.TemporaryDirectory(prefix="loupe-idle-") as tmp, XDisplay(size="1280x720x24") as x:
        home = Path(tmp) / "home"
        env = {**x.env(), **_env(code, home)}
        proc = subprocess.Popen([sys.executable, "-m", "desktop", "--browser"], cwd=code, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        chromium = None
        try:
            assert proc.stdout is not None
            url = ""
            for line in proc.stdout:  # the URL with its token, printed once the server is up
                found = re.search(r"http://127\.0\.0\.1:\d+/\?token=[A-Za-z0-9_\-]+", line)
                if found:
                    url = found[0]
                    break
            if not url:
                return {"error": "no URL"}
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
            port = unused_port()
            chromium = open_chromium(url, port, Path(tmp) / "chromium", x.env(), size="1280,720")
            with DevToolsPage.attach(port, timeout=120, prefix=url.split("?")[0]) as page:
                page.wait_for(mounted, timeout=120, interval=0.1)
            # detached, like a person's browser (a DevTools client is one more thing to serve)
            return _at_rest(proc.pid, [chromium.pid], idle_s, settle_s, wakeups)
        finally:
            if chromium is not None:
                close_chromium(chromium)
            proc.terminate()
            proc.wait(30)


# --------------------------------------------------------------------------- first caption

FIRST = r"""
import json, sys, time
t0 = time.perf_counter()
from engine import get_engine
from engine.models.registry import for_task
spec = for_task("caption")
opts = dict(prefix="", max_new_tokens=spec.option("max_new_tokens").default,
            num_beams=spec.option("num_beams").default)
engine = get_engine()
imported = time.perf_counter() - t0
t = time.perf_counter(); engine.run_one("caption", sys.argv[1], **opts); first = time.perf_counter() - t
t = time.perf_counter(); engine.run_one("caption", sys.argv[1], **opts); second = time.perf_counter() - t
print(json.dumps({"import_s": round(imported, 2), "load_s": round(engine.load_seconds.get(spec.name, 0), 2),
                  "first_s": round(first, 2), "second_s": round(second, 2),
                  "precision": engine.placement_for(spec).precision}))
"""


def first_caption(code: Path) -> dict:
    out = {}
    int8 = fixtures.MODELS / "blip-base" / ".int8"
    with tempfile.TemporaryDirectory(prefix="loupe-first-") as tmp:
        env = _env(code, Path(tmp) / "home")
        for label, drop in (("first start (no int8 cache)", True), ("later start", False)):
            if drop and int8.exists():
                shutil.rmtree(int8)
            proc = subprocess.run([sys.executable, "-c", FIRST, str(CAT)], cwd=code, env=env, capture_output=True,
                                  text=True, timeout=900)
            if proc.returncode:
                out[label] = {"error": proc.stderr[-800:]}
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["warm_up_s"] = round(row["first_s"] - row["second_s"] - row["load_s"], 2)
            out[label] = row
    return out


# --------------------------------------------------------------------------- scan

SCAN = r"""
import json, sys, threading, time
from engine import library
folder, stop_at = sys.argv[1], float(sys.argv[2])
cancel = threading.Event()
reports = []
t0 = time.perf_counter()
def progress(p):
    reports.append((time.perf_counter() - t0, p.phase, p.done, p.total, p.rate or 0.0, p.eta_s or 0.0))
if stop_at > 0:
    threading.Timer(stop_at, cancel.set).start()
summary = library.scan(folder, write="none", progress=progress, cancel=cancel)
end = time.perf_counter() - t0
print(json.dumps({"end": end, "reports": reports, "done": summary.done, "cancelled": summary.cancelled}))
"""


def _scan(code: Path, folder: Path, home: Path, stop_at: float) -> dict:
    if home.exists():
        shutil.rmtree(home)
    proc = subprocess.run([sys.executable, "-c", SCAN, str(folder), str(stop_at)], cwd=code,
                          env=_env(code, home), capture_output=True, text=True, timeout=1800)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-1500:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def scan(code: Path, photos: int) -> dict:
    folder = fixtures.scan_folder(fixtures.ensure_photos(photos)["640"], photos)
    with tempfile.TemporaryDirectory(prefix="loupe-scan-") as tmp:
        full = _scan(code, folder, Path(tmp) / "home", 0)
        counted = [(t, done) for t, phase, done, total, rate, eta in full["reports"] if phase not in ("finding", "checking")]
        changes, last = [], None
        for t, done in counted:
            if done != last:
                changes.append((t, done))
                last = done
        gaps = [b[0] - a[0] for a, b in zip(changes, changes[1:])]
        errors = []
        for t, phase, done, total, rate, eta in full["reports"]:
            actual = full["end"] - t
            if done >= 2 and eta and actual > 1:
                errors.append(abs(eta - actual) / actual)
        stop_at = 0.4 * full["end"]
        stopped = _scan(code, folder, Path(tmp) / "home", stop_at)
    # when the count first reached what was kept (reports after it repeat the count)
    last_kept = min((t for t, _, done, *_ in stopped["reports"] if done == stopped["done"] and done), default=0.0)
    return {"photos": photos, "scan_s": round(full["end"], 1),
            "count_steps": len(changes), "cadence_median_s": round(statistics.median(gaps), 2) if gaps else None,
            "cadence_max_s": round(max(gaps), 2) if gaps else None,
            "eta_error_median": round(statistics.median(errors), 2) if errors else None,
            "eta_error_max": round(max(errors), 2) if errors else None,
            "stop_pressed_s": round(stop_at, 1), "stop_latency_s": round(stopped["end"] - stop_at, 2),
            "kept": stopped["done"], "work_lost_s": round(max(0.0, stop_at - last_kept), 1)}


def _rev(code: Path) -> str:
    rev = subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    return rev or code.name


def idle_rounds(codes: list[Path], where: list[str], rounds: int, idle_s: float, settle_s: float,
                wakeups: bool) -> dict:
    """The idle parts for each checkout in `codes`, alternated within each round (a neighbour's
    load falls on all alike); per checkout and place, every run and the medians."""
    runs: dict[str, list[dict]] = {}
    for r in range(rounds):
        for place in where:
            for code in codes:
                key = f"{place} {_rev(code)}"
                if place == "window":
                    got = idle(code, idle_s, settle_s, wakeups=wakeups and r == rounds - 1)
                else:
                    got = idle_browser(code, idle_s, settle_s, wakeups=wakeups and r == rounds - 1)
                print(f"idle {key} round {r + 1}:", json.dumps(got), flush=True)
                runs.setdefault(key, []).append(got)
    medians = {}
    for key, got in runs.items():
        ok = [g for g in got if "error" not in g]
        medians[key] = {f: round(statistics.median(g[f] for g in ok), 2)
                        for f in ("app_pct", "renderer_pct", "gpu_pct", "browser_pct", "helpers_pct",
                                  "others_pct")} if ok else {"error": "no run"}
    return medians


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--code", type=Path, default=ROOT, help="the checkout whose app is measured")
    ap.add_argument("--against", type=Path, action="append", default=[],
                    help="idle parts: also this checkout (e.g. main before a fix), alternated")
    ap.add_argument("--parts", default="idle,first,scan",
                    help="idle (the window at rest), idle-browser (--browser in Chromium at rest), "
                         "first, scan")
    ap.add_argument("--idle-s", type=float, default=20)
    ap.add_argument("--settle-s", type=float, default=20)
    ap.add_argument("--rounds", type=int, default=1, help="idle parts: rounds of alternated runs")
    ap.add_argument("--wakeups", action="store_true",
                    help="idle parts, last round: then count the app's system calls over 5 s (strace)")
    ap.add_argument("--photos", type=int, default=22)
    args = ap.parse_args()
    fixtures.ensure_models()
    code = args.code.resolve()
    parts = args.parts.split(",")
    print(f"# {code} ({_rev(code)})" + "".join(f" against {c.resolve()} ({_rev(c.resolve())})"
                                              for c in args.against))
    where = [p for p, part in (("window", "idle"), ("browser", "idle-browser")) if part in parts]
    if where:
        medians = idle_rounds([code, *(c.resolve() for c in args.against)], where, args.rounds,
                              args.idle_s, args.settle_s, args.wakeups)
        print("idle medians (% of one core):", json.dumps(medians), flush=True)
    if "first" in parts:
        print("first caption:", json.dumps(first_caption(code)), flush=True)
    if "scan" in parts:
        print("scan:", json.dumps(scan(code, args.photos)), flush=True)


if __name__ == "__main__":
    main()
