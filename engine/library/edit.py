"""A caption the person wrote: saved the same safe way a scan writes, and theirs from then on.

The caption becomes the photo's description (sidecar or embedded, as the photo was last
written, else as asked or set), is not recorded as Loupe's caption in the file, and is
marked `caption_by = "person"` in the index, so a later scan keeps it (and says so once).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LoupeError, UsageError
from ..files import link_count, os_reason
from . import writers, xmp
from .descriptions import normalize
from .index import Index, PhotoRow
from .records import Location
from .rename import stem_counts
from .options import EDIT_OPTIONS, resolve
from .settings import HIERARCHY_ROOT, KEYWORD_THRESHOLD, keyword_names

MAX_CAPTION = 2000  # characters; a description, not an essay


class DescriptionExists(UsageError):
    """The photo has a description someone else wrote; saving over it needs `replace_others`.
    `.existing` is that description."""

    def __init__(self, photo: Path, existing: str) -> None:
        self.existing = existing
        super().__init__(f"{photo.name} already has a description someone wrote: "
                         f"{_short(existing)}; replacing it needs a confirmation.")


class CaptionNotSaved(LoupeError):
    """The person's caption could not be written to the photo's files; the message names the photo."""

    exit_code = 3


@dataclass(frozen=True)
class EditResult:
    path: str  # the photo
    written: str | None  # the file written (the sidecar, or the photo when embedding), None for the index only
    message: str  # one plain sentence for the person ("Saved; written to photo.jpg.xmp.")


def _last_written(row: PhotoRow) -> tuple[str | None, str | None, int]:
    """(writer, sidecar style, keyword threshold) from the record's written key, as the last scan wrote it."""
    key = row.written_key or ""
    parts = key.split(":")
    threshold = next((int(p[1:]) for p in parts if re.fullmatch(r"k\d{1,3}", p)), KEYWORD_THRESHOLD.default)
    if parts[0] == "sidecar" and len(parts) > 1:
        return "sidecar", parts[1], threshold
    if parts[0] == "embed":
        return "embed", None, threshold
    return None, None, threshold


def set_caption(index: Index, path: str, caption: str, *, write: str | None, sidecar_style: str | None,
                settings: dict[str, Any], replace_others: bool = False) -> EditResult:
    """See `engine.library.set_caption`."""
    text = normalize(caption if isinstance(caption, str) else "")
    if not text:
        raise UsageError("The caption is empty; type a caption to save.")
    if len(text) > MAX_CAPTION:
        raise UsageError(f"A caption is limited to {MAX_CAPTION} characters (this one has {len(text)}).")
    photo = Path(path).expanduser()
    try:
        photo = photo.resolve()
    except OSError:
        pass
    row = index.row_at(str(photo))
    if row is None:
        raise UsageError(f"{photo.name} is not in the library yet; scan its folder first.")
    if not photo.is_file():
        raise CaptionNotSaved(f"{photo.name} is no longer there (moved or deleted); scan its folder again.")
    last_writer, last_style, threshold = _last_written(row)
    chosen = resolve({"write": write or last_writer, "sidecar_style": sidecar_style or last_style}, settings,
                     EDIT_OPTIONS)
    writer, style = chosen["write"], chosen["sidecar_style"]
    keywords = keyword_names(row.labels, threshold)
    root = settings.get("hierarchy_root") or HIERARCHY_ROOT.default
    if not replace_others and writer != "none":
        other = xmp.others_description(photo, style)
        if other and normalize(other) not in (normalize(row.caption), text):
            raise DescriptionExists(photo, other)  # someone's words are never replaced unasked

    written: Path | None = None
    result = None
    new_location: Location | None = None
    links = link_count(photo)
    split = writer == "embed" and links > 1  # rewriting it would split its hard links: a sidecar
    try:
        if writer == "sidecar" or split:
            style = writers.sidecar_style_for(photo, style, stem_counts([photo.parent]))
            result = writers.sidecar(photo, text, keywords, style=style, settings=row.settings_key, persons=True,
                                     hierarchy_root=root)
            written = result.path
        elif writer == "embed":
            result, new_location, _ = writers.embed(photo, text, keywords, settings=row.settings_key, persons=True,
                                                    hierarchy_root=root)
            written = photo
    except OSError as exc:
        raise CaptionNotSaved(f"Could not save the caption of {photo.name}: {os_reason(exc)}.") from None
    except UsageError:
        raise
    except LoupeError as exc:
        raise CaptionNotSaved(f"Could not save the caption of {photo.name}: {exc}.") from None

    with index.transaction() as db:
        index.set_person_caption(db, row.id, text)
        if new_location is not None:
            # These bytes carry what the last scan wrote, with the person's caption: not redone.
            index.add_alias(db, new_location.file_hash, row.id, row.written_key)
            index.set_location(db, row.id, str(photo), new_location.size, new_location.mtime_ns,
                               new_location.file_hash)
        index.clear_failure(db, str(photo))

    if written is None:
        message = "Saved in the library (not written to the photo, as chosen)."
    else:
        message = f"Saved; written {'to' if writer == 'sidecar' or split else 'into'} {written.name}."
        if split:
            message += f" The photo has {links} hard links, which embedding would split into separate files."
    if result is not None and result.decision == "replaced" and result.existing \
            and normalize(result.existing) != normalize(row.caption):
        message += f" It replaces the description that was there ({_short(result.existing)})."
    return EditResult(str(photo), str(written) if written is not None else None, message)


def _short(text: str, limit: int = 60) -> str:
    one_line = " ".join(text.split())
    return "\u201c" + (one_line if len(one_line) <= limit else one_line[: limit - 1] + "\u2026") + "\u201d"
