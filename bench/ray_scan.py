"""Photos/s of a local library scan vs the same scan on a local Ray cluster (`--ray`), with the
full-size benchmark models (BLIP-base and ResNet-18 shapes, random weights; bench/fixtures.py).

    python -m bench.ray_scan [--photos 8] [--size 640|12mp] [--cpus 2]

Each scan starts from an empty index (write=none: the files are not the question). Ray's run
is timed twice: cold (cluster start, worker imports, model loads in every worker) and warm
(the cluster up, the same photos into a fresh index: the pipeline's own overhead, a model
load in the new actor included: Ray Data starts a pool per run).
Prints s/photo (wall) for each, the ratio, Ray's overhead per photo and per run, and the CPU
seconds per photo of all processes involved (the overhead a busy machine cannot hide).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
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
    with CpuMeter() as local_cpu:
        local = library.scan(folder, write="none", db_path=tmp / "local.db")
    local_s = time.perf_counter() - t
    reset_engine()  # free the driver's models: Ray's workers load their own

    t = time.perf_counter()
    ray.init(num_cpus=args.cpus, object_store_memory=256 * 1024 * 1024, include_dashboard=False,
             log_to_driver=False, logging_level="WARNING")
    start_s = time.perf_counter() - t
    t = time.perf_counter()
    with CpuMeter() as cold_cpu:
        cold = library.scan(folder, write="none", db_path=tmp / "cold.db", ray_address="local")
    cold_s = time.perf_counter() - t
    t = time.perf_counter()
    with CpuMeter() as warm_cpu:
        warm = library.scan(folder, write="none", db_path=tmp / "warm.db", ray_address="local")
    warm_s = time.perf_counter() - t
    ray.shutdown()
    assert local.done == cold.done == warm.done == n, (local.problems, cold.problems, warm.problems)

    print(f"{n} photos ({args.size}), caption+classify; CPU: {_cpu()}; others' load now {_load()}")
    print(f"local scan          {local_s / n:6.2f} s/photo  {n / local_s:5.2f} photos/s  (models loaded before: {load_s:.1f} s)")
    print(f"--ray cold          {cold_s / n:6.2f} s/photo  {n / cold_s:5.2f} photos/s  (+ ray.init {start_s:.1f} s; "
          f"includes worker start and model loads)")
    print(f"--ray warm          {warm_s / n:6.2f} s/photo  {n / warm_s:5.2f} photos/s  (cluster up, workers may be reused)")
    print(f"ratio local/ray     cold {local_s / cold_s:.2f}  warm {local_s / warm_s:.2f}")
    print(f"Ray overhead        cold {(cold_s + start_s - local_s - load_s):.1f} s per run; "
          f"warm {(warm_s - local_s) / n:+.2f} s/photo")
    print(f"CPU s/photo         local {local_cpu.seconds / n:.2f}  --ray cold {cold_cpu.seconds / n:.2f}  "
          f"warm {warm_cpu.seconds / n:.2f}  (all Loupe and Ray processes; cold includes model loads)")
    print(f"Ray CPU overhead    warm {(warm_cpu.seconds - local_cpu.seconds) / n:+.2f} s/photo "
          f"({warm_cpu.seconds / local_cpu.seconds:.2f}x the local scan's CPU time)")
    return 0


def _load() -> str:
    return open("/proc/loadavg", encoding="ascii").read().split()[0]


class CpuMeter:
    """CPU seconds (user + system) used by this process and every Ray process while running:
    on a machine others load too, wall time measures the others; CPU time measures the work.
    Sampled every 0.2 s so that workers ending in between (Ray Data ends its actors with the
    run) are still counted up to their last sample."""

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK")
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        me = os.getpid()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                if pid != me:
                    cmd = open(f"/proc/{pid}/cmdline", "rb").read()
                    if not (cmd.startswith(b"ray::") or b"/ray/core/" in cmd or b"ray/_private" in cmd):
                        continue
                fields = open(f"/proc/{pid}/stat", "rb").read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            used = (int(fields[11]) + int(fields[12])) / self.tick
            self.first.setdefault(pid, used if not self.thread.is_alive() else 0.0)
            self.last[pid] = used

    def _loop(self) -> None:
        while not self.stop.wait(0.2):
            self._sample()

    def __enter__(self) -> "CpuMeter":
        self._sample()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self._sample()

    @property
    def seconds(self) -> float:
        # a process alive at the start counts from then; one started during the run, from 0
        return sum(self.last[p] - self.first[p] for p in self.last)


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
