"""The page's words: Loupe's errors as one line a person can act on, and the lines that say
what a model or a download is doing.

Messages speak of what the person sees: the file name they dropped (never gradio's upload
copy), the button to press (never a command to type). Every handler is wrapped in `friendly`,
which turns Loupe's own errors into a `gr.Error` with the one-line message; anything unexpected
is logged with its traceback and shown as a short message, never a stack trace.
"""
from __future__ import annotations

import functools
import logging
import re
from typing import Any, Callable

import gradio as gr

from engine import weights
from engine.errors import Cancelled, LoupeError, Unreachable, WeightsDamaged, WeightsMissing
from engine.models.registry import for_task
from engine.units import format_size

CAPTIONER, CLASSIFIER = for_task("caption"), for_task("classify")

log = logging.getLogger("loupe.ui")

UNEXPECTED = "Something went wrong ({}); details are in the log file."


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
            raise gr.Error(UNEXPECTED.format(type(exc).__name__), title="Loupe") from None

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


def missing_text(name: str) -> str:
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


def progress_words(p: weights.DownloadProgress, title: str) -> str:
    """What a download is doing, for the progress line: no byte count before bytes flow."""
    if p.phase == weights.CONNECTING:
        return f"{title}: connecting to {p.host or 'the server'}…"
    if p.phase == weights.VERIFYING:
        return f"{title}: checking {p.file} ({format_size(p.done)} of {format_size(p.total)})…"
    return f"{title}: {format_size(p.overall_done)} of {format_size(p.overall_total)}"
