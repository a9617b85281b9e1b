"""Loupe's Gradio Blocks UI: the Caption, Classify, Library and Models tabs (one module each in
`desktop.tabs`), assembled. No launch, no window.

An error shows as a toast; the event's `.failure()` then clears the output it was for, so no red
"Error" badge stays on it, and a missing model shows its banner and Download button.
"""
from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from desktop.messages import CAPTIONER, CLASSIFIER, missing_text
from desktop.tabs import caption as caption_tab, classify as classify_tab, library as library_tab
from desktop.tabs import models as models_tab
from desktop.tabs import working
from desktop.tabs.photo_drop import example_files
from engine import get_engine, weights

log = logging.getLogger("loupe.ui")

CSS = """
#loupe-header h1 {margin-bottom: 0}
#loupe-header p {margin-top: 0.2em; opacity: 0.75}
.loupe-banner {border-left: 4px solid var(--color-accent); padding-left: 0.8em}
.loupe-progress {min-height: 3.5em}
/* the Models table: state and size never break inside a word ("installe / d"); the long source may */
#loupe-models td:nth-child(2), #loupe-models td:nth-child(3) {white-space: nowrap}
#loupe-models td:nth-child(4) code {overflow-wrap: anywhere}
""" + library_tab.CSS + working.CSS
PAGE_JS = (Path(__file__).parent / "assets" / "page.js").read_text(encoding="utf-8")

_warm = threading.Lock()


def warm_up() -> None:
    """Load the installed models in the background once the page is up, so the first photo a
    person drops is answered at model speed instead of waiting for torch to import and load."""
    if not _warm.acquire(blocking=False):
        return  # already warming or warm

    def run() -> None:
        engine = get_engine()
        for spec in (CLASSIFIER, CAPTIONER):
            if weights.is_installed(spec.name):
                try:
                    engine.model(spec.task)
                except Exception:  # the first real request reports it properly
                    log.exception("warm-up of %s failed", spec.name)

    threading.Thread(target=run, name="loupe-warm-up", daemon=True).start()


def model_state():
    """Banners, download buttons, download lines and action buttons of the Caption and Classify
    tabs, then the Library tab's models banner and the Models tab's Download button. A model
    installed from anywhere (another tab, an import, the command line) clears every stale line."""
    out = []
    for spec in (CAPTIONER, CLASSIFIER):
        missing = not weights.is_installed(spec.name)
        out += [gr.update(visible=missing, value=missing_text(spec.name)), gr.update(visible=missing),
                gr.update(visible=missing), gr.update(interactive=not missing),
                # a line from before ("Not downloaded. Cannot reach …") must not outlive an import
                gr.update(visible=True) if missing
                else gr.update(value=f"{weights.source(spec.name).title}: installed and verified.")]
    return out + library_tab.models_state_all() + models_tab.buttons_state()


def _after_failure(empty: Any) -> tuple:
    """Outputs after a failed event: the emptied output, then `model_state`'s updates."""
    return (empty, *model_state())


def theme() -> gr.themes.Base:
    """gradio's default theme in teal, with every text at least 4.5:1 against its background
    (WCAG AA): primary buttons teal-700 under white (5.5:1, teal-500 gives 2.5:1), stop buttons
    red-700, hints and "- or -" neutral-600 (7.6:1; the default neutral-400 gives 1.9:1)."""
    return gr.themes.Default(primary_hue="teal", font=["system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"]).set(
        button_primary_background_fill="*primary_700",
        button_primary_background_fill_hover="*primary_800",
        button_primary_text_color="white",
        button_primary_border_color="*primary_700",
        button_cancel_background_fill="*red_700",
        button_cancel_background_fill_hover="*red_800",
        button_cancel_text_color="white",
        body_text_color_subdued="*neutral_600",
        block_info_text_color="*neutral_600",
    )


def build_ui(folder_picker: Callable[[], str | None] | None = None) -> gr.Blocks:
    """The whole page. `folder_picker` is the window's native folder chooser (returns the chosen
    path, or None when cancelled); None in a browser, where the Library tab has no Browse…."""
    with gr.Blocks(title="Loupe", fill_width=False) as demo:
        with gr.Column(elem_id="loupe-header"):
            gr.Markdown("# Loupe\nDescribe and label your photos, on this computer, offline.")
        examples = example_files()
        with gr.Tabs():
            with gr.Tab("Caption", id="caption"):
                cap = caption_tab.build(examples)
            with gr.Tab("Classify", id="classify"):
                cls = classify_tab.build(examples)
            with gr.Tab("Library", id="library"):
                lib = library_tab.build(demo, folder_picker)
            with gr.Tab("Models", id="models"):
                models = models_tab.build()
        gr.Markdown("Loupe runs entirely on this computer. Captions: BLIP (Salesforce, BSD-3-Clause). "
                    "Labels: ResNet-18 trained on ImageNet (torchvision, BSD-3-Clause).")
        state_outputs = [cap.panel.banner, cap.panel.get, cap.panel.cancel, cap.button, cap.panel.progress,
                         cls.panel.banner, cls.panel.get, cls.panel.cancel, cls.button, cls.panel.progress,
                         *lib.models_outputs, *models.button_outputs]
        # Weights may arrive from another tab, the CLI or another window: refresh on load and after.
        demo.load(model_state, None, state_outputs, api_visibility="private")
        demo.load(models_tab.models_table, None, models.table, api_visibility="private")
        demo.load(warm_up, None, None, api_visibility="private")
        for event in (*models.events, *lib.events, cap.panel.event, cls.panel.event):
            event.then(model_state, None, state_outputs, api_visibility="private")
        # After an error (its toast says what happened), the output it was for is cleared, which
        # also takes gradio's "Error" badge off it; a missing model shows its banner and button.
        for tab, empty in ((cap, ""), (cls, None)):
            for event in tab.events:
                event.failure(functools.partial(_after_failure, empty), None, [tab.output, *state_outputs],
                              api_visibility="private", show_progress="hidden")
    # gradio 6 takes theme and css at mount time; desktop.server passes these on. System fonts
    # only: a web font would be fetched from the internet.
    demo.loupe_mount_kwargs = {
        "theme": theme(),
        "css": CSS,
        "head": f"<script>{PAGE_JS}</script>",  # accessibility fix-ups of gradio's markup
    }
    return demo
