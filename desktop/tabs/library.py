"""The Library tab: scan a folder while watching it work, then review and correct each photo.

    with gr.Tab("Library"):
        desktop.tabs.library.build(demo, folder_picker)

Layout, top to bottom: the folder and Scan / Stop; the models banner (only without models);
the progress area (always there, never 0 px); the scan's own options; the review area (a
paged grid of the folder's photos on the left, the selected photo on the right); rename undo,
export and the scan history.

The scan and the model download run as `desktop.jobs` jobs: a thread, and a generator handler
that redraws the progress area a few times a second from the job's reports.
"""
from __future__ import annotations

import base64
import html
import importlib.util
import logging
import os
import threading
import time
from datetime import datetime
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import gradio as gr

from desktop import downloads, jobs, library_search
from desktop.messages import friendly
from desktop.reveal import show_in_folder
from engine import library, weights
from engine.names import from_ui_token, shown, ui_token
from engine.errors import LoupeError
from engine.library.options import CAPTION_STYLE, EXISTING, RENAME, SIDECAR_STYLE, WRITE
from engine.models.registry import Option, for_task
from engine.units import format_size, format_duration

log = logging.getLogger("loupe.ui")

CAPTIONER, CLASSIFIER = for_task("caption"), for_task("classify")
PAGE_SIZE = 48
GRID_THUMB = 240  # px: sharp for ~150-px cards on a 1.5x screen, ~10 KB each
PHOTO_VIEW = 1024  # px: the selected photo, shown no larger than it is
GRID_EVERY_S = 3.0  # how often the grid is refreshed during a scan

STATE_WORDS = {"all": "All photos", "done": "Captioned", "failed": "Could not be read",
               "changed": "Changed since captioned", "edited": "Your captions"}


def _radio(opt: Option, **kwargs: Any) -> gr.Radio:
    """A declared scan option's choices (engine/library/options.py) as a radio group."""
    return gr.Radio([(words, value) for value, words in opt.choices], value=opt.default, label=opt.label, **kwargs)


# The history speaks as the progress line did ("Stopped: …"), not in the index's own words.
HISTORY_WORDS = {"done": "Done", "cancelled": "Stopped", "interrupted": "Stopped (Loupe was closed)",
                 "running": "Running", "failed": "Failed"}
_cancel = threading.Event()  # Stop: the running scan
_idle_text = "Ready. Type or choose a folder and press Scan."

CSS = """
#loupe-lib-progress {min-height: 3.6em; padding: 0.2em 0.2em}
#loupe-lib-report {max-height: 7em; overflow-y: auto}
#loupe-lib-report:empty {display: none}
.lib-progress-line {font-variant-numeric: tabular-nums; min-height: 1.5em}
.lib-bar {height: 8px; border-radius: 4px; background: var(--neutral-200); overflow: hidden; margin-top: 0.4em}
.lib-bar > div {height: 100%; background: var(--color-accent)}
.lib-note {opacity: 0.75; font-size: 0.9em}
.lib-error {color: var(--error-text-color, #b91c1c)}
.lib-grid {display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; padding: 2px}
.lib-card {all: unset; box-sizing: border-box; cursor: pointer; display: flex; flex-direction: column;
           border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 6px; min-width: 0}
.lib-card:hover, .lib-card:focus-visible {border-color: var(--color-accent)}
.lib-card.sel {border-color: var(--color-accent); box-shadow: 0 0 0 2px var(--color-accent-soft)}
.lib-thumb {height: 120px; display: flex; align-items: center; justify-content: center;
            background: var(--neutral-100); border-radius: 4px}
.lib-thumb img {max-width: 100%; max-height: 120px; width: auto; height: auto; object-fit: contain}
.lib-name {font-weight: 600; font-size: 0.85em; margin-top: 4px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap}
.lib-cap {font-size: 0.85em; line-height: 1.25; margin-top: 2px; overflow-wrap: anywhere;
          display: -webkit-box; -webkit-line-clamp: 4; -webkit-box-orient: vertical; overflow: hidden}
.lib-labels, .lib-path {font-size: 0.75em; opacity: 0.7; overflow: hidden; text-overflow: ellipsis; white-space: nowrap}
.lib-state {font-size: 0.75em; font-weight: 600}
.lib-state.failed {color: var(--error-text-color, #b91c1c)}
.lib-empty {opacity: 0.7; padding: 1em 0}
#loupe-lib-photo img {object-fit: contain; max-width: 100%; max-height: 100%; width: auto; height: auto}
#loupe-lib-pick {position: absolute; width: 1px; height: 1px; overflow: hidden; opacity: 0}
"""

