"""Stop and batch size in a scan (engine/stopping.py), alternated in one process with the plain
approaches, with the full-size models (bench/fixtures.py):

    python -m bench.stop_batches [--photos 16] [--rounds 2] [--stops 0.3,0.5,0.7] [--tokens 12]

Modes (each a library.scan of `--photos` 640x480 photos, write none, a fresh index):
- fixed:    batches of the registry's size for the setting, Stop throws the batch in flight away
            (main before this change: `GracefulStop` reduced to the person's Event);
- one-rule: batches of floor(grace / s per photo) + 1, graceful Stop (the rule first proposed);
- shipped:  as shipped (engine/stopping.py): batches as long as grace + one photo alone, by a
            fitted batch cost, graceful Stop.

Per mode: s/photo end to end over a whole scan (throughput; ratio to "fixed"), the batch sizes,
the time-left error from the second photo on (|said - actual| / actual, median), then scans
stopped at each `--stops` share of that mode's whole-scan time: seconds from the press to the
scan's return, photos kept, and the work lost (seconds of compute since the last photo kept,
0 when the batch in flight was kept). Medians over rounds. Print the machine's load beside it:
a shared machine stretches every time (the ratios hold better).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time

from bench import fixtures


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--stops", default="0.3,0.5,0.7")
    ap.add_argument("--modes", default="fixed,one-rule,shipped")
    ap.add_argument("--style", default="detailed")
    ap.add_argument("--tokens", type=int, default=12,
                    help="longest caption: 12 is a trained BLIP's typical length (README 'What ships'); "
                         "the random model always runs to it")
    args = ap.parse_args()
    fixtures.ensure_models()
    os.environ.update({k: v for k, v in fixtures.env().items() if k.startswith(("LOUPE_", "HF_", "TRANSFORMERS"))})
    from engine import library, stopping
    from engine.device import cpu_class
    from engine.inference import get_engine

    photos = fixtures.ensure_photos(args.photos)["640"]
    folder = fixtures.scan_folder(photos, args.photos)
    engine = get_engine()
    sizes: list[int] = []
    infer = engine.infer

    def counting(task, inputs, *a, **kw):
        if task == "caption":
            sizes.append(len(inputs))
        return infer(task, inputs, *a, **kw)

    engine.infer = counting  # type: ignore[method-assign]
    shipped = (stopping.GracefulStop.next_batch, stopping.GracefulStop.is_set)

    def one_rule(self, cap):
        with self._lock:
            if not self._per_photo:
                return 1
            return max(1, min(cap, int(self.grace_s / self._per_photo) + 1))

    modes = {
        "fixed": (lambda self, cap: cap, lambda self: self.asked.is_set()),
        "one-rule": (one_rule, shipped[1]),
        "shipped": shipped,
    }
    chosen = args.modes.split(",")
    stops = [float(x) for x in args.stops.split(",")]
    results: dict[str, dict[str, list]] = {m: {"spp": [], "eta": [], "lat": [], "kept": [], "lost": [], "sizes": []}
                                          for m in chosen}
    print(f"cpu class {cpu_class()}, {os.cpu_count()} cores, {args.photos} photos 640x480, style {args.style}, "
          f"{args.tokens} tokens, "
          f"load before {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        library.scan(folder, engine=engine, write="none", caption_style=args.style, db_path=f"{tmp}/warm.db",
                     max_new_tokens=args.tokens)
        n = 0
        for r in range(args.rounds):
            for mode in chosen if r % 2 == 0 else reversed(chosen):
                stopping.GracefulStop.next_batch, stopping.GracefulStop.is_set = modes[mode]
                out = results[mode]
                n += 1
                seen: list[tuple[float, object]] = []
                sizes.clear()
                start = time.perf_counter()
                s = library.scan(folder, engine=engine, write="none", caption_style=args.style,
                                 db_path=f"{tmp}/{n}.db", progress=lambda p: seen.append((time.perf_counter(), p)),
                                 max_new_tokens=args.tokens)
                end = time.perf_counter()
                whole = end - start
                out["spp"].append(whole / s.done)
                out["sizes"].append(list(sizes))
                errs = [abs(p.eta_s - (end - t)) / (end - t) for t, p in seen
                        if p.inferred >= 2 and p.eta_s is not None and end - t > 0.5 and p.phase != "finished"]
                if errs:
                    out["eta"].append(statistics.median(errs))
                for share in stops:
                    n += 1
                    cancel = threading.Event()
                    reports: list[tuple[float, int]] = []
                    press = share * whole
                    t0 = time.perf_counter()
                    timer = threading.Timer(press, cancel.set)
                    timer.start()
                    stopped = library.scan(folder, engine=engine, write="none", caption_style=args.style,
                                           db_path=f"{tmp}/{n}.db", cancel=cancel, max_new_tokens=args.tokens,
                                           progress=lambda p: reports.append((time.perf_counter() - t0, p.inferred)))
                    back = time.perf_counter() - t0
                    timer.cancel()
                    if not stopped.cancelled:
                        continue  # ended before the press
                    # when the count first reached what was kept (later reports repeat it)
                    last_kept = min((t for t, done in reports if done == stopped.done and done), default=0.0)
                    out["lat"].append(back - press)
                    out["kept"].append(stopped.done)
                    out["lost"].append(max(0.0, press - last_kept) if stopped.done else press)
                k = len(stops)
                print(f"  round {r + 1} {mode}: {out['spp'][-1]:.2f} s/photo, batches {out['sizes'][-1]}, "
                      f"time-left error {out['eta'][-1] if out['eta'] else float('nan'):.0%}, Stop latency "
                      f"{[round(x, 2) for x in out['lat'][-k:]]} s, kept {out['kept'][-k:]}, lost "
                      f"{[round(x, 1) for x in out['lost'][-k:]]} s, load {os.getloadavg()[0]:.1f}", flush=True)
    stopping.GracefulStop.next_batch, stopping.GracefulStop.is_set = shipped
    base = statistics.median(results[chosen[0]]["spp"])
    print(f"\n| mode | s/photo (median) | vs {chosen[0]} | time-left error | Stop latency median / max | "
          f"work lost median / max | kept |")
    print("|---|---|---|---|---|---|---|")
    for mode in chosen:
        o = results[mode]
        med = statistics.median(o["spp"])
        eta = f"{statistics.median(o['eta']):.0%}" if o["eta"] else "-"
        lat = f"{statistics.median(o['lat']):.2f} / {max(o['lat']):.2f} s" if o["lat"] else "-"
        lost = f"{statistics.median(o['lost']):.1f} / {max(o['lost']):.1f} s" if o["lost"] else "-"
        print(f"| {mode} | {med:.2f} | {med / base:.2f}x | {eta} | {lat} | {lost} | {o['kept']} |")
    print(f"load after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
