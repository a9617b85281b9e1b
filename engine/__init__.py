"""Loupe's engine: photos in, captions and labels out. No UI; nothing heavy at import.

    from engine import get_engine
    get_engine().run("caption", ["a.jpg"], num_beams=1)   # [Caption | UnreadableImage]
    get_engine().run_one("classify", "a.jpg", top=3)       # Labels

The map (each module one job; no import circle):
    models/spec.py      the data types (ModelSpec, Option, Source, WeightFile, CPU classes)
    models/registry.py  every model as a spec: pinned weights, loader, input size, options
    models/*.py         one module per model: preprocess / collate / forward / postprocess
    inference.py        the engine: lazy loading, prepare -> infer, run, stream
    batching.py         the one batch loop (stream) and the Inference protocol
    images.py           load_image(), the one photo loader
    long_lived.py       heavy library imports with the garbage collector paused, frozen after
    weights/            table, stamps, transfer, install, imports, guard of the registry's weights
    device.py           device and precision choice
    library/            folder scans as stages (plan, compute, write, record; scanner.py wires
                        them), the SQLite index, XMP writers, renames with undo, export
    errors.py, results.py, paths.py, units.py   errors, result types, folders, sizes
A new model: a spec in models/registry.py and a module in models/. A new compute backend for
scans: a class like library/compute.py's. A new writer: library/writers.py + options.py.
`engine` never imports gradio, Qt or `desktop`; the `loupe` command lives in `loupe/`.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

# huggingface_hub reads this once, at import: without it every download also pings the hub's
# telemetry endpoint. Loupe sends nothing but the file requests themselves.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Importing torch._dynamo (torchvision and transformers' models do) creates torch's compile
# cache folder, by default $TMPDIR/torchinductor_<user>, and every run would leave it behind.
# torch reads this once, at that import; Loupe compiles nothing, so the folder stays empty in
# Loupe's own cache. The CLI, the app (desktop imports engine before torch) and the bundle's
# entry (loupe.cli) all import this package first.
from . import paths as _paths  # noqa: E402  (light: platformdirs only)

os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(_paths.cache_dir() / "torchinductor"))
# torch's deprecation warnings for the int8 path filtered before any thread starts (quantize.py)
from . import quantize as _quantize  # noqa: E402,F401  (light: standard library only at import)

__all__ = ["get_engine"]

if TYPE_CHECKING:  # pragma: no cover
    from .inference import Engine


def get_engine() -> "Engine":
    from .inference import get_engine as _get

    return _get()