GRID_JS = """
element.addEventListener('click', (event) => {
  const card = event.target.closest('[data-path]');
  if (!card) return;
  element.querySelectorAll('.lib-card.sel').forEach((c) => c.classList.remove('sel'));
  card.classList.add('sel');
  const box = document.querySelector('#loupe-lib-pick textarea, #loupe-lib-pick input');
  // a click on the same card again must still count: gradio sends "change" only for a new value
  box.value = card.dataset.path + '\\n' + Date.now();
  box.dispatchEvent(new Event('input', {bubbles: true}));
});
"""


# ------------------------------------------------------------------------- progress area



def progress_html(line: str, fraction: float | None = None, note: str = "", error: bool = False) -> str:
    """The progress area: one line, a bar (empty before a scan), an optional second line."""
    width = 0.0 if fraction is None else max(0.0, min(1.0, fraction)) * 100
    cls = "lib-progress-line lib-error" if error else "lib-progress-line"
    out = (f'<div class="{cls}" id="loupe-lib-progress-line">{html.escape(shown(line))}</div>'
           f'<div class="lib-bar" role="progressbar" aria-label="Scan progress" aria-valuenow="{width:.0f}" aria-valuemin="0" '
           f'aria-valuemax="100"><div style="width:{width:.1f}%"></div></div>')
    if note:
        out += f'<div class="lib-note">{html.escape(shown(note))}</div>'
    return out


def describe_progress(p: Any) -> tuple[str, float | None]:
    """One report -> ("12 of 240 · IMG_0042.jpg · 0.8 photos/s · about 4 min left", fraction)."""
    phase = p.phase
    current = os.path.basename(p.current or "")
    if phase == "finding":
        return (f"Finding photos… {p.total} so far" if p.total else "Finding photos…"), None
    parts = [f"{p.done} of {p.total}"]
    batch = getattr(p, "batch", 0)
    if current and phase == "captioning" and batch > 1:
        parts.append(f"captioning {current} and {batch - 1} more")
    elif current:
        parts.append(current)
    if phase == "checking":
        parts.append("checking what is already done")
    if p.rate:
        parts.append(f"{p.rate:.1f} photos/s" if p.rate < 10 else f"{p.rate:.0f} photos/s")
    if p.eta_s:
        parts.append(f"about {format_duration(p.eta_s)} left")
    return " · ".join(parts), (p.fraction if p.total else None)


def _summary_line(summary: Any) -> str:
    parts = [f"{summary.total} photos", f"{summary.done} captioned"]
    if summary.skipped:
        parts.append(f"{summary.skipped} already done")
    if summary.failed:
        parts.append(f"{summary.failed} could not be read")
    parts.append(f"{summary.written} written")
    if summary.write_failed:
        parts.append(f"{summary.write_failed} not written")
    if summary.renamed:
        parts.append(f"{summary.renamed} renamed")
    if getattr(summary, "embedded", 0):
        parts.append(f"{summary.embedded} embedded for search")
    return shown(", ".join(parts) + summary.decisions_text() + ".")


def summary_markdown(summary: Any) -> str:
    """The problems and the decisions Loupe took, as a Markdown list (first 200 of each)."""
    lines: list[str] = []
    for title, rows in (("Problems", summary.problem_lines()),  # read-only places: one line per folder
                        ("Decided for you", [(n.path, n.message) for n in summary.notices])):
        if rows:
            lines += ["", f"**{title}**"] + [f"- {shown(Path(path).name)}: {shown(text)}" for path, text in rows[:200]]
            if len(rows) > 200:
                lines.append(f"- … and {len(rows) - 200} more (Export lists them all)")
    lines += [""] + list(getattr(summary, "notes", []))  # e.g. search by meaning is off (once per folder)
    return "\n".join(lines).strip()


# ------------------------------------------------------------------------- grid


