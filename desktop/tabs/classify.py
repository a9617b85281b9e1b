"""The Classify tab: drop a photo, get the top ImageNet labels with their confidence."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from desktop.messages import CLASSIFIER, friendly
from desktop.tabs.first_run import Panel, first_run_panel
from desktop.tabs.photo_drop import photo_drop
from desktop.tabs.caption import slider
from desktop.tabs.working import wire
from engine import get_engine, weights


@friendly
def classify_photo(path: str | None, top: int | None = None) -> dict[str, float]:
    """{label: confidence 0-1}, the `top` most likely (default: the registry's), for the photo
    at `path`; gr.Error when there is none."""
    if not path:
        raise gr.Error("Drop a photo first.", title="Loupe")
    options = {} if top is None else {"top": int(top)}
    return get_engine().run_one("classify", path, **options).as_confidences()


def classify_changed(path: str | None, top: int | None = None):
    """A new photo is classified at once; a cleared one clears."""
    return classify_photo(path, top) if path else None


@dataclass
class ClassifyTab:
    panel: Panel
    button: gr.Button
    output: gr.Label
    events: list


def build(examples: list[str]) -> ClassifyTab:
    """Lay out and wire the tab inside the current gr.Tab."""
    panel = first_run_panel(CLASSIFIER.name, "Download the classifier")
    with gr.Row():
        with gr.Column():
            image = photo_drop(label="Photo", sources=["upload", "clipboard"], height=360,
                               elem_id="loupe-classify-photo")
            button = gr.Button("Classify", variant="primary", elem_id="loupe-classify-btn",
                               interactive=weights.is_installed(CLASSIFIER.name))
            status = gr.HTML("", elem_id="loupe-classify-status")
            top = slider(CLASSIFIER.option("top"))
        with gr.Column():
            labels = gr.Label(num_top_classes=CLASSIFIER.option("top").maximum, label="Labels",
                              elem_id="loupe-labels")
    if examples:
        gr.Examples(examples=[[e] for e in examples], inputs=[image], label="Example photos")
    events = [
        wire(button.click, classify_photo, [image, top], labels, status, "classify", api_visibility="private",
             concurrency_id="classify", concurrency_limit=2),
        wire(image.change, classify_changed, [image, top], labels, status, "classify", api_visibility="private",
             concurrency_id="classify", concurrency_limit=2)]
    # The /classify API keeps its one input (a photo) and the registry's number of labels: its
    # callers send no count. A trigger of its own, never shown, so the page's button can send one.
    api = gr.Button(visible=False)
    api.click(classify_photo, [image], labels, api_name="classify", concurrency_id="classify", concurrency_limit=2)
    return ClassifyTab(panel, button, labels, events)
