"""The tiny greet app: lets the window and the guard be tested without any model."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr


def greet(name: str, intensity: float) -> str:
    return f"Hello, {name}{'!' * int(intensity)}"


def build_greet() -> "gr.Blocks":
    import gradio as gr

    with gr.Blocks(title="Loupe") as demo:
        name = gr.Textbox(label="Name", elem_id="name")
        intensity = gr.Slider(1, 10, value=3, step=1, label="Intensity", elem_id="intensity")
        button = gr.Button("Greet", variant="primary", elem_id="greet")
        output = gr.Textbox(label="Greeting", elem_id="output")
        button.click(greet, [name, intensity], output, api_name="greet")
        name.submit(greet, [name, intensity], output, api_visibility="private")
    return demo
