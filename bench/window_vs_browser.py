"""The same scan through the window, through Chromium on `--browser`, and with no UI (the CLI path).

    .venv/bin/python bench/window_vs_browser.py                  # 6 photos 640x480, 2 rounds
    .venv/bin/python bench/window_vs_browser.py --photos 8 --size 12mp --rounds 3
    .venv/bin/python bench/window_vs_browser.py --code /path/to/other/checkout   # "before" figures

Each path runs in its own processes under a private Xvfb display with openbox (like a person's
desktop): the app is Loupe's real shell (`desktop.__main__.run`: window or `--browser`, guard,
server) around a one-button page whose handler runs the real library scan
(`engine.library.scan`, write="none", a fresh index) with gradio's progress, as the Library tab
does. `--browser` is opened in Debian's Chromium, visible on the same display. The models are the
full-size random-weight BLIP-base and ResNet-18 of bench/fixtures.py (built once, ~1.5 min).

Per run it reports: startup to usable (process start to the page mounted, in the window or in
Chromium, browser start-up included), the model load, s/photo of the scan (models already
loaded), and CPU seconds used during the scan (for the CLI: the whole process) by the app process, by its helper processes
(QtWebEngine's renderer and GPU processes, or Chromium's), and by the rest of the machine. The
`threads` column lists the app's busiest threads (`top -H` style). Paths alternate within each
round, so a busy neighbour slows all paths alike; ratios are against `--browser` in the same
round.

`--code ROOT` runs the app from another checkout (e.g. main before a fix); this script and the
fixtures always come from here.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TESTS = ROOT / "tests"
CLK = os.sysconf("SC_CLK_TCK")

MOUNTED_JS = (
    "(function(){var c=document.querySelector('gradio-app .gradio-container .contain');"
    "return !!(c && c.querySelector('#bench-scan')"
    " && !document.querySelector('gradio-app .wrap.default.full.translucent'));})()"
)

SCAN_JS = r"""
(async function (folder) {
  const box = document.querySelector('#bench-folder textarea');
  box.value = folder; box.dispatchEvent(new Event('input', {bubbles: true}));
  await new Promise((r) => setTimeout(r, 300));
  document.querySelector('#bench-scan').click();
  const t0 = Date.now();
  while (Date.now() - t0 < 1800000) {
    const out = document.querySelector('#bench-out textarea');
    if (out && out.value.startsWith('{')) return JSON.parse(out.value);
    await new Promise((r) => setTimeout(r, 250));
  }
  return {error: 'no result'};
})
"""


# --------------------------------------------------------------------------- the app side
def timed_scan(folder: str, progress: Any = None) -> dict:
    """Load the models (timed), then scan `folder` into a fresh index (timed); seconds."""
    from engine import library
    from engine.inference import get_engine

    t0 = time.perf_counter()
    engine = get_engine()
    engine.model("caption")
    engine.model("classify")
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.perf_counter()
        summary = library.scan(folder, write="none", db_path=Path(tmp) / "index.db",
                               progress=progress)
        scan_s = time.perf_counter() - t1
    n = int(getattr(summary, "total", 0) or 0)
    import torch

    return {"photos": n, "load_s": round(load_s, 3), "scan_s": round(scan_s, 3),
            "s_per_photo": round(scan_s / max(1, n), 3), "torch_threads": torch.get_num_threads(),
            "pid": os.getpid()}


def build_app() -> Any:
    """The bench page: a folder box, a Scan button, the result as JSON (gradio progress shown)."""
    import gradio as gr

    def scan(folder: str, progress: gr.Progress = gr.Progress()) -> str:
        def report(p: Any) -> None:
            progress(p.fraction, desc=f"{p.done} of {p.total} photos")

        return json.dumps(timed_scan(folder, report))

    with gr.Blocks(title="Loupe") as demo:
        folder = gr.Textbox(label="Folder", elem_id="bench-folder")
        button = gr.Button("Scan", variant="primary", elem_id="bench-scan")
        out = gr.Textbox(label="Result", elem_id="bench-out", lines=3)
        button.click(scan, folder, out, api_visibility="private")
    return demo


def serve(code: str, args: list[str]) -> None:
    sys.path.insert(0, code)
    from desktop.__main__ import run

    if args[:2] == ["-m", "desktop"]:  # AppProcess's own target, after ours
        args = args[2:]
    run(args, factory=build_app)


# --------------------------------------------------------------------------- measuring
def _cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except (OSError, IndexError, ValueError):
        return 0.0


def _threads(pid: int) -> dict[str, float]:
    """CPU seconds per thread name (threads of one name summed) of process `pid`."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            stat = (task / "stat").read_text()
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat.rsplit(")", 1)[1].split()
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / CLK
        except (OSError, ValueError, IndexError):
            continue
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _kind(pid: int) -> str:
    """A helper process's part: Chromium's (and Qt WebEngine's) `--type=` (renderer, gpu-process,
    utility, zygote), "browser" for Chromium's main process, else the program's name. Chromium's
    children rewrite their command line into one string; a zygote's forks keep the zygote's: Qt
    WebEngine's renderers are the forks of its sandboxed zygote (the one without
    --no-zygote-sandbox); Qt runs the GPU work inside the app's own process."""
    cmdline = _cmdline(pid)
    if not cmdline:
        return "gone"
    found = re.search(r"--type=([\w-]+)", cmdline)
    if found and found[1] == "zygote":
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            parent = 0
        above = _cmdline(parent)
        if "--type=zygote" in above:
            return "utility" if "--no-zygote-sandbox" in above else "renderer"
    if found:
        return found[1]
    name = Path(cmdline.split(" ", 1)[0]).name
    return "browser" if "chrom" in name else name


