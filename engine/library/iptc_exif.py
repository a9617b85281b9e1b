"""The description and keywords in a photo's IPTC IIM and EXIF, read and written with pyexiv2.

IPTC IIM and EXIF predate Unicode. Loupe follows the Metadata Working Group's guidance:
  * IPTC: it declares UTF-8 (CodedCharacterSet = ESC % G) whenever it writes IPTC, and then
    re-encodes any dataset that was in a legacy 8-bit encoding, so that the declaration is true
    for the whole record (readers apply it to every dataset).
  * EXIF ImageDescription is "ASCII" by the EXIF 2.x spec, but the MWG says readers should take
    it as UTF-8 when it is valid UTF-8, and exiftool, exiv2, Lightroom and Windows do. Loupe
    writes UTF-8 there, so a non-ASCII caption reads back exactly, not as "?" or as a shortened
    ASCII copy that would disagree with XMP and IPTC.
Reading, text that is not valid UTF-8 is taken as Windows-1252 (what old Windows tools wrote),
with Latin-1 for the bytes cp1252 leaves undefined.

pyexiv2 decodes every value of a block with one codec and fails on the first byte that does not
fit, so values are read and written as Latin-1, which maps bytes 1:1, and decoded here.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from .limits import IPTC_CAPTION_BYTES, IPTC_KEYWORD_BYTES, cut_keywords, cut_utf8

IPTC_UTF8 = "\x1b%G"
_CHARSET = "Iptc.Envelope.CharacterSet"
_CAPTION = "Iptc.Application2.Caption"
_KEYWORDS = "Iptc.Application2.Keywords"
_DESCRIPTION = "Exif.Image.ImageDescription"
# IIM 4.1 makes the record version datasets mandatory in a record that is present.
_VERSIONS = {"Iptc.Envelope.ModelVersion": "4", "Iptc.Application2.RecordVersion": "4"}
_BYTES = "latin-1"


@dataclass(frozen=True)
class Legacy:
    """A photo's IPTC caption and keywords and its EXIF ImageDescription, decoded."""

    caption: str = ""
    keywords: tuple[str, ...] = ()
    description: str = ""


def decode(raw: bytes, limit: int | None = None, utf8: bool = False) -> str:
    """Bytes of an IPTC or EXIF string: UTF-8 when valid, else Windows-1252, else Latin-1.

    UTF-8 that another tool cut mid-character at the dataset's size limit (`limit` bytes,
    exactly filled) is read without the broken end, when it is known to be UTF-8: the record
    declares it (`utf8`), or the text before the cut holds UTF-8 characters. (63 ASCII bytes
    and one Latin-1 "é" look the same as a cut: undeclared, that stays Windows-1252.)"""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A single "unexpected end" in the last 3 bytes and valid before it: cut, not legacy.
        if (len(raw) == limit and exc.reason == "unexpected end of data" and exc.start >= len(raw) - 3
                and (utf8 or any(b >= 0x80 for b in raw[: exc.start]))):
            return raw[: exc.start].decode("utf-8")
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError:
        pass
    return raw.decode("latin-1")


def _raw(value: Any) -> bytes:
    return str(value).encode(_BYTES)


def _as_bytes_str(text: str) -> str:
    # pyexiv2 encodes values with the codec it is given: UTF-8 bytes passed as Latin-1 text.
    return text.encode("utf-8").decode(_BYTES)


def _first(value: Any) -> str:
    return value[0] if isinstance(value, list) else value


def read(img: Any) -> Legacy:
    """Read from an open `pyexiv2.ImageData`. Unreadable or absent fields read as empty."""
    iptc = img.read_iptc(encoding=_BYTES)
    exif = img.read_exif(encoding=_BYTES)
    utf8 = _first(iptc.get(_CHARSET, "")) == IPTC_UTF8
    caption = decode(_raw(_first(iptc.get(_CAPTION, ""))), IPTC_CAPTION_BYTES, utf8)
    keywords = iptc.get(_KEYWORDS, [])
    keywords = [keywords] if isinstance(keywords, str) else keywords
    decoded = [decode(_raw(k), IPTC_KEYWORD_BYTES, utf8).strip() for k in keywords]
    return Legacy(
        caption=caption,
        keywords=tuple(k for k in decoded if k),
        description=decode(_raw(exif.get(_DESCRIPTION, ""))),
    )


# IFD0 tags the EXIF standard requires in a JPEG (EXIF 2.32 table 4; exiftool -validate checks
# them). A TIFF's IFD0 is the image's own structure: exiv2 will not add image tags to it, and
# Loupe leaves it as it is. PNG and WebP carry EXIF without them.
_REQUIRED = dict.fromkeys((".jpg", ".jpeg", ".jpe"), (
    "Exif.Image.XResolution", "Exif.Image.YResolution", "Exif.Image.ResolutionUnit", "Exif.Image.YCbCrPositioning"))


def write_exif_description(img: Any, text: str, *, suffix: str = "", data: bytes = b"") -> None:
    """Set IFD0 ImageDescription (UTF-8 bytes, see the module notes); other tags untouched.

    When a JPEG's IFD0 lacks tags the standard requires (a JPEG that had no EXIF at all), they
    are added with the values the photo already states, as exiftool does: the resolution of its
    JFIF header, else the EXIF defaults (72 x 72 per inch, YCbCr centered). So a new IFD0 is a
    valid one, and EXIF-only readers see the caption too.
    """
    changes = {_DESCRIPTION: _as_bytes_str(text)}
    missing = [k for k in _REQUIRED.get(suffix.lower(), ()) if k not in img.read_exif(encoding=_BYTES)]
    if missing:
        x, y, unit = _jfif_density(data) or (72, 72, 2)
        defaults = {"Exif.Image.XResolution": f"{x}/1", "Exif.Image.YResolution": f"{y}/1",
                    "Exif.Image.ResolutionUnit": str(unit), "Exif.Image.YCbCrPositioning": "1"}
        changes.update({k: defaults[k] for k in missing})
    img.modify_exif(changes, encoding=_BYTES)


