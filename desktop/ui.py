"""Loupe's Gradio Blocks UI: Caption, Classify, Library and Models tabs. No launch, no window.

Every handler turns Loupe's own errors into a `gr.Error` with the one-line message; anything
unexpected is logged with its traceback and shown as a short message, never a stack trace.
Messages speak of what the person sees: the file name they dropped (never gradio's upload
copy), the button to press (never a command to type). An error shows as a toast; the event's
`.failure()` then clears the output it was for, so no red "Error" badge stays on it.
"""
from __future__ import annotations

import functools
import logging
import re
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import gradio as gr

from engine import get_engine, weights
from engine.errors import Cancelled, LoupeError, Unreachable, WeightsDamaged, WeightsMissing
from engine.models.registry import Option, for_task
from engine.units import format_size

from desktop import activity
from desktop.library_tab import CSS as LIBRARY_CSS, library_tab
from desktop.share.gate import local_turn

CAPTIONER, CLASSIFIER = for_task("caption"), for_task("classify")

log = logging.getLogger("loupe.ui")

EXAMPLES = Path(__file__).parent / "examples"
CSS = """
#loupe-header h1 {margin-bottom: 0}
#loupe-header p {margin-top: 0.2em; opacity: 0.75}
.loupe-banner {border-left: 4px solid var(--color-accent); padding-left: 0.8em}
.loupe-progress {min-height: 3.5em}
""" + LIBRARY_CSS

# One person, one app: a cancel button stops whichever download is running.
_cancel = {"download": threading.Event()}
# Set by the window shell when a native window exists (folder dialog); None in --browser mode.
folder_picker: Callable[[], str | None] | None = None


def friendly(fn: Callable) -> Callable:
    """Loupe errors -> gr.Error with their one line, in the page's words (`say`); other
    exceptions -> logged + short line."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error as exc:
            exc.message = user_paths(str(exc.message), args)
            raise
        except Cancelled as exc:
            raise gr.Error(str(exc).capitalize(), title="Cancelled") from None
        except LoupeError as exc:
            log.info("%s: %s", fn.__name__, exc)  # the full text (real paths, commands) for the log
            raise gr.Error(say(exc, args), title="Loupe") from None
        except Exception as exc:  # a bug: keep the app alive, put the details in the log
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Something went wrong ({type(exc).__name__}); details are in the log file.",
                           title="Loupe") from None

    return wrapper


# gradio keeps each upload as {its temp folder}/{sha256 of the file, 64 hex}/{the dropped name}.
_UPLOAD_COPY = re.compile(r"""(?:[A-Za-z]:)?[^\s'"`()]*[\\/][0-9a-f]{64}[\\/]""")
_UPLOAD_NAME = re.compile(r"""[\\/][0-9a-f]{64}[\\/]([^\\/]+)$""")


def user_paths(message: str, args: tuple | list = ()) -> str:
    """`message` with every path of gradio's upload copy replaced by the name the person
    dropped: `/tmp/loupe-123-x/<64 hex>/IMG 1.jpg: not a photo` -> `IMG 1.jpg: not a photo`.

    Exact for the handler's own arguments (`args`: any string or list of strings among them
    that is an upload copy), and by pattern for any other such path in the text."""
    for value in _strings(args):
        name = _UPLOAD_NAME.search(value)
        if name:
            message = message.replace(value, name.group(1))
    return _UPLOAD_COPY.sub("", message)


def _strings(args: tuple | list) -> list[str]:
    out = []
    for value in args:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, (list, tuple)):
            out += _strings(value)
    # longest first: a path is never replaced inside a longer one that contains it
    return sorted(out, key=len, reverse=True)


def say(exc: LoupeError, args: tuple | list = ()) -> str:
    """The one line to show for `exc` in the page: upload copies named as dropped, missing or
    damaged models pointing at their Download button, offline said plainly. The engine's own
    text speaks to the command line (`loupe models download`): the page never quotes a command."""
    if isinstance(exc, Unreachable):
        return (f"Cannot reach {exc.host or 'the download server'}: this computer seems to be offline. "
                f"Try again when online, or import the files (Models → Import).")
    if isinstance(exc, (WeightsMissing, WeightsDamaged)) and exc.model in weights.sources():
        return missing_line(exc.model)
    return user_paths(str(exc), args)