def _machine_cpu() -> float:
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    busy = sum(int(v) for i, v in enumerate(fields) if i not in (3, 4))  # all but idle, iowait
    return busy / CLK


class CpuWindow:
    """CPU seconds used between start() and stop() by the app, its helpers, and everything else."""

    def __init__(self, app_pid: int, helper_roots: list[int]) -> None:
        self.app_pid, self.helper_roots = app_pid, helper_roots

    def _helpers(self) -> list[int]:
        from app_process import descendants

        pids = set()
        for root in self.helper_roots:
            pids.add(root)
            pids.update(descendants(root))
        pids.discard(self.app_pid)
        return sorted(pids)

    def _sample(self) -> tuple[float, float, float, dict[str, float], dict[str, float]]:
        helpers = self._helpers()
        kinds: dict[str, float] = {}
        for pid in helpers:
            kinds[_kind(pid)] = kinds.get(_kind(pid), 0.0) + _cpu_of(pid)
        return (_cpu_of(self.app_pid), sum(_cpu_of(p) for p in helpers), _machine_cpu(),
                _threads(self.app_pid), kinds)

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.s0 = self._sample()

    def stop(self) -> dict:
        wall = time.perf_counter() - self.t0
        app1, helpers1, machine1, threads1, kinds1 = self._sample()
        app0, helpers0, machine0, threads0, kinds0 = self.s0
        app, helpers = app1 - app0, helpers1 - helpers0
        delta = {k: v - threads0.get(k, 0.0) for k, v in threads1.items()}
        top = sorted(delta.items(), key=lambda kv: -kv[1])[:6]
        return {"wall_s": round(wall, 2), "app_cpu_s": round(app, 2),
                "helpers_cpu_s": round(helpers, 2),
                "helpers_by_kind": {k: round(v - kinds0.get(k, 0.0), 2) for k, v in sorted(kinds1.items())},
                "others_cpu_s": round(max(0.0, machine1 - machine0 - app - helpers), 2),
                "threads": {k: round(v, 2) for k, v in top if v >= 0.05}}


def _env(display: Any, home: Path, models: Path, sources: Path, **extra: str) -> dict[str, str]:
    env = display.env(LOUPE_HOME=str(home), LOUPE_SOURCES=str(sources), HF_HUB_OFFLINE="1",
                      GRADIO_ANALYTICS_ENABLED="False", TRANSFORMERS_VERBOSITY="error", **extra)
    env.pop("GRADIO_TEMP_DIR", None)
    env.pop("LOUPE_PRECISION", None)
    home.mkdir(parents=True, exist_ok=True)
    (home / "config").mkdir(exist_ok=True)
    (home / "config" / "settings.json").write_text(json.dumps({"weights_dir": str(models)}))
    return env


def _app(code: str, env: dict[str, str], *args: str) -> Any:
    from app_process import AppProcess

    return AppProcess(*args, env=env, python=[sys.executable, str(Path(__file__).resolve()),
                                              "--serve", "--code", code, "--"])


