"""XMP: merge Loupe's caption and labels into a packet; write sidecars and embedded metadata.

Loupe owns only:
  * the description, in the places it writes, while nobody else has written one there: a
    description someone else wrote is handled by the keep / replace / append policy (see
    `descriptions`); Loupe's caption always goes to `loupe:caption` (a caption the person
    wrote in Loupe is theirs: it goes to the description only);
  * the keywords it added itself, listed in `loupe:subjects` (others' kept);
  * everything in the `loupe:` namespace.
Every other element and attribute of an existing packet is kept as it was. Embedding also
writes IPTC IIM and EXIF (see `iptc_exif`) so that every photo tool shows the same text.

The merge is done on the XML here rather than with pyexiv2's `modify_xmp`, because
pyexiv2 2.16 writes every list as `rdf:Seq` (dc:subject must be an `rdf:Bag`) and cannot
create a sidecar that does not exist. pyexiv2 is used to check the result with the same XMP
toolkit darktable and digiKam use, and to put a packet into JPEG/PNG/TIFF/WebP bytes.
"""
from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import LoupeError
from . import iptc_exif
# The policy names, decisions and result type, here too for the scanner, the CLI and the UI.
from .descriptions import APPEND_SEPARATOR as APPEND_SEPARATOR
from .descriptions import DECISIONS as DECISIONS
from .descriptions import EXISTING_POLICIES as EXISTING_POLICIES
from .descriptions import WriteResult as WriteResult
from .descriptions import check_policy, persons_part, plan
from ..files import atomic_write, is_read_only
from .limits import IPTC_CAPTION_BYTES, IPTC_KEYWORD_BYTES, cut_keywords, cut_utf8, is_cut_copy

X_NS = "adobe:ns:meta/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DC_NS = "http://purl.org/dc/elements/1.1/"
XML_NS = "http://www.w3.org/XML/1998/namespace"
LOUPE_NS = "http://ns.loupe.app/xmp/1.0/"
LR_NS = "http://ns.adobe.com/lightroom/1.0/"
DIGIKAM_NS = "http://www.digikam.org/ns/1.0/"
# Keyword hierarchies other tools keep, and the separator each uses in a path.
HIERARCHIES = {"lightroom": (LR_NS, "hierarchicalSubject", "Bag", "|"),
               "digikam": (DIGIKAM_NS, "TagsList", "Seq", "/")}
# Where Loupe's labels go in an existing hierarchy: "Loupe|tabby cat" (a setting:
# settings.HIERARCHY_ROOT).
DEFAULT_HIERARCHY_ROOT = "Loupe"

_PREFERRED = {X_NS: "x", RDF_NS: "rdf", DC_NS: "dc", LOUPE_NS: "loupe", XML_NS: "xml", LR_NS: "lr",
              DIGIKAM_NS: "digiKam"}
# Formats exiv2 can write XMP into without touching pixel data.
EMBED_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".webp"})
SIDECAR_STYLES = ("darktable", "lightroom")
_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class XmpError(LoupeError):
    """An XMP packet could not be read or written; the photo's files are left as they were."""


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


def _load(existing: bytes | None) -> tuple[ET.Element, dict[str, str], list[ET.Element]]:
    """The packet's root (an empty packet for None), its prefixes and its rdf:Descriptions."""
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
        descriptions = [ET.SubElement(rdf, _q(RDF_NS, "Description"), {_q(RDF_NS, "about"): ""})]
    return root, prefixes, descriptions


@dataclass(frozen=True)
class PacketFields:
    """What an XMP packet says now, as far as Loupe cares."""

    description: str  # dc:description x-default (else its first language), "" when none
    loupe_caption: str | None  # loupe:caption: the caption Loupe wrote last time
    subjects: list[str]  # dc:subject
    loupe_subjects: list[str]  # loupe:subjects: the dc:subject entries Loupe added last time
    # key of HIERARCHIES -> the paths the packet holds there (only hierarchies it has)
    hierarchies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    loupe_paths: tuple[str, ...] = ()  # loupe:hierarchy: the hierarchy paths Loupe added last time

    def others_hierarchies(self) -> dict[str, tuple[str, ...]]:
        """`hierarchies` without the paths Loupe added."""
        return {kind: tuple(p for p in paths if p not in self.loupe_paths) for kind, paths in self.hierarchies.items()}


