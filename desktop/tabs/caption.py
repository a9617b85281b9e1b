"""The Caption tab: drop a photo, get a sentence describing it (the alt text)."""
from __future__ import annotations

from dataclasses import dataclass


import gradio as gr

from desktop.messages import CAPTIONER, friendly
from desktop.tabs.first_run import Panel, first_run_panel
from desktop.tabs.photo_drop import photo_drop
from desktop.tabs.working import wire
from engine import get_engine, weights
from engine.models.registry import Option


@friendly
def caption_photo(path: str | None, prefix: str, length: int, beams: int) -> str:
    """The caption of the photo at `path` with the tab's options; gr.Error when there is none."""
    if not path:
        raise gr.Error("Drop a photo first.", title="Loupe")
    return get_engine().run_one("caption", path, prefix=prefix, max_new_tokens=int(length), num_beams=int(beams)).text


def caption_changed(path: str | None, prefix: str, length: int, beams: int) -> str:
    """A new photo (dropped, pasted or an example) is captioned at once; a cleared one clears."""
    return caption_photo(path, prefix, length, beams) if path else ""


def slider(opt: Option) -> gr.Slider:
    """A control for one of a model's whole-number options: range, default, words from the registry."""
    return gr.Slider(opt.minimum, opt.maximum, value=opt.default, step=1, label=opt.label, info=opt.help)


@dataclass
class CaptionTab:
    panel: Panel
    button: gr.Button
    output: gr.Textbox
    events: list


def build(examples: list[str]) -> CaptionTab:
    """Lay out and wire the tab inside the current gr.Tab."""
    panel = first_run_panel(CAPTIONER.name, "Download the captioning model")
    with gr.Row():
        with gr.Column():
            image = photo_drop(label="Photo", sources=["upload", "clipboard"], height=360,
                               elem_id="loupe-caption-photo")
            with gr.Accordion("Options", open=False):
                opt = CAPTIONER.option("prefix")
                prefix = gr.Textbox(label=f"{opt.label} (optional)", placeholder="a photograph of",
                                    max_length=opt.maximum)
                length = slider(CAPTIONER.option("max_new_tokens"))
                beams = slider(CAPTIONER.option("num_beams"))
            button = gr.Button("Caption", variant="primary", interactive=weights.is_installed(CAPTIONER.name),
                               elem_id="loupe-caption-btn")
            status = gr.HTML("", elem_id="loupe-caption-status")
        with gr.Column():
            caption = gr.Textbox(label="Caption (alt text)", buttons=["copy"], lines=3, interactive=False,
                                 elem_id="loupe-caption")
    if examples:
        gr.Examples(examples=[[e] for e in examples], inputs=[image], label="Example photos")
    inputs = [image, prefix, length, beams]
    events = [
        wire(button.click, caption_photo, inputs, caption, status, "caption", api_name="caption",
             concurrency_id="caption", concurrency_limit=1),
        wire(image.change, caption_changed, inputs, caption, status, "caption", api_visibility="private",
             concurrency_id="caption", concurrency_limit=1)]
    # gradio's own sign that the copy worked is a faint tick: say it
    caption.copy(lambda: gr.Info("Caption copied to the clipboard."), None, None, api_visibility="private",
                 queue=False)
    return CaptionTab(panel, button, caption, events)
