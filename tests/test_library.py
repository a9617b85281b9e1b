"""Library: scan, resume, index + search, sidecars, embedding, export, rename + undo.

Runs on real files with FakeEngine (tests/library_fixtures.py), which exists only to test
library logic; the same checks with the real engine and tiny models belong to the owner.
"""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import shutil
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from engine.errors import LoupeError, UsageError
from engine import library
from engine.library import index as index_mod
from engine.library import xmp
from engine.files import TEMP_PREFIX, cleanup_stale
from engine.library.leave_out import Excludes
from engine.library.walk import walk
from engine.library.rename import slugify

from library_fixtures import (
    FakeEngine, THIRD_PARTY_XMP, decoded, index_captions, load_like_scan, make_tree, pixel_digest, read_exif_file,
    read_xmp_file, save_photo, sha, tmp_files,
)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("LOUPE_HOME", str(tmp_path / "home"))


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "photos"
    files = make_tree(root)
    yield root, files
    for p in root.rglob("*"):  # let pytest remove the read-only file's folder
        if p.is_file():
            os.chmod(p, 0o644)


def db(tmp_path) -> Path:
    return tmp_path / "home" / "data" / "library.db"


def rows(tmp_path) -> dict[str, tuple]:
    con = sqlite3.connect(db(tmp_path))
    try:
        return {r[0]: r[1:] for r in con.execute("SELECT path, caption, labels, hash, settings_key FROM photos WHERE path IS NOT NULL")}
    finally:
        con.close()


# -- scanning, bad photos, summary, progress

def test_scan_walks_tree_lists_bad_photos_and_reports_progress(tree, tmp_path):
    root, files = tree
    engine = FakeEngine(batch_size=4)
    seen = []
    summary = library.scan(root, engine=engine, progress=seen.append)

    found = set(walk(root, Excludes()).photos)
    assert found == set(files["good"]) | set(files["bad"])  # mixed case found, hidden skipped
    assert summary.total == len(found)
    assert summary.done == len(files["good"])
    assert summary.failed == len(files["bad"]) == 4
    assert summary.skipped == 0 and not summary.cancelled
    reasons = {Path(p.path).name: p.reason for p in summary.problems if p.stage == "read"}
    assert reasons["empty.jpg"] == "empty file"
    assert "not an image" in reasons["text.jpg"]
    assert "truncated" in reasons["truncated.jpg"]
    assert "decompression bomb" in reasons["bomb.png"] or "too large" in reasons["bomb.png"]
    # batches of at most batch_size, every good photo captioned exactly once
    assert all(len(ds) <= 4 for _, ds in engine.calls)
    assert sorted(engine.inferred()) == sorted(pixel_digest(load_like_scan(p)) for p in files["good"])
    # progress: monotone, ends at total, carries rate and ETA
    assert seen and seen[-1].done == seen[-1].total == summary.total
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    assert seen[-1].rate > 0 and seen[-1].eta_s == 0
    # the big JPEG reached the engine decoded at a reduced scale (JPEG draft), never below the
    # model's input size, and with no other resampling (the processor's own resize follows)
    assert 384 <= min(load_like_scan(root / "sub" / "big.jpg").size) < 2 * 384
    # index holds every good photo with caption, labels, key
    index_rows = rows(tmp_path)
    assert set(index_rows) == {str(p) for p in files["good"]}
    for caption, labels, _hash, key in index_rows.values():
        assert caption.startswith("a ") and len(json.loads(labels)) == 3 and key
    # a second scan does nothing
    again = library.scan(root, engine=engine)
    assert (again.done, again.skipped, again.failed, again.written) == (0, len(files["good"]), 4, 0)
    assert len(engine.inferred()) == len(files["good"])


def test_unknown_writer_and_missing_folder_are_usage_errors(tmp_path):
    with pytest.raises(UsageError):
        library.scan(tmp_path / "nope", engine=FakeEngine())
    with pytest.raises(UsageError):
        library.scan(tmp_path, engine=FakeEngine(), write="paper")
    with pytest.raises(UsageError):
        library.scan(tmp_path, engine=FakeEngine(), sidecar_style="picasa")


# -- sidecars

