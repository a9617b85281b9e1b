"""The Classify tab: drop a photo, get the top ImageNet labels with their confidence."""
from __future__ import annotations

from dataclasses import dataclass

from typing import Callable

import gradio as gr

from desktop.messages import CLASSIFIER, friendly
from desktop.tabs.first_run import Panel, first_run_panel
from desktop.tabs.photo_drop import photo_drop
from desktop.tabs.caption import slider
from desktop.share.gate import local_turn
from desktop.tabs.working import wire
from engine import get_engine, weights


@friendly
def classify_photo(path: str | None, top: int | None = None) -> dict[str, float]:
    """{label: confidence 0-1}, the `top` most likely (default: the registry's), for the photo
    at `path`; gr.Error when there is none."""
    if not path:
        raise gr.Error("Drop a photo first.", title="Loupe")
    options = {} if top is None else {"top": int(top)}
    with local_turn():  # a share's visitors wait behind the person at this computer
        return get_engine().run_one("classify", path, **options).as_confidences()


@dataclass
class ClassifyTab:
    panel: Panel | None  # None without downloads
    image: gr.Image
    button: gr.Button
    output: gr.Label
    events: list


def build(examples: list[str], *, run: Callable[..., dict] = classify_photo, downloads: bool = True,
          sources: tuple[str, ...] = ("upload", "clipboard"), scroll: bool = False) -> ClassifyTab:
    """Lay out and wire the tab, with `run(path, top) -> {label: confidence}`; as caption.build."""
    panel = first_run_panel(CLASSIFIER.name, "Download the classifier") if downloads else None
    with gr.Row():
        with gr.Column():
            image = photo_drop(label="Photo", sources=list(sources), height=360,
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
    def changed(path: str | None, top: int | None = None):
        """A new photo is classified at once; a cleared one clears."""
        return run(path, top) if path else None

    events = [
        wire(button.click, run, [image, top], labels, status, "classify", api_visibility="private",
             concurrency_id="classify", concurrency_limit=2, scroll_to_output=scroll),
        wire(image.change, changed, [image, top], labels, status, "classify", api_visibility="private",
             concurrency_id="classify", concurrency_limit=2, scroll_to_output=scroll)]
    # The /classify API keeps its one input (a photo) and the registry's number of labels: its
    # callers send no count. A trigger of its own, never shown, so the page's button can send one.
    if downloads:
        api = gr.Button(visible=False)
        api.click(classify_photo, [image], labels, api_name="classify", concurrency_id="classify",
                  concurrency_limit=2)
    return ClassifyTab(panel, image, button, labels, events)
