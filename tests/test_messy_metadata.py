"""Issue 20's write-level kinds on the messy collection, read back with exiftool (and -validate).

Kind 3 boilerplate descriptions, kind 4 metadata limits and PNG text descriptions, kind 7 file
identity (owner, group, mode, xattrs, hard links), kind 9 keyword hierarchies. Each test scans
its own part of one messy collection (tests/messy_collection.py), built once for the module.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from engine import library
from engine.library import xmp
from engine.library.boilerplate import SOURCES, is_boilerplate
from engine.library.descriptions import APPEND_SEPARATOR
from engine.library.limits import IPTC_CAPTION_BYTES, IPTC_KEYWORD_BYTES, IPTC_LIMIT_NOTE, cut_utf8

import messy_collection
from library_fixtures import FakeEngine, decoded, sha

CAPTION = "a tabby cat on a red sofa"


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    m = messy_collection.build(tmp_path_factory.mktemp("messy") / "photos")
    yield m
    messy_collection.restore_modes(m)


def tags(path: Path) -> dict:
    out = subprocess.run(["exiftool", "-j", "-G1", "-a", "-validate", "-all", str(path)],
                         capture_output=True, text=True, encoding="utf-8", check=True)
    return json.loads(out.stdout)[0]


def valid(t: dict) -> dict:
    """`t` when exiftool -validate found nothing to say (else the assertion names the warnings)."""
    assert t.get("ExifTool:Validate") == "OK", {k: v for k, v in t.items() if k.startswith("ExifTool")}
    return t


def as_list(value: object) -> list:
    return [] if value is None else value if isinstance(value, list) else [value]


def places(t: dict) -> tuple:
    return t.get("XMP-dc:Description"), t.get("IPTC:Caption-Abstract"), t.get("IFD0:ImageDescription")


# -- kind 3: boilerplate descriptions

@pytest.mark.parametrize("text", [
    "_cuva", "hdr", "smart", "HELLOMOTO", "My beautiful picture", "MEDION DIGITAL CAMERA",
    "<KENOX S1050  / Samsung S1050>", "OLYMPUS DIGITAL CAMERA", "  olympus   digital camera ", "Canon EOS 5D",
    "SAMSUNG", "rhdr", "IMG_1234.JPG", "DCIM\\100OLYMP", "", "iPhone 12 Pro Max", "SONY DSC-W55", "Pixel 7", "PXL_20230408_060152625.jpg", "P1010001",
])
def test_boilerplate_is_recognised(text):
    assert is_boilerplate(text)


@pytest.mark.parametrize("text", [
    "Grandma", "Olympus", "beach", "Anna", "Holiday 2024", "A380", "Canon 5D on a tripod", "Zürich",
    "HDR sunset over the lake", "smart boy", "Max", "Mini", "mobile phone", "Photo", "Pixel", "Nikon D850 at the lake", "P1",
])
def test_a_short_real_description_is_kept(text):
    assert not is_boilerplate(text)


def test_every_boilerplate_entry_says_where_it_comes_from():
    assert all(text and source for text, source in SOURCES)
    assert any("PhotoPrism" in source for _t, source in SOURCES)


def test_scan_writes_over_boilerplate_in_every_container(messy):
    summary = library.scan(messy.root / "boilerplate", engine=FakeEngine(fixed_caption=CAPTION), write="embed")
    assert summary.write_failed == 0
    assert not [n for n in summary.notices if n.kind in ("kept", "appended", "replaced")
                and "Grandma" not in n.message], summary.notices  # boilerplate is nobody's
    for text, photo in messy.boilerplate.items():
        t = valid(tags(photo))
        assert places(t) == (CAPTION,) * 3, (text, places(t))
    assert places(valid(tags(messy.boilerplate_iptc))) == (CAPTION,) * 3
    t = valid(tags(messy.boilerplate_png))
    assert t["PNG:Description"] == CAPTION == t["XMP-dc:Description"]  # PNG text: in sync
    # the guard: a one-word description a person wrote is kept everywhere, with a notice
    t = valid(tags(messy.real_one_word))
    assert places(t) == ("Grandma",) * 3 and t["XMP-loupe:Caption"] == CAPTION
    assert [n for n in summary.notices if n.kind == "kept" and '"Grandma"' in n.message]


def test_sidecar_takes_the_caption_over_boilerplate(messy, tmp_path):
    photo = messy.boilerplate["<KENOX S1050  / Samsung S1050>"]
    result = xmp.write_sidecar(photo, CAPTION, ["cat"], style="darktable")
    assert (result.decision, result.existing) == ("written", None)
    assert valid(tags(result.path))["XMP-dc:Description"] == CAPTION


# -- kind 4: limits, PNG text, a new IFD0

LONG_CAPTION = "東京の猫 " * 420  # 5040 bytes in UTF-8: over IPTC's 2000


def test_limits_png_text_and_a_new_ifd0(messy):
    folder = messy.root / "limits"
    before_pixels = decoded(messy.no_exif)
    summary = library.scan(folder, engine=FakeEngine(fixed_caption=LONG_CAPTION), write="embed", existing="append")
    assert summary.write_failed == 0
    caption = LONG_CAPTION.strip()
    cut_notes = [n for n in summary.notices if n.kind == "iptc-limit"]
    assert [n.message for n in cut_notes] == [IPTC_LIMIT_NOTE]  # said once for the scan, not per photo
    from loupe.library import summary_text

    text = summary_text(summary)  # what the CLI prints
    assert text.count(IPTC_LIMIT_NOTE) == 1 and "1 note on IPTC's size limits" in text.splitlines()[0]

    # the caption: whole in XMP and EXIF, cut on a character boundary in IPTC
    t = valid(tags(messy.no_exif))
    assert t["XMP-dc:Description"] == caption == t["IFD0:ImageDescription"]
    iptc = t["IPTC:Caption-Abstract"]
    assert iptc == cut_utf8(caption, IPTC_CAPTION_BYTES) and len(iptc.encode()) <= IPTC_CAPTION_BYTES
    assert caption.startswith(iptc) and len(iptc.encode()) > IPTC_CAPTION_BYTES - 4
    # a JPEG that had no EXIF gets a whole IFD0 (validate: no missing required tags), pixels kept
    assert t["IFD0:XResolution"] and t["IFD0:ResolutionUnit"] and t["IFD0:YCbCrPositioning"]
    assert (decoded(messy.no_exif) == before_pixels).all()

    # the long keyword: once in XMP, its cut copy in IPTC is not a second keyword
    t = valid(tags(messy.long_keyword))
    subjects = as_list(t["XMP-dc:Subject"])
    assert subjects.count(messy_collection.LONG_KEYWORD) == 1
    assert not [s for s in subjects if s != messy_collection.LONG_KEYWORD and messy_collection.LONG_KEYWORD.startswith(s)]
    keywords = as_list(t["IPTC:Keywords"])
    assert all(len(k.encode()) <= IPTC_KEYWORD_BYTES for k in keywords)
    assert cut_utf8(messy_collection.LONG_KEYWORD, IPTC_KEYWORD_BYTES) in keywords
    # again, with new labels, under append: still one
    data = messy.long_keyword.read_bytes()
    again = xmp.embed(data, "a garden", ["rose"], suffix=".jpg", existing="append")
    messy.long_keyword.write_bytes(again.data)
    t = valid(tags(messy.long_keyword))
    assert as_list(t["XMP-dc:Subject"]).count(messy_collection.LONG_KEYWORD) == 1
    assert len([s for s in as_list(t["XMP-dc:Subject"]) if s.startswith("Großmutters")]) == 1

    # PNG text Description joins the rule: under append, every place holds "OLD CAPTION | caption"
    t = valid(tags(messy.png_description))
    want = "OLD CAPTION" + APPEND_SEPARATOR + caption
    assert t["XMP-dc:Description"] == want == t["PNG:Description"] == t["IFD0:ImageDescription"]
    assert [n for n in summary.notices if n.kind == "appended" and n.path.endswith("old.png")]
    assert again.cut == 1  # the keyword list was rewritten (new labels): its long keyword cut again


def test_png_description_under_keep_is_the_persons(tmp_path):
    src = messy_collection._png_with_description(tmp_path / "p.png", 3, "Oma im Garten")
    result = xmp.embed(src.read_bytes(), CAPTION, ["cat"], suffix=".png", existing="keep")
    assert (result.decision, result.existing) == ("kept", "Oma im Garten")
    src.write_bytes(result.data)
    t = valid(tags(src))
    assert t["PNG:Description"] == "Oma im Garten" == t["XMP-dc:Description"] == t["IPTC:Caption-Abstract"]
    assert xmp.others_description(src) == "Oma im Garten"  # the Caption tab's edit sees it too
    side = xmp.write_sidecar(src, CAPTION, ["cat"])  # a sidecar counts the PNG's text too
    assert (side.decision, side.existing) == ("kept", "Oma im Garten")
    assert valid(tags(side.path))["XMP-dc:Description"] == "Oma im Garten"


def test_legacy_text_of_exactly_64_bytes_is_not_taken_for_a_cut():
    from engine.library.iptc_exif import decode

    legacy = ("a" * 63 + "é").encode("cp1252")  # undeclared, 64 bytes, ends in a Latin-1 letter
    assert decode(legacy, IPTC_KEYWORD_BYTES) == "a" * 63 + "é"
    cut = ("a" + "ä" * 32).encode()[:64]  # UTF-8 before the cut: a cut, even undeclared
    assert decode(cut, IPTC_KEYWORD_BYTES) == "a" + "ä" * 31
    assert decode(("a" * 63 + "ä").encode()[:64], IPTC_KEYWORD_BYTES, utf8=True) == "a" * 63


def test_a_keyword_another_tool_cut_mid_character_is_not_a_second_keyword(tmp_path):
    import pyexiv2

    photo = tmp_path / "p.jpg"
    keyword = "a" * 63 + "äbc"  # the 64-byte cut falls inside "ä"
    messy_collection._photo(photo, 11, f"-XMP-dc:Subject={keyword}")
    img = pyexiv2.ImageData(photo.read_bytes())
    img.modify_iptc({"Iptc.Envelope.CharacterSet": "\x1b%G",  # UTF-8 declared, as such tools do
                     "Iptc.Application2.Keywords": [keyword.encode()[:64].decode("latin-1")]}, encoding="latin-1")
    photo.write_bytes(img.get_bytes())
    img.close()
    result = xmp.embed(photo.read_bytes(), CAPTION, ["cat"], suffix=".jpg", existing="append")
    photo.write_bytes(result.data)
    t = valid(tags(photo))
    assert as_list(t["XMP-dc:Subject"]) == [keyword, "cat"]
    assert as_list(t["IPTC:Keywords"]) == ["a" * 63, "cat"]


def test_a_long_label_is_cut_in_iptc_only(tmp_path):
    photo = tmp_path / "p.jpg"
    messy_collection._photo(photo, 7)
    label = "ä" * 40  # 80 bytes: the cut falls between two bytes of one character
    result = xmp.embed(photo.read_bytes(), CAPTION, [label], suffix=".jpg")
    assert result.cut == 1
    photo.write_bytes(result.data)
    t = valid(tags(photo))
    assert as_list(t["XMP-dc:Subject"]) == [label] and as_list(t["IPTC:Keywords"]) == ["ä" * 32]
    again = xmp.embed(photo.read_bytes(), CAPTION, [label], suffix=".jpg")
    assert again.changed is False  # the cut copy reads back as the same keyword: nothing to do


# -- kind 7: identity

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="setting another owner needs root")


@needs_root
def test_embedding_keeps_owner_mode_xattrs_and_sidecars_take_the_photos(messy):
    photo = messy.owned
    before = photo.stat()
    has_xattr = messy_collection.XATTR[0] in os.listxattr(photo)
    summary = library.scan(photo.parent, engine=FakeEngine(fixed_caption=CAPTION), write="sidecar")
    assert summary.write_failed == 0
    side = photo.with_name(photo.name + ".xmp").stat()
    assert (side.st_uid, side.st_gid, stat.S_IMODE(side.st_mode)) == (*messy_collection.OWNER, 0o640)

    summary = library.scan(photo.parent, engine=FakeEngine(fixed_caption=CAPTION), write="embed")
    assert summary.written == 1 and summary.write_failed == 0
    after = photo.stat()
    assert after.st_ino != before.st_ino  # really rewritten (atomically)
    assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == (*messy_collection.OWNER, 0o640)
    if has_xattr:
        assert os.getxattr(photo, messy_collection.XATTR[0]) == messy_collection.XATTR[1]
    assert valid(tags(photo))["XMP-dc:Description"] == CAPTION


def test_a_hard_linked_photo_is_not_split(messy):
    first, second = messy.hard_linked
    original, inode = sha(first), first.stat().st_ino
    summary = library.scan(first.parent, engine=FakeEngine(fixed_caption=CAPTION), write="embed")
    assert summary.write_failed == 0
    assert first.stat().st_ino == second.stat().st_ino == inode and first.stat().st_nlink == 2
    assert sha(first) == original  # not embedded: its caption went to a sidecar, said so
    notes = [n for n in summary.notices if n.kind == "hard-links"]
    assert notes and "2 hard links" in notes[0].message and "sidecar" in notes[0].message
    side = Path(notes[0].path).with_name(Path(notes[0].path).name + ".xmp")
    assert valid(tags(side))["XMP-dc:Description"] == CAPTION
    # a caption the person writes, asked to be embedded: the same choice, said in the message
    saved = library.set_caption(notes[0].path, "Anna's cat", write="embed")
    assert saved.written == str(side) and "2 hard links" in saved.message
    assert sha(first) == original and first.stat().st_ino == second.stat().st_ino
    assert valid(tags(side))["XMP-dc:Description"] == "Anna's cat"


# -- kind 9: keyword hierarchies

def test_labels_join_existing_hierarchies_under_one_root(messy):
    folder = messy.root / "tags"
    engine = FakeEngine(fixed_caption=CAPTION)
    summary = library.scan(folder, engine=engine, write="sidecar")
    assert summary.write_failed == 0
    dk = valid(tags(messy.digikam_sidecar.with_name(messy.digikam_sidecar.name + ".xmp")))
    labels = [s for s in as_list(dk["XMP-dc:Subject"]) if s != "Zürich"]
    assert labels  # Loupe's keywords
    assert as_list(dk["XMP-digiKam:TagsList"]) == ["Places/Zürich"] + [f"Loupe/{s}" for s in labels]
    # the photo's own XMP has lr:hierarchicalSubject: its new sidecar starts one with the photo's
    # paths (a reader taking the sidecar's over the photo's loses none) and Loupe's
    lr = as_list(valid(tags(messy.lr_hierarchy.with_name(messy.lr_hierarchy.name + ".xmp")))["XMP-lr:HierarchicalSubject"])
    assert lr[0] == "Family|Grandma" and len(lr) > 1 and all(p.startswith("Loupe|") for p in lr[1:])

    # embedded: Family|Grandma kept, Loupe|label added; a new run replaces only Loupe's
    data = messy.lr_hierarchy.read_bytes()
    first = xmp.embed(data, CAPTION, ["tabby cat", "sofa"], suffix=".jpg")
    second = xmp.embed(first.data, CAPTION, ["golden retriever"], suffix=".jpg", hierarchy_root="Auto")
    messy.lr_hierarchy.write_bytes(second.data)
    t = valid(tags(messy.lr_hierarchy))
    assert as_list(t["XMP-lr:HierarchicalSubject"]) == ["Family|Grandma", "Auto|golden retriever"]
    assert as_list(t["XMP-dc:Subject"]) == ["Grandma", "golden retriever"]


def test_no_hierarchy_is_started_where_there_was_none(tmp_path):
    photo = tmp_path / "p.jpg"
    messy_collection._photo(photo, 8)
    result = xmp.embed(photo.read_bytes(), CAPTION, ["cat"], suffix=".jpg")
    photo.write_bytes(result.data)
    t = valid(tags(photo))
    assert "XMP-lr:HierarchicalSubject" not in t and "XMP-digiKam:TagsList" not in t


def test_the_hierarchy_root_is_a_setting(tmp_path):
    from engine.errors import UsageError

    folder = tmp_path / "photos"
    photo = messy_collection._photo(folder / "p.jpg", 9, "-XMP-lr:HierarchicalSubject=Family|Anna")
    summary = library.scan(folder, engine=FakeEngine(fixed_caption=CAPTION), write="embed", hierarchy_root="Machine")
    assert summary.written == 1
    paths = as_list(valid(tags(photo))["XMP-lr:HierarchicalSubject"])
    assert paths[0] == "Family|Anna" and len(paths) > 1 and all(p.startswith("Machine|") for p in paths[1:])
    with pytest.raises(UsageError, match="hierarchy root") as err:
        library.scan(folder, engine=FakeEngine(), hierarchy_root="a|b")
    assert "\n" not in str(err.value)


def test_the_messy_collection_holds_every_kind(messy):
    """The fixture itself: each kind of issue 20 is there, as a real file of that kind."""
    import io

    from PIL import Image

    assert os.fsencode(messy.latin1.name) == b"caf\xe9 \xe0 la plage.jpg" and messy.latin1.is_file()
    assert os.fsencode(messy.latin1_folder.name) == b"Urlaub M\xfcnchen" and (messy.latin1_folder / "IMG_0300.jpg").is_file()
    assert {p.relative_to(messy.root).parts[0] for p in messy.housekeeping} == {
        "@eaDir", "#recycle", "@Recycle", "$RECYCLE.BIN", "System Volume Information", "Photos Library.photoslibrary"}
    assert messy.symlinked_photo.is_symlink() and messy.symlinked_photo.is_file()
    assert messy.symlinked_folder.is_symlink() and messy.symlinked_folder.is_dir()
    assert messy.loop.resolve() == messy.root and not messy.dangling.exists() and messy.dangling.is_symlink()
    assert Image.open(messy.avif).format == "AVIF" and Image.open(messy.jfif).format == "JPEG"
    for raw in messy.raw:  # real DNGs with a JPEG preview exiftool (and LibRaw) can take out
        preview = subprocess.run(["exiftool", "-b", "-PreviewImage", str(raw)], capture_output=True, check=True).stdout
        assert Image.open(io.BytesIO(preview)).size == (48, 32) and valid(tags(raw))["File:FileType"] == "DNG"
    assert messy.raw_jpeg_pair.stem == messy.raw[1].stem
    assert messy.to_delete.is_file() and messy.boilerplate and messy.png_description.suffix == ".png"
    assert messy.hard_linked[0].stat().st_nlink == 2
    assert not os.stat(messy.read_only).st_mode & 0o222 and not os.stat(messy.read_only.parent).st_mode & 0o222
    assert "XMP-lr:HierarchicalSubject" in tags(messy.lr_hierarchy)


def test_a_sidecar_does_not_copy_loupes_old_paths_from_the_photo(tmp_path):
    photo = messy_collection._photo(tmp_path / "p.jpg", 10, "-XMP-lr:HierarchicalSubject=Family|Anna")
    photo.write_bytes(xmp.embed(photo.read_bytes(), CAPTION, ["tabby cat"], suffix=".jpg").data)
    result = xmp.write_sidecar(photo, "a dog", ["golden retriever"])
    paths = as_list(valid(tags(result.path))["XMP-lr:HierarchicalSubject"])
    assert paths == ["Family|Anna", "Loupe|golden retriever"]


def test_writers_take_names_that_are_not_utf8(messy):
    """The write side of kind 1: a sidecar beside a Latin-1 name, and an embed into it."""
    photo = messy.latin1_folder / "IMG_0300.jpg"
    result = xmp.write_sidecar(photo, CAPTION, ["cat"])
    assert os.fsencode(result.path).endswith(b"M\xfcnchen/IMG_0300.jpg.xmp")
    assert valid(tags(result.path))["XMP-dc:Description"] == CAPTION
    embedded = xmp.embed(messy.latin1.read_bytes(), CAPTION, ["cat"], suffix=messy.latin1.suffix)
    from engine.files import atomic_write

    atomic_write(messy.latin1, embedded.data, like=messy.latin1)
    assert valid(tags(messy.latin1))["XMP-dc:Description"] == CAPTION
