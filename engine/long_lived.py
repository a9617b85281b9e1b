"""Imports of the heavy libraries (torch, torchvision, transformers' model code, gradio) with
Python's cyclic garbage collector paused, and what they made frozen after.

These imports create several hundred thousand objects (~670,000 for torch, torchvision and
transformers' BLIP: functions, classes, module dicts) that live as long as the process. While
they run, the collector's full passes walk all of them again and again, and at exit the
interpreter's own passes walk them once more: about a quarter of a cold `loupe classify`
(bench/README.md, "Cold start"). `gc.freeze` (as CPython's docs suggest for
objects made at start-up) moves them out of every later pass; they are still freed by
reference counting, so a frozen object that nothing refers to is released as before. What
else is alive at that moment is frozen too (a model loaded earlier): `release` gives it back
to the collector before something big is dropped.
"""
from __future__ import annotations

import gc
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_depth = 0
_resume = False
_modules_before = 0


@contextmanager
def imports() -> Iterator[None]:
    """Around `import ...` statements of libraries that stay loaded. Nests, and may be entered
    from several threads at once: the collector is paused at the first entry and, at the last
    exit, resumed (if it was running), everything tracked so far frozen first when the block
    imported anything."""
    global _depth, _resume, _modules_before
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            _modules_before = len(sys.modules)
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                if len(sys.modules) != _modules_before:
                    gc.freeze()
                if _resume:
                    gc.enable()


def release(*, dropped: bool = False) -> None:
    """Everything frozen back in the collector's care, and one full collection when anything
    was frozen or `dropped` says that something big was just let go (the engine's models when
    it unloads them, and what their loads held: an int8 cache read ahead); else nothing.
    Transformers' models hold reference cycles, which only a full collection frees: frozen,
    never; unfrozen, only at the collector's next full pass, which with the ~0.4 million
    objects of torch and transformers alive comes rarely. Measured: an unloaded BLIP stayed
    in memory without it: at the first unload while frozen, at every later one (nothing
    frozen any more) until `dropped` made it collect."""
    if gc.get_freeze_count():
        gc.unfreeze()
        gc.collect()
    elif dropped:
        gc.collect()