def _data_uri(path: str) -> str | None:
    try:
        data = library.thumbnail(path, GRID_THUMB).read_bytes()
    except (LoupeError, OSError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def _labels_text(item: Any, n: int = 3) -> str:
    return " · ".join(f"{lab.name} {lab.score * 100:.0f}%" for lab in item.labels[:n])


def _where(path: str, folder: str) -> str:
    parent = Path(path).parent
    try:
        rel = parent.relative_to(Path(folder).expanduser().resolve())
        return str(rel) if str(rel) != "." else parent.name
    except (ValueError, OSError):
        return str(parent)


def card_html(item: Any, folder: str) -> str:
    uri = _data_uri(item.path) if item.state != "failed" else None
    img = (f'<img src="{uri}" alt="{html.escape(shown(item.name))}" loading="lazy">' if uri
           else '<span class="lib-note">no preview</span>')
    state = ""
    if item.state == "failed":
        # a photo with a caption was read: what failed is writing or renaming it (a read-only card)
        what = "Not written" if item.caption else "Could not be read"
        state = f'<div class="lib-state failed">{what}: {html.escape(item.reason or "")}</div>'
    elif item.state == "changed":
        state = '<div class="lib-state">Changed since it was captioned</div>'
    elif item.caption_by == "person":
        state = '<div class="lib-state">Your caption</div>'
    # names that are not UTF-8: shown with U+FFFD, carried exactly as a token (engine/names.py)
    return (f'<button class="lib-card" data-path="{html.escape(ui_token(item.path))}" '
            f'title="{html.escape(shown(item.path))}">'
            f'<div class="lib-thumb">{img}</div><div class="lib-name">{html.escape(shown(item.name))}</div>{state}'
            f'<div class="lib-cap">{html.escape(item.caption)}</div>'
            f'<div class="lib-labels">{html.escape(_labels_text(item))}</div>'
            f'<div class="lib-path">{html.escape(shown(_where(item.path, folder)))}</div></button>')


def page_view(folder: str, text: str, state: str, page: int) -> tuple[str, str, int]:
    """(grid HTML, "37 photos · page 1 of 1", the page shown, clamped) for one filter and page."""
    folder = (folder or "").strip()
    text = (text or "").strip()
    where = folder if folder and Path(folder).expanduser().is_dir() else None
    if text:  # ranked by words and meaning fused (issue 21)
        return library_search.search_view(where, text, state, page, PAGE_SIZE, lambda items: _grid(items, folder))
    first = library.photos(folder=where, text=text, state=state, offset=0, limit=1)
    pages = max(1, -(-first.total // PAGE_SIZE))
    page = max(0, min(int(page or 0), pages - 1))
    result = library.photos(folder=where, text=text, state=state, offset=page * PAGE_SIZE, limit=PAGE_SIZE)
    total = result.total
    noun = "photo" if total == 1 else "photos"
    if text:
        head = f"{total} {noun} {'matches' if total == 1 else 'match'} “{text}”"
    else:
        head = f"{total} {noun}" + ("" if state == "all" else f" · {STATE_WORDS[state].lower()}")
    label = f"{head} · page {page + 1} of {pages}"
    if not result.items:
        empty = ("No photos here yet: scan a folder to see them." if not text and state == "all"
                 else "No photos match; clear the filter to see them all.")
        return f'<div class="lib-empty">{empty}</div>', label, page
    return _grid(result.items, folder), label, page


def _grid(items: list[Any], folder: str) -> str:
    return '<div class="lib-grid">' + "".join(card_html(item, folder) for item in items) + "</div>"


def more_like_this(folder: str, path: str) -> tuple[str, str, int]:
    """The grid ranked by how much each photo looks like the selected one."""
    if not path:
        raise LoupeError("Choose a photo in the grid first.")
    where = folder.strip() if folder and Path(folder.strip()).expanduser().is_dir() else None
    return library_search.similar_view(where, path, PAGE_SIZE, lambda items: _grid(items, folder))


def search_loading(text: str) -> Any:
    """Before a search: the page line says so when the first search loads the encoder's text side."""
    if (text or "").strip() and library_search.needs_loading():
        return "Loading the search model (first search)…"
    return gr.update()


# ------------------------------------------------------------------------- handlers


def _models_missing() -> list[str]:
    return [spec.name for spec in (CAPTIONER, CLASSIFIER) if not weights.is_installed(spec.name)]


def _models_text() -> str:
    missing = _models_missing()
    if not missing:
        return ""
    size = sum(weights.source(n).size for n in missing)
    names = " and ".join(weights.source(n).title for n in missing)
    return (f"Scanning needs {names} ({format_size(size)}, downloaded once, then Loupe works offline). "
            f"Press **Download the models** here.")


def models_state():
    missing = bool(_models_missing())
    return gr.update(visible=missing, value=_models_text()), gr.update(visible=missing)


def models_state_all() -> list:
    """The models row, its text and button: after models change anywhere in the app."""
    missing = bool(_models_missing())
    return [gr.update(visible=missing), *models_state()]


@dataclass
class LibraryTab:
    models_outputs: list  # what `models_state_all` updates
    events: list  # after which the other tabs' model state is refreshed


def _scan_options(style: str, prefix: str, write: str, sidecar: str, existing: str, rename: bool,
                  threshold: float, cluster: str = "") -> dict[str, Any]:
    options: dict[str, Any] = {"write": write, "sidecar_style": sidecar, "existing": existing,
                               "rename": bool(rename), "caption_style": style,
                               "keyword_threshold": int(threshold)}
    if (prefix or "").strip():
        options["prefix"] = prefix.strip()
    if (cluster or "").strip():
        options["ray_address"] = cluster.strip()
    return options


def _ray_installed() -> bool:
    """Whether the Ray extra is installed; found without importing it (Ray is slow to import)."""
    return importlib.util.find_spec("ray") is not None


#: a Scan press not yet started as a scan counts as one for this long (its run waits in the queue)
_ASKED_GRACE_S = 5.0
_scan_lock = threading.Lock()
_scan_state = {"running": "", "asked": float("-inf")}  # the folder being scanned; when Scan was last let through


def _press_waiting() -> bool:
    """Whether a Scan press was let through and its scan has not started yet (it waits in the
    queue behind a scan that is stopping, or for at most `_ASKED_GRACE_S`). Under `_scan_lock`."""
    asked = _scan_state["asked"]
    return asked > float("-inf") and (bool(_scan_state["running"]) or time.monotonic() - asked < _ASKED_GRACE_S)


def begin_scan() -> Any:
    """The Scan button's first step (queued, so its message shows; enables Stop). Refused with a
    one-line message while a scan runs in this app (any page) or was just asked for: another
    press would queue a second scan behind it, which started by itself when the first ended or
    was stopped. Once Stop was pressed, one press is let through: the person asked to resume,
    and the scan starts as soon as the stopping one has ended (between photos)."""
    with _scan_lock:
        running = _scan_state["running"]
        stopping = bool(running) and _cancel.is_set()
        if _press_waiting() or (running and not stopping):
            name = shown(Path(running).expanduser().name or running) if running else ""
            raise gr.Error(f"A scan{f' of {name}' if name else ''} is already running: "
                           "press Stop to end it, or wait for it to finish.", title="Loupe")
        _scan_state["asked"] = time.monotonic()
    return gr.update(interactive=True)


def end_scan() -> Any:
    """After a scan's handler ends: Stop is disabled, unless the scan pressed for after Stop
    (see `begin_scan`) is about to start or has started."""
    with _scan_lock:
        busy = bool(_scan_state["running"]) or _press_waiting()
    return gr.update(interactive=busy)


def run_scan(folder: str, style: str, prefix: str, write: str, sidecar: str, existing: str, rename: bool,
             threshold: float, text: str, state: str, cluster: str = "") -> Iterator[tuple]:
    """The Scan button: yields (progress HTML, report Markdown, grid HTML, page label, page) a few
    times a second while the scan runs in a thread; Stop ends it between photos. While it runs,
    `begin_scan` refuses another."""
    with _scan_lock:
        _scan_state.update(running=(folder or "").strip() or "a folder", asked=float("-inf"))
    try:
        yield from _run_scan(folder, style, prefix, write, sidecar, existing, rename, threshold, text, state, cluster)
    finally:
        with _scan_lock:
            _scan_state["running"] = ""


def _run_scan(folder: str, style: str, prefix: str, write: str, sidecar: str, existing: str, rename: bool,
              threshold: float, text: str, state: str, cluster: str) -> Iterator[tuple]:
    folder = (folder or "").strip()
    keep = gr.update()
    if not folder:
        yield progress_html("Type or choose a folder of photos first.", error=True), keep, keep, keep, keep
        return
    if _models_missing():
        yield (progress_html("The models are not installed yet: press “Download the models” above.", error=True),
               keep, keep, keep, keep)
        return
    _cancel.clear()
    options = _scan_options(style, prefix, write, sidecar, existing, rename, threshold, cluster)
    name = Path(folder).expanduser().name or folder
    last = None
    line, fraction = f"Starting the scan of {name}…", None
    yield progress_html(line, fraction), "", keep, keep, keep
    next_grid = time.monotonic() + GRID_EVERY_S
    for step in jobs.run(lambda report: library.scan(folder, progress=report, cancel=_cancel, **options),
                         what=f"a scan of {name}", cancel=_cancel):
        if isinstance(step, jobs.Outcome):
            break
        if step:
            last = step[-1]
            line, fraction = describe_progress(last)
        if _cancel.is_set():
            line = "Stopping… photos already captioned are kept."
        if time.monotonic() >= next_grid:
            next_grid = time.monotonic() + GRID_EVERY_S
            try:
                grid, label, page = page_view(folder, text, state, 0)
                yield progress_html(line, fraction), keep, grid, label, page
                continue
            except LoupeError:
                pass  # the index is busy with the scan's own write; next time
        yield progress_html(line, fraction), keep, keep, keep, keep
    grid, label, page = keep, keep, keep
    try:
        grid, label, page = page_view(folder, text, state, 0)
    except LoupeError:
        pass
    summary = step.value
    if step.kind == jobs.FAILED:
        yield progress_html(f"Could not scan {name}: {step.message}", None, error=True), "", grid, label, page
    elif step.kind == jobs.CANCELLED or summary.cancelled:
        done = summary.done if summary is not None else (getattr(last, "inferred", 0) if last else 0)
        yield (progress_html(f"Stopped: {done} photo{'s' if done != 1 else ''} captioned and kept; "
                             "scan again to resume.", fraction),
               summary_markdown(summary) if summary is not None else "", grid, label, page)
    else:
        took = ""
        if summary.rate:
            took = f" · {summary.rate:.1f} photos/s"
        yield (progress_html(f"Done: {_summary_line(summary)}{took}", 1.0), summary_markdown(summary),
               grid, label, page)


def stop_scan() -> None:
    """Stop: the running scan ends between photos (the scan handler then says what was kept),
    or the model download started here ends at once, keeping what came."""
    _cancel.set()
    downloads.cancel()


def download_models() -> Iterator[tuple]:
    """The in-place Download button: fetches the missing models, progress in the progress area."""
    keep = gr.update()
    for line, fraction, end in downloads.download(_models_missing()):
        if end != jobs.DONE:
            yield progress_html(line, fraction, error=end == jobs.FAILED), keep, keep
        else:
            banner, button = models_state()
            yield progress_html("Models installed and verified. " + _idle_text, 1.0), banner, button


def select_photo(path: str):
    """A card was clicked ("path\nclick time"): the photo large, its caption to edit, its labels,
    where it is."""
    path = from_ui_token((path or "").split("\n")[0].strip())
    item = library.photo(path) if path else None
    if item is None:
        return None, gr.update(value="", interactive=False), "", None, "", ui_token(path)
    image = None
    try:
        from PIL import Image

        with Image.open(library.thumbnail(item.path, PHOTO_VIEW)) as im:
            image = im.copy()
    except (LoupeError, OSError):
        pass
    by = "**Your caption**" if item.caption_by == "person" else "Caption by Loupe — edit it and press Save"
    if item.state == "failed":
        by = f"{'Not written' if item.caption else 'Could not be read'}: {item.reason or 'unknown reason'}"
    elif item.state == "changed":
        by += " · the file changed since it was captioned: scan again to update"
    labels = {lab.name: float(lab.score) for lab in item.labels} or None
    return (image, gr.update(value=item.caption, interactive=item.state != "failed"), by, labels,
            f"`{shown(item.path)}`", ui_token(item.path))


def _problem(text: str) -> str:
    """A message in the panel itself: it goes away with the next action (no badge that stays)."""
    return f'<span class="lib-error">{html.escape(text)}</span>'


def save_caption(path: str, caption: str, folder: str, text: str, state: str, page: int,
                 confirm: list | None = None):
    """Save: the person's caption, written the same safe way a scan writes, marked as theirs.
    A description someone else wrote is shown first and replaced only by a second Save of the
    same text (`confirm` holds what the first one asked about). A caption that cannot be saved
    is said in the panel, naming the photo. -> (panel line, grid, page label, page, confirm)."""
    keep = gr.update()
    path = from_ui_token(path or "")
    if not path:
        return _problem("Choose a photo in the grid first."), keep, keep, keep, None
    confirmed = confirm == [ui_token(path), caption]
    try:
        result = library.set_caption(path, caption or "", replace_others=confirmed)
    except library.DescriptionExists as exc:
        return (_problem(f"This photo already has a description someone wrote: “{exc.existing}”. "
                         "Press Save again to replace it with yours, or include it in your caption."),
                keep, keep, keep, [ui_token(path), caption])
    except LoupeError as exc:
        return _problem(str(exc)), keep, keep, keep, None
    grid, label, page = page_view(folder, text, state, page)
    return "**Your caption** · " + result.message, grid, label, page, None


def reveal(path: str) -> str:
    """Show in folder: what happened, in one line."""
    if not path:
        return _problem("Choose a photo in the grid first.")
    try:
        return show_in_folder(from_ui_token(path))
    except LoupeError as exc:
        return _problem(str(exc))


def undo_renames(folder: str, text: str, state: str, page: int):
    count = library.undo()
    message = (f"Put back {count} renamed photo{'s' if count != 1 else ''} under their old names."
               if count else "Nothing to undo: the last scan renamed no photos.")
    grid, label, page = page_view(folder, text, state, page)
    return message, grid, label, page


def export_index(fmt: str, target: str):
    """Export to the chosen path, or to a file offered for download when no path is given."""
    target = (target or "").strip()
    if target:
        path = Path(target).expanduser()
        if path.suffix.lower() not in (".csv", ".json"):
            path = path.with_name(path.name + "." + fmt)  # "notes.txt" -> "notes.txt.csv": said below
    else:
        folder = Path(os.environ.get("GRADIO_TEMP_DIR") or Path.home()) / "exports"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"loupe-captions-{datetime.now():%Y-%m-%d-%H%M%S}.{fmt}"
    rows = library.export(path)
    where = f"to {path}" if target else f"as {path.name}: use the download button"
    message = f"Exported {rows} photo{'s' if rows != 1 else ''} {where}."
    return (gr.update(value=str(path), visible=not target), message)


def history_rows() -> list[list[Any]]:
    rows = []
    for s in reversed(library.scans()):
        started = datetime.fromtimestamp(s["started"]).strftime("%Y-%m-%d %H:%M") if s.get("started") else ""
        status = HISTORY_WORDS.get(s.get("status", ""), s.get("status", ""))
        rows.append([started, s.get("folder", ""), status, s.get("total", 0), s.get("done", 0),
                     s.get("skipped", 0), s.get("failed", 0), s.get("renamed", 0)])
    return rows[:50]


def pick_folder(picker: Callable[[], str | None] | None) -> Callable[[], Any]:
    """The Browse… handler: the folder chosen in `picker` (the window's native dialog), or the
    field unchanged when the person cancels."""
    def handler() -> Any:
        if picker is None:
            raise gr.Error("The folder dialog needs the Loupe window; type the path instead.", title="Loupe")
        return picker() or gr.update()

    return handler


# ------------------------------------------------------------------------- layout


def build(demo: gr.Blocks | None = None, folder_picker: Callable[[], str | None] | None = None) -> LibraryTab:
    """Build the Library tab's components and events inside the current gr.Tab; with `demo`,
    also refresh the models banner and the scan history each time the page loads.
    `folder_picker` opens the window's native folder chooser (the chosen path, or None when
    cancelled); without it (a browser) there is no Browse… button."""
    with gr.Row(equal_height=True, elem_id="loupe-lib-top"):
        folder = gr.Textbox(label="Folder of photos", show_label=False, container=False, scale=5,
                            placeholder="Folder of photos, e.g. /home/me/Pictures", elem_id="loupe-lib-folder")
        pick = gr.Button("Browse…", scale=0, min_width=110, visible=folder_picker is not None)
        scan = gr.Button("Scan", variant="primary", scale=0, min_width=110, elem_id="loupe-lib-scan")
        stop = gr.Button("Stop", scale=0, min_width=110, elem_id="loupe-lib-stop", interactive=False)
    with gr.Row(visible=bool(_models_missing())) as models_row:
        models_text = gr.Markdown(_models_text(), elem_classes="loupe-banner")
        get_models = gr.Button("Download the models", variant="primary", scale=0, min_width=200,
                               elem_id="loupe-lib-download")
    progress = gr.HTML(progress_html(_idle_text), elem_id="loupe-lib-progress", min_height=60)
    report = gr.Markdown(elem_id="loupe-lib-report")

    with gr.Accordion("Scan options", open=False, elem_id="loupe-lib-options"):
        with gr.Row():
            style = _radio(CAPTION_STYLE, info="Detailed takes longer per photo")
            opt = CAPTIONER.option("prefix")
            prefix = gr.Textbox(label=f"{opt.label} (optional)", placeholder="a photograph of",
                                max_length=opt.maximum)
            kt = library.KEYWORD_THRESHOLD
            threshold = gr.Slider(kt.minimum, kt.maximum, value=kt.default, step=1, label=kt.label, info=kt.help)
        with gr.Row():
            write = _radio(WRITE)
            sidecar = _radio(SIDECAR_STYLE)
            existing = _radio(EXISTING, info="in the photo or its sidecar")
            rename = gr.Checkbox(RENAME.default, label=RENAME.label, info="Undo below puts the names back")
        with gr.Accordion("Advanced: scan on a Ray cluster", open=False, visible=_ray_installed()):
            cluster = gr.Textbox(label="Ray cluster address (optional)", placeholder="local, auto or ray://head:10001",
                                 info="Leave empty to scan on this computer. The folder must be one every "
                                      "node of the cluster can read.", elem_id="loupe-lib-ray")

    with gr.Row():
        with gr.Column(scale=3, min_width=420):
            with gr.Row(equal_height=True):
                text = gr.Textbox(label="Search by words and meaning", placeholder="red car at night", scale=3,
                                  elem_id="loupe-lib-text")
                state = gr.Dropdown([(STATE_WORDS[s], s) for s in library.REVIEW_STATES], value="all",
                                    label="Show", scale=2, elem_id="loupe-lib-state")
            grid = gr.HTML('<div class="lib-empty">No photos here yet: scan a folder to see them.</div>',
                           elem_id="loupe-lib-grid", js_on_load=GRID_JS)
            with gr.Row(equal_height=True):
                prev = gr.Button("← Previous", size="sm", min_width=100, scale=0)
                page_label = gr.Markdown("", elem_id="loupe-lib-page")
                nxt = gr.Button("Next →", size="sm", min_width=100, scale=0)
            page = gr.State(0)
        with gr.Column(scale=2, min_width=320, elem_id="loupe-lib-detail"):
            picture = gr.Image(label="Photo", type="pil", format="jpeg", interactive=False, height=300,
                               buttons=["fullscreen"], elem_id="loupe-lib-photo")
            caption_by = gr.Markdown("Choose a photo in the grid to see and correct it.", elem_id="loupe-lib-by")
            caption = gr.Textbox(label="Caption", lines=2, interactive=False, elem_id="loupe-lib-caption")
            with gr.Row():
                save = gr.Button("Save caption", variant="primary", size="sm", elem_id="loupe-lib-save")
                show = gr.Button("Show in folder", size="sm", elem_id="loupe-lib-show")
                like = gr.Button("More like this", size="sm", elem_id="loupe-lib-like")
            labels = gr.Label(num_top_classes=5, label="Labels", show_heading=False, elem_id="loupe-lib-labels")
            where = gr.Markdown(elem_id="loupe-lib-path")
            said = gr.Markdown(elem_id="loupe-lib-said")
        picked = gr.Textbox(elem_id="loupe-lib-pick", show_label=False, container=False)
    selected = gr.State("")

    with gr.Accordion("Undo renames, export, scan history", open=False, elem_id="loupe-lib-tools"):
        with gr.Row():
            with gr.Column():
                undo = gr.Button("Undo the last scan's renames", size="sm", elem_id="loupe-lib-undo")
                undo_said = gr.Markdown(elem_id="loupe-lib-undo-said")
            with gr.Column():
                with gr.Row(equal_height=True):
                    fmt = gr.Radio([("CSV (spreadsheets)", "csv"), ("JSON", "json")], value="csv", label="Export as")
                    target = gr.Textbox(label="Save to (optional)", placeholder="leave empty to download")
                export = gr.Button("Export captions and labels", elem_id="loupe-lib-export")
                exported = gr.File(label="Exported file", visible=False, elem_id="loupe-lib-exported")
                export_said = gr.Markdown(elem_id="loupe-lib-export-said")
        history = gr.Dataframe(headers=["Started", "Folder", "Status", "Photos", "Captioned", "Already done",
                                        "Unreadable", "Renamed"], value=None, interactive=False,
                               label="Scan history (newest first)", elem_id="loupe-lib-history")

    view = [grid, page_label, page]
    filt = [folder, text, state, page]
    scan_inputs = [folder, style, prefix, write, sidecar, existing, rename, threshold, text, state, cluster]
    # queued: a gr.Error from an unqueued event shows no message in the page (gradio 6.31)
    running = scan.click(begin_scan, None, stop, api_visibility="private", show_progress="hidden")
    # "multiple": a press let through while the stopped scan winds down (see `begin_scan`) must
    # reach the queue; with "once" the page dropped it while this page's last scan was pending
    scan_event = running.success(run_scan, scan_inputs, [progress, report, grid, page_label, page],
                            api_visibility="private", concurrency_id="scan", concurrency_limit=1,
                            show_progress="hidden", trigger_mode="multiple")
    scan_event.then(friendly(history_rows), None, history, api_visibility="private", show_progress="hidden")
    scan_event.then(end_scan, None, stop, api_visibility="private", show_progress="hidden", queue=False)
    # refused: the message says "press Stop", so Stop is there in this page too (a scan another
    # page or a page before a reload started runs in this app and can be stopped from here)
    running.failure(end_scan, None, stop, api_visibility="private", show_progress="hidden", queue=False)
    stop.click(stop_scan, None, None, api_visibility="private", show_progress="hidden", queue=False)
    dl = get_models.click(lambda: gr.update(interactive=True), None, stop, queue=False, api_visibility="private",
                          show_progress="hidden").then(download_models, None, [progress, models_text, get_models], api_visibility="private",
                          concurrency_id="download", show_progress="hidden")
    dl.then(lambda: gr.update(visible=bool(_models_missing())), None, models_row, api_visibility="private")
    dl.then(lambda: gr.update(interactive=False), None, stop, api_visibility="private", show_progress="hidden",
            queue=False)
    pick.click(friendly(pick_folder(folder_picker)), None, folder, api_visibility="private")

    def first(folder_, text_, state_, _page):
        return page_view(folder_, text_, state_, 0)

    def turn(step: int):
        return lambda folder_, text_, state_, page_: page_view(folder_, text_, state_, int(page_ or 0) + step)

    text.submit(friendly(search_loading), text, page_label, api_visibility="private", show_progress="hidden",
                queue=False).then(friendly(first), filt, view, api_visibility="private", show_progress="hidden")
    for trigger in (state.change, folder.submit):
        trigger(friendly(first), filt, view, api_visibility="private", show_progress="hidden")
    like.click(friendly(more_like_this), [folder, selected], view, api_visibility="private", show_progress="hidden")
    prev.click(friendly(turn(-1)), filt, view, api_visibility="private", show_progress="hidden")
    nxt.click(friendly(turn(1)), filt, view, api_visibility="private", show_progress="hidden")
    picked.change(friendly(select_photo), picked, [picture, caption, caption_by, labels, where, selected],
                 api_visibility="private", show_progress="hidden")
    confirm = gr.State(None)  # [path, caption] the last Save asked to confirm
    save.click(friendly(save_caption), [selected, caption, folder, text, state, page, confirm],
               [caption_by] + view + [confirm], api_visibility="private", show_progress="hidden")
    show.click(friendly(reveal), selected, said, api_visibility="private", show_progress="hidden")
    undo.click(friendly(undo_renames), filt, [undo_said] + view, api_visibility="private", show_progress="hidden")
    export.click(friendly(export_index), [fmt, target], [exported, export_said], api_visibility="private",
                 show_progress="hidden")
    if demo is not None:  # what the CLI, another window or a download changed since the page was built
        demo.load(models_state, None, [models_text, get_models], api_visibility="private")
        demo.load(lambda: gr.update(visible=bool(_models_missing())), None, models_row, api_visibility="private")
        demo.load(friendly(history_rows), None, history, api_visibility="private", show_progress="hidden")
        demo.load(friendly(first), filt, view, api_visibility="private", show_progress="hidden")
    return LibraryTab([models_row, models_text, get_models], [dl])