def read_packet(existing: bytes | None) -> PacketFields:
    """Read Loupe's fields from a packet (None or empty: an empty packet). Raises XmpError."""
    _root, _prefixes, descriptions = _load(existing)
    text, caption, subjects, loupe_subjects, loupe_paths = "", None, [], [], []
    kinds = {_q(ns, name): kind for kind, (ns, name, _c, _s) in HIERARCHIES.items()}
    held: dict[str, list[str]] = {}
    for child in (c for d in descriptions for c in d if c.tag in kinds):
        held.setdefault(kinds[child.tag], []).extend(_li_texts(child))
    for desc in descriptions:
        for key, value in desc.attrib.items():
            if key == _q(LOUPE_NS, "caption"):
                caption = value
            elif key == _q(DC_NS, "description") and not text:
                text = value.strip()
        for child in desc:
            if child.tag == _q(LOUPE_NS, "caption"):
                caption = (child.text or "").strip()
            elif child.tag == _q(LOUPE_NS, "subjects"):
                loupe_subjects += _li_texts(child)
            elif child.tag == _q(LOUPE_NS, "hierarchy"):
                loupe_paths += _li_texts(child)
            elif child.tag == _q(DC_NS, "subject"):
                subjects += _li_texts(child)
            elif child.tag == _q(DC_NS, "description") and not text:
                text = _default_text(child)
    return PacketFields(text, caption, _dedupe(subjects), _dedupe(loupe_subjects),
                        {kind: tuple(_dedupe(paths)) for kind, paths in held.items()}, tuple(_dedupe(loupe_paths)))


def _default_text(prop: ET.Element) -> str:
    alt = next((c for c in prop if c.tag == _q(RDF_NS, "Alt")), None)
    if alt is None:
        return (prop.text or "").strip()
    items = [li for li in alt if li.tag == _q(RDF_NS, "li")]
    default = next((li for li in items if li.get(_q(XML_NS, "lang")) == "x-default"), None)
    if default is None and items:  # no x-default (against the spec, but written): the first
        default = items[0]
    return (default.text or "").strip() if default is not None else ""


@dataclass(frozen=True)
class MergeResult:
    packet: bytes
    subjects: list[str]  # dc:subject as written: others' keywords, then Loupe's


def merge_packet(
    existing: bytes | None,
    caption: str,
    subjects: list[str],
    *,
    description: str | None = None,
    other_subjects: Sequence[str] = (),
    settings: str = "",
    hierarchies: Mapping[str, Sequence[str]] | None = None,
    hierarchy_root: str = DEFAULT_HIERARCHY_ROOT,
) -> MergeResult:
    """Return a full XMP packet: `existing` (or an empty one) with Loupe's fields merged in.

    caption goes to loupe:caption; `description` (decided by `descriptions.plan`) to
    dc:description x-default, None leaving dc:description as it is. dc:subject keeps the
    keywords others wrote (plus `other_subjects`, e.g. from IPTC) and replaces the ones Loupe
    added last time with `subjects`. An IPTC keyword in `other_subjects` that is a cut copy
    (limits.py) of a longer keyword is that keyword, not another one.

    Keyword hierarchies (Lightroom's lr:hierarchicalSubject, digiKam's TagsList) that the
    packet holds get Loupe's labels too, as `hierarchy_root|label`: tools that read the
    hierarchy first (Immich, Lightroom) then see them. Loupe's entries from last time
    (loupe:hierarchy) are replaced; others' are kept. `hierarchies` (key of HIERARCHIES ->
    paths; the photo's own, when this packet is its sidecar) starts a hierarchy the packet
    lacks with the photo's paths, so a reader that takes the sidecar's hierarchy over the
    photo's loses none of them. Raises XmpError for a packet that is not XMP.
    """
    caption = _clean(caption)
    subjects = _dedupe([_clean(s) for s in subjects])
    root, prefixes, descriptions = _load(existing)
    main = descriptions[0]

    # What Loupe wrote last time, then drop every loupe: field (Loupe owns the namespace).
    prev_subjects: set[str] = set()
    prev_paths: set[str] = set()
    for desc in descriptions:
        for key in [k for k in desc.attrib if k.startswith(f"{{{LOUPE_NS}}}")]:
            del desc.attrib[key]
        for child in [c for c in desc if c.tag.startswith(f"{{{LOUPE_NS}}}")]:
            if child.tag == _q(LOUPE_NS, "subjects"):
                prev_subjects.update(_li_texts(child))
            elif child.tag == _q(LOUPE_NS, "hierarchy"):
                prev_paths.update(_li_texts(child))
            desc.remove(child)

    # dc:subject: others' keywords kept, Loupe's previous ones replaced by the new ones.
    subject_props = [(d, c) for d in descriptions for c in d if c.tag == _q(DC_NS, "subject")]
    in_xmp = [t for _, c in subject_props for t in _li_texts(c)]
    whole = [*in_xmp, *prev_subjects, *subjects]
    legacy = [o for o in (_clean(s) for s in other_subjects)
              if not any(is_cut_copy(o, w, IPTC_KEYWORD_BYTES) for w in whole)]
    kept = [s for s in _dedupe(in_xmp + legacy) if s not in prev_subjects]
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

    if description is not None and _clean(description):
        _set_description(descriptions, main, _clean(description))

    paths = _merge_hierarchies(descriptions, main, subjects, hierarchies or {}, hierarchy_root, prev_paths)

    # Loupe's own record of what it wrote, so the next run replaces only that.
    if paths:
        _bag(ET.SubElement(main, _q(LOUPE_NS, "hierarchy")), paths)
    if caption:
        ET.SubElement(main, _q(LOUPE_NS, "caption")).text = caption
    if added:
        _bag(ET.SubElement(main, _q(LOUPE_NS, "subjects")), added)
    if settings:
        ET.SubElement(main, _q(LOUPE_NS, "settings")).text = settings

    return MergeResult(_serialize(root, prefixes), final)


