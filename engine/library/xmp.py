"""XMP: merge Loupe's caption and labels into a packet, for sidecars and embedded metadata.

Loupe owns only:
  * `dc:description` x-default, when it is empty or still the caption Loupe wrote last time
    (a description someone typed is kept; the caption then goes to `loupe:caption` only);
  * the `dc:subject` entries it added itself, listed in `loupe:subjects` (others' kept);
  * everything in the `loupe:` namespace.
Every other element and attribute of an existing packet is kept as it was.

The merge is done on the XML here rather than with pyexiv2's `modify_xmp`, because
pyexiv2 2.16 writes every list as `rdf:Seq` (dc:subject must be an `rdf:Bag`) and cannot
create a sidecar that does not exist. pyexiv2 is used to check the result with the same XMP
toolkit darktable and digiKam use, and to put a packet into JPEG/PNG/TIFF/WebP bytes.
"""
from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from ..errors import LoupeError
from .files import atomic_write, is_read_only

X_NS = "adobe:ns:meta/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DC_NS = "http://purl.org/dc/elements/1.1/"
XML_NS = "http://www.w3.org/XML/1998/namespace"
LOUPE_NS = "http://ns.loupe.app/xmp/1.0/"

_PREFERRED = {X_NS: "x", RDF_NS: "rdf", DC_NS: "dc", LOUPE_NS: "loupe", XML_NS: "xml"}
# Formats exiv2 can write XMP into without touching pixel data.
EMBED_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff", ".webp"})
SIDECAR_STYLES = ("darktable", "lightroom")
_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class XmpError(LoupeError):
    """An XMP packet could not be read or written; the photo's files are left as they were."""


@dataclass(frozen=True)
class MergeResult:
    packet: bytes
    description_kept: bool  # someone else's dc:description was kept (caption not written there)


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def _clean(text: str) -> str:
    # Model output could in theory hold characters XML 1.0 cannot carry.
    return _BAD_CHARS.sub("", text).strip()


def sidecar_path(photo: Path, style: str = "darktable") -> Path:
    """`photo.jpg.xmp` (darktable, digiKam) or `photo.xmp` (Lightroom)."""
    if style == "lightroom":
        return photo.with_suffix(".xmp")
    if style == "darktable":
        return photo.with_name(photo.name + ".xmp")
    raise ValueError(f"unknown sidecar style {style!r}")


def _parse(data: bytes) -> tuple[ET.Element, dict[str, str]]:
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise XmpError("contains a DTD, which XMP never has; left as it is")
    prefixes: dict[str, str] = {}
    try:
        for _event, (prefix, uri) in ET.iterparse(io.BytesIO(data), events=("start-ns",)):
            if prefix:
                prefixes.setdefault(uri, prefix)
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise XmpError(f"is not valid XML ({exc}); left as it is") from None
    return root, prefixes


def _descriptions(rdf: ET.Element) -> list[ET.Element]:
    return [el for el in rdf if el.tag == _q(RDF_NS, "Description")]


def _li_texts(prop: ET.Element) -> list[str]:
    items: list[str] = []
    containers = [c for c in prop if c.tag in (_q(RDF_NS, "Bag"), _q(RDF_NS, "Seq"), _q(RDF_NS, "Alt"))]
    if not containers:
        if prop.text and prop.text.strip():
            items.append(prop.text.strip())
        return items
    for container in containers:
        for li in container:
            if li.tag == _q(RDF_NS, "li") and li.text and li.text.strip():
                items.append(li.text.strip())
    return items


def _bag(parent: ET.Element, values: list[str], kind: str = "Bag") -> None:
    container = ET.SubElement(parent, _q(RDF_NS, kind))
    for value in values:
        ET.SubElement(container, _q(RDF_NS, "li")).text = value


