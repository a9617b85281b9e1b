"""The photo drop zone of the Caption and Classify tabs, and their example photos."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example_files() -> list[str]:
    """The example photos shipped with Loupe (desktop/examples/*.jpg), sorted."""
    return sorted(str(p) for p in EXAMPLES.glob("*.jpg"))


def photo_drop(**kwargs: Any) -> gr.Image:
    """An image drop zone that hands the handler the uploaded file as it is.

    gr.Image decodes and re-saves every upload with Pillow before the handler runs: a second,
    unguarded decoder, a raw technical message for a file that is not a photo, and a copy that
    has lost its EXIF. Loupe's own loader reads the original instead. (An instance override,
    not a subclass: gradio writes a .pyi stub beside the module of every component subclass.)
    """
    image = gr.Image(type="filepath", **kwargs)
    image.preprocess = lambda payload: None if payload is None else str(payload.path)  # type: ignore[method-assign]
    return image