def test_sidecars_keep_originals_byte_identical_and_merge_third_party(tree, tmp_path):
    root, files = tree
    before = {p: sha(p) for p in root.rglob("*") if p.is_file() and p.suffix != ".xmp"}
    summary = library.scan(root, engine=FakeEngine())
    assert summary.written == len(files["good"])
    assert {p: sha(p) for p in before} == before  # nothing but sidecars changed
    index_rows = rows(tmp_path)
    for photo in files["good"]:
        side = photo.with_name(photo.name + ".xmp")
        meta = read_xmp_file(side)
        caption, labels, *_ = index_rows[str(photo)]
        assert meta["Xmp.dc.description"] == {'lang="x-default"': caption}
        names = [l["name"] for l in json.loads(labels)]
        assert set(names) <= set(meta["Xmp.dc.subject"])
        assert "<rdf:Bag>" in side.read_text(encoding="utf-8")  # dc:subject is a Bag
        assert oct(side.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode

    # the third-party sidecar: its fields kept, Loupe's subjects added next to its own
    third = read_xmp_file(root / "a.jpg.xmp")
    assert third["Xmp.xmp.Rating"] == "5"
    assert third["Xmp.dc.creator"] == ["Ann Other"]
    assert third["Xmp.darktable.history[1]/darktable:operation"] == "exposure"
    assert third["Xmp.dc.subject"][:2] == ["holiday", "family"]
    old_loupe = set(third["Xmp.loupe.subjects"])

    # new models: Loupe's previous subjects are replaced, the others' kept
    library.scan(root, engine=FakeEngine(version="2", batch_size=3), top=1)
    third2 = read_xmp_file(root / "a.jpg.xmp")
    new_loupe = set(third2["Xmp.loupe.subjects"])
    assert len(new_loupe) == 1
    assert set(third2["Xmp.dc.subject"]) == {"holiday", "family"} | new_loupe
    assert not (old_loupe - new_loupe) & set(third2["Xmp.dc.subject"])
    assert "v2" in third2["Xmp.dc.description"]['lang="x-default"']
    assert third2["Xmp.xmp.Rating"] == "5" and third2["Xmp.dc.creator"] == ["Ann Other"]


def test_a_description_someone_wrote_is_kept(tmp_path):
    root = tmp_path / "p"
    save_photo(root / "x.jpg", 1)
    (root / "x.jpg.xmp").write_text(
        THIRD_PARTY_XMP.replace(
            "<dc:creator>", '<dc:description><rdf:Alt><rdf:li xml:lang="x-default">Grandma\'s garden</rdf:li>'
            '<rdf:li xml:lang="de">Omas Garten</rdf:li></rdf:Alt></dc:description><dc:creator>'
        ),
        encoding="utf-8",
    )
    summary = library.scan(root, engine=FakeEngine())
    meta = read_xmp_file(root / "x.jpg.xmp")
    assert meta["Xmp.dc.description"] == {'lang="x-default"': "Grandma's garden", 'lang="de"': "Omas Garten"}
    assert meta["Xmp.loupe.caption"].startswith("a ")
    assert [n.kind for n in summary.notices] == ["kept"] and "kept the description" in summary.notices[0].message


def test_lightroom_style_and_shared_stems(tmp_path):
    root = tmp_path / "p"
    save_photo(root / "one.jpg", 1)
    save_photo(root / "pair.jpg", 2)
    save_photo(root / "pair.png", 3)
    library.scan(root, engine=FakeEngine(), sidecar_style="lightroom")
    assert (root / "one.xmp").exists() and not (root / "one.jpg.xmp").exists()
    # pair.jpg and pair.png cannot share pair.xmp
    assert (root / "pair.jpg.xmp").exists() and (root / "pair.png.xmp").exists()
    assert not (root / "pair.xmp").exists()


def test_unparseable_sidecar_is_left_alone_and_reported(tmp_path):
    root = tmp_path / "p"
    save_photo(root / "x.jpg", 1)
    save_photo(root / "y.jpg", 2)
    (root / "x.jpg.xmp").write_text("<x:xmpmeta broken", encoding="utf-8")
    summary = library.scan(root, engine=FakeEngine())
    assert (root / "x.jpg.xmp").read_text() == "<x:xmpmeta broken"
    assert [p.stage for p in summary.problems] == ["write"] and "not valid XML" in summary.problems[0].reason
    assert summary.written == 1 and summary.write_failed == 1


def test_full_disk_is_reported_for_that_photo_and_the_scan_goes_on(tmp_path, monkeypatch):
    root = tmp_path / "p"
    for i in range(5):
        save_photo(root / f"p{i}.jpg", i)
    real = xmp.atomic_write

    def flaky(target, data, **kw):
        if target.name == "p2.jpg.xmp":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(target, data, **kw)

    monkeypatch.setattr(xmp, "atomic_write", flaky)
    summary = library.scan(root, engine=FakeEngine(batch_size=2))
    assert summary.done == 5 and summary.written == 4 and summary.write_failed == 1
    assert summary.problems[0].path.endswith("p2.jpg") and summary.problems[0].reason == "disk full"
    monkeypatch.setattr(xmp, "atomic_write", real)
    again = library.scan(root, engine=FakeEngine(batch_size=2))  # retried, no inference
    assert again.done == 0 and again.written == 1 and (root / "p2.jpg.xmp").exists()
    assert not tmp_files(root)


# -- embedded metadata

def test_embed_keeps_pixels_and_exif_and_skips_read_only(tree, tmp_path):
    root, files = tree
    pixels = {p: decoded(p) for p in files["good"]}
    ro_bytes = (root / "ro.jpg").read_bytes()
    summary = library.scan(root, engine=FakeEngine(), write="embed")
    problems = {Path(p.path).name: p for p in summary.problems if p.stage == "write"}
    assert set(problems) == {"ro.jpg"} and "read-only" in problems["ro.jpg"].reason
    assert (root / "ro.jpg").read_bytes() == ro_bytes
    # a GIF cannot hold XMP: its caption goes to a sidecar, and the summary says why
    gif = next(p for p in files["good"] if p.name == "anim.gif")
    assert (root / "anim.gif.xmp").exists() and any(
        n.path == str(gif) and "GIF file, which cannot hold XMP" in n.message for n in summary.notices)
    assert summary.written == len(files["good"]) - 1
    index_rows = rows(tmp_path)
    for photo in files["good"]:
        if photo.name in problems or photo == gif:
            continue
        assert np.array_equal(decoded(photo), pixels[photo]), photo
        meta = read_xmp_file(photo)
        assert meta["Xmp.dc.description"]['lang="x-default"'] == index_rows[str(photo)][0]
        if photo.suffix.lower() in (".jpg", ".png", ".tif", ".webp"):
            exif = read_exif_file(photo)
            assert exif.get("Exif.Image.Make") == "LoupeCam" and exif.get("Exif.Image.Copyright") == "(c) Tester"
    assert not tmp_files(root)
    # the changed bytes are still recognised: nothing redone, nothing rewritten
    engine = FakeEngine()
    again = library.scan(root, engine=engine, write="embed")
    assert (again.done, again.written) == (0, 0) and engine.calls == []
    # and the integrity of the index after all this
    with index_mod.Index(db(tmp_path)) as idx:
        assert idx.integrity() == "ok"


# -- resume, moves, settings

def test_cancel_stops_within_a_batch_and_resume_never_redoes(tmp_path):
    root = tmp_path / "p"
    photos = [save_photo(root / f"d{i // 10}" / f"p{i:02d}.jpg", i) for i in range(30)]
    engine = FakeEngine(batch_size=4, delay=0.12)  # > the 0.1 s progress throttle
    cancel = threading.Event()

    def progress(p):
        if p.inferred >= 4:
            cancel.set()

    first = library.scan(root, engine=engine, cancel=cancel, progress=progress)
    # batches of 1, 4, 4 (engine/stopping.py: the first holds one photo); Stop comes in the
    # second or at the third's start, and a batch about to end (0.12 s) is let finish and kept
    assert first.cancelled and 4 <= first.done <= 9
    calls_at_cancel = len([c for c in engine.calls if c[0] == "caption"])
    assert calls_at_cancel <= 3  # stopped within one batch of the cancel
    second = library.scan(root, engine=engine)
    assert not second.cancelled and second.skipped == first.done and second.done == 30 - first.done
    done = engine.inferred()
    assert len(done) == len(set(done)) == 30
    statuses = [s["status"] for s in library.scans()]
    assert statuses == ["cancelled", "done"]


def test_moved_and_renamed_photo_is_recognised(tree, tmp_path):
    root, files = tree
    engine = FakeEngine()
    library.scan(root, engine=engine)
    n = len(engine.inferred())
    caption_before = rows(tmp_path)[str(root / "a.jpg")][0]
    target = root / "elsewhere" / "renamed.JPG"
    target.parent.mkdir()
    shutil.move(root / "a.jpg", target)
    summary = library.scan(root, engine=engine)
    assert len(engine.inferred()) == n and summary.done == 0
    index_rows = rows(tmp_path)
    assert str(root / "a.jpg") not in index_rows
    assert index_rows[str(target)][0] == caption_before
    hits = library.search(caption_before.split()[-1])
    assert [h.path for h in hits] == [str(target)]


def test_identical_copies_are_captioned_once(tmp_path):
    root = tmp_path / "p"
    save_photo(root / "x.jpg", 1)
    shutil.copy(root / "x.jpg", root / "x-copy.jpg")
    engine = FakeEngine()
    summary = library.scan(root, engine=engine)
    # a duplicate on the very first scan is a duplicate, not "already done"
    assert len(engine.inferred()) == 1 and summary.done == 1 and summary.skipped == 0 and summary.duplicates == 1
    [note] = summary.notices
    assert note.kind == "duplicate" and note.message.startswith("skipped, same photo as ")
    assert (root / "x.jpg.xmp").exists() and (root / "x-copy.jpg.xmp").exists()
    again = library.scan(root, engine=engine)  # told once, not on every rescan
    assert (again.skipped, again.duplicates, again.notices) == (1, 1, [])


def test_changed_model_or_option_redoes_photos(tmp_path):
    root = tmp_path / "p"
    for i in range(3):
        save_photo(root / f"p{i}.jpg", i)
    engine = FakeEngine()
    assert library.scan(root, engine=engine).done == 3
    assert library.scan(root, engine=engine).done == 0
    assert library.scan(root, engine=engine, top=2).done == 3  # an option in the settings key
    assert library.scan(root, engine=FakeEngine(version="2"), top=2).done == 3  # a new model
    labels = json.loads(next(iter(rows(tmp_path).values()))[1])
    assert len(labels) == 2
    assert library.scan(root, engine=engine, write="none", top=2).done == 3  # back to v1: redone
    with sqlite3.connect(db(tmp_path)) as con:
        assert con.execute("SELECT count(*) FROM photos").fetchone()[0] == 3  # same records


# -- search

def test_search_ranks_and_never_raises_on_fts_syntax(tree, tmp_path):
    root, files = tree
    library.scan(root, engine=FakeEngine())
    index_rows = rows(tmp_path)
    path, (caption, labels, *_rest) = next((p, r) for p, r in index_rows.items() if p.endswith("B.JPG"))
    unique = caption.split()[-1]  # the digest word: only this photo
    hits = library.search(unique)
    assert [h.path for h in hits] == [path] and hits[0].caption == caption and len(hits[0].labels) == 3
    label = json.loads(labels)[0]["name"]
    label_hits = library.search(label)
    assert path in [h.path for h in label_hits]
    assert [h.score for h in label_hits] == sorted((h.score for h in label_hits), reverse=True)
    assert [h.path for h in library.search("plage")] == [str(root / "été à la plage.jpeg")]  # file names, accents
    assert [h.path for h in library.search("PLAGE ete")] == [str(root / "été à la plage.jpeg")]
    assert library.search(f"the {caption.split()[2]} of a {unique}")[0].path == path  # stop words dropped
    for nasty in ['"', "AND", "OR NOT", "NEAR(", "*", "a*", "col:x", "^", "-", "'; DROP TABLE photos; --", "(", ")", ""]:
        assert isinstance(library.search(nasty), list)
    assert len(library.search("v1", limit=2)) == 2
    with pytest.raises(UsageError):
        library.search("x", limit=0)


# Captions chosen to tell plain text from FTS5 syntax apart; none of their words is in
# FakeEngine's labels.
SEARCH_CAPTIONS = {
    "a green boat on a lake": "p0.jpg",
    "a boat that is green and red": "p1.jpg",
    "a man in a t-shirt holding a phone": "p2.jpg",
    "an e-mail open on a laptop screen": "p3.jpg",
    "a 35mm film camera on a table": "p4.jpg",
    "a dog near a fence": "p5.jpg",
    "a sign that says do not enter": "p6.jpg",
}


@pytest.fixture()
def captioned(tmp_path):
    index_captions(tmp_path / "photos", SEARCH_CAPTIONS)
    return lambda words: sorted(h.caption for h in library.search(words))


@pytest.mark.parametrize("words, expected", [
    # issue 11: a leading "-" is a word, not an exclusion (nor an argument error)
    ("-boat", ["a boat that is green and red", "a green boat on a lake"]),
    # issue 11: a hyphenated word is a phrase, not two words anywhere
    ("green-boat", ["a green boat on a lake"]),
    ("green boat", ["a boat that is green and red", "a green boat on a lake"]),
    ("boats", ["a boat that is green and red", "a green boat on a lake"]),  # stemmed
    ("e-mail", ["an e-mail open on a laptop screen"]),
    ("35mm", ["a 35mm film camera on a table"]),
    ("t-shirt", ["a man in a t-shirt holding a phone"]),
    ('"t-shirt"', ["a man in a t-shirt holding a phone"]),
    ('"green boat"', ["a boat that is green and red", "a green boat on a lake"]),  # quotes are text
    ("NEAR", ["a dog near a fence"]),
    ("dog NEAR fence", ["a dog near a fence"]),
    ("sign NOT enter", ["a sign that says do not enter"]),  # as syntax: sign minus enter
    ("boat OR dog", []),  # "or" is a stop word, not OR: boat and dog
    ("caption:boat", []),  # as syntax: column filter; as text: the phrase "caption boat"
    ("boat*", ["a boat that is green and red", "a green boat on a lake"]),
    ("^green (boat)", ["a boat that is green and red", "a green boat on a lake"]),
    ("lake-boat", []),
    ("zebra", []),
])
def test_search_takes_any_text_as_words_and_punctuated_words_as_phrases(captioned, words, expected):
    assert captioned(words) == expected


TRICKY_QUERIES = [
    '"', '""', "'", "-", "--", "---boat", "*", "**", "^", ":", "(", ")", "()", "NEAR(", "NEAR(a b, 2)",
    "NEAR/2", "AND", "OR NOT", "a OR", "col:x", "{caption name}: x", "a:b:c", "x^y", "+", "%", "_", "\\",
    "'; DROP TABLE photos; --", "\x00", "a\x00b", "\udcff", "\ud800x", "é", "日本の船", "🙂", " ", "", "\t\n",
    "x" * 10_000, " ".join(["boat"] * 500), "boat -", "-" * 100, "[unused16]", '"a" "b"', "the", "of the",
]


def test_tricky_queries_never_raise(captioned):
    for words in TRICKY_QUERIES:
        assert isinstance(library.search(words), list), repr(words)
    assert captioned("the") == []  # only stop words: searched as they are
    assert captioned("---boat") == captioned("boat") != []
    assert captioned(" ".join(["boat"] * 500)) == captioned("boat")
    assert captioned("the boat") == captioned("boat")  # stop word dropped


def test_fts_query_quotes_every_token():
    q = index_mod.fts_query
    assert q('-boat green-boat "t-shirt" NOT') == '"-boat" "green-boat" """t-shirt""" "NOT"'
    assert q("the dog") == '"dog"' and q("the") == '"the"' and q("of, the") == '"of," "the"'
    assert q("* - ()") is None and q("") is None and q(None) is None  # type: ignore[arg-type]
    assert q("x\x00y \udcff") == '"x" "y"'  # NUL splits; undecodable bytes are no word


def test_search_without_index_is_empty(tmp_path):
    assert library.search("anything") == []


# -- broken or busy index

def test_corrupt_index_is_one_clear_error(tmp_path):
    root = tmp_path / "p"
    save_photo(root / "x.jpg", 1)
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 500)
    for call in (
        lambda: library.scan(root, engine=FakeEngine(), db_path=bad),
        lambda: library.search("x", db_path=bad),
        lambda: library.export(tmp_path / "out.csv", db_path=bad),
    ):
        with pytest.raises(LoupeError) as info:
            call()
        assert "damaged" in str(info.value) and str(bad) in str(info.value)
    assert not (root / "x.jpg.xmp").exists()