def run_window(display: Any, code: str, folder: Path, home: Path, models: Path,
               sources: Path) -> dict:
    from app_process import log_timings, wait_mounted
    from devtools import DevToolsPage, remote_debugging_env, unused_port

    port = unused_port()
    env = _env(display, home, models, sources, **remote_debugging_env(port))
    log = home / "logs" / "loupe.log"
    app = _app(code, env)
    with app:
        wait_mounted(log, lambda: app.proc.poll() is None, 300)
        marks = log_timings(log)
        if "app_mounted" not in marks:
            return {"error": f"not mounted: {app.output[-1500:]}"}
        with DevToolsPage.attach(port, timeout=60) as page:
            cpu = CpuWindow(app.proc.pid, [app.proc.pid])
            cpu.start()
            result = page.evaluate(f"({SCAN_JS})({json.dumps(str(folder))})", timeout=1800)
            usage = cpu.stop()
        app.stop()
    return {"usable_s": marks["app_mounted"], "server_up_s": marks.get("server_up"),
            **result, **usage}


def open_chromium(url: str, port: int, profile: Path, env: dict[str, str],
                  size: str = "1100,760") -> subprocess.Popen:
    """Debian's Chromium showing `url` in a window of `size` pixels, DevTools on `port`."""
    return subprocess.Popen(
        ["chromium", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--password-store=basic", f"--user-data-dir={profile}",
         f"--remote-debugging-port={port}", f"--window-size={size}", url],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def close_chromium(chromium: subprocess.Popen) -> None:
    chromium.terminate()
    try:
        chromium.wait(10)
    except subprocess.TimeoutExpired:
        chromium.kill()


def run_browser(display: Any, code: str, folder: Path, home: Path, models: Path,
                sources: Path) -> dict:
    from devtools import DevToolsPage, unused_port

    env = _env(display, home, models, sources)
    app = _app(code, env, "--browser")
    t_start = time.perf_counter()
    with app:
        url = app.wait_for_url(300)
        server_up = time.perf_counter() - t_start
        port = unused_port()
        profile = Path(tempfile.mkdtemp(prefix="bench-chromium-"))
        chromium = open_chromium(url, port, profile, display.env())
        try:
            with DevToolsPage.attach(port, timeout=120, prefix=app.base_url) as page:
                page.wait_for(MOUNTED_JS, timeout=120, interval=0.05)
                usable = time.perf_counter() - t_start
                cpu = CpuWindow(app.proc.pid, [app.proc.pid, chromium.pid])
                cpu.start()
                result = page.evaluate(f"({SCAN_JS})({json.dumps(str(folder))})", timeout=1800)
                usage = cpu.stop()
        finally:
            close_chromium(chromium)
            shutil.rmtree(profile, ignore_errors=True)
        app.stop()
    return {"usable_s": round(usable, 3), "server_up_s": round(server_up, 3), **result, **usage}


def run_cli(display: Any, code: str, folder: Path, home: Path, models: Path,
            sources: Path) -> dict:
    env = _env(display, home, models, sources)
    env["PYTHONPATH"] = os.pathsep.join([code, str(ROOT)])
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--cli", str(folder),
                             "--code", code], env=env, stdout=subprocess.PIPE, text=True)
    machine0 = _machine_cpu()
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, rusage = os.wait4(proc.pid, 0)  # the child's own CPU, after it has exited
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}"}
    result = json.loads(out.strip().splitlines()[-1])
    app = rusage.ru_utime + rusage.ru_stime
    return {"usable_s": None, **result, "wall_s": round(wall, 2), "app_cpu_s": round(app, 2),
            "helpers_cpu_s": 0.0,
            "others_cpu_s": round(max(0.0, _machine_cpu() - machine0 - app), 2), "threads": {}}


PATHS = {"window": run_window, "browser": run_browser, "cli": run_cli}


