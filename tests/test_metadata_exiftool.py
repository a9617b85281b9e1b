"""Description and keywords that every photo tool agrees on, checked with an independent reader.

Loupe writes with pyexiv2 (exiv2); Debian's exiftool (libimage-exiftool-perl, installed by
`scripts/system-deps.sh --tests`) reads back. Every check is on what exiftool reports per group:
XMP-dc (dc:description, dc:subject), IPTC (Caption-Abstract, Keywords, CodedCharacterSet) and
IFD0 (EXIF ImageDescription). Test photos are made with Pillow (pixels) and exiftool (tags).
exiftool is run without `-charset iptc=...`, so IPTC text reads right only if Loupe declared UTF-8.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import library
from engine.errors import UsageError
from engine.library import xmp
from engine.library.descriptions import APPEND_SEPARATOR, EXISTING_POLICIES

from library_fixtures import FakeEngine, decoded, photo_array, sha

CAPTION = "café in Zürich — 東京"
SUBJECTS = ["tabby cat", "Zürich", "東京"]
FORMATS = {".jpg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".webp": "WEBP"}
# Groups and tags that legitimately change when metadata is written: the file itself, and
# what Loupe writes. Everything else exiftool reports must be the same after embedding.
_VOLATILE_GROUPS = {"System", "File", "ExifTool", "Composite", "XMP-x", "XMP-loupe"}
_WRITTEN = {"XMP-dc:Description", "XMP-dc:Subject", "IPTC:Caption-Abstract", "IPTC:Keywords",
            "IPTC:CodedCharacterSet", "IPTC:EnvelopeRecordVersion", "IPTC:ApplicationRecordVersion",
            "IFD0:ImageDescription", "IFD0:StripOffsets"}  # TIFF strips move when IFD0 grows


@pytest.fixture(scope="module", autouse=True)
def exiftool() -> str:
    path = shutil.which("exiftool")
    assert path, "exiftool missing: apt-get install -y libimage-exiftool-perl (make test runs scripts/system-deps.sh --tests)"
    return path


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    dupes = {k for k in keys if keys.count(k) > 1}
    assert not dupes, f"exiftool reports these tags twice: {dupes}"
    return dict(pairs)


def tags(path: Path) -> dict:
    """Every tag exiftool finds, as `Group1:Name` -> value (lists for list values)."""
    out = subprocess.run(["exiftool", "-j", "-G1", "-a", "-struct", "-validate", "-all", str(path)],
                         capture_output=True, text=True, encoding="utf-8", check=True)
    return json.loads(out.stdout, object_pairs_hook=_no_duplicates)[0]


def as_list(value: object) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def exiftool_set(path: Path, *assignments: str) -> None:
    subprocess.run(["exiftool", "-q", "-overwrite_original", *assignments, str(path)], check=True)


def make_photo(path: Path, seed: int = 1, *assignments: str) -> Path:
    """A real photo of the suffix's format, with a camera Make and an XMP Rating set by exiftool."""
    # (a TIFF states its resolution, as cameras and scanners write it: exiftool -validate asks)
    kwargs = {"lossless": True} if path.suffix == ".webp" else {"dpi": (300, 300)} if path.suffix == ".tif" else {}
    Image.fromarray(photo_array(seed)).save(path, FORMATS[path.suffix], **kwargs)
    exiftool_set(path, "-EXIF:Make=LoupeCam", "-XMP-xmp:Rating=4", *assignments)
    return path


def embed_file(path: Path, caption: str = CAPTION, subjects: list[str] = SUBJECTS, **kw) -> xmp.WriteResult:
    result = xmp.embed(path.read_bytes(), caption, subjects, suffix=path.suffix, settings="k1", **kw)
    path.write_bytes(result.data)
    return result


def descriptions(t: dict) -> tuple:
    return t.get("XMP-dc:Description"), t.get("IPTC:Caption-Abstract"), t.get("IFD0:ImageDescription")


def assert_clean(t: dict) -> None:
    """No warning or error reading the file, and `exiftool -validate` finds nothing."""
    assert "ExifTool:Warning" not in t and "ExifTool:Error" not in t, t.get("ExifTool:Warning") or t.get("ExifTool:Error")
    assert t.get("ExifTool:Validate") == "OK", t.get("ExifTool:Validate")


