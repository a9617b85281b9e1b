"""Loupe's Gradio Blocks UI: Caption, Classify, Library and Models tabs. No launch, no window.

Every handler turns Loupe's own errors into a `gr.Error` with the one-line message; anything
unexpected is logged with its traceback and shown as a short message, never a stack trace.
"""
from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from engine import get_engine, weights
from engine.errors import Cancelled, LoupeError
from engine.images import load_image
from engine.models.registry import Option, for_task
from engine.units import format_size

CAPTIONER, CLASSIFIER = for_task("caption"), for_task("classify")

log = logging.getLogger("loupe.ui")

EXAMPLES = Path(__file__).parent / "examples"
CSS = """
#loupe-header h1 {margin-bottom: 0}
#loupe-header p {margin-top: 0.2em; opacity: 0.75}
.loupe-banner {border-left: 4px solid var(--color-accent); padding-left: 0.8em}
.loupe-progress {min-height: 3.5em}
"""

# One person, one app: a cancel button stops whichever download or scan is running.
_cancel = {"download": threading.Event(), "scan": threading.Event()}
# Set by the window shell when a native window exists (folder dialog); None in --browser mode.
folder_picker: Callable[[], str | None] | None = None


def friendly(fn: Callable) -> Callable:
    """Loupe errors -> gr.Error with their one line; other exceptions -> logged + short line."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Cancelled as exc:
            raise gr.Error(str(exc).capitalize(), title="Cancelled") from None
        except LoupeError as exc:
            raise gr.Error(str(exc), title="Loupe") from None
        except Exception as exc:  # a bug: keep the app alive, put the details in the log
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Something went wrong ({type(exc).__name__}); details are in the log file.",
                           title="Loupe") from None

    return wrapper


def _example_files() -> list[str]:
    return sorted(str(p) for p in EXAMPLES.glob("*.jpg"))


def _slider(opt: Option) -> gr.Slider:
    """A control for one of a model's whole-number options: range, default, words from the registry."""
    return gr.Slider(opt.minimum, opt.maximum, value=opt.default, step=1, label=opt.label, info=opt.help)


def _missing_text(name: str) -> str:
    src = weights.source(name)
    st = weights.check(name)
    if st.state == weights.DAMAGED:
        return f"{weights.damaged_message(st)} *Download* below repairs it (only the bad files are fetched)."
    return (f"**{src.title}** is not installed yet ({format_size(src.size)}, downloaded once and "
            f"verified; after that Loupe works offline). Download it here, or use *Models → Import* "
            f"if this computer never goes online.")


def photo_drop(**kwargs: Any) -> gr.Image:
    """An image drop zone that hands the handler the uploaded file as it is.

    gr.Image decodes and re-saves every upload with Pillow before the handler runs: a second,
    unguarded decoder, a raw technical message for a file that is not a photo, and a copy that
    has lost its EXIF. Loupe's own loader reads the original instead. (An instance override,
    not a subclass: gradio writes a .pyi stub beside the module of every component subclass.)
    """
    image = gr.Image(type="filepath", **kwargs)
    image.preprocess = lambda payload: None if payload is None else str(payload.path)  # type: ignore[method-assign]
    return image


# ------------------------------------------------------------------------- handlers


@friendly
def caption_photo(path: str | None, prefix: str, length: int, beams: int) -> str:
    if not path:
        raise gr.Error("Drop a photo first.", title="Loupe")
    return get_engine().run_one("caption", path, prefix=prefix, max_new_tokens=int(length), num_beams=int(beams)).text


def caption_changed(path: str | None, prefix: str, length: int, beams: int) -> str:
    """A new photo (dropped, pasted or an example) is captioned at once; a cleared one clears."""
    return caption_photo(path, prefix, length, beams) if path else ""


def classify_changed(path: str | None):
    return classify_photo(path) if path else None


@friendly
def classify_photo(path: str | None) -> dict[str, float]:
    if not path:
        raise gr.Error("Drop a photo first.", title="Loupe")
    return get_engine().run_one("classify", path).as_confidences()


def _download(names: list[str], progress: gr.Progress) -> None:
    cancel = _cancel["download"]
    cancel.clear()
    for name in names:
        if weights.is_installed(name):
            continue
        title = weights.source(name).title

        def report(p: weights.DownloadProgress, title: str = title) -> None:
            progress(p.fraction, desc=f"{title}: {format_size(p.overall_done)} of {format_size(p.overall_total)}")

        report(weights.DownloadProgress(name, "", 0, 0, 0, weights.source(name).size))
        weights.install(name, progress=report, cancel=cancel)


