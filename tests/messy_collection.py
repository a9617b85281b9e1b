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

RAW: TODO(issue 20 kind 5) the RAW entries are TIFF-based DNG stand-ins with a small JPEG
preview in IFD1 made by exiftool; real CR2/NEF/ARW files cannot be made cheaply here. They
serve the plan stage's "left out / preview" checks, not a RAW decoder's.

Metadata is set with exiftool (an independent writer), pixels with Pillow. ~0.2 s per exiftool
call: the tree takes a few seconds, so tests build it once per module.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

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
    housekeeping: list[Path] = field(default_factory=list)  # must never be captioned or written into
    symlinked_photo: Path | None = None
    symlinked_folder: Path | None = None
    loop: Path | None = None
    dangling: Path | None = None
    avif: Path | None = None
    jfif: Path | None = None
    raw: list[Path] = field(default_factory=list)
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
    for name in ("IMG_0100.dng", "IMG_0101.dng"):
        m.raw.append(_dng_stand_in(root / "formats" / name, next(seed)))

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
    return m


def _png_with_description(path: Path, seed: int, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_text("Description", text)  # tEXt, as ImageMagick and many web tools write it
    Image.fromarray(photo_array(seed)).save(path, "PNG", pnginfo=info)
    return path


def _dng_stand_in(path: Path, seed: int) -> Path:
    """A TIFF that says it is a DNG, with a small JPEG preview (see the module's RAW TODO)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tiff = path.with_suffix(".tif")
    preview = path.with_suffix(".preview.jpg")
    Image.fromarray(photo_array(seed, (48, 32))).save(tiff, "TIFF")
    Image.fromarray(photo_array(seed, (48, 32))).save(preview, "JPEG")
    exiftool(tiff, "-DNGVersion=1.4.0.0", "-Make=LoupeCam", "-Model=RAW 1")
    shutil.move(tiff, path)
    preview.unlink()  # TODO(issue 20 kind 5): embed it as PreviewImage once a writer for that exists here
    return path


def restore_modes(m: Messy) -> None:
    """Make the read-only parts removable again (pytest's tmp_path cleanup)."""
    if m.read_only is not None:
        os.chmod(m.read_only.parent, 0o755)
        os.chmod(m.read_only, 0o644)