def test_locked_index_is_one_clear_error(tmp_path, monkeypatch):
    root = tmp_path / "p"
    save_photo(root / "x.jpg", 1)
    path = tmp_path / "lib.db"
    library.scan(root, engine=FakeEngine(), db_path=path)
    monkeypatch.setattr(index_mod, "BUSY_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        save_photo(root / "y.jpg", 2)
        with pytest.raises(LoupeError) as info:
            library.scan(root, engine=FakeEngine(), db_path=path)
        assert "locked" in str(info.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert library.scan(root, engine=FakeEngine(), db_path=path).done == 1


# -- export

def test_export_csv_and_json_of_index_and_of_one_scan(tree, tmp_path):
    root, files = tree
    summary = library.scan(root, engine=FakeEngine())
    library.set_caption(root / "a.jpg", "Grandma's kite, 1998")
    out = tmp_path / "out"
    out.mkdir()
    assert library.export(out / "all.csv") == len(files["good"])
    text = (out / "all.csv").read_text(encoding="utf-8-sig")
    assert text.splitlines()[0].startswith("path,name,caption,your_caption,caption_by,labels")
    table = {r["name"]: r for r in csv.DictReader(io.StringIO(text))}
    assert (table["a.jpg"]["your_caption"], table["a.jpg"]["caption_by"]) == ("Grandma's kite, 1998", "person")
    assert (table["B.JPG"]["your_caption"], table["B.JPG"]["caption_by"]) == ("", "loupe")
    assert len(text.splitlines()) == len(files["good"]) + 1 and "été à la plage.jpeg" in text
    assert library.export(out / "all.json") == len(files["good"])
    data = json.loads((out / "all.json").read_text(encoding="utf-8"))
    assert {d["path"] for d in data} == {str(p) for p in files["good"]}
    assert [d["your_caption"] for d in data if d["name"] == "a.jpg"] == ["Grandma's kite, 1998"]
    assert all(len(d["labels"]) == 3 and {"name", "score", "index"} <= set(d["labels"][0]) for d in data)
    n = library.export(out / "scan.data", fmt="json", scan_id=summary.scan_id)
    scan_rows = json.loads((out / "scan.data").read_text(encoding="utf-8"))
    assert n == summary.total
    failed = {Path(r["path"]).name: r["reason"] for r in scan_rows if r["status"] == "failed"}
    assert failed["empty.jpg"] == "empty file"
    with pytest.raises(UsageError):
        library.export(out / "x.xlsx")
    with pytest.raises(UsageError):
        library.export(out / "x.csv", scan_id=999)
    assert not list(out.glob(TEMP_PREFIX + "*"))


def test_csv_export_neutralises_formulas(tmp_path):
    root = tmp_path / "p"
    save_photo(root / "=cmd.jpg", 1)
    library.scan(root, engine=FakeEngine(), write="none")
    library.export(tmp_path / "x.csv")
    assert ",'=cmd.jpg," in (tmp_path / "x.csv").read_text(encoding="utf-8-sig")


# -- renaming and undo

def test_rename_moves_sidecars_never_overwrites_and_undo_restores(tree, tmp_path):
    root, files = tree
    good = [p for p in files["good"] if p.name != "ro.jpg"]
    originals = {p: sha(p) for p in good}
    third_party = (root / "a.jpg.xmp").read_text()
    in_the_way = root / "a-dog-on-the-beach.jpg"  # a damaged file holding the first name
    in_the_way.write_bytes(blocker := (root / "a.jpg").read_bytes()[:100])
    engine = FakeEngine(fixed_caption="A Dog, on the beach!")
    summary = library.scan(root, engine=engine, rename=True)
    assert summary.renamed == len(good)
    assert any(p.stage == "rename" and p.path.endswith("ro.jpg") for p in summary.problems)
    assert in_the_way.read_bytes() == blocker
    by_hash = {sha(p): p for p in root.rglob("*") if p.is_file() and p.suffix != ".xmp"}
    for old, digest in originals.items():
        new = by_hash[digest]
        assert new.parent == old.parent and new.suffix == old.suffix  # same folder, extension kept
        # the root's first name is taken by the damaged file: -2, -3...; elsewhere it is free
        pattern = r"a-dog-on-the-beach-\d+" if old.parent == root else r"a-dog-on-the-beach(-\d+)?"
        assert re.fullmatch(pattern, new.stem), new.name
        assert new.with_name(new.name + ".xmp").exists() and not old.with_name(old.name + ".xmp").exists()
    stems = [(p.parent, p.stem.lower()) for p in by_hash.values()]
    assert len(stems) == len(set(stems))  # no two photos share a name stem in a folder
    new_a = by_hash[originals[root / "a.jpg"]]
    assert "Ann Other" in new_a.with_name(new_a.name + ".xmp").read_text()  # the third-party sidecar moved
    assert (root / "ro.jpg").exists()
    renamed_index = rows(tmp_path)
    assert all(Path(p).exists() for p in renamed_index)
    assert all("a-dog-on-the-beach" in Path(p).name for p in renamed_index if not p.endswith("ro.jpg"))
    # a second run renames nothing (already named after its caption)
    assert library.scan(root, engine=engine, rename=True).renamed == 0

    assert library.undo() == len(good)
    assert {p: sha(p) for p in good} == originals  # all back, same bytes
    assert "Ann Other" in (root / "a.jpg.xmp").read_text() and (root / "a.jpg.xmp").read_text() != third_party
    assert set(rows(tmp_path)) == {str(p) for p in files["good"]}
    assert library.undo() == 0


def test_slugify():
    assert slugify("A Dog, on the beach!") == "a-dog-on-the-beach"
    assert slugify("Été à la plage") == "été-à-la-plage"
    long = slugify("word " * 40)
    assert len(long) <= 60 and not long.endswith("-") and long.endswith("word")
    assert slugify("???") == "" and slugify("con") == "con-photo"


def test_interrupted_rename_is_finished_at_next_start(tmp_path):
    from engine.library.rename import RenameLog, recover

    root = tmp_path / "p"
    save_photo(root / "x.jpg", 1)
    (root / "x.jpg.xmp").write_text("<sidecar/>")
    log = RenameLog(tmp_path / "log.jsonl")
    # the intent was logged and the photo linked to its new name, then the process died
    log.append({"op": "rename", "run": "r1", "id": "e1", "moves": [
        [str(root / "x.jpg"), str(root / "new.jpg")], [str(root / "x.jpg.xmp"), str(root / "new.jpg.xmp")]]})
    os.link(root / "x.jpg", root / "new.jpg")
    assert recover(log) == 1
    assert sorted(p.name for p in root.iterdir()) == ["new.jpg", "new.jpg.xmp"]
    assert recover(log) == 0


# -- temp files

def test_cleanup_stale_removes_only_loupes_dead_temp_files(tmp_path):
    root = tmp_path / "p"
    save_photo(root / "x.jpg", 1)
    dead = root / f"{TEMP_PREFIX}999999999-abc.jpg"
    dead.write_bytes(b"half")
    live = root / f"{TEMP_PREFIX}{os.getppid()}-abc.jpg"  # a live process (our parent)
    live.write_bytes(b"busy")
    other = root / ".other-tmp.jpg"
    other.write_bytes(b"not ours")
    os.utime(dead, (1, 1))
    os.utime(live, (1, 1))
    assert cleanup_stale(root) == 1
    assert not dead.exists() and live.exists() and other.exists()


def test_embed_keeps_existing_embedded_xmp_and_other_pages(tmp_path):
    import pyexiv2
    from PIL import Image

    from library_fixtures import photo_array

    root = tmp_path / "p"
    save_photo(root / "x.jpg", 1, exif=True)
    with pyexiv2.Image(str(root / "x.jpg")) as img:  # another tool's XMP, subjects as a Seq
        img.modify_xmp({"Xmp.xmp.Rating": "3", "Xmp.dc.creator": ["Cam Person"], "Xmp.dc.subject": ["trip"]})
    pages = [Image.fromarray(photo_array(s)) for s in (2, 3)]
    pages[0].save(root / "two.tif", save_all=True, append_images=pages[1:])
    summary = library.scan(root, engine=FakeEngine(), write="embed")
    assert summary.written == 2 and not summary.problems
    meta = read_xmp_file(root / "x.jpg")
    assert meta["Xmp.xmp.Rating"] == "3" and meta["Xmp.dc.creator"] == ["Cam Person"]
    assert meta["Xmp.dc.subject"][0] == "trip" and len(meta["Xmp.dc.subject"]) == 4
    with Image.open(root / "two.tif") as im:
        assert im.n_frames == 2
        im.seek(1)
        assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(pages[1]))


def test_read_only_sidecar_is_left_alone(tmp_path):
    root = tmp_path / "p"
    save_photo(root / "x.jpg", 1)
    side = root / "x.jpg.xmp"
    side.write_text(THIRD_PARTY_XMP, encoding="utf-8")
    os.chmod(side, 0o444)
    summary = library.scan(root, engine=FakeEngine())
    assert side.read_text(encoding="utf-8") == THIRD_PARTY_XMP
    assert summary.write_failed == 1 and "read-only" in summary.problems[0].reason
    os.chmod(side, 0o644)


def test_progress_bar_helper_and_hit_dict(tmp_path):
    import io

    root = tmp_path / "p"
    for i in range(3):
        save_photo(root / f"p{i}.jpg", i)
    out = io.StringIO()
    with library.progress_bar(file=out, disable=False) as cb:  # None: off when not a terminal
        library.scan(root, engine=FakeEngine(), progress=cb, write="none")
    assert "3/3" in out.getvalue()
    last = out.getvalue().replace("\r", "\n").strip().splitlines()[-1]
    assert last.endswith("0 failed, finished") and " left" not in last, last  # nothing is left at the end
    assert "| 3/3, " in last, last  # review: "12/12 , 0.50 photos/s" (tqdm adds its own ", ")
    # Stopped (Stop, Ctrl-C) with photos left: the bar's last word says so, not "finished"
    for i in range(3, 12):
        save_photo(root / f"p{i}.jpg", i)
    cancel, out = threading.Event(), io.StringIO()
    with library.progress_bar(file=out, disable=False) as cb:
        def stop_after_one(p):
            cb(p)
            if p.inferred >= 1:
                cancel.set()

        stopped = library.scan(root, engine=FakeEngine(batch_size=2, delay=0.12), progress=stop_after_one,
                               write="none", cancel=cancel)
    last = out.getvalue().replace("\r", "\n").strip().splitlines()[-1]
    assert stopped.cancelled and last.endswith("0 failed, stopped") and " left" not in last, last
    hit = library.search("v1", limit=1)[0]
    assert json.loads(json.dumps(hit.to_dict()))["path"] == hit.path


def test_a_photo_the_models_fail_on_is_listed_and_the_scan_goes_on(tmp_path):
    root = tmp_path / "p"
    photos = [save_photo(root / f"p{i}.jpg", i) for i in range(6)]
    bad = pixel_digest(load_like_scan(photos[2]))

    class Choking(FakeEngine):
        def caption(self, images, **kw):
            if any(pixel_digest(im) == bad for im in images):
                raise RuntimeError("shape mismatch")
            return super().caption(images, **kw)

    summary = library.scan(root, engine=Choking(batch_size=4))
    assert summary.done == 5 and summary.failed == 1
    assert summary.problems[0].path == str(photos[2]) and "shape mismatch" in summary.problems[0].reason

    class Broken(FakeEngine):
        def caption(self, images, **kw):
            raise RuntimeError("CUDA error")

    save_photo(root / "more" / "q.jpg", 10)
    for i in range(3):
        save_photo(root / "more" / f"r{i}.jpg", 20 + i)
    with pytest.raises(LoupeError, match="keep failing"):
        library.scan(root, engine=Broken(batch_size=4))
    assert library.scans()[-1]["status"] == "failed"


def test_a_scan_that_died_counts_the_photos_it_recorded(tmp_path):
    """The window closed (or the process was killed) mid-scan: finish_scan never ran, yet the
    history counts what the scan recorded, while it runs and once the next scan marks it."""
    with index_mod.Index(tmp_path / "lib.db") as index:
        first = index.begin_scan(str(tmp_path), "k", {})
        with index.transaction() as db:
            for i, status in enumerate(["done"] * 8 + ["skipped", "failed"]):
                index.record_item(db, first, f"{tmp_path}/p{i}.jpg", None, status)
            index.mark_item_written(db, first, f"{tmp_path}/p0.jpg")
        running = index.scans()[-1]
        assert (running["status"], running["done"], running["skipped"], running["failed"]) == ("running", 8, 1, 1)
        index.begin_scan(str(tmp_path), "k", {})
        died = index.scans()[0]
        assert (died["status"], died["done"], died["skipped"], died["failed"], died["written"]) \
            == ("interrupted", 8, 1, 1, 1)
