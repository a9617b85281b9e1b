"""One compute thread runs every model pass (engine/compute_thread.py): requests from many
threads (gradio's workers, the scan's loaders, the CLI) share one OpenMP team, so the caption
decoder's small ops are not slowed by teams that other threads leave behind."""
from __future__ import annotations

import os
import queue
import threading

import pytest

from engine import compute_thread


def test_call_returns_raises_and_relays_to_the_caller():
    seen = []
    relay = compute_thread.relayed(lambda x: seen.append((x, threading.current_thread().name)))

    def job(n):
        assert compute_thread.is_current()
        relay(n)
        return compute_thread.call(lambda: n * 2)  # a call from the compute thread runs in place

    assert compute_thread.call(job, 21) == 42
    assert seen == [(21, threading.current_thread().name)]  # the callback ran here, not there

    def fails():
        raise KeyError("from the compute thread")

    with pytest.raises(KeyError, match="from the compute thread"):
        compute_thread.call(fails)
    assert compute_thread.call(lambda: threading.current_thread().name) == compute_thread.NAME  # still serving


def _threads_now() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through /proc")
def test_requests_from_kept_threads_run_on_one_thread_and_make_no_teams(installed, monkeypatch, tmp_path):
    """Like gradio's worker pool: four threads that stay alive each caption and label a photo.
    Every forward pass runs on the compute thread, the threads that prepared the photos run torch
    on one thread, and no thread but the compute thread gains OpenMP workers (before: one team
    per requesting thread, and every caption 1.4-1.8x slower once they outnumbered the cores)."""
    import torch

    from engine.inference import Engine
    from image_corpus import gradient

    monkeypatch.setenv("LOUPE_THREADS", "2")  # a team of two wherever a forward runs
    photo = tmp_path / "photo.jpg"
    gradient(1600, 1200, seed=3).save(photo, quality=90)
    engine = Engine()
    engine.run_one("caption", photo, num_beams=2, max_new_tokens=4)  # loads; the compute thread's team exists
    engine.run_one("classify", photo)
    forward_threads, prepare_threads = set(), []
    for task in ("caption", "classify"):
        model = engine.model(task)
        real = model.forward

        def spy(*args, real=real, **kwargs):
            forward_threads.add(threading.current_thread().name)
            return real(*args, **kwargs)

        monkeypatch.setattr(model, "forward", spy)

    jobs: queue.Queue = queue.Queue()
    done: queue.Queue = queue.Queue()

    def worker():
        while (job := jobs.get()) is not None:
            done.put(job())

    def request():
        captions = engine.caption([photo], num_beams=2, max_new_tokens=4)
        labels = engine.classify([photo])
        prepare_threads.append(torch.get_num_threads())
        return captions[0], labels[0]

    before = _threads_now()
    workers = [threading.Thread(target=worker, daemon=True) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        for _ in workers:  # one request per worker, each after the last (gradio: a free worker each)
            jobs.put(request)
            answer = done.get(timeout=120)
            assert answer[0].text and answer[1].top
        grown = _threads_now() - before - len(workers)
    finally:
        for _ in workers:
            jobs.put(None)
    assert forward_threads == {compute_thread.NAME}
    assert prepare_threads and set(prepare_threads) == {1}
    assert grown <= 0, f"{grown} threads more than the four workers: OpenMP teams outside the compute thread"


def test_an_interrupted_caller_lets_its_job_end_before_the_exception_goes_on():
    """Ctrl-C raises KeyboardInterrupt in the waiting main thread; a pass left running on the
    daemon compute thread while Python exits aborts the process inside torch ("terminate called
    without an active exception", SIGABRT instead of exit 130). A relayed callback raising it
    stands in for the signal here."""
    import time

    def interrupt():
        raise KeyboardInterrupt

    relay = compute_thread.relayed(interrupt)
    stop, ended = threading.Event(), threading.Event()

    def stoppable():  # a forward pass polling its Stop
        relay()
        stop.wait(timeout=30)
        ended.set()

    with pytest.raises(KeyboardInterrupt):
        compute_thread.call_stopping(stop.set, stoppable)
    assert stop.is_set() and ended.is_set()

    ended.clear()

    def unstoppable():  # a model load: waited for
        relay()
        time.sleep(0.2)
        ended.set()

    with pytest.raises(KeyboardInterrupt):
        compute_thread.call(unstoppable)
    assert ended.is_set()


def test_ctrl_c_during_a_caption_stops_the_pass_before_the_engine_raises(installed, monkeypatch, tmp_path):
    """`loupe caption` + Ctrl-C: the engine's pass on the compute thread ends (Cancelled at its
    next layer) before KeyboardInterrupt leaves `infer` on the main thread."""
    from engine.errors import Cancelled
    from engine.inference import Engine
    from image_corpus import gradient

    assert threading.current_thread() is threading.main_thread()  # where Ctrl-C lands
    photo = tmp_path / "photo.jpg"
    gradient(640, 480, seed=4).save(photo, quality=90)
    engine = Engine()
    model = engine.model("caption")
    outcomes, real = [], model.forward

    def spy(*args, **kwargs):
        try:
            out = real(*args, **kwargs)
        except Cancelled:
            outcomes.append("stopped")
            raise
        outcomes.append("finished")
        return out

    monkeypatch.setattr(model, "forward", spy)

    def ctrl_c(fraction):
        raise KeyboardInterrupt

    inputs = [engine.prepare("caption", photo, {})] * 2
    options = {"num_beams": 2, "max_new_tokens": 12}
    with pytest.raises(KeyboardInterrupt):
        engine.infer("caption", inputs, options, on_step=ctrl_c)
    # one pass of both photos (bf16, fp32), or one pass each side by side (int8 with beams):
    # every pass in flight stopped, none finished
    in_flight = 1 if engine.pass_size("caption", options) >= 2 else engine.side_by_side("caption", options)
    assert outcomes == ["stopped"] * in_flight


def test_another_request_waits_for_one_pass_not_a_whole_run(installed, tmp_path, monkeypatch):
    """Passes are jobs of their own on the compute thread: a label asked for (another tab, a
    search) while six photos are being captioned one pass each runs after the pass in flight,
    not after all six."""
    from engine.inference import Engine
    from image_corpus import gradient

    photo = tmp_path / "photo.jpg"
    gradient(640, 480, seed=5).save(photo)
    engine = Engine(batch_sizes={"caption": 1})
    engine.run_one("classify", photo)
    order: list[str] = []
    asked = threading.Thread(target=lambda: order.append(("labels", engine.classify([photo])[0])))
    for task in ("caption", "classify"):
        model = engine.model(task)
        real = model.forward

        def spy(*args, real=real, task=task, **kwargs):
            order.append(task)
            if task == "caption" and not asked.is_alive() and order.count("caption") == 1:
                asked.start()  # asked while the first caption pass runs
                while not compute_thread._jobs.qsize():  # queued behind it
                    threading.Event().wait(0.01)
            return real(*args, **kwargs)

        monkeypatch.setattr(model, "forward", spy)
    options = {"num_beams": 1, "max_new_tokens": 3, "prefix": None}
    captions = engine.infer("caption", [engine.prepare("caption", photo, options)] * 6, options)  # six passes
    asked.join(timeout=60)
    assert len(captions) == 6 and all(c.text for c in captions)
    passes = [t for t in order if isinstance(t, str)]
    assert passes[:2] == ["caption", "classify"] and passes.count("caption") == 6, passes


def test_loads_and_text_queries_run_on_the_fitted_threads_after_a_loader_took_one(installed, monkeypatch):
    """torch.set_num_threads(1) on a loader also sets what new threads start from; the compute
    thread, started after it, still loads models (and answers text queries) on the cores free."""
    import subprocess
    import sys

    monkeypatch.setenv("LOUPE_THREADS", "2")
    code = """
import threading, torch
from engine import compute_thread, cpu_share
from engine.inference import Engine
t = threading.Thread(target=cpu_share.one_thread_here); t.start(); t.join()
seen = []
import engine.models.classifier as c
real = c.Classifier.load.__func__
c.Classifier.load = classmethod(lambda cls, *a, **k: (seen.append(torch.get_num_threads()), real(cls, *a, **k))[1])
Engine().model("classify")
print(seen[0], compute_thread.call(torch.get_num_threads))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["2", "2"], out.stdout


def test_int8_beam_search_captions_two_photos_side_by_side_with_their_answers_alone(installed, tmp_path, monkeypatch):
    """int8 with beams runs one photo per pass; a batch of two runs as two passes at once, one
    torch thread each (compute thread and its helper), and each photo gets the caption it gets
    alone (the Caption tab: one pass on the compute thread's threads)."""
    from engine.device import Placement
    from engine.inference import Engine, check_options
    from image_corpus import gradient

    from engine.cpu_share import cores

    if cores() < 2:
        pytest.skip("passes side by side need torch on two cores or more")  # one-core machines keep one pass
    monkeypatch.delenv("LOUPE_THREADS", raising=False)
    engine = Engine(placement=Placement("cpu", "int8"))
    options = check_options("caption", {"num_beams": 3, "max_new_tokens": 8})
    assert engine.pass_size("caption", options) == 1 and engine.side_by_side("caption", options) == 2
    assert engine.batch_size("caption", options) == 2
    assert engine.side_by_side("caption", check_options("caption", {"num_beams": 1})) == 1  # greedy int8 batches
    photos = []
    for seed in (11, 12, 13):
        photos.append(tmp_path / f"p{seed}.jpg")
        gradient(800, 600, seed=seed).save(photos[-1])
    alone = [engine.run_one("caption", p, **options) for p in photos]
    model = engine.model("caption")
    real, ran = model.forward, []

    def spy(*args, **kwargs):
        ran.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    together = engine.caption(photos, **options)  # batches of 2 (side by side) and 1
    assert together == alone
    assert sorted(ran) == sorted([compute_thread.NAME, compute_thread.NAME + "-2", compute_thread.NAME]), ran


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="passes side by side need two cores")
def test_the_compute_thread_gets_its_thread_count_back_after_a_pair(installed, monkeypatch):
    """A pair runs one torch thread on each side; afterwards the compute thread is back on the
    count fitted before it, even when no job fits again (LOUPE_THREADS=2 fixes that count)."""
    import torch

    from engine.device import Placement
    from engine.inference import Engine, check_options
    from image_corpus import gradient

    monkeypatch.setenv("LOUPE_THREADS", "2")
    engine = Engine(placement=Placement("cpu", "int8"))
    options = check_options("caption", {"num_beams": 2, "max_new_tokens": 4})
    assert engine.side_by_side("caption", options) == 2
    inputs = [engine.prepare("caption", gradient(320, 240, seed=s), options) for s in (1, 2)]
    model = engine.model("caption")
    real, seen = model.forward, []

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    assert len(engine.infer("caption", inputs, options)) == 2
    assert seen == [1, 1]
    assert compute_thread.call(torch.get_num_threads) == 2


def test_cli_interrupted_while_torch_is_busy_leaves_at_once():
    """Review: a second Ctrl-C during a cold `loupe caption` load stops the wait, and Python's
    exit then tore the interpreter down around the compute thread still inside torch (SIGABRT,
    exit 134) after waiting for the int8 cache's read-ahead thread. `loupe` now leaves at once
    with 130 while a compute-thread job runs: here one that would run 60 s, beside a pool thread
    (as the read-ahead) that would keep a normal exit waiting as long."""
    import subprocess
    import sys
    import time

    code = """
import sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from engine import compute_thread
import loupe.cli as cli

pool = ThreadPoolExecutor(1)
pool.submit(time.sleep, 60)
pool.shutdown(wait=False)
threading.Thread(target=compute_thread.call, args=(time.sleep, 60), daemon=True).start()
while not compute_thread.busy():
    time.sleep(0.01)

def interrupted(args):
    print("loupe: interrupted", file=sys.stderr)
    return 130

cli._invoke = interrupted
sys.argv = ["loupe", "caption", "photo.jpg"]
sys.exit(cli.main())
"""
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t0
    assert out.returncode == 130 and out.stderr.strip() == "loupe: interrupted", (out.returncode, out.stderr)
    assert took < 20, f"waited {took:.0f} s for the threads at exit"
    # ...and an ordinary exit still waits for nothing when the compute thread is idle
    assert not compute_thread.busy()
