"""Library edges found by trying Loupe as a photographer would (review of issues 10 and 11):
a RAW+JPEG pair sharing `IMG_1.xmp`, a copy of a photo next to another tool's sidecar, the
scan's own record of what it wrote for renamed photos, and file names that are not Loupe's to
overwrite or delete (an export or an index named like a photo).

Real files and real metadata (pyexiv2 reads the sidecars); FakeEngine (tests/library_fixtures.py)
stands in for the models, as in test_library.py, since only library logic is under test.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import library
from engine.errors import LoupeError, UsageError
from library_fixtures import FakeEngine, THIRD_PARTY_XMP, read_xmp_file, save_photo, sha

# Camera Raw's develop settings for IMG_1.CR2: Lightroom keeps them in IMG_1.xmp.
RAW_XMP = """<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
 crs:Exposure2012="+0.50" crs:Temperature="5200"/></rdf:RDF></x:xmpmeta>
"""


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("LOUPE_HOME", str(tmp_path / "home"))


def raw_pair(root: Path, stem: str = "IMG_1", seed: int = 1) -> tuple[Path, Path, Path]:
    """A JPEG, its RAW (bytes Loupe cannot decode, as a .CR2 is to it) and the RAW's sidecar."""
    jpg = save_photo(root / f"{stem}.jpg", seed)
    raw = root / f"{stem}.CR2"
    raw.write_bytes(b"II*\x00\x10\x00\x00\x00CR\x02\x00" + bytes(range(256)) * 8)
    side = root / f"{stem}.xmp"
    side.write_text(RAW_XMP, encoding="utf-8")
    return jpg, raw, side


@pytest.mark.parametrize("style", ["lightroom", "darktable"])
def test_rename_leaves_a_raws_sidecar_with_the_raw(tmp_path, style):
    root = tmp_path / "p"
    jpg, raw, side = raw_pair(root)
    before = {p.name: sha(p) for p in (raw, side)}
    summary = library.scan(root, engine=FakeEngine(fixed_caption="a dog on a beach"), sidecar_style=style,
                           rename=True)
    assert summary.renamed == 1 and not jpg.exists()
    # The RAW and its develop settings are where Lightroom pairs them, byte for byte.
    assert {p.name: sha(p) for p in (raw, side)} == before
    # The JPEG's caption went to its own sidecar, renamed with it.
    assert (root / "a-dog-on-a-beach.jpg.xmp").exists()
    assert read_xmp_file(root / "a-dog-on-a-beach.jpg.xmp")["Xmp.dc.description"] == {'lang="x-default"': "a dog on a beach"}
    assert not (root / "a-dog-on-a-beach.xmp").exists()


def test_lightroom_name_clash_counts_raws_and_says_so(tmp_path):
    root = tmp_path / "p"
    jpg, raw, side = raw_pair(root)
    solo = save_photo(root / "solo.jpg", 2)
    summary = library.scan(root, engine=FakeEngine(), sidecar_style="lightroom")
    assert (root / "IMG_1.jpg.xmp").exists() and (root / "solo.xmp").exists()
    assert side.read_text(encoding="utf-8") == RAW_XMP  # not the JPEG's caption in the RAW's sidecar
    assert [(Path(n.path).name, n.kind) for n in summary.notices] == [("IMG_1.jpg", "sidecar-name")]
    assert solo.exists()


def test_new_name_never_takes_a_raws_stem(tmp_path):
    root = tmp_path / "p"
    save_photo(root / "x.jpg", 3)
    (root / "a-dog.NEF").write_bytes(b"raw bytes")
    library.scan(root, engine=FakeEngine(fixed_caption="a dog"), rename=True)
    assert (root / "a-dog-2.jpg").exists() and not (root / "a-dog.jpg").exists()


def test_copy_next_to_another_tools_sidecar_gets_the_caption(tmp_path):
    """The written mark belongs to the record's own path: a copy of the same bytes elsewhere,
    beside a sidecar darktable wrote, still gets the caption merged into that sidecar."""
    a, b = tmp_path / "a", tmp_path / "b"
    save_photo(a / "x.jpg", 4)
    b.mkdir()
    (b / "y.jpg").write_bytes((a / "x.jpg").read_bytes())
    (b / "y.jpg.xmp").write_text(THIRD_PARTY_XMP, encoding="utf-8")
    engine = FakeEngine()
    library.scan(a, engine=engine)
    caption = read_xmp_file(a / "x.jpg.xmp")["Xmp.dc.description"]
    summary = library.scan(b, engine=engine)
    assert summary.written == 1 and summary.done == 0  # captioned once, written twice
    meta = read_xmp_file(b / "y.jpg.xmp")
    assert meta["Xmp.dc.description"] == caption
    assert meta["Xmp.xmp.Rating"] == "5"  # darktable's fields are kept
    again = library.scan(b, engine=engine)
    assert again.written == 0  # nothing changes the second time


