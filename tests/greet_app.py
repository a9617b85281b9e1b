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


def work(seconds: float = 600) -> str:
    """Be busy (desktop.activity) like a scan of Pictures, for `seconds` or until the process ends."""
    import time

    from desktop import activity

    with activity.busy("a scan of Pictures"):
        time.sleep(seconds)
    return "done"


def build_greet(busy: bool = False) -> "gr.Blocks":
    """Name, Intensity, a Greet button and the Greeting; one named endpoint, `/greet`. With
    `busy`, also a Work button that keeps the app busy (the close prompt's test)."""
    import gradio as gr

    with gr.Blocks(title="Loupe") as demo:
        name = gr.Textbox(label="Name", elem_id="name")
        intensity = gr.Slider(1, 10, value=3, step=1, label="Intensity", elem_id="intensity")
        button = gr.Button("Greet", variant="primary", elem_id="greet")
        output = gr.Textbox(label="Greeting", elem_id="output")
        button.click(greet, [name, intensity], output, api_name="greet")
        name.submit(greet, [name, intensity], output, api_visibility="private")
        if busy:
            gr.Button("Work", elem_id="work").click(work, None, output, api_visibility="private")
    return demo


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's desktop/engine
    from desktop.__main__ import run

    args = sys.argv[1:]
    busy = "--busy-button" in args  # test-only, taken before Loupe's own arguments are parsed
    run([a for a in args if a != "--busy-button"], factory=lambda: build_greet(busy))