def _dedupe(values: list[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for v in values:
        if v and v not in seen:
            seen.add(v)
            out.append(v)
    return out


def merge_packet(
    existing: bytes | None,
    caption: str,
    subjects: list[str],
    *,
    settings: str = "",
) -> MergeResult:
    """Return a full XMP packet: `existing` (or an empty one) with Loupe's fields merged in."""
    caption = _clean(caption)
    subjects = _dedupe([_clean(s) for s in subjects])
    prefixes: dict[str, str] = {}
    if existing and existing.strip(b"\x00 \t\r\n"):
        root, prefixes = _parse(existing.strip(b"\x00 \t\r\n"))
    else:
        root = ET.Element(_q(X_NS, "xmpmeta"))
        ET.SubElement(root, _q(RDF_NS, "RDF"))
    if root.tag == _q(RDF_NS, "RDF"):  # a bare rdf:RDF packet: wrap it as XMP expects
        meta = ET.Element(_q(X_NS, "xmpmeta"))
        meta.append(root)
        root = meta
    rdf = next(root.iter(_q(RDF_NS, "RDF")), None)
    if rdf is None:
        raise XmpError("has no rdf:RDF element, so it is not XMP; left as it is")

    descriptions = _descriptions(rdf)
    if not descriptions:
        main = ET.SubElement(rdf, _q(RDF_NS, "Description"), {_q(RDF_NS, "about"): ""})
        descriptions = [main]
    main = descriptions[0]

    # What Loupe wrote last time, then drop every loupe: field (Loupe owns the namespace).
    prev_subjects: set[str] = set()
    prev_caption: str | None = None
    for desc in descriptions:
        for key in [k for k in desc.attrib if k.startswith(f"{{{LOUPE_NS}}}")]:
            if key == _q(LOUPE_NS, "caption"):
                prev_caption = desc.attrib[key]
            del desc.attrib[key]
        for child in [c for c in desc if c.tag.startswith(f"{{{LOUPE_NS}}}")]:
            if child.tag == _q(LOUPE_NS, "subjects"):
                prev_subjects.update(_li_texts(child))
            elif child.tag == _q(LOUPE_NS, "caption"):
                prev_caption = (child.text or "").strip()
            desc.remove(child)

    # dc:subject: others' keywords kept, Loupe's previous ones replaced by the new ones.
    subject_props = [(d, c) for d in descriptions for c in d if c.tag == _q(DC_NS, "subject")]
    kept = [s for s in _dedupe([t for _, c in subject_props for t in _li_texts(c)]) if s not in prev_subjects]
    added = [s for s in subjects if s not in kept]
    final = kept + added
    if subject_props:
        holder, first = subject_props[0]
        for desc, prop in subject_props[1:]:
            desc.remove(prop)
        if final:
            for child in list(first):
                first.remove(child)
            first.text = None
            first.attrib.clear()
            _bag(first, final)
        else:
            holder.remove(first)
    elif final:
        _bag(ET.SubElement(main, _q(DC_NS, "subject")), final)

    # dc:description x-default: Loupe's only while nobody else has written one.
    description_kept = False
    desc_props = [(d, c) for d in descriptions for c in d if c.tag == _q(DC_NS, "description")]
    if desc_props:
        _holder, prop = desc_props[0]
        alt = next((c for c in prop if c.tag == _q(RDF_NS, "Alt")), None)
        if alt is None:  # a plain-text description (not Lang Alt): make it one, keep its text
            old = (prop.text or "").strip()
            prop.text = None
            alt = ET.SubElement(prop, _q(RDF_NS, "Alt"))
            if old:
                ET.SubElement(alt, _q(RDF_NS, "li"), {_q(XML_NS, "lang"): "x-default"}).text = old
        default = next((li for li in alt if li.get(_q(XML_NS, "lang")) == "x-default"), None)
        current = (default.text or "").strip() if default is not None else ""
        if current and current != prev_caption:
            description_kept = current != caption
        elif caption:
            if default is None:
                default = ET.Element(_q(RDF_NS, "li"), {_q(XML_NS, "lang"): "x-default"})
            else:
                alt.remove(default)
            default.text = caption
            alt.insert(0, default)  # x-default comes first in a Lang Alt
    elif caption:
        prop = ET.SubElement(main, _q(DC_NS, "description"))
        alt = ET.SubElement(prop, _q(RDF_NS, "Alt"))
        ET.SubElement(alt, _q(RDF_NS, "li"), {_q(XML_NS, "lang"): "x-default"}).text = caption

    # Loupe's own record of what it wrote, so the next run replaces only that.
    if caption:
        ET.SubElement(main, _q(LOUPE_NS, "caption")).text = caption
    if added:
        _bag(ET.SubElement(main, _q(LOUPE_NS, "subjects")), added)
    if settings:
        ET.SubElement(main, _q(LOUPE_NS, "settings")).text = settings

    return MergeResult(_serialize(root, prefixes), description_kept)


# -- serializing with the document's own prefixes (ElementTree would rename them ns0, ns1)

def _escape_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_attr(text: str) -> str:
    return (
        _escape_text(text).replace('"', "&quot;").replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
    )


def _serialize(root: ET.Element, doc_prefixes: dict[str, str]) -> bytes:
    ET.indent(root, space=" ")
    used: list[str] = []
    for el in root.iter():
        for name in (el.tag, *el.attrib):
            if name.startswith("{"):
                uri = name[1:].split("}", 1)[0]
                if uri not in used:
                    used.append(uri)
    prefix_of: dict[str, str] = {XML_NS: "xml"}
    taken = {"xml", "xmlns"}
    for uri in used:
        if uri == XML_NS:
            continue
        want = doc_prefixes.get(uri) or _PREFERRED.get(uri) or "ns"
        prefix, n = want, 1
        while prefix in taken:
            n += 1
            prefix = f"{want}{n}"
        taken.add(prefix)
        prefix_of[uri] = prefix

    def qname(name: str) -> str:
        if not name.startswith("{"):
            return name
        uri, local = name[1:].split("}", 1)
        return f"{prefix_of[uri]}:{local}"

    out: list[str] = []

    def write(el: ET.Element, declare: bool) -> None:
        out.append("<" + qname(el.tag))
        if declare:
            for uri, prefix in prefix_of.items():
                if uri != XML_NS:
                    out.append(f' xmlns:{prefix}="{_escape_attr(uri)}"')
        for key, value in el.attrib.items():
            out.append(f' {qname(key)}="{_escape_attr(value)}"')
        if len(el) == 0 and not el.text:
            out.append("/>")
        else:
            out.append(">")
            if el.text:
                out.append(_escape_text(el.text))
            for child in el:
                write(child, False)
            out.append(f"</{qname(el.tag)}>")
        if el.tail:
            out.append(_escape_text(el.tail))

    root.tail = None
    write(root, True)
    body = "".join(out)
    text = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n' + body + '\n<?xpacket end="w"?>\n'
    )
    return text.encode("utf-8")


# -- checking, sidecars, embedding

def _pyexiv2():
    import pyexiv2

    # exiv2 prints warnings to stdout ("[warn] ..."), which would mix into CLI output;
    # errors are still raised as RuntimeError.
    pyexiv2.set_log_level(3)
    return pyexiv2


def check_packet(packet: bytes) -> None:
    """Parse the packet with exiv2's XMP toolkit (what darktable/digiKam read it with)."""
    pyexiv2 = _pyexiv2()
    try:
        img = pyexiv2.ImageData(packet)
        try:
            img.read_xmp()
        finally:
            img.close()
    except RuntimeError as exc:
        raise XmpError(f"Loupe made XMP that exiv2 rejects ({_short(exc)}); nothing written") from None


def read_sidecar(photo: Path, style: str = "darktable") -> dict:
    """The sidecar's fields as exiv2 reads them ({} when there is none)."""
    target = sidecar_path(photo, style)
    if not target.exists():
        return {}
    pyexiv2 = _pyexiv2()
    img = pyexiv2.ImageData(target.read_bytes())
    try:
        return img.read_xmp()
    finally:
        img.close()


def write_sidecar(
    photo: Path, caption: str, subjects: list[str], *, style: str = "darktable", settings: str = ""
) -> tuple[Path, bool, bool]:
    """Merge into (or create) the photo's sidecar. Returns (sidecar, changed, description_kept).

    An unchanged result is not rewritten, so a resumed scan leaves finished sidecars alone.
    """
    target = sidecar_path(photo, style)
    if target.is_symlink():
        raise XmpError(f"sidecar {target.name} is a symbolic link; left as it is")
    if target.exists() and is_read_only(target):
        # Renaming over it would work (the folder is writable) but would ignore the lock.
        raise XmpError(f"sidecar {target.name} is read-only; left as it is")
    try:
        existing = target.read_bytes()
    except FileNotFoundError:
        existing = None
    try:
        merged = merge_packet(existing, caption, subjects, settings=settings)
    except XmpError as exc:
        raise XmpError(f"sidecar {target.name} {exc}") from None
    if existing == merged.packet:
        return target, False, merged.description_kept
    check_packet(merged.packet)
    atomic_write(target, merged.packet)
    return target, True, merged.description_kept


def embed(data: bytes, caption: str, subjects: list[str], *, suffix: str, settings: str = "") -> tuple[bytes, bool]:
    """The photo's bytes with Loupe's fields merged into its XMP; pixels are not re-encoded.

    Returns (new bytes, description_kept). Raises XmpError for formats exiv2 cannot write.
    """
    if suffix.lower() not in EMBED_EXTENSIONS:
        raise XmpError(
            f"{suffix.lstrip('.').upper() or 'this'} files cannot hold XMP metadata; use sidecars for them"
        )
    pyexiv2 = _pyexiv2()
    try:
        img = pyexiv2.ImageData(data)
        try:
            raw = img.read_raw_xmp()
            merged = merge_packet(raw.encode("utf-8") if raw.strip() else None, caption, subjects, settings=settings)
            img.modify_raw_xmp(merged.packet.decode("utf-8"))
            return img.get_bytes(), merged.description_kept
        finally:
            img.close()
    except XmpError as exc:
        raise XmpError(f"its embedded XMP {exc}") from None
    except (RuntimeError, ValueError) as exc:
        raise XmpError(f"exiv2 could not write its metadata ({_short(exc)})") from None


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:160]