def download_for(name: str):
    @friendly
    def handler(progress: gr.Progress = gr.Progress()):
        _download([name], progress)
        return f"{weights.source(name).title}: installed and verified."

    return handler


@friendly
def download_all(progress: gr.Progress = gr.Progress()):
    _download(list(weights.sources()), progress)
    return models_table()


def cancel_download() -> None:
    _cancel["download"].set()
    gr.Info("Cancelling the download; what was fetched is kept and the next download resumes.")


@friendly
def import_weights(folder: str):
    if not folder or not folder.strip():
        raise gr.Error("Type the folder that holds the weight files.", title="Loupe")
    names = weights.import_folder(folder.strip())
    gr.Info("Imported and verified: " + ", ".join(names))
    return models_table()


@friendly
def remove_weights(name: str):
    if not name:
        raise gr.Error("Choose a model to remove.", title="Loupe")
    weights.remove(name)
    get_engine().unload()
    return models_table()


@friendly
def set_weights_dir(folder: str):
    from engine import paths
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
    """Banners, download buttons and action buttons of the Caption and Classify tabs."""
    out = []
    for spec in (CAPTIONER, CLASSIFIER):
        missing = not weights.is_installed(spec.name)
        out += [gr.update(visible=missing, value=_missing_text(spec.name)), gr.update(visible=missing),
                gr.update(visible=missing), gr.update(interactive=not missing)]
    return out


def models_table() -> str:
    from engine import paths

    rows = ["| Model | State | Size | Source |", "|---|---|---|---|"]
    for s in weights.status():
        state = "**installed**" if s.installed else s.state  # "damaged", "not installed", ...
        src = weights.source(s.name)
        origin = f"{src.repo}@{src.revision[:7]}" if src.kind == "hf" else src.url_for(src.files[0].name)
        rows.append(f"| **{s.name}** — {s.title} | {state} | {format_size(s.size)} | `{origin}` |")
    rows.append("")
    rows.append(f"Weights folder: `{paths.weights_dir()}` — {format_size(weights.disk_usage())} on disk.")
    return "\n".join(rows)


# ------------------------------------------------------------------------- library


def _scan_progress(progress: gr.Progress):
    def report(p: Any) -> None:
        desc = f"{p.done} of {p.total} photos"
        if p.rate:
            desc += f" · {p.rate:.1f} photos/s"
        if p.eta_s:
            desc += f" · {int(p.eta_s) // 60}:{int(p.eta_s) % 60:02d} left"
        progress(p.fraction, desc=desc)

    return report


@friendly
def scan_folder(folder: str, write: str, style: str, existing: str, rename: bool,
                progress: gr.Progress = gr.Progress()):
    from engine import library

    folder = (folder or "").strip()
    if not folder:
        raise gr.Error("Choose or type a folder of photos.", title="Loupe")
    cancel = _cancel["scan"]
    cancel.clear()
    from desktop import activity

    with activity.busy(f"a scan of {Path(folder).name or folder}"):  # closing the window asks first
        summary = library.scan(folder, write=write, sidecar_style=style, existing=existing, rename=bool(rename),
                               progress=_scan_progress(progress), cancel=cancel)
    return summary_markdown(summary)


def summary_markdown(summary: Any) -> str:
    head = "Stopped — scan again to resume." if summary.cancelled else "Done."
    lines = [f"**{head}** {summary.total} photos: {summary.done} captioned, {summary.skipped} already done, "
             f"{summary.failed} unreadable; {summary.written} written"
             + (f", {summary.write_failed} not written" if summary.write_failed else "")
             + (f", {summary.renamed} renamed" if summary.renamed else "")
             + summary.decisions_text()
             + (f" · {summary.rate:.1f} photos/s" if summary.rate else "")]
    lines += _listed("Problems:", [(p.path, p.reason) for p in summary.problems], "see `loupe library scans`")
    lines += _listed("Decided for you:", [(n.path, n.message) for n in summary.notices],
                     "`loupe library scan` lists them all")
    return "\n".join(lines)


def _listed(title: str, rows: list[tuple[str, str]], more: str, limit: int = 200) -> list[str]:
    """A titled Markdown list of (path, text), cut at `limit` with a pointer to the rest."""
    if not rows:
        return []
    lines = ["", title] + [f"- `{path}`: {text}" for path, text in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"- … and {len(rows) - limit} more ({more})")
    return lines


def cancel_scan() -> None:
    _cancel["scan"].set()
    gr.Info("Stopping: photos already finished are kept; scan again to resume.")