# The button that gets each model, in the tab that needs it.
_BUTTON = {CAPTIONER.name: ("Download the captioning model", "Caption"),
           CLASSIFIER.name: ("Download the classifier", "Classify")}


def missing_line(name: str) -> str:
    """One line for a model that is not usable: what is wrong and which button fixes it."""
    title = weights.source(name).title
    button, tab = _BUTTON.get(name, ("Download missing models", "Models"))
    where = f"“{button}” in the {tab} tab" + (", or “Download missing models” in the Models tab" if tab != "Models" else "")
    st = weights.check(name)
    if st.state == weights.DAMAGED:
        return f"{title}: its files are damaged ({st.problems[0] if st.problems else 'not the pinned ones'}). Press {where} to repair it."
    return f"{title} is not installed yet. Press {where} to get it (once; after that Loupe works offline)."


def _example_files() -> list[str]:
    return sorted(str(p) for p in EXAMPLES.glob("*.jpg"))


def _slider(opt: Option) -> gr.Slider:
    """A control for one of a model's whole-number options: range, default, words from the registry."""
    return gr.Slider(opt.minimum, opt.maximum, value=opt.default, step=1, label=opt.label, info=opt.help)


def _missing_text(name: str) -> str:
    """The banner above a tab whose model is not usable; its Download button is right below."""
    src = weights.source(name)
    st = weights.check(name)
    button = _BUTTON.get(name, ("Download missing models", ""))[0]
    if st.state == weights.DAMAGED:
        more = f" and {len(st.problems) - 1} more" if len(st.problems) > 1 else ""
        first = st.problems[0] if st.problems else "files do not match their pins"
        return (f"**{src.title}**: its files in `{st.path}` are damaged ({first}{more}). Press "
                f"*{button}* below to repair it: only the bad files are fetched again.")
    if st.state == weights.PARTIAL:
        return (f"**{src.title}** is not installed yet: a download was started ({format_size(st.on_disk)} of "
                f"{format_size(src.size)}). Press *{button}* below to finish it.")
    return (f"**{src.title}** is not installed yet ({format_size(src.size)}, downloaded once and "
            f"verified; after that Loupe works offline). Press *{button}* below, or use *Models → Import* "
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
    with local_turn():  # a share's visitors wait behind the person at this computer
        return get_engine().run_one("caption", path, prefix=prefix, max_new_tokens=int(length), num_beams=int(beams)).text


@friendly
def classify_photo(path: str | None) -> dict[str, float]:
    if not path:
        raise gr.Error("Drop a photo first.", title="Loupe")
    with local_turn():
        return get_engine().run_one("classify", path).as_confidences()


def progress_words(p: weights.DownloadProgress, title: str) -> str:
    """What a download is doing, for the progress line: no byte count before bytes flow."""
    if p.phase == weights.CONNECTING:
        return f"{title}: connecting to {p.host or 'the server'}…"
    if p.phase == weights.VERIFYING:
        return f"{title}: checking {p.file} ({format_size(p.done)} of {format_size(p.total)})…"
    return f"{title}: {format_size(p.overall_done)} of {format_size(p.overall_total)}"


def _download(names: list[str], progress: gr.Progress) -> str:
    """Install `names` in turn; the line to show when it ends: done, cancelled or why not."""
    cancel = _cancel["download"]
    cancel.clear()
    done = []
    for name in names:
        if weights.is_installed(name):
            continue
        src = weights.source(name)

        def report(p: weights.DownloadProgress, title: str = src.title) -> None:
            progress(p.fraction if p.phase != weights.CONNECTING else 0.0, desc=progress_words(p, title))

        report(weights.DownloadProgress(name, "", 0, 0, 0, src.size, phase=weights.CONNECTING, host=src.host))
        try:
            with activity.busy(f"the download of {src.title}"):
                weights.install(name, progress=report, cancel=cancel)
        except Cancelled:
            return ("**Cancelled.** What was downloaded is kept: press the download button again to "
                    "continue from there.")
        except LoupeError as exc:
            log.info("download of %s: %s", name, exc)
            return f"**Not downloaded.** {say(exc)}"
        done.append(src.title)
    return f"{', '.join(done)}: installed and verified." if done else "Every model is installed."


def download_for(name: str):
    """The handler of a tab's Download button: its line (done, cancelled, or why not) goes to
    the panel's own status line, never an error badge."""
    @friendly
    def handler(progress: gr.Progress = gr.Progress()):
        return _download([name], progress)

    return handler


@friendly
def download_all(progress: gr.Progress = gr.Progress()):
    return models_table(), _download(list(weights.sources()), progress)


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


def _after_failure(empty: Any) -> tuple:
    """Outputs after a failed event: the emptied output, then `model_state`'s updates."""
    return (empty, *model_state())


def _weights_dir_after_failure() -> tuple[str, str]:
    """The table and the folder in use: a folder that could not be used was not taken."""
    from engine import paths

    return models_table(), str(paths.weights_dir())


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


# ------------------------------------------------------------------------- layout


def _first_run_panel(name: str, button: str):
    """The 'not installed yet' banner with Download / Cancel and a progress line, wired up.
    Returns (banner, download button, cancel button, the download event)."""
    missing = not weights.is_installed(name)
    banner = gr.Markdown(_missing_text(name), visible=missing, elem_classes="loupe-banner")
    with gr.Row():
        get = gr.Button(button, visible=missing, variant="primary")
        cancel = gr.Button("Cancel download", visible=missing)
    progress = gr.Markdown(elem_classes="loupe-progress", visible=missing, elem_id=f"loupe-download-{name}")
    event = get.click(download_for(name), None, progress, api_visibility="private", concurrency_id="download")
    cancel.click(cancel_download, None, None, api_visibility="private")
    return banner, get, cancel, event



def caption_tab(examples: list[str], *, run: Callable[..., str] = caption_photo,
                downloads: bool = True, sources: tuple[str, ...] = ("upload", "clipboard"),
                scroll: bool = False) -> SimpleNamespace:
    """The Caption tab's contents (inside a `gr.Tab` or any container), wired to `run(path,
    prefix, length, beams) -> caption`. `downloads=False` leaves out the first-run download panel
    (desktop.share); `scroll=True` scrolls to the answer (a phone, where it is below the photo).
    Returns image, output, button, events and panel (banner, download, cancel, download event;
    Nones without downloads)."""
    panel = (_first_run_panel(CAPTIONER.name, "Download the captioning model") if downloads
             else (None, None, None, None))
    with gr.Row():
        with gr.Column():
            image = photo_drop(label="Photo", sources=list(sources), height=360,
                               elem_id="loupe-caption-photo")
            with gr.Accordion("Options", open=False):
                opt = CAPTIONER.option("prefix")
                prefix = gr.Textbox(label=f"{opt.label} (optional)", placeholder="a photograph of",
                                    max_length=opt.maximum)
                length = _slider(CAPTIONER.option("max_new_tokens"))
                beams = _slider(CAPTIONER.option("num_beams"))
            button = gr.Button("Caption", variant="primary",
                               interactive=weights.is_installed(CAPTIONER.name))
        with gr.Column():
            output = gr.Textbox(label="Caption (alt text)", buttons=["copy"], lines=3, interactive=False,
                                elem_id="loupe-caption")
    if examples:
        gr.Examples(examples=[[e] for e in examples], inputs=[image], label="Example photos")
    inputs = [image, prefix, length, beams]

    def changed(path: str | None, prefix: str, length: int, beams: int) -> str:
        """A new photo (dropped, pasted or an example) is captioned at once; a cleared one clears."""
        return run(path, prefix, length, beams) if path else ""

    api = {"api_name": "caption"} if downloads else {"api_visibility": "private"}
    events = [
        button.click(run, inputs, output, concurrency_id="caption", concurrency_limit=1,
                     scroll_to_output=scroll, **api),
        image.change(changed, inputs, output, api_visibility="private", scroll_to_output=scroll,
                     concurrency_id="caption", concurrency_limit=1)]
    return SimpleNamespace(image=image, output=output, button=button, events=events, panel=panel)


def classify_tab(examples: list[str], *, run: Callable[..., Any] = classify_photo,
                 downloads: bool = True, sources: tuple[str, ...] = ("upload", "clipboard"),
                 scroll: bool = False) -> SimpleNamespace:
    """The Classify tab's contents, wired to `run(path) -> {label: confidence}`; as caption_tab."""
    panel = (_first_run_panel(CLASSIFIER.name, "Download the classifier") if downloads
             else (None, None, None, None))
    with gr.Row():
        with gr.Column():
            image = photo_drop(label="Photo", sources=list(sources), height=360,
                               elem_id="loupe-classify-photo")
            button = gr.Button("Classify", variant="primary", elem_id="loupe-classify-btn",
                               interactive=weights.is_installed(CLASSIFIER.name))
        with gr.Column():
            top = CLASSIFIER.option("top").default
            output = gr.Label(num_top_classes=top, label=f"Top {top} labels", elem_id="loupe-labels")
    if examples:
        gr.Examples(examples=[[e] for e in examples], inputs=[image], label="Example photos")

    def changed(path: str | None):
        return run(path) if path else None

    api = {"api_name": "classify"} if downloads else {"api_visibility": "private"}
    events = [
        button.click(run, image, output, concurrency_id="classify", concurrency_limit=2,
                     scroll_to_output=scroll, **api),
        image.change(changed, image, output, api_visibility="private", scroll_to_output=scroll,
                     concurrency_id="classify", concurrency_limit=2)]
    return SimpleNamespace(image=image, output=output, button=button, events=events, panel=panel)


def build_ui() -> gr.Blocks:
    with gr.Blocks(title="Loupe", fill_width=False) as demo:
        with gr.Column(elem_id="loupe-header"):
            gr.Markdown("# Loupe\nDescribe and label your photos, on this computer, offline.")
        examples = _example_files()
        with gr.Tabs():
            with gr.Tab("Caption", id="caption"):
                cap = caption_tab(examples)
            with gr.Tab("Classify", id="classify"):
                cls = classify_tab(examples)
            cap_missing, cap_get, cap_cancel, cap_dl = cap.panel
            cls_missing, cls_get, cls_cancel, cls_dl = cls.panel
            cap_btn, caption, cap_events = cap.button, cap.output, cap.events
            cls_btn, labels, cls_events = cls.button, cls.output, cls.events

            with gr.Tab("Library", id="library"):
                library_tab(demo)

            with gr.Tab("Models", id="models"):
                table = gr.Markdown(models_table(), elem_id="loupe-models")
                # Downloads and imports report here (progress, done, cancelled, why not): never
                # as a badge over the table.
                models_status = gr.Markdown(elem_classes="loupe-progress", elem_id="loupe-models-status")
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
                all_event = all_btn.click(download_all, None, [table, models_status], api_visibility="private",
                                          concurrency_id="download", show_progress_on=models_status)
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
        # After an error (its toast says what happened), the output it was for is cleared, which
        # also takes gradio's "Error" badge off it; a missing model shows its banner and button.
        for events, output, empty in ((cap_events, caption, ""), (cls_events, labels, None)):
            for event in events:
                event.failure(functools.partial(_after_failure, empty), None, [output, *state_outputs],
                              api_visibility="private", show_progress="hidden")
        for event in (imp_event, rm_event):
            event.failure(models_table, None, table, api_visibility="private", show_progress="hidden")
        wdir_event.failure(_weights_dir_after_failure, None, [table, wdir], api_visibility="private",
                           show_progress="hidden")
    # gradio 6 takes theme and css at mount time; desktop.server passes these on. System fonts
    # only: a web font would be fetched from the internet.
    demo.loupe_mount_kwargs = {
        "theme": gr.themes.Default(primary_hue="teal", font=["system-ui", "sans-serif"],
                                   font_mono=["ui-monospace", "monospace"]),
        "css": CSS,
    }
    return demo
