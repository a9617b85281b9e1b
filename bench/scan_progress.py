"""What a person sees during a scan, measured with the full-size models (bench/fixtures.py):

    python -m bench.scan_progress [--photos 12] [--stop-after 0.3] [--style detailed]

- cadence: the longest time the count stood still while photos were being captioned, and
  how many photos it moved by at most in one report;
- time left: for each report from the second captioned photo on, |said - actual| / actual,
  where actual is the time the scan really took from that report to its end (median, worst);
- Stop: pressed `--stop-after` of the way into the second batch; seconds from the press to
  the scan's return, and the photos kept (a batch in flight at Stop is redone next time).

One scan to the end, then one stopped, each into a fresh index. Run on an idle machine for
figures to quote; a busy one stretches every time alike (the ratios hold better).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

from bench import fixtures  # absolute: the same script measures main (PYTHONPATH) for a before/after


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=12)
    ap.add_argument("--stop-after", type=float, default=0.3, help="share of a batch's time before Stop")
    ap.add_argument("--style", default="detailed")
    ap.add_argument("--trace", action="store_true", help="print each report's time left beside the actual")
    args = ap.parse_args()
    fixtures.ensure_models()
    os.environ.update({k: v for k, v in fixtures.env().items() if k.startswith(("LOUPE_", "HF_", "TRANSFORMERS"))})
    from engine import library
    from engine.inference import get_engine

    photos = fixtures.ensure_photos(args.photos)["640"]
    folder = fixtures.scan_folder(photos, args.photos)
    engine = get_engine()
    with tempfile.TemporaryDirectory() as tmp:
        seen: list[tuple[float, library.ScanProgress]] = []
        start = time.perf_counter()
        s = library.scan(folder, engine=engine, write="none", caption_style=args.style, db_path=f"{tmp}/a.db",
                         progress=lambda p: seen.append((time.perf_counter(), p)))
        end = time.perf_counter()
        captioning = [(t, p) for t, p in seen if p.phase in ("captioning", "writing") and p.total]
        moves = [(t, p.done) for t, p in captioning]
        changes = [t for (t, d), (_, before) in zip(moves[1:], moves) if d > before]  # when the count moved
        first = next((t for t, p in seen if p.phase == "captioning"), start)
        gaps = [b - a for a, b in zip([first] + changes, changes)]
        steps = [b[1] - a[1] for a, b in zip(moves, moves[1:])]
        errors = [abs(p.eta_s - (end - t)) / (end - t) for t, p in seen
                  if p.inferred >= 2 and p.eta_s is not None and end - t > 0.5 and p.phase != "finished"]
        if args.trace:
            for t, p in seen:
                if p.eta_s is not None and p.phase != "finished":
                    print(f"  {t - start:6.1f} s {p.phase:10} done {p.done:2} working {p.working:.2f}: "
                          f"said {p.eta_s:5.1f} s, took {end - t:5.1f} s")
        print(f"scan: {s.done} photos in {end - start:.1f} s ({s.rate:.2f} photos/s end to end)")
        print(f"  count: moved by at most {max(steps or [0])} per report; stood still at most "
              f"{max(gaps or [0]):.1f} s between moves (first batch, with the models' load, included)")
        if errors:
            print(f"  time left from the 2nd photo on: median error {statistics.median(errors):.0%}, "
                  f"worst {max(errors):.0%} ({len(errors)} reports)")

        cancel, pressed = threading.Event(), []
        from engine.models.registry import for_task  # (the same on main, for a before/after)

        batch_s = (end - start) / max(1, s.done) * for_task("caption").batch_size

        def progress(p: library.ScanProgress) -> None:
            if p.phase == "captioning" and p.inferred and not pressed:
                pressed.append(time.perf_counter() + args.stop_after * batch_s)
                threading.Timer(args.stop_after * batch_s, cancel.set).start()

        stopped = library.scan(folder, engine=engine, write="none", caption_style=args.style,
                               db_path=f"{tmp}/b.db", progress=progress, cancel=cancel)
        latency = time.perf_counter() - pressed[0] if pressed else float("nan")
        print(f"Stop {args.stop_after:.0%} into a batch: returned after {latency:.2f} s, "
              f"{stopped.done} photos kept, cancelled={stopped.cancelled}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