@friendly
def search_library(words: str):
    from engine import library

    words = (words or "").strip()
    if not words:
        return [], "Type words to search captions, labels and file names."
    hits = library.search(words, limit=60)
    gallery = []
    for hit in hits:
        try:
            thumb = load_image(hit.path, draft_size=(256, 256))
            thumb.thumbnail((256, 256))
        except LoupeError:
            continue
        gallery.append((thumb, f"{Path(hit.path).name}: {hit.caption}"))
    return gallery, f"{len(hits)} photo{'s' if len(hits) != 1 else ''} match “{words}”."


def pick_folder() -> str:
    if folder_picker is None:
        raise gr.Error("The folder dialog needs the Loupe window; type the path instead.", title="Loupe")
    return folder_picker() or gr.update()


# ------------------------------------------------------------------------- layout


def _first_run_panel(name: str, button: str):
    """The 'not installed yet' banner with Download / Cancel and a progress line, wired up.
    Returns (banner, download button, cancel button, the download event)."""
    missing = not weights.is_installed(name)
    banner = gr.Markdown(_missing_text(name), visible=missing, elem_classes="loupe-banner")
    with gr.Row():
        get = gr.Button(button, visible=missing, variant="primary")
        cancel = gr.Button("Cancel download", visible=missing)
    progress = gr.Markdown(elem_classes="loupe-progress", visible=missing)
    event = get.click(download_for(name), None, progress, api_visibility="private", concurrency_id="download")
    cancel.click(cancel_download, None, None, api_visibility="private")
    return banner, get, cancel, event