# -- embedded: JPEG, PNG, TIFF, WebP

@pytest.mark.parametrize("suffix", list(FORMATS))
def test_embed_writes_description_and_keywords_in_sync(tmp_path, suffix):
    photo = make_photo(tmp_path / f"photo{suffix}")
    before, pixels = tags(photo), decoded(photo)
    result = embed_file(photo)
    assert (result.changed, result.decision, result.existing) == (True, "written", None)

    t = tags(photo)
    assert_clean(t)
    assert t["XMP-dc:Description"] == CAPTION and as_list(t["XMP-dc:Subject"]) == SUBJECTS
    assert t["IFD0:ImageDescription"] == CAPTION  # UTF-8 in EXIF, read back exactly
    assert t["XMP-loupe:Caption"] == CAPTION
    if suffix == ".webp":  # WebP has no IPTC: none is written, XMP and EXIF still agree
        assert not [k for k in t if k.startswith("IPTC")]
    else:
        assert t["IPTC:Caption-Abstract"] == CAPTION and as_list(t["IPTC:Keywords"]) == SUBJECTS
        assert t["IPTC:CodedCharacterSet"] == "UTF8"

    # pixels and every other tag as they were (Make in EXIF, Rating in XMP included)
    assert np.array_equal(decoded(photo), pixels)
    assert t["IFD0:Make"] == "LoupeCam" and t["XMP-xmp:Rating"] == 4
    kept = {k: v for k, v in before.items() if k.split(":")[0] not in _VOLATILE_GROUPS and k not in _WRITTEN}
    assert {k: t.get(k) for k in kept} == kept

    # idempotent: the same write again changes nothing, not even one byte
    data = photo.read_bytes()
    again = xmp.embed(data, CAPTION, SUBJECTS, suffix=suffix, settings="k1")
    assert again.changed is False and again.data == data and again.decision == "written"


def test_new_captions_and_labels_replace_loupes_own_and_keep_others(tmp_path):
    photo = make_photo(tmp_path / "p.jpg", 1, "-IPTC:Keywords=holiday")
    embed_file(photo, "a cat on a sofa", ["tabby cat", "sofa"])
    # someone adds a keyword with an MWG-aware tool (XMP and IPTC together)
    exiftool_set(photo, "-XMP-dc:Subject+=Grandma", "-IPTC:Keywords+=Grandma")
    embed_file(photo, "a dog on a beach", ["golden retriever"])
    t = tags(photo)
    assert_clean(t)
    assert descriptions(t) == ("a dog on a beach",) * 3  # Loupe's own old caption: replaced everywhere
    expected = ["holiday", "Grandma", "golden retriever"]
    assert as_list(t["XMP-dc:Subject"]) == expected and as_list(t["IPTC:Keywords"]) == expected


# -- someone else's description: the JPEG, under each policy

def old_caption_jpeg(path: Path) -> Path:
    """The issue's photo: EXIF ImageDescription and IPTC Caption-Abstract say OLD CAPTION, no XMP."""
    Image.fromarray(photo_array(3)).save(path, "JPEG", quality=90)
    exiftool_set(path, "-EXIF:Make=LoupeCam", "-EXIF:ImageDescription=OLD CAPTION", "-IPTC:Caption-Abstract=OLD CAPTION")
    assert not [k for k in tags(path) if k.startswith("XMP")]
    return path


