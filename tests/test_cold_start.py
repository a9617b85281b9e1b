"""A cold `loupe caption` / `classify`: the heavy imports with the garbage collector paused and
their objects frozen (engine.long_lived), the int8 cache hashed while torch imports, and the
process ended as soon as its command is done. Each runs in a fresh interpreter: what is frozen
or imported in the test process would hide what a cold start does."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine import quantize
from image_corpus import gradient

ROOT = Path(__file__).resolve().parents[1]


def _python(script: str, *args: str, timeout: int = 240, env: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env or {}), PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_imports_pause_the_collector_then_freeze_what_they_made():
    out = _python("""
        import gc, sys, threading, weakref
        from engine import long_lived

        assert gc.isenabled() and gc.get_freeze_count() == 0
        outer = long_lived.imports()
        outer.__enter__()
        assert not gc.isenabled()
        # another thread's block, begun and ended inside this one: still paused, nothing frozen
        def other():
            with long_lived.imports():
                import fractions
        t = threading.Thread(target=other); t.start(); t.join()
        assert not gc.isenabled() and gc.get_freeze_count() == 0
        with long_lived.imports():  # nested
            import decimal
        assert not gc.isenabled() and gc.get_freeze_count() == 0
        outer.__exit__(None, None, None)
        assert gc.isenabled() and gc.get_freeze_count() > 0, "the last exit freezes and resumes"

        class Node:
            pass
        a, b = Node(), Node()
        a.other, b.other = b, a  # a reference cycle, alive at the next freeze
        gone = weakref.ref(a)
        with long_lived.imports():
            import statistics  # imports something: freezes again
        del a, b
        gc.collect()
        assert gone() is not None, "frozen: the collector no longer looks at it"
        long_lived.release()
        assert gone() is None, "released: collected"
        assert gc.get_freeze_count() == 0

        with long_lived.imports():
            import decimal  # already imported: nothing new, nothing frozen
        assert gc.get_freeze_count() == 0 and gc.isenabled()
        gc.disable()
        with long_lived.imports():
            import ipaddress
        assert not gc.isenabled(), "a collector paused before stays paused"
        print("ok")
    """)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_an_unloaded_model_is_freed(own_weights):
    """The captioner was alive when the classifier's imports froze everything: unloading it
    must still give its memory back (it stayed, ~0.45 GB at full size, without `release`)."""
    out = _python("""
        import gc, weakref
        from engine.inference import get_engine

        engine = get_engine()
        caption = weakref.ref(engine.model("caption").model)
        classify = weakref.ref(engine.model("classify").module)  # torchvision imported: a freeze
        assert gc.get_freeze_count() > 0
        engine.unload()
        assert caption() is None and classify() is None, "unloaded models still in memory"
        print("ok")
    """)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_a_model_is_freed_at_every_unload_and_reset(own_weights):
    """Once the first unload has unfrozen everything, nothing is frozen any more: a model
    loaded again, then unloaded (or its engine reset), must still go at once, not at the
    collector's next full pass (the captioner's reference cycles kept ~0.35 GB per cycle)."""
    out = _python("""
        import gc, weakref
        from engine.inference import get_engine, reset_engine

        engine = get_engine()
        engine.model("caption"), engine.model("classify")
        engine.unload()  # the first: unfreezes
        assert gc.get_freeze_count() == 0
        caption = weakref.ref(engine.model("caption").model)
        engine.unload()
        assert caption() is None, "still in memory after the second unload"
        caption = weakref.ref(engine.model("caption").model)
        del engine  # the engine reset is the only one holding its models
        reset_engine()
        assert caption() is None, "still in memory after reset_engine"
        print("ok")
    """)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_the_int8_cache_read_ahead_is_not_kept(own_weights):
    """The loading frame stays referenced, frozen, from a reference cycle that transformers'
    imports make beside it (torch.fx's `wrap` keeps its own frame, and so its callers): what
    the int8 read-ahead read (a copy of the weights: ~0.1 GB for BLIP) must not stay with it
    in a long-lived process."""
    script = """
        import gc
        from engine import quantize, weights
        from engine.inference import get_engine
        from engine.models.registry import lookup

        cached = quantize.cache_paths(weights.model_dir(lookup("caption").name))[0].is_file()
        get_engine().model("caption")
        gc.unfreeze()  # to see what was frozen too
        reads = [o for o in gc.get_objects() if isinstance(o, quantize.CacheRead)]
        print(cached, len(reads), sum(o.saved is not None for o in reads))
    """
    env = {"LOUPE_PRECISION": "int8"}
    first = _python(script, env=env)  # builds the cache
    assert first.returncode == 0, first.stderr
    out = _python(script, env=env)  # reads it ahead
    assert out.returncode == 0, out.stderr
    cached, reads, held = out.stdout.split()
    assert cached == "True" and reads == "1", out.stdout  # read ahead, its future still referenced
    assert held == "0", "the read-ahead's copy of the weights is still referenced"


def test_the_cache_hashed_ahead_is_used_only_while_the_file_is_unchanged(blip, monkeypatch):
    from engine.files import sha256_file
    from engine.models.captioner import Captioner

    assert Captioner.read_ahead(blip) is None  # no cache yet: nothing to begin
    from engine.device import Placement

    Captioner.load(blip, Placement("cpu", "int8"))  # builds the cache
    hashed = Captioner.read_ahead(blip)
    assert hashed is not None and hashed() is not None
    data, manifest = quantize.cache_paths(blip)
    assert hashed().sha256 == sha256_file(data)
    calls = []
    monkeypatch.setattr("engine.files.sha256_file", lambda p: calls.append(p) or sha256_file(p))
    assert quantize.cache_state(blip, hashed=hashed) == "valid" and data not in calls  # not hashed again
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, other bytes, after the early hash
    data.write_bytes(bytes(raw))
    assert quantize.cache_state(blip, hashed=hashed) == "damaged: sha256 does not match"
    assert data in calls, "the changed file is hashed again, not trusted from the early hash"


def test_a_cache_folder_that_cannot_be_entered_begins_nothing(blip, monkeypatch):
    """`read_ahead` runs before the load's error handling: a .int8 folder this user may not
    enter (another user's, umask 077) must not fail the load there (the load copes, as before)."""
    import errno
    import pathlib

    from engine.models.captioner import Captioner

    (blip / quantize.CACHE_DIR).mkdir()
    stat = pathlib.Path.stat

    def denied(self, *args, **kwargs):
        if quantize.CACHE_DIR in self.parts:  # what a stat as another user gets (the suite runs as root)
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return stat(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "stat", denied)
    assert Captioner.read_ahead(blip) is None


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.jpg"
    gradient(160, 120, seed=5).save(path)
    return path


def test_loupe_ends_as_soon_as_its_command_is_done(own_weights, photo, loupe_home, tmp_path):
    """A real `loupe` process: exit code and output as before, the log line and the atexit
    handlers done, the interpreter's teardown skipped (a module-level object's __del__ never
    runs); with a non-daemon thread still running, it ends as usual and the thread finishes."""
    script = """
        import atexit, sys, threading, time
        from pathlib import Path

        marks = Path(sys.argv[1])
        atexit.register(lambda: (marks / "atexit").write_text("ran"))

        class Teardown:
            def __del__(self):
                (marks / "teardown").write_text("ran")
        keep = Teardown()
        if sys.argv[2] == "thread":
            def late():
                time.sleep(1.0)
                (marks / "thread").write_text("done")
            threading.Thread(target=late).start()
        sys.argv = ["loupe"] + sys.argv[3:]
        from loupe.cli import main
        sys.exit(main())
    """
    quick = tmp_path / "quick"
    quick.mkdir()
    out = _python(script, str(quick), "-", "classify", str(photo), "missing.jpg")
    assert out.returncode == 3, out.stderr  # one photo unreadable: its code, not 0
    assert out.stderr.strip() == "loupe: missing.jpg: no such file"
    assert len(out.stdout.strip().splitlines()) == 4  # the photo's name and its 3 labels
    assert (quick / "atexit").read_text() == "ran"
    assert not (quick / "teardown").exists(), "the interpreter's teardown ran: no quick exit"
    log = (loupe_home / "logs" / "loupe.log").read_text(encoding="utf-8").splitlines()
    assert "loupe classify: exit 3" in log[-1]

    usual = tmp_path / "usual"
    usual.mkdir()
    out = _python(script, str(usual), "thread", "--version")
    assert out.returncode == 0 and out.stdout.startswith("loupe "), out.stderr
    assert (usual / "thread").read_text() == "done", "a running thread was cut off"
    assert (usual / "teardown").read_text() == "ran" and (usual / "atexit").read_text() == "ran"


def test_no_early_hash_where_the_person_chose_another_precision(own_weights, monkeypatch):
    """The early hash is for the int8 load: with fp32 chosen (setting or LOUPE_PRECISION) an
    int8 cache left from before is not read (0.33 GB for BLIP) on every start."""
    from engine.inference import Engine
    from engine.models.captioner import Captioner

    monkeypatch.setenv("LOUPE_PRECISION", "int8")
    Engine().model("caption")  # the cache now exists
    begun = []
    real = Captioner.read_ahead.__func__
    monkeypatch.setattr(Captioner, "read_ahead", classmethod(lambda cls, f: begun.append(f) or real(cls, f)))
    Engine().model("caption")
    assert len(begun) == 1  # int8 asked: hashed ahead
    monkeypatch.setenv("LOUPE_PRECISION", "fp32")
    assert Engine().model("caption").placement.precision == "fp32"
    monkeypatch.setenv("LOUPE_PRECISION", "auto")
    Engine().model("caption")  # auto may be int8 (the CPU class decides, after torch): begun
    assert len(begun) == 2

