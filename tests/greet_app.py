"""The tiny greet app: lets the window and the guard be tested without any model.

    python tests/greet_app.py [--browser] [--port N]

runs Loupe's real shell (`desktop.__main__.run`: log, guard, window or browser mode, prompt exit)
around this app instead of Loupe's UI. Test code only: it is not part of the package.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr


def greet(name: str, intensity: float) -> str:
    return f"Hello, {name}{'!' * int(intensity)}"


def build_greet() -> "gr.Blocks":
    """Name, Intensity, a Greet button and the Greeting; one named endpoint, `/greet`."""
    import gradio as gr

    with gr.Blocks(title="Loupe") as demo:
        name = gr.Textbox(label="Name", elem_id="name")
        intensity = gr.Slider(1, 10, value=3, step=1, label="Intensity", elem_id="intensity")
        button = gr.Button("Greet", variant="primary", elem_id="greet")
        output = gr.Textbox(label="Greeting", elem_id="output")
        button.click(greet, [name, intensity], output, api_name="greet")
        name.submit(greet, [name, intensity], output, api_visibility="private")
    return demo


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's desktop/engine
    from desktop.__main__ import run

    run(sys.argv[1:], factory=build_greet)