@pytest.mark.parametrize("policy, expected, decision", [
    ("keep", "OLD CAPTION", "kept"),
    ("replace", CAPTION, "replaced"),
    ("append", "OLD CAPTION" + APPEND_SEPARATOR + CAPTION, "appended"),
])
def test_old_caption_jpeg_under_each_policy(tmp_path, policy, expected, decision):
    photo = old_caption_jpeg(tmp_path / "old.jpg")
    pixels = decoded(photo)
    result = embed_file(photo, existing=policy)
    assert (result.changed, result.decision, result.existing) == (True, decision, "OLD CAPTION")
    assert "OLD CAPTION" in result.note()
    t = tags(photo)
    assert_clean(t)
    assert descriptions(t) == (expected,) * 3  # all three places agree
    assert t["XMP-loupe:Caption"] == CAPTION and t["IPTC:CodedCharacterSet"] == "UTF8"
    assert as_list(t["XMP-dc:Subject"]) == SUBJECTS == as_list(t["IPTC:Keywords"])
    assert t["IFD0:Make"] == "LoupeCam" and np.array_equal(decoded(photo), pixels)

    data = photo.read_bytes()  # re-running: same bytes (append does not append twice)
    again = xmp.embed(data, CAPTION, SUBJECTS, suffix=".jpg", settings="k1", existing=policy)
    assert (again.changed, again.data) == (False, data)
    # after a replace only Loupe's own text is left, so there is nothing left to decide
    assert again.decision == ("written" if policy == "replace" else decision)

    embed_file(photo, "a red bicycle", ["mountain bike"], existing=policy)  # a new model's caption
    new = {"keep": "OLD CAPTION", "replace": "a red bicycle",
           "append": "OLD CAPTION" + APPEND_SEPARATOR + "a red bicycle"}[policy]
    assert descriptions(tags(photo)) == (new,) * 3


def test_scan_embed_keeps_the_old_caption_and_says_so(tmp_path):
    """The issue's report, through the scan: the default keeps it in all three, with a notice."""
    root = tmp_path / "photos"
    root.mkdir()
    photo = old_caption_jpeg(root / "old.jpg")
    summary = library.scan(root, engine=FakeEngine(fixed_caption="a tabby cat on a red sofa"), write="embed")
    assert (summary.done, summary.written, summary.write_failed) == (1, 1, 0)
    assert [n for n in summary.notices
            if n.kind == "kept" and "kept the description someone else wrote" in n.message and '"OLD CAPTION"' in n.message]
    t = tags(photo)
    assert_clean(t)
    assert descriptions(t) == ("OLD CAPTION",) * 3
    assert t["XMP-loupe:Caption"] == "a tabby cat on a red sofa"


def test_a_description_edited_in_one_place_is_the_persons_and_spread(tmp_path):
    photo = make_photo(tmp_path / "p.jpg")
    embed_file(photo, "a cat")
    exiftool_set(photo, "-IPTC:Caption-Abstract=Grandma's cat, Zürich 1998")  # an IPTC-only tool
    result = embed_file(photo, "a small cat")
    assert (result.decision, result.existing) == ("kept", "Grandma's cat, Zürich 1998")
    t = tags(photo)
    assert descriptions(t) == ("Grandma's cat, Zürich 1998",) * 3  # Loupe's stale "a cat" replaced by it
    assert t["XMP-loupe:Caption"] == "a small cat"


def test_camera_defaults_and_blank_text_are_nobodys_description(tmp_path):
    photo = make_photo(tmp_path / "p.jpg", 1, "-EXIF:ImageDescription=OLYMPUS DIGITAL CAMERA         ",
                       "-IPTC:Caption-Abstract=   ", "-XMP-dc:Description=SONY DSC")
    result = embed_file(photo)
    assert (result.decision, result.existing, result.note()) == ("written", None, None)
    assert descriptions(tags(photo)) == (CAPTION,) * 3


def test_legacy_iptc_text_is_reencoded_when_utf8_is_declared(tmp_path):
    photo = make_photo(tmp_path / "p.jpg")
    exiftool_set(photo, "-charset", "iptc=Latin", "-IPTC:By-line=José Müller", "-IPTC:City=Köln")
    assert b"Jos\xe9" in photo.read_bytes()  # stored as Latin-1, no charset declared
    embed_file(photo)
    t = tags(photo)
    assert_clean(t)
    assert t["IPTC:CodedCharacterSet"] == "UTF8"
    assert t["IPTC:By-line"] == "José Müller" and t["IPTC:City"] == "Köln"
    assert t["IPTC:Caption-Abstract"] == CAPTION


