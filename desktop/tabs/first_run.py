"""The Caption and Classify tabs' first-run panel: "not installed yet" banner, Download /
Cancel, and a progress line that says how the download went."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import gradio as gr

from desktop import downloads
from desktop.messages import missing_text
from engine import weights


@dataclass
class Panel:
    """A tab's first-run components and the Download event (to refresh the tabs after it)."""

    banner: gr.Markdown
    get: gr.Button
    cancel: gr.Button
    progress: gr.Markdown  # the download's line: emptied once the model is installed
    event: Any


def download_for(name: str):
    """The handler of a tab's Download button: its line (progress, then done, cancelled, or why
    not) goes to the panel's own status line, never an error badge."""

    def handler() -> Iterator[str]:
        for line, _fraction, _end in downloads.download([name]):
            yield line

    return handler


def cancel_download() -> None:
    downloads.cancel()
    gr.Info("Cancelling the download; what was fetched is kept and the next download resumes.")


def first_run_panel(name: str, button: str) -> Panel:
    """The panel for model `name`, its Download button labelled `button`, wired up."""
    missing = not weights.is_installed(name)
    banner = gr.Markdown(missing_text(name), visible=missing, elem_classes="loupe-banner")
    with gr.Row():
        get = gr.Button(button, visible=missing, variant="primary")
        cancel = gr.Button("Cancel download", visible=missing)
    progress = gr.Markdown(elem_classes="loupe-progress", visible=missing, elem_id=f"loupe-download-{name}")
    event = get.click(download_for(name), None, progress, api_visibility="private", concurrency_id="download",
                      show_progress="hidden")
    cancel.click(cancel_download, None, None, api_visibility="private")
    return Panel(banner, get, cancel, progress, event)
