"""A "messy collection": one folder tree holding every kind of real-collection trouble of issue 20.

Built from public bug reports against photo tools (Photoview, Immich, PhotoPrism, LibrePhotos,
geeqie, osxphotos, darktable) and the issue's own examples. `build(root)` makes it and returns
a `Messy` that names each kind's files, so a test finds what it checks by name, not by guessing.

Kinds (issue 20's numbers):
  1 a Latin-1 file name (bytes that are not UTF-8: surrogate escapes in Python)
  2 housekeeping folders and app libraries (Synology @eaDir, recycle bins, Windows system
    folders, a macOS Photos library package)
  3 boilerplate descriptions in EXIF, IPTC, XMP and PNG text, and a one-word real one
  4 a long keyword with another tool's 64-byte IPTC copy, a PNG text Description, a JPEG with
    no EXIF at all
  5 links (a symlinked photo, a symlinked folder as git-annex leaves them, a loop, a dangling
    link), AVIF, .jfif, RAW files
  6 a photo to delete after the first scan (`Messy.to_delete`)
  7 a photo with a second hard link, a photo owned by someone else with its own mode and an
    extended attribute
  8 a read-only copy ("the card")
  9 keyword hierarchies: a photo with lr:hierarchicalSubject, one whose sidecar has digiKam's
    TagsList

RAW: small real DNGs with an embedded JPEG preview (`make_dng`, checked with LibRaw through
rawpy and with exiftool). TODO(issue 20 kind 5): CR2/CR3/NEF/ARW/RAF/ORF/RW2 are proprietary
containers that cannot be made cheaply here; the plan stage's tests can copy a DNG to those
names to check that they are found and counted, not decoded.

Metadata is set with exiftool (an independent writer), pixels with Pillow. ~0.2 s per exiftool
call: the tree takes a few seconds, so tests build it once per module.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from library_fixtures import photo_array, save_photo

# (file name, EXIF ImageDescription) that cameras and phones wrote by themselves (kind 3).
BOILERPLATE_EXIF = (
    ("cuva.jpg", "_cuva"), ("hdr.jpg", "hdr"), ("smart.jpg", "smart"), ("moto.jpg", "HELLOMOTO"),
    ("beautiful.jpg", "My beautiful picture"), ("medion.jpg", "MEDION DIGITAL CAMERA"),
    ("kenox.jpg", "<KENOX S1050  / Samsung S1050>"), ("olympus.jpg", "OLYMPUS DIGITAL CAMERA"),
)
LONG_KEYWORD = "Großmutters Garten in Zürich im Sommer neunzehnhundertachtundneunzig, hinter dem Haus"
OWNER = (1234, 2345)  # uid, gid of "someone else" (kind 7); needs root to set
XATTR = ("user.loupe.test", b"kept")


@dataclass
class Messy:
    root: Path
    plain: list[Path] = field(default_factory=list)  # ordinary photos that must be captioned
    latin1: Path | None = None
    latin1_folder: Path | None = None  # holds IMG_0300.jpg
    housekeeping: list[Path] = field(default_factory=list)  # must never be captioned or written into
    symlinked_photo: Path | None = None
    symlinked_folder: Path | None = None
    loop: Path | None = None
    dangling: Path | None = None
    avif: Path | None = None
    jfif: Path | None = None
    raw: list[Path] = field(default_factory=list)  # DNGs with an embedded JPEG preview (make_dng)
    raw_jpeg_pair: Path | None = None  # IMG_0101.JPG beside IMG_0101.dng
    boilerplate: dict[str, Path] = field(default_factory=dict)  # description -> photo
    boilerplate_iptc: Path | None = None  # "OLYMPUS DIGITAL CAMERA" in IPTC, "SONY DSC" in XMP
    boilerplate_png: Path | None = None  # PNG text Description "HELLOMOTO"
    real_one_word: Path | None = None  # EXIF ImageDescription "Grandma": a person's, kept
    long_keyword: Path | None = None  # XMP dc:subject LONG_KEYWORD, IPTC its 64-byte cut copy
    png_description: Path | None = None  # PNG tEXt Description "OLD CAPTION"
    no_exif: Path | None = None  # a JPEG with no EXIF block at all
    hard_linked: tuple[Path, Path] | None = None  # two names of one file
    owned: Path | None = None  # owner OWNER, mode 0640, xattr XATTR (when root)
    read_only: Path | None = None  # in a read-only folder, mode 0444
    to_delete: Path | None = None
    lr_hierarchy: Path | None = None  # XMP lr:hierarchicalSubject "Family|Grandma"
    digikam_sidecar: Path | None = None  # photo whose photo.jpg.xmp has digiKam TagsList "Places/Zürich"
    # plan-level additions (kinds 2, 5): see add_plan_kinds
    raw_other: list[Path] = field(default_factory=list)  # the DNG under CR2/CR3/NEF/ARW/RAF/ORF/RW2 names
    jpe: Path | None = None
    jxl: Path | None = None  # JPEG XL signature: counted as left out unless a decoder is installed
    excluded: list[Path] = field(default_factory=list)  # left out by the person's .loupeignore
    app_caches: list[Path] = field(default_factory=list)  # Lightroom previews, darktable mipmaps, Capture One


def exiftool(path: Path, *assignments: str) -> None:
    subprocess.run(["exiftool", "-q", "-q", "-overwrite_original", *assignments, str(path)], check=True)


def _photo(path: Path, seed: int, *assignments: str) -> Path:
    save_photo(path, seed)
    if assignments:
        exiftool(path, *assignments)
    return path


def build(root: Path) -> Messy:
    """Make the messy collection under `root` (created); see the module notes."""
    root.mkdir(parents=True, exist_ok=True)
    m = Messy(root)
    seed = iter(range(500, 10_000))

    m.plain = [_photo(root / "IMG_0001.jpg", next(seed)), _photo(root / "IMG_0002.jpg", next(seed))]

    # 1: a name that is not UTF-8 (surrogate escapes carry the raw bytes)
    m.latin1 = root / os.fsdecode(b"caf\xe9 \xe0 la plage.jpg")
    _photo(m.latin1, next(seed))
    m.latin1_folder = root / os.fsdecode(b"Urlaub M\xfcnchen")  # a folder name too (a zip from Windows)
    _photo(m.latin1_folder / "IMG_0300.jpg", next(seed))

    # 2: housekeeping folders and app libraries
    for rel in ("@eaDir/IMG_0001.jpg/SYNOPHOTO_THUMB_S.jpg", "@eaDir/IMG_0001.jpg/SYNOPHOTO_THUMB_XL.jpg",
                "#recycle/old.jpg", "@Recycle/old.jpg", "$RECYCLE.BIN/S-1-5-21/old.jpg",
                "System Volume Information/thumb.jpg",
                "Photos Library.photoslibrary/originals/A/IMG_0003.jpeg"):
        m.housekeeping.append(_photo(root / rel, next(seed)))

    # 3: boilerplate descriptions, in every container, and one real one-word description
    for name, text in BOILERPLATE_EXIF:
        m.boilerplate[text] = _photo(root / "boilerplate" / name, next(seed), f"-EXIF:ImageDescription={text}")
    m.boilerplate_iptc = _photo(root / "boilerplate" / "iptc.jpg", next(seed),
                                "-IPTC:Caption-Abstract=OLYMPUS DIGITAL CAMERA", "-XMP-dc:Description=SONY DSC")
    m.boilerplate_png = _png_with_description(root / "boilerplate" / "moto.png", next(seed), "HELLOMOTO")
    m.real_one_word = _photo(root / "boilerplate" / "grandma.jpg", next(seed), "-EXIF:ImageDescription=Grandma")

    # 4: limits
    m.long_keyword = _photo(root / "limits" / "garden.jpg", next(seed), f"-XMP-dc:Subject={LONG_KEYWORD}",
                            f"-IPTC:Keywords={LONG_KEYWORD}")  # exiftool cuts the IPTC copy to 64 bytes
    m.png_description = _png_with_description(root / "limits" / "old.png", next(seed), "OLD CAPTION")
    m.no_exif = root / "limits" / "no-exif.jpg"
    Image.fromarray(photo_array(next(seed))).save(m.no_exif, "JPEG", quality=90)

    # 5: links, formats
    annex = root / ".git" / "annex" / "objects" / "ab"
    target = _photo(annex / "SHA256E-s1--photo.jpg", next(seed))
    (root / "annexed").mkdir()
    m.symlinked_photo = root / "annexed" / "holiday.jpg"
    m.symlinked_photo.symlink_to(os.path.relpath(target, m.symlinked_photo.parent))
    m.symlinked_folder = root / "linked-folder"
    m.symlinked_folder.symlink_to(annex, target_is_directory=True)
    m.loop = root / "annexed" / "loop"
    m.loop.symlink_to("..", target_is_directory=True)
    m.dangling = root / "annexed" / "gone.jpg"
    m.dangling.symlink_to("nowhere.jpg")
    m.avif = root / "formats" / "phone.avif"
    m.avif.parent.mkdir()
    Image.fromarray(photo_array(next(seed))).save(m.avif, "AVIF")
    m.jfif = root / "formats" / "download.jfif"
    Image.fromarray(photo_array(next(seed))).save(m.jfif, "JPEG")
    m.raw.append(make_dng(root / "formats" / "IMG_0100.dng", next(seed)))
    # a RAW+JPEG pair, as cameras write them (captioned once, kind 5)
    m.raw.append(make_dng(root / "formats" / "IMG_0101.dng", next(seed)))
    m.raw_jpeg_pair = _photo(root / "formats" / "IMG_0101.JPG", next(seed))

    # 6: a photo the test deletes after the first scan
    m.to_delete = _photo(root / "IMG_0099.jpg", next(seed))

    # 7: identity
    first = _photo(root / "links" / "a.jpg", next(seed))
    second = root / "links" / "b-same-file.jpg"
    os.link(first, second)
    m.hard_linked = (first, second)
    m.owned = _photo(root / "owned" / "theirs.jpg", next(seed))
    os.chmod(m.owned, 0o640)
    try:
        os.setxattr(m.owned, XATTR[0], XATTR[1])
    except OSError:  # a file system without user xattrs: the test says so
        pass
    if os.geteuid() == 0:
        os.chown(m.owned, *OWNER)
        os.chown(m.owned.parent, *OWNER)

    # 8: a read-only copy (the card); root ignores modes, so Loupe checks the bits itself
    m.read_only = _photo(root / "card" / "DCIM" / "100CANON" / "IMG_0200.jpg", next(seed))
    os.chmod(m.read_only, 0o444)
    os.chmod(m.read_only.parent, 0o555)

    # 9: keyword hierarchies
    m.lr_hierarchy = _photo(root / "tags" / "lightroom.jpg", next(seed), "-XMP-lr:HierarchicalSubject=Family|Grandma",
                            "-XMP-dc:Subject=Grandma")
    m.digikam_sidecar = _photo(root / "tags" / "digikam.jpg", next(seed))
    sidecar = m.digikam_sidecar.with_name(m.digikam_sidecar.name + ".xmp")
    subprocess.run(["exiftool", "-q", "-q", "-o", str(sidecar), "-XMP-digiKam:TagsList=Places/Zürich",
                    "-XMP-dc:Subject=Zürich", str(m.digikam_sidecar)], check=True)
    add_plan_kinds(m, seed)
    return m


def add_plan_kinds(m: Messy, seed) -> None:
    """Kinds 2 and 5 beyond the issue's examples: every RAW name, .jpe, JPEG XL, app caches,
    a person's .loupeignore."""
    root = m.root
    # LibRaw reads the container, not the name: the small DNG stands in for each camera's RAW
    dng = (root / "formats" / "IMG_0100.dng").read_bytes()
    for i, ext in enumerate(("CR2", "CR3", "NEF", "ARW", "RAF", "ORF", "RW2")):
        other = root / "raw" / f"DSC_{i:04d}.{ext}"
        other.parent.mkdir(exist_ok=True)
        other.write_bytes(dng[:-1] + bytes([dng[-1] ^ (i + 1)]))  # distinct bytes: each its own photo
        m.raw_other.append(other)
    m.jpe = root / "formats" / "scan.jpe"
    Image.fromarray(photo_array(next(seed))).save(m.jpe, "JPEG")
    m.jxl = root / "formats" / "camera.jxl"
    m.jxl.write_bytes(b"\xff\x0a" + bytes(64))  # a bare JPEG XL codestream signature
    for rel in ("Catalog Previews.lrdata/0/0A/preview.jpg", "darktable/mipmaps-1a2b.d/0/1.jpg",
                "session/CaptureOne/Cache/Proxies/IMG_0001.jpg"):
        m.app_caches.append(_photo(root / rel, next(seed)))
    (root / "Screenshots").mkdir()
    m.excluded = [_photo(root / "Screenshots" / "shot.png", next(seed)),
                  _photo(root / "formats" / "download-thumb.jpg", next(seed))]
    (root / ".loupeignore").write_text("# a person's own excludes\nScreenshots/\n*-thumb.jpg\n")


