"""Whose description is it? The keep / replace / append rule for a photo's description.

A photo's description lives in up to three places that photo tools read (the Metadata Working
Group's guidance keeps them in sync): XMP `dc:description`, IPTC IIM Caption-Abstract and
EXIF ImageDescription. Loupe writes its caption to all the places it writes, unless one of
them already holds a description *someone else* wrote: non-empty, not a camera's default
text (see `boilerplate`), and not what Loupe wrote there last time. Then the `existing` policy decides:

  * "keep" (default): the person's text stays where it is and is copied into the places that
    were empty (or held Loupe's or a camera's text), so every tool shows the same; Loupe's
    caption goes only to its own `loupe:caption` field.
  * "replace": the caption everywhere.
  * "append": the person's text, APPEND_SEPARATOR, then the caption. Loupe recognises its own
    suffix next time, so re-running (even with a new caption) never appends twice.

This module is the rule only (pure functions on text); `xmp.py` reads and writes the places.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import UsageError
from .boilerplate import is_boilerplate
from .limits import IPTC_CAPTION_BYTES, is_cut_copy

# What the CLI (`--existing`) and the Library tab offer; the first is the default.
EXISTING_POLICIES = ("keep", "replace", "append")
DECISIONS = ("written", "kept", "appended", "replaced")
# One line (Explorer, Lightroom's grid and most captions views show a single line), plain
# ASCII (an ASCII description plus an ASCII caption stays ASCII in EXIF).
APPEND_SEPARATOR = " | "

_SPACES = re.compile(r"\s+")


def check_policy(existing: str) -> str:
    """`existing` itself, or UsageError (one line) when it is not one of EXISTING_POLICIES."""
    if existing not in EXISTING_POLICIES:
        raise UsageError(f"unknown policy for existing descriptions {existing!r}; choose {', '.join(EXISTING_POLICIES)}")
    return existing


def normalize(text: str | None) -> str:
    """Text as compared and written: CR/CRLF line ends as LF (IPTC tools write CR), outer
    whitespace and NUL padding (EXIF) removed."""
    if not text:
        return ""
    return text.replace("\r\n", "\n").replace("\r", "\n").strip(" \t\n\x00")


def is_camera_default(text: str) -> bool:
    """True for empty text and for text a camera, phone or program wrote by itself
    (`boilerplate.is_boilerplate`: a listed string, a camera's name and model, a file name)."""
    return is_boilerplate(normalize(text))


def persons_part(text: str, loupe_texts: Iterable[str]) -> str:
    """The part of a stored description someone else wrote ("" when it is all Loupe's or a
    camera's). `loupe_texts` are the captions Loupe wrote before (and the one it writes now):
    a stored text equal to one is Loupe's; "P | caption" is P plus Loupe's appended caption."""
    text = normalize(text)
    if is_camera_default(text):
        return ""
    own = [t for t in (normalize(t) for t in loupe_texts) if t]
    if text in own or any(is_cut_copy(text, t, IPTC_CAPTION_BYTES) for t in own):
        return ""  # Loupe's text, or its copy cut to IPTC's limit
    for caption in own:
        suffix = APPEND_SEPARATOR + caption
        if text.endswith(suffix):
            rest = normalize(text[: -len(suffix)])
            return "" if is_camera_default(rest) else rest
    return text


@dataclass(frozen=True)
class Plan:
    """What to write where. `texts[place]` is the new description for a place Loupe writes, or
    None to leave that place as it is (already right, or nothing to write)."""

    decision: str  # one of DECISIONS
    existing: str | None  # someone else's description (None for "written")
    texts: dict[str, str | None] = field(default_factory=dict)


def plan(
    found: Sequence[tuple[str, str | None]],
    targets: Sequence[str],
    caption: str,
    loupe_texts: Iterable[str],
    existing: str = "keep",
) -> Plan:
    """Apply the policy to what is stored now.

    found: (place, stored text) for every place read, most trusted first (XMP, then IPTC, then
        EXIF, per the MWG); a sidecar lists its own XMP before the photo's places.
    targets: the places Loupe writes (a subset of the places in `found`, or new ones).
    caption: Loupe's caption now ("" writes no description). loupe_texts: captions Loupe wrote
        before, from `loupe:caption` fields. Raises UsageError for an unknown `existing`.
    """
    check_policy(existing)
    caption = normalize(caption)
    own = [*loupe_texts, caption]
    stored = {place: normalize(text) for place, text in found}
    persons = {place: persons_part(text or "", own) for place, text in found}
    chosen = next((p for p in persons.values() if p), "")

    if not chosen:
        decision, want = "written", {t: caption for t in targets}
    elif existing == "replace" and caption:
        decision, want = "replaced", {t: caption for t in targets}
    elif existing == "append" and caption:
        decision, want = "appended", {t: chosen + APPEND_SEPARATOR + caption for t in targets}
    else:  # keep (or no caption to put anywhere): each place keeps its own person's text
        decision, want = "kept", {t: persons.get(t) or chosen for t in targets}
    texts = {t: (w if w and w != stored.get(t, "") else None) for t, w in want.items()}
    return Plan(decision, chosen or None, texts)


@dataclass(frozen=True)
class WriteResult:
    """What `xmp.write_sidecar` / `xmp.embed` did for one photo.

    path: the sidecar (write_sidecar) or None. data: the photo's new bytes (embed; the input
    bytes themselves when nothing changed) or None. changed: whether anything differs from
    before. decision: one of DECISIONS. existing: the description someone else wrote, for
    "kept", "appended" and "replaced". cut: how many IPTC values were cut to IIM's limits.
    """

    changed: bool
    decision: str
    existing: str | None = None
    path: Path | None = None
    data: bytes | None = None
    cut: int = 0  # IPTC values cut to IIM's limits (limits.py); XMP holds them whole

    @property
    def description_kept(self) -> bool:
        return self.decision == "kept"

    def note(self) -> str | None:
        """One line for the scan's notes when someone else's description was involved."""
        if self.existing is None:
            return None
        quoted = _quote(self.existing)
        if self.decision == "kept":
            return f"kept the description someone else wrote ({quoted}); Loupe's caption went to its own caption field"
        if self.decision == "appended":
            return f"appended the caption to the description someone else wrote ({quoted})"
        return f"replaced the description someone else wrote ({quoted})"


def quote(text: str, limit: int = 60) -> str:
    """`text` on one line, in quotes, cut to `limit` characters (for notices and messages)."""
    return _quote(text, limit)


def _quote(text: str, limit: int = 60) -> str:
    one_line = _SPACES.sub(" ", text)
    return '"' + (one_line if len(one_line) <= limit else one_line[: limit - 1] + "…") + '"'
