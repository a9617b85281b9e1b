"""Where the forward passes run: on the thread that asks (the plain way) or on the engine's one
compute thread (engine/compute_thread.py), side by side, each in a fresh process, alternated.

    .venv/bin/python -m bench.threads [--rounds 3] [--photos 4]

Two ways a process gets there, each timed per caption (the registry's precision for this CPU,
3 beams x 12 tokens, full-size random BLIP, 12 MP photos):
- "requests": four threads that stay alive (as gradio's worker pool does) each caption the
  photos in turn, one request after another;
- "scan": two loader threads prepare the photos (decode + preprocess, as the scan's do), then
  they are captioned one at a time.
"plain" runs the model on the asking thread and prepares with torch's default threads (what
Loupe did before); "loupe" is `Engine.infer` / `Engine.prepare` as they ship.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

from bench import fixtures

GEN = {"max_new_tokens": 12, "num_beams": 3, "prefix": None}


def _one(way: str, case: str, photos: int) -> list[float]:
    """In this process: seconds per caption for `way` ("plain" | "loupe") in `case`."""
    warnings.filterwarnings("ignore")
    os.environ.update(fixtures.env())
    from engine import cpu_share
    from engine.inference import Engine

    engine = Engine()
    paths = sorted((fixtures.CACHE / "photos" / "12mp-v5").glob("*.jpg"))[:photos]
    if way == "plain":  # loaded on this thread, as before (no compute thread at all)
        from engine import weights
        from engine.models.registry import lookup

        spec = lookup("caption")
        model = spec.model_class().load(weights.model_dir(spec.name), engine.placement_for(spec))
    else:
        model = engine.model("caption")

    def plain_prepare(path):
        return model.preprocess(engine.decode("caption", path))

    def plain_caption(inputs):
        cpu_share.fit_threads()  # the asking thread's own team, as before the compute thread
        return model.postprocess(model.forward(model.collate([inputs]), **GEN))

    prepare = plain_prepare if way == "plain" else (lambda p: engine.prepare("caption", p, GEN))
    caption = plain_caption if way == "plain" else (lambda x: engine.infer("caption", [x], GEN))
    caption(prepare(paths[0]))  # warm
    times: list[float] = []
    if case == "scan":
        with ThreadPoolExecutor(2, thread_name_prefix="loader") as pool:
            inputs = list(pool.map(prepare, paths))
            for x in inputs:  # the loaders stay alive while the photos are captioned
                t = time.perf_counter()
                caption(x)
                times.append(time.perf_counter() - t)
        return times
    jobs: queue.Queue = queue.Queue()
    done: queue.Queue = queue.Queue()

    def worker() -> None:
        while (job := jobs.get()) is not None:
            done.put(job())

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(4)]
    for w in workers:
        w.start()
    inputs = [prepare(p) for p in paths]
    for i in range(len(workers) * 2):  # each worker thread answers twice, one request at a time
        x = inputs[i % len(inputs)]
        t = time.perf_counter()
        jobs.put(lambda x=x: caption(x))
        done.get()
        times.append(time.perf_counter() - t)
    for _ in workers:
        jobs.put(None)
    return times[len(workers):]  # every worker has run once: the state a long-running app is in


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--photos", type=int, default=4)
    p.add_argument("--child", nargs=2, metavar=("WAY", "CASE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(_one(*args.child, args.photos)), flush=True)
        os._exit(0)  # no interpreter teardown: threads with OpenMP teams can abort it ("terminate called")
    fixtures.ensure_models()
    fixtures.ensure_photos(max(args.photos, 4))
    results: dict[tuple[str, str], list[float]] = {}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(fixtures.ROOT.parent), os.environ.get("PYTHONPATH")])))
    for r in range(args.rounds):
        for case in ("requests", "scan"):
            for way in (("plain", "loupe") if r % 2 == 0 else ("loupe", "plain")):
                out = subprocess.run([sys.executable, "-m", "bench.threads", "--photos", str(args.photos), "--child", way, case],
                                     capture_output=True, text=True, env=env, timeout=900)
                if out.returncode:
                    sys.exit(out.stderr[-3000:])
                times = json.loads(out.stdout.strip().splitlines()[-1])
                results.setdefault((case, way), []).extend(times)
                print(f"round {r + 1} {case:8} {way:5} median {statistics.median(times):.3f} s/caption", flush=True)
    from engine.device import cpu_class

    print(f"\nCPU class {cpu_class()}; seconds per caption, 3 beams x 12 tokens, medians over {args.rounds} rounds")
    for case in ("requests", "scan"):
        plain, loupe = (statistics.median(results[(case, w)]) for w in ("plain", "loupe"))
        print(f"{case:9} plain {plain:.3f}  loupe {loupe:.3f}  plain / loupe {plain / loupe:.2f}x")


if __name__ == "__main__":
    main()
