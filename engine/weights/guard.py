"""The load guard: any failure while loading a model's files becomes one LoupeError line."""
from __future__ import annotations

import contextlib
import logging
import pickle
from pathlib import Path
from typing import Iterator

from ..errors import LoupeError, WeightsDamaged
from .stamps import DAMAGED, check, damaged_message

log = logging.getLogger("loupe.weights")


@contextlib.contextmanager
def load_guard(name: str, folder: Path) -> Iterator[None]:
    """Wrap loading `name` from `folder`: any failure becomes one LoupeError line.

    A LoupeError passes through. Anything else (a truncated zip in torch, a pickle refused
    by weights_only, a shape mismatch in transformers) first triggers a full re-hash, since
    the likeliest cause is bytes changed behind an unchanged size and mtime: then it is
    WeightsDamaged naming the file. When every file matches its pin, the message names the
    model, the folder and the original error on one line (the traceback goes to the log).
    """
    try:
        yield
    except LoupeError:
        raise
    except MemoryError:
        raise LoupeError(f"{name}: not enough memory to load the weights in {folder}. Close other "
                         f"programs and retry.") from None
    except Exception as exc:
        log.info("loading %s from %s failed", name, folder, exc_info=True)
        try:
            st = check(name, full=True)
        except LoupeError:
            st = None
        if st is not None and st.state == DAMAGED:
            raise WeightsDamaged(damaged_message(st), model=name) from None
        if isinstance(exc, pickle.UnpicklingError):
            # torch.load(weights_only=True) met a pickle that would run code. torch's own text
            # advises weights_only=False: never.
            raise LoupeError(
                f"{name}: the weights file in {folder} is not plain tensor data (it would run code "
                "when loaded); refused. Remove the model and download or import it again from a "
                "trusted source."
            ) from None
        text = " ".join(str(exc).split())  # torch's messages run over several lines
        text = text if len(text) <= 240 else text[:239] + "…"
        raise LoupeError(f"{name}: cannot load the weights in {folder} ({type(exc).__name__}"
                         f"{': ' + text if text else ''}); its files match their pinned sha256.") from None
