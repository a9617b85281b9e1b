"""Photos/s of a local library scan vs the same scan on a local Ray cluster (`--ray`), with the
full-size benchmark models (BLIP-base and ResNet-18 shapes, random weights; bench/fixtures.py).

    python -m bench.ray_scan [--photos 8] [--size 640|12mp] [--cpus 2]

Each scan starts from an empty index (write=none: the files are not the question). Ray's run
is timed twice: cold (cluster start, worker imports, model loads in every worker) and warm
(the cluster already up, a second folder of the same photos: the pipeline's own overhead).
Prints s/photo for each, the ratio, and Ray's overhead per photo and per run.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=8)
    ap.add_argument("--size", choices=["640", "12mp"], default="640")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    args = ap.parse_args(argv)

    from bench import fixtures

    fixtures.ensure_models()
    os.environ.update(fixtures.env())  # LOUPE_HOME, LOUPE_SOURCES, offline; workers inherit them
    photos = fixtures.ensure_photos(args.photos)[args.size]
    folder = fixtures.scan_folder(photos, args.photos)

    import ray

    from engine import library
    from engine.inference import get_engine, reset_engine

    tmp = Path(tempfile.mkdtemp(prefix="loupe-ray-bench-"))
    n = len(photos)

    t = time.perf_counter()
    get_engine().model("caption"), get_engine().model("classify")
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    local = library.scan(folder, write="none", db_path=tmp / "local.db")
    local_s = time.perf_counter() - t
    reset_engine()  # free the driver's models: Ray's workers load their own

    t = time.perf_counter()
    ray.init(num_cpus=args.cpus, object_store_memory=256 * 1024 * 1024, include_dashboard=False,
             log_to_driver=False, logging_level="WARNING")
    start_s = time.perf_counter() - t
    t = time.perf_counter()
    cold = library.scan(folder, write="none", db_path=tmp / "cold.db", ray_address="local")
    cold_s = time.perf_counter() - t
    t = time.perf_counter()
    warm = library.scan(folder, write="none", db_path=tmp / "warm.db", ray_address="local")
    warm_s = time.perf_counter() - t
    ray.shutdown()
    assert local.done == cold.done == warm.done == n, (local.problems, cold.problems, warm.problems)

    print(f"{n} photos ({args.size}), caption+classify, batch {local.rate and 8}; CPU: {_cpu()}")
    print(f"local scan          {local_s / n:6.2f} s/photo  {n / local_s:5.2f} photos/s  (models loaded before: {load_s:.1f} s)")
    print(f"--ray cold          {cold_s / n:6.2f} s/photo  {n / cold_s:5.2f} photos/s  (+ ray.init {start_s:.1f} s; "
          f"includes worker start and model loads)")
    print(f"--ray warm          {warm_s / n:6.2f} s/photo  {n / warm_s:5.2f} photos/s  (cluster up, workers may be reused)")
    print(f"ratio local/ray     cold {local_s / cold_s:.2f}  warm {local_s / warm_s:.2f}")
    print(f"Ray overhead        cold {(cold_s + start_s - local_s - load_s):.1f} s per run; "
          f"warm {(warm_s - local_s) / n:+.2f} s/photo")
    return 0


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="ascii", errors="ignore"):
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs"


if __name__ == "__main__":
    sys.exit(main())