def _png_with_description(path: Path, seed: int, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_text("Description", text)  # tEXt, as ImageMagick and many web tools write it
    Image.fromarray(photo_array(seed)).save(path, "PNG", pnginfo=info)
    return path


def make_dng(path: Path, seed: int, preview_size: tuple[int, int] = (48, 32), raw_side: int = 64) -> Path:
    """A small real DNG: IFD0 a JPEG preview (NewSubfileType 1, as cameras and Adobe's converter
    write it), a SubIFD with a 16-bit Bayer raw. LibRaw (rawpy) opens it and `extract_thumb()`
    gives the preview; exiftool calls it PreviewImage and -validate finds nothing. LibRaw
    refuses raws under 22 pixels a side, hence 64."""
    import io
    import struct

    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.fromarray(photo_array(seed, preview_size)).save(buf, "JPEG", quality=85)
    jpeg = buf.getvalue()
    w, h = preview_size
    raw = (np.arange(raw_side * raw_side, dtype="<u2").reshape(raw_side, raw_side) * 16).tobytes()
    SHORT, LONG, RATIONAL, SRATIONAL, BYTE, ASCII = 3, 4, 5, 10, 1, 2
    width = {SHORT: 2, LONG: 4, RATIONAL: 8, SRATIONAL: 8, BYTE: 1, ASCII: 1}
    ident = [(1, 1), (0, 1), (0, 1), (0, 1), (1, 1), (0, 1), (0, 1), (0, 1), (1, 1)]
    ifd0 = [(254, LONG, [1]), (256, LONG, [w]), (257, LONG, [h]), (258, SHORT, [8, 8, 8]), (259, SHORT, [7]),
            (262, SHORT, [6]), (271, ASCII, b"LoupeCam\0"), (272, ASCII, b"RAW 1\0"), (273, LONG, "jpeg"),
            (277, SHORT, [3]), (278, LONG, [h]), (279, LONG, [len(jpeg)]), (282, RATIONAL, [(72, 1)]),
            (283, RATIONAL, [(72, 1)]), (296, SHORT, [2]), (330, LONG, "subifd"),
            (50706, BYTE, bytes([1, 4, 0, 0])), (50707, BYTE, bytes([1, 1, 0, 0])),
            (50708, ASCII, b"LoupeCam RAW 1\0"), (50721, SRATIONAL, ident),
            (50728, RATIONAL, [(1, 1)] * 3), (50778, SHORT, [21])]
    sub = [(254, LONG, [0]), (256, LONG, [raw_side]), (257, LONG, [raw_side]), (258, SHORT, [16]),
           (259, SHORT, [1]), (262, SHORT, [32803]), (273, LONG, "raw"), (277, SHORT, [1]),
           (278, LONG, [raw_side]), (279, LONG, [len(raw)]), (284, SHORT, [1]), (33421, SHORT, [2, 2]),
           (33422, BYTE, bytes([0, 1, 1, 2])), (50717, LONG, [65535])]

    def packed(kind: int, values) -> bytes:
        if kind in (RATIONAL, SRATIONAL):
            return b"".join(struct.pack("<ii" if kind == SRATIONAL else "<II", *v) for v in values)
        if kind in (SHORT, LONG):
            return struct.pack(f"<{len(values)}{'H' if kind == SHORT else 'I'}", *values)
        return bytes(values)

    def size(tags) -> int:
        big = sum(len(b) + (len(b) & 1) for b in (packed(k, [0] if isinstance(v, str) else v) for _t, k, v in tags)
                  if len(b) > 4)
        return 2 + 12 * len(tags) + 4 + big

    where = {"subifd": 8 + size(ifd0)}
    where["jpeg"] = where["subifd"] + size(sub)
    where["raw"] = where["jpeg"] + len(jpeg) + (len(jpeg) & 1)

    def ifd(tags, at: int) -> bytes:
        body, extra = bytearray(struct.pack("<H", len(tags))), bytearray()
        extra_at = at + 2 + 12 * len(tags) + 4
        for tag, kind, values in sorted(tags):
            data = packed(kind, [where[values]] if isinstance(values, str) else values)
            count = len(data) // width[kind]
            if len(data) <= 4:
                body += struct.pack("<HHI", tag, kind, count) + data.ljust(4, b"\0")
            else:
                body += struct.pack("<HHII", tag, kind, count, extra_at + len(extra))
                extra += data + b"\0" * (len(data) & 1)
        return bytes(body + struct.pack("<I", 0) + extra)

    out = b"II*\0" + struct.pack("<I", 8) + ifd(ifd0, 8) + ifd(sub, where["subifd"])
    path.write_bytes(out + jpeg + b"\0" * (len(jpeg) & 1) + raw)
    return path


def restore_modes(m: Messy) -> None:
    """Make the read-only parts removable again (pytest's tmp_path cleanup)."""
    if m.read_only is not None:
        os.chmod(m.read_only.parent, 0o755)
        os.chmod(m.read_only, 0o644)