def test_a_stale_photoshop_iptc_digest_is_brought_up_to_date(tmp_path):
    photo = old_caption_jpeg(tmp_path / "old.jpg")
    exiftool_set(photo, "-Photoshop:IPTCDigest=new")  # as Photoshop and Lightroom leave it
    before = tags(photo)
    assert before["Photoshop:IPTCDigest"] == before["File:CurrentIPTCDigest"]
    embed_file(photo, existing="replace")
    t = tags(photo)
    assert_clean(t)  # no "IPTCDigest is not current. XMP may be out of sync"
    assert t["Photoshop:IPTCDigest"] == t["File:CurrentIPTCDigest"] != before["Photoshop:IPTCDigest"]
    assert descriptions(t) == (CAPTION,) * 3


def test_a_windows_1252_exif_description_is_read_as_text(tmp_path):
    path = tmp_path / "p.jpg"
    exif = Image.Exif()
    exif[0x010E] = b"Caf\xe9 du march\xe9"  # an old Windows tool's ImageDescription
    Image.fromarray(photo_array(4)).save(path, "JPEG", exif=exif.tobytes())
    result = embed_file(path)
    assert (result.decision, result.existing) == ("kept", "Café du marché")
    t = tags(path)
    assert t["XMP-dc:Description"] == "Café du marché" == t["IPTC:Caption-Abstract"]


# -- sidecars: darktable's photo.jpg.xmp and Lightroom's photo.xmp

@pytest.mark.parametrize("style, name", [("darktable", "photo.jpg.xmp"), ("lightroom", "photo.xmp")])
def test_sidecar_read_back_by_exiftool(tmp_path, style, name):
    photo = make_photo(tmp_path / "photo.jpg")
    original = sha(photo)
    result = xmp.write_sidecar(photo, CAPTION, SUBJECTS, style=style, settings="k1")
    assert result.path == tmp_path / name and (result.changed, result.decision) == (True, "written")
    t = tags(result.path)
    assert_clean(t)
    assert t["XMP-dc:Description"] == CAPTION and as_list(t["XMP-dc:Subject"]) == SUBJECTS
    assert t["XMP-loupe:Caption"] == CAPTION
    assert sha(photo) == original
    side = result.path.read_bytes()
    again = xmp.write_sidecar(photo, CAPTION, SUBJECTS, style=style, settings="k1")
    assert again.changed is False and result.path.read_bytes() == side


@pytest.mark.parametrize("style", ["darktable", "lightroom"])
@pytest.mark.parametrize("policy, expected, decision", [
    ("keep", "OLD CAPTION", "kept"),
    ("replace", CAPTION, "replaced"),
    ("append", "OLD CAPTION" + APPEND_SEPARATOR + CAPTION, "appended"),
])
def test_sidecar_counts_the_photos_own_description(tmp_path, style, policy, expected, decision):
    photo = old_caption_jpeg(tmp_path / "photo.jpg")
    original = sha(photo)
    result = xmp.write_sidecar(photo, CAPTION, SUBJECTS, style=style, settings="k1", existing=policy)
    assert (result.decision, result.existing) == (decision, "OLD CAPTION")
    t = tags(result.path)
    assert_clean(t)
    assert t["XMP-dc:Description"] == expected and t["XMP-loupe:Caption"] == CAPTION
    assert sha(photo) == original  # the photo is only read
    side = result.path.read_bytes()
    again = xmp.write_sidecar(photo, CAPTION, SUBJECTS, style=style, settings="k1", existing=policy)
    assert again.changed is False and result.path.read_bytes() == side


# -- the policy names

def test_policy_names_in_one_place_and_a_bad_one_is_one_line(tmp_path):
    assert EXISTING_POLICIES == ("keep", "replace", "append") and xmp.EXISTING_POLICIES is EXISTING_POLICIES
    photo = make_photo(tmp_path / "p.jpg")
    data = photo.read_bytes()
    with pytest.raises(UsageError, match="keep, replace, append") as err:
        xmp.embed(data, CAPTION, SUBJECTS, suffix=".jpg", existing="overwrite")
    assert "\n" not in str(err.value)
    with pytest.raises(UsageError):
        xmp.write_sidecar(photo, CAPTION, SUBJECTS, existing="merge")
    assert not list(tmp_path.glob("*.xmp")) and photo.read_bytes() == data