def build_ui() -> gr.Blocks:
    with gr.Blocks(title="Loupe", fill_width=False) as demo:
        with gr.Column(elem_id="loupe-header"):
            gr.Markdown("# Loupe\nDescribe and label your photos, on this computer, offline.")
        examples = _example_files()
        with gr.Tabs():
            with gr.Tab("Caption", id="caption"):
                cap_missing, cap_get, cap_cancel, cap_dl = _first_run_panel(CAPTIONER.name, "Download the captioning model")
                with gr.Row():
                    with gr.Column():
                        cap_image = photo_drop(label="Photo", sources=["upload", "clipboard"], height=360,
                                             elem_id="loupe-caption-photo")
                        with gr.Accordion("Options", open=False):
                            opt = CAPTIONER.option("prefix")
                            prefix = gr.Textbox(label=f"{opt.label} (optional)", placeholder="a photograph of",
                                                max_length=opt.maximum)
                            length = _slider(CAPTIONER.option("max_new_tokens"))
                            beams = _slider(CAPTIONER.option("num_beams"))
                        cap_btn = gr.Button("Caption", variant="primary",
                                            interactive=weights.is_installed(CAPTIONER.name))
                    with gr.Column():
                        caption = gr.Textbox(label="Caption (alt text)", buttons=["copy"], lines=3, interactive=False,
                                             elem_id="loupe-caption")
                if examples:
                    gr.Examples(examples=[[e] for e in examples], inputs=[cap_image], label="Example photos")
                cap_inputs = [cap_image, prefix, length, beams]
                cap_btn.click(caption_photo, cap_inputs, caption, api_name="caption", concurrency_id="caption", concurrency_limit=1)
                cap_image.change(caption_changed, cap_inputs, caption, api_visibility="private", concurrency_id="caption", concurrency_limit=1)

            with gr.Tab("Classify", id="classify"):
                cls_missing, cls_get, cls_cancel, cls_dl = _first_run_panel(CLASSIFIER.name, "Download the classifier")
                with gr.Row():
                    with gr.Column():
                        cls_image = photo_drop(label="Photo", sources=["upload", "clipboard"], height=360,
                                             elem_id="loupe-classify-photo")
                        cls_btn = gr.Button("Classify", variant="primary", elem_id="loupe-classify-btn",
                                            interactive=weights.is_installed(CLASSIFIER.name))
                    with gr.Column():
                        top = CLASSIFIER.option("top").default
                        labels = gr.Label(num_top_classes=top, label=f"Top {top} ImageNet classes", elem_id="loupe-labels")
                if examples:
                    gr.Examples(examples=[[e] for e in examples], inputs=[cls_image], label="Example photos")
                cls_btn.click(classify_photo, cls_image, labels, api_name="classify", concurrency_id="classify", concurrency_limit=2)
                cls_image.change(classify_changed, cls_image, labels, api_visibility="private", concurrency_id="classify", concurrency_limit=2)

            with gr.Tab("Library", id="library"):
                gr.Markdown("Caption and label a whole folder. Photos are read where they are; results go "
                            "into XMP sidecars (originals untouched) unless you choose otherwise. "
                            "A stopped scan resumes where it left off.")
                with gr.Row():
                    lib_folder = gr.Textbox(label="Folder of photos", placeholder="/home/me/Pictures", scale=4)
                    lib_pick = gr.Button("Choose folder…", scale=1, visible=folder_picker is not None)
                with gr.Row():
                    lib_write = gr.Radio(["sidecar", "embed", "none"], value="sidecar", label="Write results",
                                         info="sidecar: photo.jpg.xmp beside each photo · embed: into the photo's own metadata")
                    lib_style = gr.Radio([("photo.jpg.xmp (darktable, digiKam)", "darktable"),
                                          ("photo.xmp (Lightroom)", "lightroom")], value="darktable",
                                         label="Sidecar name")
                    lib_existing = gr.Radio([("Keep it", "keep"), ("Replace it", "replace"),
                                             ("Add the caption after it", "append")], value="keep",
                                            label="A description someone already wrote",
                                            info="in the photo or its sidecar (XMP, IPTC or EXIF)")
                    lib_rename = gr.Checkbox(False, label="Rename files from captions (undo: loupe library undo)")
                with gr.Row():
                    lib_scan = gr.Button("Scan folder", variant="primary")
                    lib_stop = gr.Button("Stop")
                lib_summary = gr.Markdown(elem_id="loupe-scan-summary")
                with gr.Row():
                    lib_query = gr.Textbox(label="Search captions and labels", placeholder="dog beach", scale=4)
                    lib_search = gr.Button("Search", scale=1)
                lib_found = gr.Markdown()
                lib_gallery = gr.Gallery(label="Matches", columns=5, height="auto", elem_id="loupe-gallery")
                lib_scan.click(scan_folder, [lib_folder, lib_write, lib_style, lib_existing, lib_rename], lib_summary,
                               api_visibility="private", concurrency_id="scan", concurrency_limit=1)
                lib_stop.click(cancel_scan, None, None, api_visibility="private")
                lib_search.click(search_library, lib_query, [lib_gallery, lib_found], api_visibility="private")
                lib_query.submit(search_library, lib_query, [lib_gallery, lib_found], api_visibility="private")
                lib_pick.click(pick_folder, None, lib_folder, api_visibility="private")

            with gr.Tab("Models", id="models"):
                table = gr.Markdown(models_table(), elem_id="loupe-models")
                with gr.Row():
                    all_btn = gr.Button("Download missing models", variant="primary")
                    all_cancel = gr.Button("Cancel download")
                with gr.Accordion("Import from a folder (for computers that never go online)", open=False):
                    gr.Markdown("Copy the model files (see the README) into a folder, type it here. "
                                "Each file is checked against its pinned sha256 before it is installed.")
                    imp_folder = gr.Textbox(label="Folder")
                    imp_btn = gr.Button("Import")
                with gr.Accordion("Weights folder", open=False):
                    from engine import paths

                    wdir = gr.Textbox(value=str(paths.weights_dir()), label="Where weights are kept",
                                      info="Leave empty for the default. Existing files are not moved.")
                    wdir_btn = gr.Button("Use this folder")
                with gr.Accordion("Remove a model", open=False):
                    rm_name = gr.Dropdown(list(weights.sources()), label="Model")
                    rm_btn = gr.Button("Remove", variant="stop")
                all_event = all_btn.click(download_all, None, table, api_visibility="private", concurrency_id="download")
                all_cancel.click(cancel_download, None, None, api_visibility="private")
                imp_event = imp_btn.click(import_weights, imp_folder, table, api_visibility="private")
                wdir_event = wdir_btn.click(set_weights_dir, wdir, [table, wdir], api_visibility="private")
                rm_event = rm_btn.click(remove_weights, rm_name, table, api_visibility="private")
        gr.Markdown("Loupe runs entirely on this computer. Captions: BLIP (Salesforce, BSD-3-Clause). "
                    "Labels: ResNet-18 trained on ImageNet (torchvision, BSD-3-Clause).")
        state_outputs = [cap_missing, cap_get, cap_cancel, cap_btn, cls_missing, cls_get, cls_cancel, cls_btn]
        # Weights may arrive from another tab, the CLI or another window: refresh on load and after.
        demo.load(model_state, None, state_outputs, api_visibility="private")
        demo.load(models_table, None, table, api_visibility="private")
        demo.load(warm_up, None, None, api_visibility="private")
        for event in (all_event, imp_event, wdir_event, rm_event, cap_dl, cls_dl):
            event.then(model_state, None, state_outputs, api_visibility="private")
    # gradio 6 takes theme and css at mount time; desktop.server passes these on. System fonts
    # only: a web font would be fetched from the internet.
    demo.loupe_mount_kwargs = {
        "theme": gr.themes.Default(primary_hue="teal", font=["system-ui", "sans-serif"],
                                   font_mono=["ui-monospace", "monospace"]),
        "css": CSS,
    }
    return demo