def _merge_hierarchies(descriptions: list[ET.Element], main: ET.Element, labels: list[str],
                       seed: Mapping[str, Sequence[str]], root: str, prev_paths: set[str]) -> list[str]:
    """Put `root<sep>label` into each keyword hierarchy the packet holds (or `seed` starts);
    drop Loupe's entries from last time (`prev_paths`). Returns the entries Loupe added."""
    root = _clean(root) or DEFAULT_HIERARCHY_ROOT
    added: list[str] = []
    for kind, (ns, name, container, sep) in HIERARCHIES.items():
        props = [(d, c) for d in descriptions for c in d if c.tag == _q(ns, name)]
        if not props and kind not in seed:
            continue
        found = [t for _, c in props for t in _li_texts(c)] if props else list(seed[kind])
        others = [t for t in found if t not in prev_paths]
        root_part = root.replace(sep, " ")
        mine = [f"{root_part}{sep}{label.replace(sep, ' ')}" for label in labels]
        new = [p for p in mine if p not in others]
        entries = _dedupe(others + new)
        for desc, prop in props:
            desc.remove(prop)
        if entries:
            _bag(ET.SubElement(main if not props else props[0][0], _q(ns, name)), entries, container)
        added += new
    return _dedupe(added)


def _set_description(descriptions: list[ET.Element], main: ET.Element, text: str) -> None:
    """dc:description x-default := text; other languages kept."""
    for desc in descriptions:  # the short form (an attribute) becomes an element
        old = desc.attrib.pop(_q(DC_NS, "description"), None)
        if old is not None:
            prop = ET.SubElement(desc, _q(DC_NS, "description"))
            prop.text = old
    prop = next((c for d in descriptions for c in d if c.tag == _q(DC_NS, "description")), None)
    if prop is None:
        prop = ET.SubElement(main, _q(DC_NS, "description"))
    alt = next((c for c in prop if c.tag == _q(RDF_NS, "Alt")), None)
    if alt is None:  # a plain-text description (not Lang Alt): make it one
        prop.text = None
        for child in list(prop):
            prop.remove(child)
        prop.attrib.clear()
        alt = ET.SubElement(prop, _q(RDF_NS, "Alt"))
    default = next((li for li in alt if li.get(_q(XML_NS, "lang")) == "x-default"), None)
    if default is None:
        default = ET.Element(_q(RDF_NS, "li"), {_q(XML_NS, "lang"): "x-default"})
    else:
        alt.remove(default)
    default.text = text
    alt.insert(0, default)  # x-default comes first in a Lang Alt


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
    photo: Path,
    caption: str,
    subjects: list[str],
    *,
    style: str = "darktable",
    settings: str = "",
    existing: str = "keep",
    persons: bool = False,
    hierarchy_root: str = DEFAULT_HIERARCHY_ROOT,
) -> WriteResult:
    """Merge Loupe's caption and labels into (or create) the photo's sidecar.

    A new sidecar takes the photo's owner, group and permission bits (files.atomic_write), so
    whoever owns the photo can edit it. Labels go into the keyword hierarchies the sidecar or
    the photo holds, under `hierarchy_root` (see `merge_packet`).

    `persons`: the caption is the person's own: it becomes the description (whatever was
    there; decision "replaced" says when that was someone else's) and is not recorded as
    Loupe's caption, so a later scan, even with a lost index, sees it as the person's.
    Otherwise the description follows the `existing` policy (EXISTING_POLICIES, see `descriptions`);
    the photo's own embedded description (XMP, IPTC, EXIF) counts as someone else's too,
    and is read only: the photo is never modified. An unchanged result is not rewritten, so a
    resumed scan leaves finished sidecars alone. Returns WriteResult(path=the sidecar).
    Raises XmpError (sidecar is a link, read-only or not XMP), UsageError (unknown policy).
    """
    check_policy(existing)
    target = sidecar_path(photo, style)
    if target.is_symlink():
        raise XmpError(f"sidecar {target.name} is a symbolic link; left as it is")
    if target.exists() and is_read_only(target):
        # Renaming over it would work (the folder is writable) but would ignore the lock.
        raise XmpError(f"sidecar {target.name} is read-only; left as it is")
    try:
        before = target.read_bytes()
    except FileNotFoundError:
        before = None
    try:
        fields = read_packet(before)
    except XmpError as exc:
        raise XmpError(f"sidecar {target.name} {exc}") from None
    own_xmp, legacy, png_text = _photo_metadata(photo)
    found = [("sidecar", _clean(fields.description)), ("xmp", _clean(own_xmp.description)),
             ("iptc", _clean(legacy.caption)), ("exif", _clean(legacy.description)), ("png", _clean(png_text))]
    loupe_texts = [t for t in (fields.loupe_caption, own_xmp.loupe_caption) if t]
    decided = plan(found, ("sidecar",), _clean(caption), loupe_texts, "replace" if persons else existing)
    merged = merge_packet(before, "" if persons else caption, subjects, description=decided.texts["sidecar"],
                          settings=settings, hierarchies=own_xmp.others_hierarchies(),
                          hierarchy_root=hierarchy_root)
    result = WriteResult(changed=before != merged.packet, decision=decided.decision,
                         existing=decided.existing, path=target)
    if result.changed:
        check_packet(merged.packet)
        atomic_write(target, merged.packet, owner_of=photo)
    return result


