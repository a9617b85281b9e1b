"""File names as the OS gives them: bytes that need not be UTF-8.

Python hands such a name over as a str holding lone surrogates (U+DC80..U+DCFF, PEP 383's
surrogateescape), and Loupe keeps it that way everywhere a path travels (walk, index,
sidecars, renames, undo, export, search), so the file is always found again. Three edges
cannot take surrogates and go through here:

    to_db / from_db   SQLite text must be UTF-8: each surrogate is stored as one character
                      of Unicode's last private-use plane (U+10FE80..U+10FEFF), mapped back
                      when read; a name that is UTF-8 is stored unchanged
    shown             a person reads the name: undecodable bytes become U+FFFD (the
                      replacement character), as file managers show them
    json_text         JSON for machines: a surrogate is written as its \\udcXX escape, so a
                      JSON reader gets the exact str (and os.fsencode the exact bytes) back
"""
from __future__ import annotations

import codecs
import os
import re

_SURROGATE = re.compile("[\udc80-\udcff]")
_STORED = re.compile("[\U0010fe80-\U0010feff]")
_SHIFT = 0x10FE00 - 0xDC00


def to_db(text: str) -> str:
    """`text` with each lone surrogate replaced by its stored stand-in (see the module notes)."""
    return _SURROGATE.sub(lambda m: chr(ord(m.group()) + _SHIFT), text) if _SURROGATE.search(text) else text


def from_db(text: str) -> str:
    """The inverse of `to_db`."""
    return _STORED.sub(lambda m: chr(ord(m.group()) - _SHIFT), text) if _STORED.search(text) else text


def shown(path: str | os.PathLike[str]) -> str:
    """A path as a person can read it: bytes that are not UTF-8 shown as U+FFFD."""
    text = os.fspath(path)
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def json_text(text: str) -> str:
    """JSON text (from json.dumps(..., ensure_ascii=False)) that can be printed as UTF-8: each
    lone surrogate written as its escape, which JSON readers turn back into the same str."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _shown_error(exc: UnicodeError) -> tuple[bytes, int]:
    # bytes, not "\ufffd": CPython's UTF-8 encoder takes only ASCII text from an error handler
    if isinstance(exc, UnicodeEncodeError):
        return "\ufffd".encode("utf-8") * (exc.end - exc.start), exc.end
    raise exc


codecs.register_error("loupe-shown", _shown_error)


def show_names_on(stream: object) -> None:
    """Make a text stream (stdout, stderr) print undecodable name bytes as U+FFFD instead of
    failing (strict) or printing bytes that are not UTF-8 (Python's surrogateescape under a C
    locale): text is for a person; `--json` carries the exact names (json_text)."""
    reconfigure = getattr(stream, "reconfigure", None)
    # (stderr's own default is backslashreplace: a person would read "caf\\udce9")
    if reconfigure is not None and getattr(stream, "errors", "") in ("strict", "surrogateescape",
                                                                     "backslashreplace") \
            and str(getattr(stream, "encoding", "")).lower().replace("-", "") in ("utf8", "utf_8"):
        reconfigure(errors="loupe-shown")


_TOKEN = "fs64:"


def ui_token(path: str | os.PathLike[str]) -> str:
    """A path a web page can carry and hand back (JSON cannot hold surrogates): the path itself
    when it is UTF-8, else "fs64:" and its bytes in URL-safe base64. `from_ui_token` reverses it."""
    text = os.fspath(path)
    if not _SURROGATE.search(text):
        return text
    import base64

    return _TOKEN + base64.urlsafe_b64encode(os.fsencode(text)).decode("ascii")


def from_ui_token(token: str) -> str:
    """The exact path of a `ui_token` (any other text is returned as it is)."""
    if not token.startswith(_TOKEN):
        return token
    import base64

    return os.fsdecode(base64.urlsafe_b64decode(token[len(_TOKEN):].encode("ascii")))
