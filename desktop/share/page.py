"""The shared page: Loupe's Caption and Classify tabs (desktop.ui's tab builders) for visitors.

No Library, Models, settings, downloads or folder picker. Visitors' photos are read by the same
loader as the person's own (engine.images: same formats, same pixel limit), wait behind the
person at this computer (desktop.share.gate), one at a time, in a queue of MAX_WAITING. Errors are
shown to the visitor in one line and never logged with their details (a visitor's file name is
theirs): only counted. (gradio would print an error's message with its traceback on stderr,
which a windowed build writes to the log: visitors' errors are not printed.)
"""
from __future__ import annotations

import logging
import socket
import threading
from typing import Any, Callable

import gradio as gr

from engine import get_engine
from engine.errors import LoupeError, WeightsDamaged, WeightsMissing

from desktop.messages import user_paths
from desktop.share.gate import ShareEnded, visitor_turn

log = logging.getLogger("loupe.ui")

MAX_WAITING = 8  # visitors' requests the share's queue holds; more are told it is full (503)

CSS = """
#loupe-share-header h1 {margin-bottom: 0}
#loupe-share-header p {margin-top: 0.2em}
@media (max-width: 480px) {
  .gradio-container {padding-left: 8px !important; padding-right: 8px !important}
  #loupe-caption-photo, #loupe-classify-photo {min-height: 260px}
}
"""

_MISSING = {"caption": "The captioning model is not installed on the computer sharing Loupe.",
            "classify": "The classifier is not installed on the computer sharing Loupe."}


def _visitor(share: Any, task: str, run: Callable[..., Any]) -> Callable[..., Any]:
    """`run(path, *options)` for a visitor: waits its turn, counts, says errors in one line."""
    one_at_a_time = threading.Lock()

    def handler(path: str | None, *options: Any) -> Any:
        if not path:
            raise gr.Error("Take or pick a photo first.", title="Loupe", print_exception=False)
        try:
            with one_at_a_time, visitor_turn(share.ended):
                result = run(path, *options)
        except ShareEnded:
            raise gr.Error("This share has ended.", title="Loupe", print_exception=False) from None
        except (WeightsMissing, WeightsDamaged):
            raise gr.Error(_MISSING[task], title="Loupe", print_exception=False) from None
        except LoupeError as exc:
            share.count_refused()
            raise gr.Error(user_paths(str(exc), [path]), title="Loupe", print_exception=False) from None
        except Exception as exc:  # a bug: the class name only, never the visitor's file
            share.count_refused()
            log.error("a visitor's %s failed: %s", task, type(exc).__name__)
            raise gr.Error("Something went wrong on the sharing computer.", title="Loupe", print_exception=False) from None
        share.count(task)
        return result

    return handler


def _caption(path: str, prefix: str, length: int, beams: int) -> str:
    return get_engine().run_one("caption", path, prefix=prefix, max_new_tokens=int(length),
                                num_beams=int(beams)).text


def _classify(path: str, top: int | None = None) -> dict[str, float]:
    options = {} if top is None else {"top": int(top)}
    return get_engine().run_one("classify", path, **options).as_confidences()


def build_share_ui(share: Any) -> gr.Blocks:
    """The Blocks a share serves (called by desktop.server.serve). `share`: the
    desktop.share.session.Share it belongs to (its `ended` event, `count`, `count_refused`; not
    imported here, so session -> page stays one way)."""
    from desktop.tabs import caption, classify
    from desktop.tabs.photo_drop import example_files
    from desktop.ui import PAGE_JS, theme

    examples = example_files()
    with gr.Blocks(title="Loupe (shared)", fill_width=False) as demo:
        with gr.Column(elem_id="loupe-share-header"):
            gr.Markdown(
                f"# Loupe\nShared from **{socket.gethostname()}** on this network. Take or pick a "
                "photo to get its caption and labels. Your photos stay on that computer only "
                "until the share ends, then they are deleted. This link uses plain HTTP: others "
                "on this network could see what you send.")
        with gr.Tabs():
            with gr.Tab("Caption", id="caption"):
                cap = caption.build(examples, run=_visitor(share, "caption", _caption),
                                     downloads=False, sources=("upload",), scroll=True)
            with gr.Tab("Classify", id="classify"):
                cls = classify.build(examples, run=_visitor(share, "classify", _classify),
                                      downloads=False, sources=("upload",), scroll=True)
        for events, output, empty in ((cap.events, cap.output, ""), (cls.events, cls.output, None)):
            for event in events:
                event.failure(lambda e=empty: e, None, output, api_visibility="private",
                              show_progress="hidden")
    demo.queue(max_size=MAX_WAITING, default_concurrency_limit=1)
    demo.loupe_mount_kwargs = {
        "theme": theme(),  # Loupe's own: contrast at least 4.5:1
        "css": CSS,
        "head": f"<script>{PAGE_JS}</script>",  # the same accessibility fix-ups as Loupe's page
    }
    return demo