def others_description(photo: Path, style: str = "darktable") -> str:
    """The description someone other than Loupe wrote for `photo`: in its sidecar (`style`),
    else in the photo's own XMP, IPTC or EXIF; "" when there is none. Read only."""
    try:
        fields = read_packet(sidecar_path(photo, style).read_bytes())
    except (OSError, XmpError):
        fields = PacketFields("", None, [], [])
    own_xmp, legacy, png_text = _photo_metadata(photo)
    loupe_texts = [t for t in (fields.loupe_caption, own_xmp.loupe_caption) if t]
    for text in (fields.description, own_xmp.description, legacy.caption, legacy.description, png_text):
        part = persons_part(_clean(text or ""), loupe_texts)
        if part:
            return part
    return ""


def _photo_metadata(photo: Path) -> tuple[PacketFields, iptc_exif.Legacy, str]:
    """The photo's embedded XMP fields, IPTC/EXIF description and PNG text Description ("" for
    other formats), read only. A photo whose metadata exiv2 cannot read (GIF, BMP, a broken
    block) counts as having none: the sidecar is still worth writing, and the photo itself is
    left as it is either way."""
    empty = PacketFields("", None, [], [])
    try:
        img = _pyexiv2().ImageData(photo.read_bytes())
    except (OSError, RuntimeError, ValueError):
        return empty, iptc_exif.Legacy(), ""
    try:
        try:
            fields = read_packet(img.read_raw_xmp().encode("utf-8"))
        except (XmpError, RuntimeError, ValueError):
            fields = empty
        try:
            legacy = iptc_exif.read(img)
        except (RuntimeError, ValueError):
            legacy = iptc_exif.Legacy()
        png_text = ""
        if photo.suffix.lower() == ".png":
            try:
                png_text = iptc_exif.read_png_description(img)
            except (RuntimeError, ValueError):
                pass
        return fields, legacy, png_text
    finally:
        img.close()