def tiny_models(folder: Path) -> tuple[Path, Path]:
    """The test suite's tiny BLIP and a ResNet-18 installed under `folder`: (models, sources)."""
    from tiny_models import build_tiny_blip, build_tiny_resnet

    from bench import fixtures

    models, sources = folder / "models", folder / "sources.json"
    build_tiny_blip(models / "blip-base")
    build_tiny_resnet(models / "resnet18" / "resnet18-f37072fd.pth")
    entries = {"blip-base": fixtures._install("blip-base", models / "blip-base", "tiny"),
               "resnet18": fixtures._install("resnet18", models / "resnet18", "tiny")}
    entries["blip-base"].update(title="tiny BLIP (bench)", revision="0" * 40)
    entries["resnet18"].update(title="ResNet-18 (bench)")
    sources.write_text(json.dumps(entries), encoding="utf-8")
    return models, sources


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--cli", metavar="FOLDER", help=argparse.SUPPRESS)
    p.add_argument("--code", default=str(ROOT), help="the checkout whose app is measured")
    p.add_argument("--photos", type=int, default=6)
    p.add_argument("--size", choices=["640", "12mp"], default="640")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--only", default="window,browser,cli",
                   help="paths, in order: window, browser, cli; NAME@ROOT runs that path from "
                        "another checkout (e.g. window@/path/to/main for before/after)")
    p.add_argument("--models", choices=["full", "tiny"], default="full",
                   help="full-size random BLIP-base (default) or the test suite's tiny one")
    p.add_argument("--json", type=Path)
    p.add_argument("rest", nargs="*")
    args = p.parse_args()
    if args.serve:
        return serve(args.code, args.rest)
    if args.cli:
        sys.path.insert(0, args.code)
        print(json.dumps(timed_scan(args.cli)), flush=True)
        return None

    sys.path[:0] = [str(TESTS), str(ROOT)]
    from app_process import XDisplay

    from bench import fixtures

    photos = fixtures.ensure_photos(args.photos)[args.size]
    folder = fixtures.scan_folder(photos, args.photos)
    paths = [s for s in args.only.split(",") if s]
    rows: list[dict] = []
    with XDisplay(size="1280x800x24") as display, \
            tempfile.TemporaryDirectory(prefix="bench-wvb-") as tmp:
        if args.models == "tiny":
            models, sources = tiny_models(Path(tmp) / "tiny")
        else:
            fixtures.ensure_models()
            models, sources = fixtures.MODELS, fixtures.SOURCES_JSON
        for round_no in range(args.rounds):
            order = paths if round_no % 2 == 0 else paths[::-1]
            for i, spec in enumerate(order):
                name, _, code = spec.partition("@")
                home = Path(tmp) / f"{round_no}-{i}-{name}"
                fixtures.log(f"round {round_no + 1}: {spec}")
                row = PATHS[name](display, code or args.code, folder, home, models, sources)
                row.update(path=spec, round=round_no + 1)
                fixtures.log(json.dumps(row))
                rows.append(row)
    report(rows, args)
    if args.json:
        args.json.write_text(json.dumps({"code": args.code, "rows": rows}, indent=2))


def report(rows: list[dict], args: Any) -> None:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    print(f"\n{args.photos} photos {args.size}, {args.models} models, code {args.code}, CPU {cpu}, "
          f"{os.cpu_count()} cores")
    print(f"{'path':24} {'round':>5} {'usable s':>9} {'load s':>7} {'s/photo':>8} "
          f"{'app cpu':>8} {'helpers':>8} {'others':>7}  vs browser")
    for row in rows:
        if "error" in row:
            print(f"{row['path']:24} {row['round']:>5}  error: {row['error'][:200]}")
            continue
        ref = next((r for r in rows if r["path"] == "browser" and r["round"] == row["round"]
                    and "error" not in r), None)
        ratio = f"{row['s_per_photo'] / ref['s_per_photo']:.2f}x" if ref else "-"
        usable = f"{row['usable_s']:.2f}" if row.get("usable_s") else "-"
        print(f"{row['path']:24} {row['round']:>5} {usable:>9} {row['load_s']:>7.2f} "
              f"{row['s_per_photo']:>8.3f} {row['app_cpu_s']:>8.1f} {row['helpers_cpu_s']:>8.1f} "
              f"{row['others_cpu_s']:>7.1f}  {ratio}  threads {row['threads']}")
    for name in dict.fromkeys(r["path"] for r in rows):
        ok = [r for r in rows if r["path"] == name and "error" not in r]
        if ok:
            usable = [r["usable_s"] for r in ok if r.get("usable_s")]
            print(f"median {name}: {statistics.median(r['s_per_photo'] for r in ok):.3f} s/photo"
                  + (f", usable after {statistics.median(usable):.2f} s" if usable else ""))


if __name__ == "__main__":
    main()
