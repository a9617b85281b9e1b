"""What a person meets in the desktop app, measured with the bench's full-size models (random
weights, real compute): idle CPU of the window at rest, the first caption's delay and where it
goes, and the Library scan's progress (cadence, time-left error, Stop latency, work lost).

    .venv/bin/python bench/desktop_truth.py                       # this checkout
    .venv/bin/python bench/desktop_truth.py --code /work/main     # "before": another checkout
    .venv/bin/python bench/desktop_truth.py --parts idle,first --idle-s 20 --photos 22

Parts:
- idle: the real window (`python -m desktop`, Xvfb + openbox, 1280x720) with both models
  installed; after the page is mounted and the models are warm (`--settle-s`), CPU seconds over
  `--idle-s` of the app process and of its helpers (QtWebEngine's renderer, GPU process), as %
  of one core.
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
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bench import fixtures  # noqa: E402
from bench.window_vs_browser import CpuWindow  # noqa: E402

CAT = ROOT / "desktop" / "examples" / "cat.jpg"


def _env(code: Path, home: Path, **extra: str) -> dict[str, str]:
    env = fixtures.env()
    env.update(PYTHONPATH=str(code), LOUPE_HOME=str(home), **extra)
    env.pop("GRADIO_TEMP_DIR", None)
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "settings.json").write_text(json.dumps({"weights_dir": str(fixtures.MODELS)}))
    return env


# --------------------------------------------------------------------------- idle


def idle(code: Path, idle_s: float, settle_s: float) -> dict:
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
            time.sleep(settle_s)  # the models warm up after the page loads
            cpu = CpuWindow(proc.pid, [proc.pid])
            cpu.start()
            time.sleep(idle_s)
            used = cpu.stop()
        finally:
            proc.terminate()
            proc.wait(30)
    wall = used["wall_s"]
    return {"app_pct": round(100 * used["app_cpu_s"] / wall, 2),
            "helpers_pct": round(100 * used["helpers_cpu_s"] / wall, 2),
            "others_pct": round(100 * used["others_cpu_s"] / wall, 1), "threads": used["threads"]}


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--code", type=Path, default=ROOT, help="the checkout whose app is measured")
    ap.add_argument("--parts", default="idle,first,scan")
    ap.add_argument("--idle-s", type=float, default=20)
    ap.add_argument("--settle-s", type=float, default=20)
    ap.add_argument("--photos", type=int, default=22)
    args = ap.parse_args()
    fixtures.ensure_models()
    code = args.code.resolve()
    parts = args.parts.split(",")
    print(f"# {code} ({subprocess.run(['git', '-C', str(code), 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()})")
    if "idle" in parts:
        print("idle:", json.dumps(idle(code, args.idle_s, args.settle_s)), flush=True)
    if "first" in parts:
        print("first caption:", json.dumps(first_caption(code)), flush=True)
    if "scan" in parts:
        print("scan:", json.dumps(scan(code, args.photos)), flush=True)


if __name__ == "__main__":
    main()