def test_scan_export_says_written_for_renamed_photos(tmp_path):
    root = tmp_path / "p"
    for i in range(3):
        save_photo(root / f"p{i}.jpg", 10 + i)
    summary = library.scan(root, engine=FakeEngine(), rename=True)
    assert summary.renamed == 3 and summary.written == 3
    out = tmp_path / "scan.json"
    assert library.export(out, scan_id=summary.scan_id) == 3
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert [(r["status"], r["written"]) for r in rows] == [("done", True)] * 3
    assert all(Path(r["path"]).exists() and not Path(r["path"]).name.startswith("p") for r in rows)


@pytest.mark.parametrize("fmt", ["csv", "json", None])
def test_export_never_replaces_a_photo(tmp_path, fmt):
    photo = save_photo(tmp_path / "IMG_0001.JPG", 5)
    before = sha(photo)
    with pytest.raises(UsageError, match="photo's name"):
        library.export(photo, fmt=fmt)
    assert sha(photo) == before
    assert not (tmp_path / "home" / "data" / "library.db").exists()  # refused before the index opened


def test_cli_export_to_a_photo_is_a_usage_error(tmp_path, capsys):
    from loupe.cli import main

    photo = save_photo(tmp_path / "p.jpg", 6)
    before = sha(photo)
    assert main(["library", "export", str(photo), "--format", "csv"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("loupe: Will not export to 'p.jpg'"), err
    assert sha(photo) == before


@pytest.mark.parametrize("empty", [False, True])
def test_an_index_named_like_a_photo_is_refused(tmp_path, capsys, empty):
    """`--db IMG_1.jpg`: never "damaged, delete it" about a photo, never an empty photo made an index."""
    from loupe.cli import main

    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"") if empty else save_photo(photo, 7)
    folder = tmp_path / "photos"
    save_photo(folder / "x.jpg", 8)
    before = sha(photo)
    with pytest.raises(UsageError, match="photo's name, not a library index"):
        library.scan(folder, engine=FakeEngine(), db_path=photo)
    for args in (["library", "search", "dog"], ["library", "scans"], ["library", "export", str(tmp_path / "o.csv")]):
        assert main([*args, "--db", str(photo)]) == 2, args
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all("photo's name" in line and "delete" not in line for line in err), err
    assert sha(photo) == before and not (folder / "x.jpg.xmp").exists()


def test_damaged_index_still_says_how_to_rebuild(tmp_path):
    db = tmp_path / "library.db"
    folder = tmp_path / "photos"
    save_photo(folder / "x.jpg", 9)
    library.scan(folder, engine=FakeEngine(), db_path=db)
    data = bytearray(db.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # the header survives, the schema page does not
    db.write_bytes(bytes(data))
    for extra in ("-wal", "-shm"):
        db.with_name(db.name + extra).unlink(missing_ok=True)
    with pytest.raises(LoupeError, match="damaged.*rebuild"):
        library.scan(folder, engine=FakeEngine(), db_path=db)


def test_cli_summary_counts_what_was_not_written(tmp_path):
    from loupe.library import summary_text

    root = tmp_path / "p"
    ok, locked = save_photo(root / "a.jpg", 11), save_photo(root / "b.jpg", 12)
    locked.chmod(0o444)
    try:
        summary = library.scan(root, engine=FakeEngine(), write="embed")
    finally:
        locked.chmod(0o644)
    assert summary.write_failed == 1
    line = summary_text(summary).splitlines()[0]
    assert "1 written, 1 not written," in line, line


def test_embed_takes_jfif_and_gives_formats_that_cannot_hold_xmp_a_sidecar(tmp_path):
    """`.jfif` is JPEG: embedded like one. A format exiv2 cannot write XMP into (AVIF, BMP) is
    not left unwritten: it gets a sidecar, and the summary says why (fresh-user review)."""
    root = tmp_path / "photos"
    root.mkdir()
    jfif = save_photo(root / "download.jpg", 1).rename(root / "download.jfif")
    bmp = root / "scan.bmp"
    save_photo(tmp_path / "scan.png", 2)
    from PIL import Image
    Image.open(tmp_path / "scan.png").convert("RGB").save(bmp)
    bmp_bytes = bmp.read_bytes()
    summary = library.scan(root, engine=FakeEngine(fixed_caption="a dog on a beach"), write="embed")
    assert summary.failed == 0 and summary.written == 2, summary.to_dict()
    assert read_xmp_file(jfif)["Xmp.dc.description"]["lang=\"x-default\""] == "a dog on a beach"
    assert not (root / "download.jfif.xmp").exists()
    assert bmp.read_bytes() == bmp_bytes  # untouched; its caption is beside it
    side = root / "scan.bmp.xmp"
    assert "a dog on a beach" in side.read_text(encoding="utf-8")
    assert "1 linked, RAW or non-embeddable photo given a sidecar" in summary.decisions_text()
    assert any("is a BMP file, which cannot hold XMP, so its caption went to a sidecar" in n.message
               for n in summary.notices), summary.notices
