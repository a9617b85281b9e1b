"""The size limits of IPTC IIM, and cutting text to them on a UTF-8 character boundary.

IIM 4.2 gives Keywords (2:25) at most 64 bytes and Caption-Abstract (2:120) at most 2000
(`exiftool -validate` warns above them, and strict readers drop or cut such values). Loupe writes
IPTC values cut to the limit, never mid-character; XMP, which has no limit, keeps the whole
text. A cut copy read back is recognised as that copy (`is_cut_copy`), so it is never taken as
another keyword or as someone else's description.
"""
from __future__ import annotations

IPTC_KEYWORD_BYTES = 64
IPTC_CAPTION_BYTES = 2000
# The longest UTF-8 character is 4 bytes: a copy cut at `limit` is at least limit - 3 bytes.
_MAX_CHAR = 4


def cut_utf8(text: str, limit: int) -> str:
    """`text` whose UTF-8 encoding is at most `limit` bytes, cut on a character boundary."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore").rstrip()


def is_cut_copy(short: str, full: str, limit: int) -> bool:
    """True when `short` is `full` cut to `limit` bytes (by Loupe, or by another tool that cut at
    the limit, on a character boundary or not), and not `full` itself."""
    s, f = short.encode("utf-8"), full.encode("utf-8")
    return len(f) > limit and s != f and len(s) > limit - _MAX_CHAR and f.startswith(s.rstrip())


def cut_keywords(keywords: list[str]) -> tuple[list[str], int]:
    """IPTC Keywords: each cut to IPTC_KEYWORD_BYTES, duplicates the cut made dropped.
    Returns (keywords, how many were cut)."""
    out: list[str] = []
    cut = 0
    for keyword in keywords:
        short = cut_utf8(keyword, IPTC_KEYWORD_BYTES)
        cut += short != keyword
        if short not in out:
            out.append(short)
    return out, cut


# The scan's one line about cut values (a notice for the scanned folder, once).
IPTC_LIMIT_NOTE = (f"IPTC holds at most {IPTC_KEYWORD_BYTES} bytes a keyword and {IPTC_CAPTION_BYTES} bytes a "
                   "caption: longer ones were cut there (on a character boundary); XMP keeps them whole")