def embed(
    data: bytes,
    caption: str,
    subjects: list[str],
    *,
    suffix: str,
    settings: str = "",
    existing: str = "keep",
    persons: bool = False,
    hierarchy_root: str = DEFAULT_HIERARCHY_ROOT,
) -> WriteResult:
    """The photo's bytes with Loupe's caption and labels in its metadata, as the MWG asks:
    description in XMP dc:description, IPTC Caption-Abstract and EXIF ImageDescription,
    keywords in XMP dc:subject and IPTC Keywords, kept in sync. Pixels are not re-encoded and
    other metadata is kept. The description follows the `existing` policy (see `descriptions`),
    or is the caption everywhere when it is the person's own (`persons`, as in `write_sidecar`).

    WebP has no IPTC (its container defines only EXIF and XMP chunks, and exiv2 silently drops
    IPTC there), so a WebP gets XMP and EXIF only. A PNG's text `Description` (tEXt/iTXt) is
    read as one more place, and kept in sync where the PNG has one. IPTC values are cut to
    IIM's limits (`WriteResult.cut` counts them); a new EXIF IFD0 gets the tags the standard
    requires (see `iptc_exif.write_exif_description`). Labels also go into the keyword
    hierarchies the photo's XMP holds, under `hierarchy_root`.
    Returns WriteResult(data=new bytes; the input itself when nothing changed). Raises XmpError
    for formats exiv2 cannot write or metadata it cannot parse, UsageError for a bad policy.
    """
    check_policy(existing)
    suffix = suffix.lower()
    if suffix not in EMBED_EXTENSIONS:
        raise XmpError(
            f"{suffix.lstrip('.').upper() or 'this'} files cannot hold XMP metadata; use sidecars for them"
        )
    carries_iptc = suffix != ".webp"
    pyexiv2 = _pyexiv2()
    try:
        img = pyexiv2.ImageData(data)
        try:
            raw = img.read_raw_xmp()
            before = raw.encode("utf-8") if raw.strip() else None
            fields = read_packet(before)
            legacy = iptc_exif.read(img)  # a WebP's IPTC reads as empty
            png_text = iptc_exif.read_png_description(img) if suffix == ".png" else ""
            found = [(place, _clean(text)) for place, text in
                     (("xmp", fields.description), ("iptc", legacy.caption), ("exif", legacy.description),
                      ("png", png_text))]
            targets = ("xmp", "iptc", "exif") if carries_iptc else ("xmp", "exif")
            if _clean(png_text):
                targets += ("png",)
            loupe_texts = [fields.loupe_caption] if fields.loupe_caption else []
            decided = plan(found, targets, _clean(caption), loupe_texts, "replace" if persons else existing)
            merged = merge_packet(before, "" if persons else caption, subjects, description=decided.texts["xmp"],
                                  other_subjects=legacy.keywords, settings=settings, hierarchy_root=hierarchy_root)
            # Each pyexiv2 modify_* rewrites the file in memory: only the blocks that change.
            if decided.texts["exif"] is not None:
                iptc_exif.write_exif_description(img, decided.texts["exif"], suffix=suffix, data=data)
            if decided.texts.get("png") is not None:
                iptc_exif.write_png_description(img, decided.texts["png"])
            cut = 0
            if carries_iptc:
                iptc_text = decided.texts["iptc"]
                if iptc_text is not None and cut_utf8(iptc_text, IPTC_CAPTION_BYTES) == _clean(legacy.caption):
                    iptc_text = None  # already there, cut to the limit
                shortened, _n = cut_keywords(merged.subjects)
                keywords = merged.subjects if tuple(shortened) != legacy.keywords else None
                cut = iptc_exif.write_iptc(img, caption=iptc_text, keywords=keywords)
            img.modify_raw_xmp(merged.packet.decode("utf-8"))
            new = img.get_bytes()
        finally:
            img.close()
    except XmpError as exc:
        raise XmpError(f"its embedded XMP {exc}") from None
    except (RuntimeError, ValueError) as exc:
        raise XmpError(f"exiv2 could not write its metadata ({_short(exc)})") from None
    if suffix in (".jpg", ".jpeg", ".jpe"):
        new = iptc_exif.update_jpeg_iptc_digest(new)
    changed = new != data
    return WriteResult(changed=changed, decision=decided.decision, existing=decided.existing,
                       data=new if changed else data, cut=cut if changed else 0)


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:160]
