"""Loupe's engine: photos in, captions and labels out. No UI; nothing heavy at import.

Public entry points (all lazy: torch/transformers are imported on first use):

    from engine import caption_paths, classify_paths, get_engine
    get_engine().caption([pil_image, ...], prefix=None, max_new_tokens=30, num_beams=3)
    get_engine().classify([pil_image, ...], top=3)

Weights: `engine.weights` (status, install, import_folder, remove, model_dir).
Images: `engine.images.load_image(path)` is the one loader.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# huggingface_hub reads this once, at import: without it every download also pings the hub's
# telemetry endpoint. Loupe sends nothing but the file requests themselves.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Importing torch._dynamo (torchvision and transformers' models do) creates torch's compile
# cache folder, by default $TMPDIR/torchinductor_<user>, and every run would leave it behind.
# torch reads this once, at that import; Loupe compiles nothing, so the folder stays empty in
# Loupe's own cache. The CLI, the app (desktop imports engine before torch) and the bundle's
# entry (engine.cli) all import this package first.
from . import paths as _paths  # noqa: E402  (light: platformdirs only)

os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(_paths.cache_dir() / "torchinductor"))

__all__ = ["caption_paths", "classify_paths", "get_engine"]

if TYPE_CHECKING:  # pragma: no cover
    from .inference import Engine


def get_engine() -> "Engine":
    from .inference import get_engine as _get

    return _get()


def caption_paths(paths: list[str], **options: Any):
    from .inference import caption_paths as _f

    return _f(paths, **options)


def classify_paths(paths: list[str], **options: Any):
    from .inference import classify_paths as _f

    return _f(paths, **options)
