"""Issue 20's plan-level kinds: one CLI scan of the messy collection (tests/messy_collection.py),
then a second after a photo was deleted, asserted from several angles.

Kind 1 names as bytes, 2 housekeeping folders and a person's excludes, 5 links and formats
(RAW previews, AVIF, .jfif/.jpe, JPEG XL) counted by reason, 6 gone photos, 8 read-only places;
every file Loupe wrote is read back by exiftool with -validate. (Kinds 3, 4, 7, 9:
test_messy_metadata.py; the Library tab's scan of the same collection: test_messy_ui.py.)
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import engine
from engine import library
from engine.images import load_image
from engine.library import xmp
from loupe.cli import main

import messy_collection
from library_fixtures import FakeEngine, save_photo

# what the collection's walk must leave out, by reason (leave_out.REASONS keys)
LEFT_OUT = {"synology": 2, "recycle": 3, "system": 1, "app-library": 4, "hidden": 1, "excluded": 2,
            "raw-pair": 1, "no-decoder-jxl": 1, "link-loop": 1, "dangling-link": 1, "same-file": 1}


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    base = tmp_path_factory.mktemp("messy-scan")
    m = messy_collection.build(base / "photos")
    db = str(base / "library.db")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOUPE_HOME", str(base / "home"))
        mp.setattr(engine, "get_engine", lambda: FakeEngine())
        code1, out1, err1 = _cli("library", "scan", str(m.root), "--db", db, "--json")
        first = json.loads(out1)
        search = _cli("library", "search", "plage", "--db", db, "--json")
        synophoto = _cli("library", "search", "synophoto", "--db", db, "--json")
        m.to_delete.unlink()
        code2, out2, err2 = _cli("library", "scan", str(m.root), "--db", db)
        export = base / "export.csv"
        _cli("library", "export", str(export), "--db", db)
        gone_search = _cli("library", "search", "IMG_0099", "--db", db, "--json")
        yield SimpleNamespace(m=m, db=db, code1=code1, first=first, err1=err1, search=search, synophoto=synophoto,
                              code2=code2, out2=out2, err2=err2, export=export.read_bytes(), gone_search=gone_search,
                              base=base)
    messy_collection.restore_modes(m)


def indexed(s) -> set[str]:
    with library.Index(s.db) as index:
        return {r["path"] for r in index.query("SELECT path FROM photos WHERE path IS NOT NULL")}


# -- kind 1: names are bytes

def test_latin1_names_are_scanned_recorded_and_found(scanned):
    s, m = scanned, scanned.m
    assert s.first["failed"] == 0 and not [p for p in s.first["problems"] if "card" not in p["path"]], s.first
    paths = indexed(s)
    assert str(m.latin1) in paths and str(m.latin1_folder / "IMG_0300.jpg") in paths
    hits = json.loads(s.search[1])  # JSON carries the exact name (\udcXX escapes)
    assert [h["path"] for h in hits] == [str(m.latin1)]
    assert os.fsencode(hits[0]["path"]) == os.fsencode(str(m.root)) + b"/caf\xe9 \xe0 la plage.jpg"
    assert xmp.sidecar_path(m.latin1, "darktable").exists()
    assert b"caf\xe9 \xe0 la plage.jpg" in s.export  # the CSV cell holds the OS's bytes
    # the second scan redoes nothing: every photo of the first one was recorded
    assert "0 captioned" in s.out2 and "0 unreadable" in s.out2


def test_a_latin1_name_prints_with_a_replacement_character(scanned):
    run = subprocess.run([sys.executable, "-m", "loupe", "library", "search", "plage", "--db", scanned.db],
                         capture_output=True, env={**os.environ, "LOUPE_HOME": str(scanned.base / "home")})
    assert run.returncode == 0, run.stderr
    assert "caf\ufffd \ufffd la plage.jpg" in run.stdout.decode("utf-8") and b"Traceback" not in run.stderr
    # an error line about such a name reads the same on stderr (not "caf\\udce9")
    gone = os.fsdecode(b"caf\xe9 nowhere.jpg")
    run = subprocess.run([sys.executable, "-m", "loupe", "library", "edit", str(scanned.base / gone), "x",
                          "--db", scanned.db], capture_output=True,
                         env={**os.environ, "LOUPE_HOME": str(scanned.base / "home")})
    assert run.returncode == 2 and "caf\ufffd nowhere.jpg" in run.stderr.decode("utf-8"), run.stderr


def test_one_photo_that_cannot_be_recorded_keeps_its_batch_mates(tmp_path, monkeypatch):
    for i in range(4):
        save_photo(tmp_path / "p" / f"p{i}.jpg", i)
    real = library.Index.save_result

    def broken(self, db, **kw):
        if kw["path"].endswith("p2.jpg"):
            raise ValueError("simulated")
        return real(self, db, **kw)

    monkeypatch.setattr(library.Index, "save_result", broken)
    summary = library.scan(tmp_path / "p", engine=FakeEngine(), db_path=tmp_path / "db")
    assert (summary.done, summary.failed) == (3, 1)
    assert [(Path(p.path).name, p.stage) for p in summary.problems] == [("p2.jpg", "record")]
    monkeypatch.setattr(library.Index, "save_result", real)
    again = library.scan(tmp_path / "p", engine=FakeEngine(), db_path=tmp_path / "db")
    assert (again.done, again.skipped) == (1, 3)  # only the one not recorded is done again


# -- kind 2 and what a scan looks at; kind 5's counts

def test_left_out_by_reason_in_json_and_text(scanned):
    s = scanned
    assert s.first["left_out"] == LEFT_OUT
    assert "2 files in Synology thumbnail folders" in s.first["left_out_text"]
    assert ("left out: 2 files in Synology thumbnail folders, 3 files in recycle bins or snapshots" in s.out2
            and "1 link loop, 1 dangling link" in s.out2), s.out2
    assert json.loads(s.synophoto[1] or "[]") == []


def test_nothing_is_captioned_or_written_inside_other_softwares_folders(scanned):
    m, paths = scanned.m, indexed(scanned)
    for left in [*m.housekeeping, *m.app_caches, *m.excluded]:
        assert str(left) not in paths
        assert not xmp.sidecar_path(left, "darktable").exists() and not xmp.sidecar_path(left, "lightroom").exists()
    assert not any(".git" in p for p in paths)


# -- kind 5: links and formats

def test_links_followed_each_real_file_once(scanned):
    m, paths = scanned.m, indexed(scanned)
    assert str(m.symlinked_photo) in paths  # the name a person sees, not the annex object
    assert m.symlinked_photo.is_symlink() and xmp.sidecar_path(m.symlinked_photo, "darktable").exists()
    assert not any(p.startswith(str(m.symlinked_folder)) for p in paths)  # the same file, already in


def test_formats_people_have(scanned):
    m, paths = scanned.m, indexed(scanned)
    for photo in (m.avif, m.jfif, m.jpe, m.raw[0], m.raw_jpeg_pair, *m.raw_other):
        assert str(photo) in paths, photo
    assert str(m.raw[1]) not in paths  # the RAW of a RAW+JPEG pair: captioned once, from the JPEG
    pair = [xmp.sidecar_path(p, "darktable") for p in (m.raw_jpeg_pair, m.raw[1])]  # darktable reads IMG.dng.xmp
    assert pair[1].name == "IMG_0101.dng.xmp"
    jpeg_side, raw_side = xmp.read_sidecar(m.raw_jpeg_pair), xmp.read_sidecar(m.raw[1])
    assert jpeg_side["Xmp.dc.description"] and raw_side["Xmp.dc.description"] == jpeg_side["Xmp.dc.description"]
    assert str(m.jxl) not in paths
    assert xmp.sidecar_path(m.raw[0], "darktable").name == "IMG_0100.dng.xmp"
    assert xmp.sidecar_path(m.raw[0], "darktable").exists()


def test_raw_is_read_from_its_embedded_preview(scanned):
    import rawpy
    from PIL import Image

    raw = scanned.m.raw_other[0]  # a .CR2 name
    with rawpy.imread(str(raw)) as r:
        preview = Image.open(io.BytesIO(r.extract_thumb().data)).convert("RGB")
    assert load_image(raw).tobytes() == preview.tobytes()  # the one loader: caption, scan, Caption tab


# -- kind 6: gone photos

def test_a_deleted_photo_is_said_and_dropped_from_search_and_export(scanned):
    s, m = scanned, scanned.m
    assert "1 photo no longer there" in s.out2 and str(m.to_delete) in s.out2
    side = xmp.sidecar_path(m.to_delete, "darktable")
    assert side.exists() and f"{side}: its photo is no longer there" in s.out2  # listed, kept
    assert json.loads(s.gone_search[1] or "[]") == []
    assert m.to_delete.name.encode() not in s.export
    with library.Index(s.db) as index:  # history keeps it
        assert index.query("SELECT 1 FROM scan_items WHERE path=?", (str(m.to_delete),))


# -- kind 8: read-only places

def test_read_only_card_one_line_with_advice_that_works(scanned):
    s, m = scanned, scanned.m
    lines = [line for line in s.err2.splitlines() if "read-only" in line]
    assert lines == [f"loupe: {m.read_only.parent}: the card is read-only (1 photo not written): copy the photos "
                     "to a writable folder, or write results nowhere (--write none); the captions are kept in "
                     "Loupe's index"], s.err2
    assert str(m.read_only) in indexed(s)  # the caption is kept in the index


# -- every file Loupe wrote, read back

def test_exiftool_validates_every_written_file(scanned):
    m = scanned.m
    written = [p for p in m.root.rglob("*.xmp") if xmp.LOUPE_NS.encode() in p.read_bytes()]
    assert len(written) >= 30
    out = subprocess.run(["exiftool", "-j", "-validate", "-XMP-dc:all", *map(str, written)],
                         capture_output=True, text=True, encoding="utf-8", errors="surrogateescape", check=True)
    rows = json.loads(out.stdout)
    assert all(r.get("Validate") == "OK" for r in rows), [r for r in rows if r.get("Validate") != "OK"][:3]
    assert all(r.get("Description") for r in rows)


def test_a_persons_excludes_from_the_option_and_the_setting(tmp_path):
    from engine.paths import save_setting

    for name in ("keep.jpg", "Screenshots/shot.jpg", "old-thumb.jpg"):
        save_photo(tmp_path / "p" / name, len(name))
    s = library.scan(tmp_path / "p", engine=FakeEngine(), db_path=tmp_path / "db", exclude="Screenshots/; *-thumb.jpg")
    assert (s.total, s.left_out) == (1, {"excluded": 2})
    save_setting("library_exclude", "*-thumb.jpg")
    s = library.scan(tmp_path / "p", engine=FakeEngine(), db_path=tmp_path / "db")
    assert (s.total, s.left_out) == (2, {"excluded": 1})


def test_sidecars_of_gone_photos_are_deleted_only_when_asked(tmp_path):
    for name in ("a.jpg", "b.jpg"):
        save_photo(tmp_path / "p" / name, len(name) + ord(name[0]))
    library.scan(tmp_path / "p", engine=FakeEngine(), db_path=tmp_path / "db")
    (tmp_path / "p" / "a.jpg").unlink()
    s = library.scan(tmp_path / "p", engine=FakeEngine(), db_path=tmp_path / "db", remove_gone_sidecars=True)
    assert s.gone == [str(tmp_path / "p" / "a.jpg")] and [n.kind for n in s.notices] == ["gone-sidecar-removed"]
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["b.jpg", "b.jpg.xmp"]