def _jfif_density(data: bytes) -> tuple[int, int, int] | None:
    """(x, y, EXIF ResolutionUnit) from a JPEG's JFIF APP0, None without one. JFIF units
    0 (aspect ratio only), 1 (per inch), 2 (per cm) map to EXIF 1 (none), 2, 3."""
    if data[:4] != b"\xff\xd8\xff\xe0" or data[6:11] != b"JFIF\x00" or len(data) < 18:
        return None
    unit, x, y = data[13], int.from_bytes(data[14:16], "big"), int.from_bytes(data[16:18], "big")
    if not x or not y or unit > 2:
        return None
    return x, y, unit + 1


def write_iptc(img: Any, *, caption: str | None, keywords: list[str] | None) -> int:
    """Set Caption-Abstract and/or the Keywords list (None: leave it); declare UTF-8.

    Values are cut to IIM's limits (limits.py: 64 bytes a keyword, 2000 the caption) on a
    character boundary; the caller keeps the whole text in XMP. Returns how many values were
    cut. Other datasets keep their text; those stored in a legacy encoding are re-encoded as
    UTF-8 so the declaration holds for them too.
    """
    changes: dict[str, Any] = {}
    cut = 0
    if caption is not None:
        short = cut_utf8(caption, IPTC_CAPTION_BYTES)
        cut += short != caption
        changes[_CAPTION] = _as_bytes_str(short)
    if keywords is not None:
        shortened, n = cut_keywords(keywords)
        cut += n
        changes[_KEYWORDS] = [_as_bytes_str(k) for k in shortened] if shortened else None
    if not changes:
        return cut
    detail = img.read_iptc_detail(encoding=_BYTES)
    if _first(detail.get(_CHARSET, {}).get("value", "")) != IPTC_UTF8:
        changes[_CHARSET] = IPTC_UTF8
        for key, info in detail.items():
            if key in changes or info.get("typeName") != "String":
                continue
            values = info["value"] if isinstance(info["value"], list) else [info["value"]]
            fixed = [_as_bytes_str(decode(_raw(v))) for v in values]
            if fixed != values:
                changes[key] = fixed if isinstance(info["value"], list) else fixed[0]
    for key, version in _VERSIONS.items():
        if key not in detail:
            changes[key] = version
    img.modify_iptc(changes, encoding=_BYTES)
    return cut


def read_png_description(img: Any) -> str:
    """A PNG's text `Description` (tEXt, zTXt or iTXt; exiv2 reads it as the image comment)."""
    return decode(_raw(img.read_comment(encoding=_BYTES) or ""))


def write_png_description(img: Any, text: str) -> None:
    """Set a PNG's text `Description`: exiv2 replaces the old chunk with one UTF-8 iTXt chunk."""
    img.modify_comment(_as_bytes_str(text), encoding=_BYTES)


# -- the Photoshop IPTC digest (JPEG)

_PS3 = b"Photoshop 3.0\x00"


def update_jpeg_iptc_digest(data: bytes) -> bytes:
    """JPEG bytes whose Photoshop IPTCDigest (IRB 0x0425) matches its IPTC (IRB 0x0404) again.

    Photoshop and Lightroom store an MD5 of the IPTC block; when it no longer matches they take
    the IPTC as edited by a tool that does not know XMP and prefer it (exiftool warns "IPTCDigest
    is not current"). exiv2 rewrites the IPTC but leaves the digest, so Loupe fixes it, in place
    (16 bytes, nothing moves). Files without a digest, or with the IPTC split over several APP13
    segments, are returned as they are.
    """
    if data[:2] != b"\xff\xd8":
        return data
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan: no metadata after this
            break
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if end > len(data):
            break
        body = pos + 4
        if marker == 0xED and data[body : body + len(_PS3)] == _PS3:
            blocks = _irb_blocks(data, body + len(_PS3), end)
            iptc = [(s, n) for rid, s, n in blocks if rid == 0x0404]
            digest = [(s, n) for rid, s, n in blocks if rid == 0x0425 and n == 16]
            if len(iptc) == 1 and len(digest) == 1:
                (s, n), (d, _) = iptc[0], digest[0]
                md5 = hashlib.md5(data[s : s + n], usedforsecurity=False).digest()
                if data[d : d + 16] != md5:
                    return data[:d] + md5 + data[d + 16 :]
        pos = end
    return data


def _irb_blocks(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(resource id, data offset, data size) of each Photoshop image resource in data[start:end]."""
    out: list[tuple[int, int, int]] = []
    p = start
    while p + 12 <= end and data[p : p + 4] == b"8BIM":
        rid = int.from_bytes(data[p + 4 : p + 6], "big")
        name = 1 + data[p + 6]  # Pascal string, padded to an even length
        size_at = p + 6 + name + (name & 1)
        if size_at + 4 > end:
            break
        size = int.from_bytes(data[size_at : size_at + 4], "big")
        first = size_at + 4
        if first + size > end:
            break
        out.append((rid, first, size))
        p = first + size + (size & 1)
    return out
