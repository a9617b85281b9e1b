"""`python -m bench`: the tutorial way against Loupe's path, side by side, on this machine.

Each path runs in its own subprocess (so peak RSS is that path's). Before each, the bench
waits briefly for other processes to go quiet and records how many cores they used meanwhile
(the "others" column): on a shared 2-core machine that is the main source of noise.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from . import fixtures, startup
from .fixtures import log
from .sysinfo import wait_quiet

TARGETS = {
    "library_caption_s": 0.30,  # s/photo, library scan of 12-MP photos
    "library_caption_speedup": 4.5,  # x the tutorial way
    "tab_caption_s": 0.5,  # one photo in the Caption tab
    "classify_12mp_per_s": 50.0,  # photos/s
    "rss_both_mb": 1536.0,  # process RSS, both models loaded, after the first caption
}
# Issue 13's targets for CPUs without native bf16 (set on a 2-core AVX2 Zen 3, no VNNI).
TARGETS_NO_BF16 = {
    "library_caption_s": 0.70,  # library scan (caption + classify), 20 greedy tokens
    "library_caption_speedup": 3.5,
    "tab_caption_s": 1.2,
    "classify_12mp_per_s": 30.0,
    "rss_both_mb": 1300.0,
}
SHIPPED = {"tokens": 12, "beams": 3}  # the product's 3 beams at a typical caption length (worker.SHIPPED_TOKENS)
FAST = {"tokens": 12, "beams": 1}  # the fast choice (1 beam) at the same length


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few photos and repeats (~2-3 min): for development")
    p.add_argument("--only", default="", help="comma list of: caption,int8,classify,library,tab,memory,cold,window,accuracy")
    p.add_argument("--sweep", action="store_true",
                   help="instead of the table: try the knobs (batch size, decode/torch threads, draft, "
                        "precision, int8 for the Caption tab, load memory) and print each result")
    p.add_argument("--batch-size", type=int, default=None, help="Loupe caption batch (default: Engine's)")
    p.add_argument("--decode-threads", type=int, default=None, help="decode pool size (default 2)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "int8"), default=None,
                   help="Loupe's precision for every model (default: the registry's choice for this CPU class)")
    p.add_argument("--wait", type=float, default=15, metavar="S",
                   help="before each measurement wait up to S seconds for other processes to go quiet (default 15)")
    p.add_argument("--wait-budget", type=float, default=100, metavar="S",
                   help="wait at most S seconds in all (default 100: a full run stays < 8 min)")
    p.add_argument("--no-wait", action="store_true", help="same as --wait 0")
    p.add_argument("--retries", type=int, default=1,
                   help="run a measurement again when other processes used > 0.3 cores meanwhile (default 1)")
    p.add_argument("--retry-budget", type=float, default=240, metavar="S",
                   help="no more retries once the bench has run S seconds (default 240: a full run stays < 8 min)")
    p.add_argument("--keep-int8-cache", action="store_true",
                   help="do not rebuild the int8 cache first (the first-load row then times a cached load)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p.parse_args(argv)


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.results: dict[str, dict] = {}
        self.started = time.perf_counter()
        self.waited = 0.0

    def worker(self, key: str, cfg: dict, timeout: float = 600) -> dict:
        """Run one path; if other processes were busy meanwhile (> 0.3 cores), run it again
        (up to --retries times, while the run is young) and keep the least disturbed result."""
        best = None
        if cfg.get("neighbour"):  # a CPU-bound neighbour on purpose: no waiting for quiet, no retry
            result = self._worker_once(key, cfg, timeout)
            self.results[key] = result
            return result
        for attempt in range(1 + max(0, self.args.retries)):
            if attempt and time.perf_counter() - self.started > self.args.retry_budget:
                break
            result = self._worker_once(key, cfg, timeout)
            if best is None or "error" in best or result.get("others_cores", 9) < best.get("others_cores", 9):
                best = result
            if "error" in result or result.get("others_cores", 0) <= 0.3:
                break
        if best is not None and "others_cores" in best:
            best["attempts"] = attempt + 1
        self.results[key] = best
        return best

    def quiet(self) -> None:
        """Wait for other processes to go quiet, within --wait and a total of --wait-budget s."""
        left = self.args.wait_budget - self.waited
        if self.args.no_wait or self.args.wait <= 0 or left <= 0:
            return
        t = time.perf_counter()
        wait_quiet(limit_s=min(self.args.wait, left))
        self.waited += time.perf_counter() - t

    def _worker_once(self, key: str, cfg: dict, timeout: float) -> dict:
        neighbour = None
        if cfg.get("neighbour"):
            # "one core busy": a person's laptop is never idle (a browser, a player, the window)
            neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        else:
            self.quiet()
        label = cfg["path"] + ("" if key == cfg["path"] else f" [{key}]")
        log(f"running {label} ...")
        t = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "bench.worker", json.dumps(cfg)], env=fixtures.env(),
                                  cwd=fixtures.ROOT.parent, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:  # a saturated machine: this row fails, the table still prints
            result = {"error": f"no result within {timeout:.0f} s (machine busy?)"}
            log(f"  {label} FAILED: {result['error']}")
            return result
        finally:
            if neighbour is not None:
                neighbour.kill()
                neighbour.wait()
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
            result = {"error": " | ".join(tail)[-600:]}
            log(f"  {label} FAILED: {result['error']}")
        else:
            result = json.loads(lines[-1][len("RESULT "):])
            s = result.get("s_per_photo")
            extra = f"{s:.3f} s/photo, " if isinstance(s, float) else ""
            log(f"  {extra}peak RSS {result['peak_rss_mb']:.0f} MB, others {result['others_cores']:.2f} cores, "
                f"{time.perf_counter() - t:.0f} s")
        return result


def _fmt(x, spec=".3f", none="-"):
    return none if x is None or (isinstance(x, float) and x != x) else format(x, spec)


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    only = set(filter(None, args.only.split(","))) or {"caption", "int8", "classify", "library", "tab", "memory", "cold",
                                                       "window", "accuracy"}
    quick = args.quick
    fixtures.ensure_models()
    photos = fixtures.ensure_photos(16 if quick else 32)
    blip = str(fixtures.MODELS / "blip-base")
    resnet = str(fixtures.MODELS / "resnet18" / "resnet18-f37072fd.pth")
    run = Runner(args)
    loupe = {k: v for k, v in (("batch_size", args.batch_size), ("decode_threads", args.decode_threads),
                                ("precision", None if args.precision == "auto" else args.precision)) if v is not None}
    p12 = [str(p) for p in photos["12mp"]]
    p640 = [str(p) for p in photos["640"]]

    if args.sweep:  # slow anyway: wait and retry more for cleaner numbers
        args.wait_budget = max(args.wait_budget, 900)
        args.retry_budget = max(args.retry_budget, 1800)
        return sweep(run, blip, resnet, p12, p640, quick)

    cap_n = 8 if quick else 16
    tut_n = 3 if quick else 5
    rounds = 2 if quick else 3
    sizes = (("12mp", p12), ("640", p640))
    int8 = _int8_runs()
    if int8 and only & {"caption", "int8", "library", "tab", "memory", "accuracy"}:
        # the first int8 load (quantize + write the cache, as the app's first start), then
        # every row below loads from the cache
        run.worker("int8-cache", {"path": "int8-cache", "model": blip, "rebuild": not args.keep_int8_cache})
    if int8 and "int8" in only:
        run.worker("alternate", {"path": "alternate", "model": blip, "photos": p12[:8], "rounds": 2 if quick else 3}, timeout=1200)
    if "caption" in only:
        for label, ps in sizes:
            run.worker(f"tutorial-caption-{label}", {"path": "tutorial-caption", "model": blip, "photos": ps[:tut_n]})
            run.worker(f"loupe-caption-{label}", {"path": "loupe-caption", "photos": ps[:cap_n], "rounds": rounds, **loupe})
    if "classify" in only:
        for label, ps in sizes:
            # ToTensor on a whole 12-MP photo runs ResNet on 12 M pixels: several s each, ~2.5 GB.
            n, warm = ((2, 0) if quick else (3, 0)) if label == "12mp" else (8 if quick else 16, 1)
            run.worker(f"tutorial-classify-{label}", {"path": "tutorial-classify", "model": resnet, "photos": ps[:n], "warmup": warm})
            run.worker(f"loupe-classify-{label}", {"path": "loupe-classify", "photos": ps, "rounds": rounds, **loupe})
    if "library" in only:
        folder = fixtures.scan_folder(photos["12mp"], cap_n)
        run.worker("library-scan-12mp", {"path": "library-scan", "folder": str(folder), "rounds": 2, **loupe})
        for key, gen in (("library-scan-12mp-shipped", SHIPPED), ("library-scan-12mp-fast", FAST)):
            run.worker(key, {"path": "library-scan", "folder": str(folder), "rounds": 1, **loupe, **gen})
        run.worker("library-scan-12mp-shipped-busy", {"path": "library-scan", "folder": str(folder), "rounds": 1,
                                                      **loupe, **SHIPPED, "neighbour": True})
    if "tab" in only or "memory" in only:
        tab = p12[: 4 if quick else 6]
        run.worker("loupe-app", {"path": "loupe-app", "photos": tab, **loupe})
        if "tab" in only:
            run.worker("loupe-app-shipped", {"path": "loupe-app", "photos": tab, **loupe, **SHIPPED})
            run.worker("loupe-app-fast", {"path": "loupe-app", "photos": tab, **loupe, **FAST})
            run.worker("loupe-app-shipped-busy", {"path": "loupe-app", "photos": tab, **loupe, **SHIPPED, "neighbour": True})
    if "cold" in only:
        run.quiet()
        log("timing `loupe caption photo.jpg` and `loupe classify photo.jpg` ...")
        for key, task in (("cold", "caption"), ("cold-classify", "classify")):
            run.results[key] = startup.cold_start(Path(p12[0]), 1 if quick else 3, task)
            run.results[key + "-installed"] = startup.cold_start(Path(p12[0]), 1 if quick else 3, task,
                                                                 as_installed=True)
    if "window" in only:
        log("timing the window ...")
        run.results["window"] = startup.window_visible()
    if "accuracy" in only:
        run.worker("accuracy", {"path": "accuracy", "model": blip, "resnet": resnet, "photos": p12[:2] + p640[:2],
                                "class_photos": p640[:16], "int8": int8})
    report(run.results, args, time.perf_counter() - started)
    if args.json:
        args.json.write_text(json.dumps(run.results, indent=2))
    return 0


def _int8_runs() -> bool:
    """Whether this machine can run the int8 path (x86 with torch's fbgemm kernels)."""
    from engine.quantize import int8_available

    return int8_available()


def _chosen(args: argparse.Namespace) -> dict[str, str]:
    """{model name: "device/precision"} as Loupe picks it here (or --precision), as the
    workers will see it (the bench's Loupe home, no LOUPE_PRECISION from the caller)."""
    from engine.device import choose
    from engine.models.registry import MODELS

    saved = {k: os.environ.get(k) for k in ("LOUPE_HOME", "LOUPE_PRECISION", "LOUPE_DEVICE")}
    os.environ["LOUPE_HOME"] = fixtures.env()["LOUPE_HOME"]
    for k in ("LOUPE_PRECISION", "LOUPE_DEVICE"):
        os.environ.pop(k, None)
    try:
        asked = None if args.precision in (None, "auto") else args.precision
        return {spec.name: "{0.device}/{0.precision}".format(choose(precision=asked, precisions=spec.precisions, supported=spec.supported))
                for spec in MODELS}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def sweep(run: Runner, blip: str, resnet: str, p12: list[str], p640: list[str], quick: bool) -> int:
    """The knobs, one at a time from Loupe's defaults. Slow (~10 min): not part of the table."""
    n = 8 if quick else 16
    rounds = 2
    variants = [("defaults", {}), ("batch 4", {"batch_size": 4}), ("batch 16", {"batch_size": 16}),
                ("decode threads 1", {"decode_threads": 1}), ("decode inline (no overlap)", {"decode_threads": 0}),
                ("torch threads 1", {"torch_threads": 1}),
                ("no draft decode", {"draft": False}), ("fp32", {"precision": "fp32"})]
    rows = []
    for name, cfg in variants:
        batch = cfg.get("batch_size", 8)
        ps = p12[: max(n, 2 * batch)]
        r = run.worker(f"caption {name}", {"path": "loupe-caption", "photos": ps, "rounds": rounds, **cfg})
        rows.append(("caption 12 MP", name, r))
    for name, cfg in [("defaults", {}), ("decode threads 1", {"decode_threads": 1}), ("decode threads 3", {"decode_threads": 3}),
                      ("decode inline (no overlap)", {"decode_threads": 0}),
                      ("no draft decode", {"draft": False}), ("fp32", {"precision": "fp32"})]:
        r = run.worker(f"classify {name}", {"path": "loupe-classify", "photos": p12, "rounds": rounds, **cfg})
        rows.append(("classify 12 MP", name, r))
    tab = p12[:5]
    rows.append(("Caption tab", "bf16 batch 1", run.worker("tab bf16", {"path": "loupe-app", "photos": tab})))
    rows.append(("Caption tab", "fp32 batch 1", run.worker("tab fp32", {"path": "loupe-app", "photos": tab, "precision": "fp32"})))
    rows.append(("Caption tab", "int8 batch 1", run.worker("tab int8", {"path": "loupe-app", "photos": tab, "precision": "int8"})))
    rows.append(("caption 12 MP", "int8 batch 8", run.worker("int8 batch 8", {"path": "loupe-caption", "photos": p12[:n],
                                                                            "rounds": rounds, "precision": "int8"})))
    for how in ("bf16-direct", "fp32-then-cast"):
        rows.append(("load BLIP", how, run.worker(f"load {how}", {"path": "load-rss", "model": blip, "how": how})))
    print()
    print(f"{'what':16} {'variant':27} {'s/photo':>8} {'photos/s':>9} {'peak RSS':>9} {'RSS end':>8} {'others':>7}  notes")
    for what, name, r in rows:
        if "error" in r:
            print(f"{what:16} {name:27} FAILED: {r['error'][:100]}")
            continue
        s = r.get("s_per_photo")
        now = r.get("rss_both_models_mb") or r.get("rss_after_caption_mb") or r.get("rss_after_mb") or r.get("rss_end_mb")
        notes = []
        if "rounds" in r:
            notes.append("rounds " + ", ".join(f"{x:.3f}" for x in r["rounds"]))
        if "rss_after_quant_mb" in r:
            notes.append(f"quantize {r['load_s']:.1f} s")
        for w in r.get("warnings", []):
            notes.append(" ".join(w.split())[:90])
        print(f"{what:16} {name:27} {_fmt(s):>8} {_fmt(1 / s if s else None, '.1f'):>9} {r['peak_rss_mb']:>7.0f}MB "
              f"{_fmt(now, '.0f'):>6}MB {r['others_cores']:>6.2f}  {'; '.join(notes)}")
    return 0


def report(res: dict, args: argparse.Namespace, elapsed: float) -> None:
    import torch

    from engine.device import cpu_class, cpu_description, cpu_has_native_bf16

    chosen = _chosen(args)
    no_bf16 = not cpu_has_native_bf16() and chosen["blip-base"].startswith("cpu/")
    targets = TARGETS_NO_BF16 if no_bf16 else TARGETS
    lc = res.get("loupe-caption-12mp", {})
    print()
    print(f"Loupe benchmark  {time.strftime('%Y-%m-%d %H:%M')}  {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__}{'  (--quick)' if args.quick else ''}")
    print(f"CPU class: {cpu_description()}", flush=True)  # unflushed, a forked helper printed these lines twice
    print(f"Loupe's path here ({'--precision' if args.precision not in (None, 'auto') else 'registry, for ' + cpu_class()}): "
          + ", ".join(f"{name} {where}" for name, where in chosen.items()))
    print(f"BLIP-base and ResNet-18 shapes with random weights. Fixed-work rows: every caption 20 greedy tokens. "
          f"'as shipped' rows: the product's {SHIPPED['beams']} beams at a fixed {SHIPPED['tokens']} tokens (a typical "
          "BLIP-base caption; random weights never end one by themselves); 'fast': 1 beam, same length. "
          "'others' = cores other processes used meanwhile (shared machine: >0.3 means slowed down).")
    print()
    hdr = f"{'task':17}{'path':40}{'s/photo':>9}{'photos/s':>10}{'peak RSS':>10}{'others':>8}"
    print(hdr)
    print("-" * len(hdr))
    ratios = {}
    for task, label in (("caption", "12mp"), ("caption", "640"), ("classify", "12mp"), ("classify", "640")):
        t, lo = res.get(f"tutorial-{task}-{label}"), res.get(f"loupe-{task}-{label}")
        if t is None and lo is None:
            continue
        name = f"{task} {'12 MP' if label == '12mp' else '640x480'}"
        for who, r in (("tutorial: 1 at a time, fp32", t), (None, lo)):
            if r is None:
                continue
            if who is None:
                who = f"Loupe: {r.get('placement', '?')}, batch {r.get('batch', '?')}, {r.get('decode_threads', '?')} dec thr"
            if "error" in r:
                print(f"{name:17}{who:40}  FAILED: {r['error'][:80]}")
            else:
                s = r["s_per_photo"]
                print(f"{name:17}{who:40}{s:>9.3f}{1 / s:>10.1f}{r['peak_rss_mb']:>8.0f}MB{r['others_cores']:>8.2f}")
            name = ""
        if t and lo and "error" not in t and "error" not in lo:
            ratios[f"{task}-{label}"] = t["s_per_photo"] / lo["s_per_photo"]
            print(f"{'':17}{'speed-up, tutorial / Loupe':40}{ratios[f'{task}-{label}']:>8.1f}x")
    scan = res.get("library-scan-12mp")
    if scan:
        name, who = "library 12 MP", "library.scan: caption+classify+index"
        if "error" in scan:
            print(f"{name:17}{who:40}  FAILED: {scan['error'][:80]}")
        else:
            s = scan["s_per_photo"]
            print(f"{name:17}{who:40}{s:>9.3f}{1 / s:>10.1f}{scan['peak_rss_mb']:>8.0f}MB{scan['others_cores']:>8.2f}")
            print(f"{'':17}{'  of which in the engine: %.3f s/photo' % scan['inference_s_per_photo']:40}")
            t = res.get("tutorial-caption-12mp")
            if t and "error" not in t:
                ratios["scan-12mp"] = t["s_per_photo"] / s
                print(f"{'':17}{'speed-up, tutorial captioning / scan':40}{ratios['scan-12mp']:>8.1f}x")
    print_shipped(res)
    print_int8(res)
    app = res.get("loupe-app")
    if app:
        print()
        if "error" in app:
            print(f"Caption tab / app memory: FAILED: {app['error'][:200]}")
        else:
            print(f"Caption tab, 1 photo (12 MP, {app['placement']}, batch 1): {app['s_per_photo']:.3f} s "
                  f"(median of {app['n']}; first caption incl. model load {app['first_caption_s']:.1f} s; others {app['others_cores']:.2f})")
            print(f"App process, both models loaded, after the first caption: RSS {app['rss_both_models_mb']:.0f} MB "
                  f"(caption model only {app['rss_after_caption_mb']:.0f} MB; peak while loading {app['peak_rss_mb']:.0f} MB)")
    for key in ("cold", "cold-installed", "cold-classify", "cold-classify-installed"):
        cold = res.get(key)
        if not cold:
            continue
        if "error" in cold:
            print(f"Cold start: FAILED: {cold['error']}")
        else:
            cpu = f" ({cold['cpu_s']:.1f} CPU-s)" if "cpu_s" in cold else ""
            venv = ("as installed: without the dev venv's " + ", ".join(startup.DEV_ONLY)) if cold.get("as_installed") else "dev venv"
            print(f"Cold start `{cold['command']}` (12 MP, weights installed, file cache warm; {venv}): "
                  f"{cold['s']:.1f} s{cpu} median of {len(cold['all'])}, peak RSS {cold['peak_rss_mb']:.0f} MB, others {cold['others_cores']:.2f}")
    win = res.get("window")
    if win:
        if "visible_s" in win:
            mounted = f", UI mounted {win['mounted_s']:.1f} s" if win.get("mounted_s") else ""
            print(f"Window (python -m desktop, Xvfb): visible {win['visible_s']:.2f} s after process start{mounted}")
        else:
            print(f"Window time to visible: skipped ({win.get('skipped') or win.get('error')})")
    acc = res.get("accuracy")
    if acc:
        print()
        if "error" in acc:
            print(f"Accuracy: FAILED: {acc['error'][:300]}")
        else:
            print_accuracy(acc)
    print()
    print(f"Targets ({'issue 13, CPU without native bf16' if no_bf16 else 'speed issue'}; fixed-work rows, 20 greedy tokens):")
    checks = []
    t_lib, t_tab, t_x = targets["library_caption_s"], targets["tab_caption_s"], targets["library_caption_speedup"]
    if lc and "error" not in lc and not no_bf16:
        checks.append((f"library captioning 12 MP <= {t_lib:.2f} s/photo", lc["s_per_photo"] <= t_lib, f"{lc['s_per_photo']:.3f} s"))
    if "caption-12mp" in ratios and not no_bf16:
        checks.append((f">= {t_x}x the tutorial (captioning 12 MP)", ratios["caption-12mp"] >= t_x, f"{ratios['caption-12mp']:.1f}x"))
    if scan and "error" not in scan:
        checks.append((f"library scan 12 MP (caption+classify) <= {t_lib:.2f} s/photo", scan["s_per_photo"] <= t_lib, f"{scan['s_per_photo']:.3f} s"))
    if "scan-12mp" in ratios and no_bf16:
        checks.append((f"library scan >= {t_x}x the tutorial", ratios["scan-12mp"] >= t_x, f"{ratios['scan-12mp']:.1f}x"))
    if app and "error" not in app:
        checks.append((f"Caption tab, one photo <= {t_tab:.1f} s", app["s_per_photo"] <= t_tab, f"{app['s_per_photo']:.3f} s"))
    c12 = res.get("loupe-classify-12mp")
    t_c = targets["classify_12mp_per_s"]
    if c12 and "error" not in c12:
        checks.append((f"classification 12 MP >= {t_c:.0f} photos/s", 1 / c12["s_per_photo"] >= t_c, f"{1 / c12['s_per_photo']:.1f}/s"))
    if app and "error" not in app:
        t_m = targets["rss_both_mb"]
        checks.append((f"RSS, both models, after first caption <= {t_m / 1000:.1f} GB", app["rss_both_models_mb"] <= t_m,
                       f"{app['rss_both_models_mb']:.0f} MB"))
    acc = res.get("accuracy") or {}
    v = acc.get("blip_vision_int8")
    if v:
        checks.append(("fidelity: int8 vs fp32 vision-encoder cosine >= 0.995", v["cos_min"] >= 0.995, f"{v['cos_min']:.4f}"))
    b = acc.get("int8_batch_invariant")
    if b:
        checks.append(("int8: a photo's caption alone = in a batch of its size", b["same"] == b["n"],
                       f"{b['same']}/{b['n']}"))
    e = acc.get("effnet_int8")
    if e and "top1_agree" in e:
        checks.append(("fidelity: classifier top-1 agreement (int8 Linear) >= 24/25", e["top1_agree"] >= 24,
                       f"{e['top1_agree']}/{e['n']}"))
    for text, ok, value in checks:
        print(f"  [{'met' if ok else 'NOT met':7}] {text}: {value}")
    print_speed_targets(res)
    print(f"\nbench finished in {elapsed / 60:.1f} min")


def _ok(r: dict | None) -> bool:
    return bool(r) and "error" not in r


def print_speed_targets(res: dict) -> None:
    """Issue 24's targets (idle 2-core AVX2): the product as shipped, a busy CPU, cold start."""
    print("Targets (issue 24, as shipped: 3 beams x 12 tokens):")
    checks = []
    scan, tab = res.get("library-scan-12mp-shipped"), res.get("loupe-app-shipped")
    tut = res.get("tutorial-caption-12mp")
    for what, r, busy_key in (("library scan as shipped", scan, "library-scan-12mp-shipped-busy"),
                              ("Caption tab as shipped", tab, "loupe-app-shipped-busy")):
        if _ok(r):
            vs = f" ({tut['s_per_photo'] / r['s_per_photo']:.1f}x the tutorial)" if _ok(tut) else ""
            checks.append((f"{what} <= 1.0 s/photo", r["s_per_photo"] <= 1.0, f"{r['s_per_photo']:.3f} s{vs}"))
            busy = res.get(busy_key)
            if _ok(busy):
                ratio = busy["s_per_photo"] / r["s_per_photo"]
                checks.append((f"{what}, one core busy, within 1.3x of idle", ratio <= 1.3,
                               f"{busy['s_per_photo']:.3f} s = {ratio:.2f}x"))
    for key, what, target in (("cold", "caption", 5.0), ("cold-classify", "classify", 2.5)):
        for suffix, venv in (("", "dev venv"), ("-installed", "as installed")):
            cold = res.get(key + suffix)
            if _ok(cold):
                checks.append((f"cold `loupe {what} photo.jpg` <= {target:g} s ({venv})", cold["s"] <= target,
                               f"{cold['s']:.1f} s"))
    win = res.get("window") or {}
    if win.get("mounted_s"):
        checks.append(("window UI mounted <= 5 s", win["mounted_s"] <= 5.0, f"{win['mounted_s']:.1f} s"))
    c12, app = res.get("loupe-classify-12mp"), res.get("loupe-app")
    if _ok(c12):
        checks.append(("classify 12 MP >= 30 photos/s", 1 / c12["s_per_photo"] >= 30, f"{1 / c12['s_per_photo']:.1f}/s"))
    if _ok(app):
        checks.append(("memory, both models loaded <= 1.3 GB", app["rss_both_models_mb"] <= 1300,
                       f"{app['rss_both_models_mb']:.0f} MB"))
    beams = (res.get("accuracy") or {}).get("beam_tokens")
    if beams:
        for b, (same, n) in sorted(beams.items()):
            checks.append((f"tokens = transformers' beam search at {b} beam(s), every photo", same == n, f"{same}/{n}"))
    for text, ok, value in checks:
        print(f"  [{'met' if ok else 'NOT met':7}] {text}: {value}")


def _row(name: str, who: str, r: dict | None) -> None:
    if r is None:
        return
    if "error" in r:
        print(f"{name:17}{who:40}  FAILED: {r['error'][:80]}")
    else:
        s = r["s_per_photo"]
        how = f"  up to {r['caption_pass']} photo(s)/pass" if r.get("caption_pass") else ""
        how += f", {r['torch_threads_end']} torch thread(s) at the end" if r.get("torch_threads_end") else ""
        print(f"{name:17}{who:40}{s:>9.3f}{1 / s:>10.1f}{r['peak_rss_mb']:>8.0f}MB{r['others_cores']:>8.2f}{how}")


def print_shipped(res: dict) -> None:
    """What a person gets: the product's defaults (3 beams) and the fast choice (1 beam) at the
    stated caption length, beside the fixed-work rows above."""
    keys = ("library-scan-12mp-shipped", "library-scan-12mp-fast", "loupe-app-shipped", "loupe-app-fast")
    if not any(k in res for k in keys):
        return
    sb, st = SHIPPED["beams"], SHIPPED["tokens"]
    print(f"{'as shipped':17}{'(%d beams x %d tokens; fast: 1 beam)' % (sb, st):40}")
    _row("library 12 MP", f"scan as shipped, {sb} beams", res.get("library-scan-12mp-shipped"))
    _row("", "scan fast, 1 beam", res.get("library-scan-12mp-fast"))
    _row("Caption tab", f"1 photo as shipped, {sb} beams", res.get("loupe-app-shipped"))
    _row("", "1 photo fast, 1 beam", res.get("loupe-app-fast"))
    _row("one core busy", f"scan as shipped, {sb} beams", res.get("library-scan-12mp-shipped-busy"))
    _row("", f"Caption tab as shipped, {sb} beams", res.get("loupe-app-shipped-busy"))
    for a, b, what in (("library-scan-12mp-shipped", "library-scan-12mp-fast", "scan"),
                       ("loupe-app-shipped", "loupe-app-fast", "Caption tab")):
        ra, rb = res.get(a), res.get(b)
        if ra and rb and "error" not in ra and "error" not in rb:
            print(f"{'':17}{'  %s: %d beams cost %.2fx 1 beam' % (what, sb, ra['s_per_photo'] / rb['s_per_photo']):40}")


def print_int8(res: dict) -> None:
    ic = res.get("int8-cache")
    if ic:
        if "error" in ic:
            print(f"int8 cache: FAILED: {ic['error'][:200]}")
        else:
            print(f"int8 {'first load' if ic['state_before'] != 'valid' else 'load (cache kept)'} of BLIP (load fp32, quantize, write the {ic['cache_mb']:.0f} MB cache beside the "
                  f"weights, reload): {ic['load_s']:.1f} s, peak RSS {ic['peak_rss_mb']:.0f} MB; later loads from "
                  f"the cache {ic['cached_load_s']:.1f} s (of which verifying it {ic['verify_s']:.1f} s)")
    alt = res.get("alternate")
    if alt:
        if "error" in alt:
            print(f"int8 vs fp32 alternated: FAILED: {alt['error'][:200]}")
            return
        print(f"int8 vs fp32, BLIP, alternated in one process (others {alt['others_cores']:.2f} cores):")
        for name, r in alt["rows"].items():
            print(f"  {name:36} fp32 {r['fp32_s']:.3f}  int8 {r['int8_s']:.3f} s/photo  -> int8 {r['ratio']:.2f}x faster "
                  f"(pairs: {', '.join(f'{x:.2f}' for x in r['ratios'])})")


def print_accuracy(acc: dict) -> None:
    print("Accuracy of Loupe's precision against fp32 (same inputs):")
    v = acc.get("blip_vision_bf16")
    if v:
        print(f"  BLIP vision encoder, bf16 vs fp32 ({acc['blip_images']} photos): cosine >= {v['cos_min']:.5f} "
              f"(per token >= {v['token_cos_min']:.4f}), max |diff| {v['max_abs_diff']:.3g} (values up to {v['ref_abs_max']:.3g})")
    v = acc.get("blip_vision_int8")
    if v:
        print(f"  FIDELITY GATE: BLIP vision encoder, int8 vs fp32 ({acc['int8_images']} photo-like and real photos): "
              f"cosine >= {v['cos_min']:.5f} (gate 0.995: {'pass' if v['cos_min'] >= 0.995 else 'FAIL'}), "
              f"per token >= {v['token_cos_min']:.4f}")
        for key, what in (("tokens_greedy20", "20 greedy"), ("tokens_shipped", "3 beams x 12")):
            t = acc.get(key)
            if t:
                print(f"  caption tokens int8 vs fp32, {what}: {t['positions_equal']:.0%} of positions equal, "
                      f"{t['identical']}/{t['n']} captions identical, mean common prefix {t['mean_common_prefix']:.1f} "
                      f"of {t['length']}")
        b = acc.get("int8_batch_invariant")
        if b:
            print(f"  int8, same photo same answer: {b['same']}/{b['n']} photos get the same caption (3 beams x 12) alone "
                  f"as in one batch of {b['n']} (activations scaled per photo)")
        t = acc.get("tokens_teacher_forced")
        if t:
            print(f"  next token after fp32's own prefix: int8 picks the same {t['top1_equal']:.1%} of {t['n_tokens']} "
                  "(random weights: near-ties everywhere; a lower bound for the real model)")
    e = acc.get("effnet_int8")
    if e and "top1_agree" in e:
        print(f"  FIDELITY GATE: EfficientNet-Lite0 real weights, int8 Linear vs fp32 on 25 real photos: top-1 agrees "
              f"{e['top1_agree']}/{e['n']} (gate 24/25: {'pass' if e['top1_agree'] >= 24 else 'FAIL'}); speed "
              f"{e['speedup']:.2f}x fp32 ({e['linear_layers']} Linear layer(s), the rest convolutions: int8 does not "
              "pay, so Loupe's classifiers stay fp32)")
    v = acc.get("blip_vision_loupe_fp32")
    if v:
        print(f"  BLIP vision encoder, Loupe fp32 vs transformers as shipped: cosine >= {min(v['cos_min'], 1.0):.6f}, "
              f"max |diff| {v['max_abs_diff']:.3g}")
    r = acc.get("resnet_random")
    if r:
        print(f"  ResNet-18 random weights, bf16 vs fp32: top-1 agrees {r['top1_agree']}/{r['n']}, max prob diff "
              f"{r['max_prob_diff']:.4f} (random net: top prob only {r['max_top1_prob']:.3f}, near-ties flip)")
    e = acc.get("effnet_real")
    if e and "skipped" not in e:
        print(f"  EfficientNet-Lite0 REAL ImageNet weights, bf16 vs fp32: top-1 agrees {e['top1_agree']}/{e['n']}, "
              f"max prob diff {e['max_prob_diff']:.4f}")
        for d in acc.get("effnet_disagree", []):
            print(f"    differs on {d['image']}: fp32 {d['fp32']!r} vs bf16 {d['bf16']!r}; fp32's top two probs "
                  f"{d['fp32_top2'][0]:.3f} / {d['fp32_top2'][1]:.3f} (a near-tie)")
        ex = acc.get("effnet_examples", {})
        if ex:
            print("    " + "; ".join(f"{k}: fp32 {a!r} / bf16 {b!r}" for k, (a, b) in ex.items()))
    elif e:
        print(f"  EfficientNet-Lite0: skipped ({e['skipped']})")


if __name__ == "__main__":
    sys.exit(main())
