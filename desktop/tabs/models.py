"""The Models tab: what is installed, download / cancel, import from a folder, the weights
folder, remove."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from desktop import downloads
from desktop.messages import friendly
from desktop.tabs.first_run import cancel_download
from engine import get_engine, paths, weights
from engine.units import format_size


def models_table() -> str:
    """The Markdown table of models (state, size, pinned source) and the weights folder."""
    rows = ["| Model | State | Size | Source |", "|---|---|---|---|"]
    for s in weights.status():
        state = "**installed**" if s.installed else s.state  # "damaged", "not installed", ...
        src = weights.source(s.name)
        origin = f"{src.repo}@{src.revision[:7]}" if src.kind == "hf" else src.url_for(src.files[0].name)
        rows.append(f"| **{s.name}** — {s.title} | {state} | {format_size(s.size)} | `{origin}` |")
    rows.append("")
    rows.append(f"Weights folder: `{paths.weights_dir()}` — {format_size(weights.disk_usage())} on disk.")
    return "\n".join(rows)


def buttons_state() -> list:
    """Download missing models: shown only when a model is missing (Cancel shows while it runs)."""
    return [gr.update(visible=any(not weights.is_installed(n) for n in weights.sources()))]


def download_all() -> Iterator[tuple[Any, str]]:
    """Download missing models: (table, status line) while it runs; the table when it ends."""
    keep = gr.update()
    for line, _fraction, end in downloads.download(list(weights.sources())):
        yield (keep if end is None else models_table()), line


@friendly
def import_weights(folder: str):
    if not folder or not folder.strip():
        raise gr.Error("Type the folder that holds the weight files.", title="Loupe")
    names = weights.import_folder(folder.strip())
    return models_table(), "Imported and verified: " + ", ".join(names) + "."


@friendly
def remove_weights(name: str):
    if not name:
        raise gr.Error("Choose a model to remove.", title="Loupe")
    weights.remove(name)
    get_engine().unload()
    return models_table()


@friendly
def set_weights_dir(folder: str):
    from engine.inference import reset_engine

    folder = (folder or "").strip()
    if folder:
        target = Path(folder).expanduser()
        try:
            target.mkdir(parents=True, exist_ok=True)
            probe = target / ".loupe-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise gr.Error(f"{target}: cannot write there ({exc.strerror or exc}).", title="Loupe") from None
        paths.save_setting("weights_dir", str(target))
    else:
        paths.save_setting("weights_dir", None)
    reset_engine()
    gr.Info(f"Weights folder: {paths.weights_dir()}. Models found there are used; download or import the others.")
    return models_table(), str(paths.weights_dir())


def _weights_dir_after_failure() -> tuple[str, str]:
    """The table and the folder in use: a folder that could not be used was not taken."""
    return models_table(), str(paths.weights_dir())


@dataclass
class ModelsTab:
    table: gr.Markdown
    events: list  # the events after which the other tabs' model state is refreshed
    button_outputs: list  # what `buttons_state` updates


def build() -> ModelsTab:
    """Lay out and wire the tab inside the current gr.Tab."""
    table = gr.Markdown(models_table(), elem_id="loupe-models")
    # Downloads and imports report here (progress, done, cancelled, why not): never
    # as a badge over the table.
    status = gr.Markdown(elem_classes="loupe-progress", elem_id="loupe-models-status")
    missing = any(not weights.is_installed(n) for n in weights.sources())
    with gr.Row():
        all_btn = gr.Button("Download missing models", variant="primary", visible=missing)
        all_cancel = gr.Button("Cancel download", visible=False)
    with gr.Accordion("Import from a folder (for computers that never go online)", open=False):
        gr.Markdown("Copy the model files (see the README) into a folder, type it here. "
                    "Each file is checked against its pinned sha256 before it is installed.")
        imp_folder = gr.Textbox(label="Folder")
        imp_btn = gr.Button("Import")
    with gr.Accordion("Weights folder", open=False):
        wdir = gr.Textbox(value=str(paths.weights_dir()), label="Where weights are kept",
                          info="Leave empty for the default. Existing files are not moved.")
        wdir_btn = gr.Button("Use this folder")
    with gr.Accordion("Remove a model", open=False):
        rm_name = gr.Dropdown(list(weights.sources()), label="Model")
        rm_btn = gr.Button("Remove", variant="stop")
    shown = all_btn.click(lambda: gr.update(visible=True), None, all_cancel, queue=False, api_visibility="private",
                          show_progress="hidden")
    all_event = shown.then(download_all, None, [table, status], api_visibility="private",
                           concurrency_id="download", show_progress="hidden")
    all_event.then(lambda: gr.update(visible=False), None, all_cancel, api_visibility="private",
                   show_progress="hidden", queue=False)
    all_cancel.click(cancel_download, None, None, api_visibility="private")
    imp_event = imp_btn.click(import_weights, imp_folder, [table, status], api_visibility="private")
    wdir_event = wdir_btn.click(set_weights_dir, wdir, [table, wdir], api_visibility="private")
    rm_event = rm_btn.click(remove_weights, rm_name, table, api_visibility="private")
    for event in (imp_event, rm_event):
        event.failure(models_table, None, table, api_visibility="private", show_progress="hidden")
    wdir_event.failure(_weights_dir_after_failure, None, [table, wdir], api_visibility="private",
                       show_progress="hidden")
    return ModelsTab(table, [all_event, imp_event, wdir_event, rm_event], [all_btn])
