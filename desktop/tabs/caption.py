"""The Caption tab: drop a photo, get a sentence describing it (the alt text)."""
from __future__ import annotations

from dataclasses import dataclass


from typing import Callable

import gradio as gr

from desktop.messages import CAPTIONER, friendly
from desktop.tabs.first_run import Panel, first_run_panel
from desktop.tabs.photo_drop import photo_drop
from desktop.share.gate import local_turn
from desktop.tabs.working import wire
from engine import get_engine, weights
from engine.models.registry import Option


@friendly
def caption_photo(path: str | None, prefix: str, length: int, beams: int) -> str:
    """The caption of the photo at `path` with the tab's options; gr.Error when there is none."""
    if not path:
        raise gr.Error("Drop a photo first.", title="Loupe")
    with local_turn():  # a share's visitors wait behind the person at this computer
        return get_engine().run_one("caption", path, prefix=prefix, max_new_tokens=int(length),
                                    num_beams=int(beams)).text




def slider(opt: Option) -> gr.Slider:
    """A control for one of a model's whole-number options: range, default, words from the registry."""
    return gr.Slider(opt.minimum, opt.maximum, value=opt.default, step=1, label=opt.label, info=opt.help)


@dataclass
class CaptionTab:
    panel: Panel | None  # None without downloads
    image: gr.Image
    button: gr.Button
    output: gr.Textbox
    events: list


def build(examples: list[str], *, run: Callable[..., str] = caption_photo, downloads: bool = True,
          sources: tuple[str, ...] = ("upload", "clipboard"), scroll: bool = False) -> CaptionTab:
    """Lay out and wire the tab inside the current gr.Tab (or any container), with `run(path,
    prefix, length, beams) -> caption`. `downloads=False` leaves out the first-run download panel
    and the API name (desktop.share's page); `scroll=True` also lets gradio scroll to the answer
    (a phone, where it is below the photo)."""
    panel = first_run_panel(CAPTIONER.name, "Download the captioning model") if downloads else None
    with gr.Row():
        with gr.Column():
            image = photo_drop(label="Photo", sources=list(sources), height=360,
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
    def changed(path: str | None, prefix: str, length: int, beams: int) -> str:
        """A new photo (dropped, pasted or an example) is captioned at once; a cleared one clears."""
        return run(path, prefix, length, beams) if path else ""

    api = {"api_name": "caption"} if downloads else {"api_visibility": "private"}
    events = [
        wire(button.click, run, inputs, caption, status, "caption", concurrency_id="caption",
             concurrency_limit=1, scroll_to_output=scroll, **api),
        wire(image.change, changed, inputs, caption, status, "caption", api_visibility="private",
             concurrency_id="caption", concurrency_limit=1, scroll_to_output=scroll)]
    # gradio's own sign that the copy worked is a faint tick: say it
    caption.copy(lambda: gr.Info("Caption copied to the clipboard."), None, None, api_visibility="private",
                 queue=False)
    return CaptionTab(panel, image, button, caption, events)
