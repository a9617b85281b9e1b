"""Does decoding on loader threads (overlapped with inference) help? Opt-in: LOUPE_BENCH=1.

    LOUPE_BENCH=1 .venv/bin/python -m pytest tests/test_library_bench.py -q -s

12-MP JPEGs (phone-sized), write="none" to time reading + inference only. Two stand-in
engines: one that waits (GIL released, no CPU: like a GPU) and one that burns CPU in numpy
(like CPU inference competing with the decoders for the same cores). Medians of repeats.
"""
from __future__ import annotations

import os
import statistics
import time

import numpy as np
import pytest
from PIL import Image

from engine import library
from library_fixtures import FakeEngine

pytestmark = pytest.mark.skipif(not os.environ.get("LOUPE_BENCH"), reason="benchmark: set LOUPE_BENCH=1")

N_PHOTOS = int(os.environ.get("LOUPE_BENCH_PHOTOS", "16"))
REPEATS = int(os.environ.get("LOUPE_BENCH_REPEATS", "5"))


class WaitingEngine(FakeEngine):
    def __init__(self, per_photo_s: float, **kw):
        super().__init__(**kw)
        self.per_photo_s = per_photo_s

    def caption(self, images, **kw):
        time.sleep(self.per_photo_s * len(images))
        return super().caption(images, **kw)


class BusyEngine(FakeEngine):
    """Burns ~per_photo_s of CPU per photo in BLAS (which, like torch, releases the GIL)."""

    def __init__(self, per_photo_s: float, **kw):
        super().__init__(**kw)
        self.per_photo_s = per_photo_s
        a = np.random.default_rng(0).random((256, 256), dtype=np.float32)
        t = time.perf_counter()
        for _ in range(20):
            a @ a
        self.reps_per_s = 20 / (time.perf_counter() - t)
        self.a = a

    def caption(self, images, **kw):
        for _ in range(max(1, int(self.reps_per_s * self.per_photo_s * len(images)))):
            self.a @ self.a
        return super().caption(images, **kw)


def _photos(root):
    rng = np.random.default_rng(0)
    root.mkdir()
    small = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    for i in range(N_PHOTOS):
        im = Image.fromarray(np.roll(small, i * 7, axis=1)).resize((4000, 3000), Image.Resampling.BILINEAR)
        im.save(root / f"p{i:03d}.jpg", quality=90)


def _once(root, tmp_path, make_engine, workers):
    db = tmp_path / f"b-{workers}-{time.perf_counter_ns()}.db"
    t = time.perf_counter()
    s = library.scan(root, engine=make_engine(), write="none", db_path=db, batch_size=8, workers=workers)
    assert s.done == N_PHOTOS
    return N_PHOTOS / (time.perf_counter() - t)


def test_decode_pool_overlap(tmp_path, monkeypatch):
    monkeypatch.setenv("LOUPE_HOME", str(tmp_path / "home"))
    root = tmp_path / "photos"
    _photos(root)
    print(f"\n{N_PHOTOS} 12-MP JPEGs, batch 8, {REPEATS} interleaved repeats, photos/s best (median); "
          f"cores: {os.cpu_count()}, load before: {os.getloadavg()[0]:.1f}")
    for name, make in [
        ("no inference cost", lambda: FakeEngine(batch_size=8)),
        ("waiting engine 25 ms/photo (GPU-like)", lambda: WaitingEngine(0.025, batch_size=8)),
        ("CPU-busy engine 25 ms/photo", lambda: BusyEngine(0.025, batch_size=8)),
    ]:
        runs: dict[int, list[float]] = {0: [], 1: [], 2: []}
        for _ in range(REPEATS):  # interleaved, so a noisy neighbour hits every setting alike
            for w in runs:
                runs[w].append(_once(root, tmp_path, make, w))
        best = {w: max(r) for w, r in runs.items()}
        print(f"  {name:40s} " + "  ".join(
            f"w={w}: {best[w]:5.1f} ({statistics.median(r):5.1f})" for w, r in runs.items()
        ) + f"   best 2 vs 0: x{best[2] / best[0]:.2f}")
    print(f"  load after: {os.getloadavg()[0]:.1f}")
