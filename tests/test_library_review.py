"""The Library as a workspace, engine side: review pages, the person's own captions, thumbnails,
per-photo progress and Stop, keyword threshold and caption style, index migration.

Real files, real SQLite, real exiv2 writes read back by exiftool; FakeEngine for library
logic, the tiny real models where the model matters (Stop inside generation).
"""
from __future__ import annotations

import itertools

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from engine import library
from engine.errors import UnreadableImage, UsageError
from engine.library import index as index_mod
from engine.library.index import Index

from library_fixtures import FakeEngine, LABELS, decoded, make_tree, save_photo, sha


def db(tmp_path) -> Path:
    return library.default_db_path()


def exif_tags(path: Path) -> dict:
    out = subprocess.run(["exiftool", "-j", "-G1", "-a", "-struct", str(path)],
                         capture_output=True, text=True, encoding="utf-8", check=True)
    return json.loads(out.stdout)[0]


def as_list(value) -> list:
    return [] if value is None else value if isinstance(value, list) else [value]


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "photos"
    files = make_tree(root)
    yield root, files
    for p in root.rglob("*"):
        if p.is_file():
            os.chmod(p, 0o644)


# -- review pages

def all_items(**kw) -> list[library.PhotoItem]:
    out, offset = [], 0
    while True:
        page = library.photos(offset=offset, limit=5, **kw)
        out += page.items
        offset += 5
        if offset >= page.total:
            return out


def test_review_states_filters_and_paging(tree, tmp_path):
    root, files = tree
    assert library.photos() == library.PhotoPage(0, [])  # no index yet
    library.scan(root, engine=FakeEngine())
    items = all_items()
    good, bad = {str(p) for p in files["good"]}, {str(p) for p in files["bad"]}
    assert {i.path for i in items} == good | bad and library.photos().total == len(good | bad)
    by_path = {i.path: i for i in items}
    assert {by_path[p].state for p in good} == {"done"} and {by_path[p].state for p in bad} == {"failed"}
    assert by_path[str(root / "bad" / "empty.jpg")].reason == "empty file"
    assert by_path[str(root / "bad" / "empty.jpg")].caption == ""
    a = by_path[str(root / "a.jpg")]
    assert a.caption.startswith("a ") and a.caption_by == "loupe" and a.labels and a.done_at and a.name == "a.jpg"
    assert a.labels[0].score >= a.labels[-1].score

    # changed on disk, gone, edited by the person
    (root / "B.JPG").write_bytes((root / "B.JPG").read_bytes() + b"\0")
    (root / "sub" / "c.Png").unlink()
    library.set_caption(root / "a.jpg", "My sister's red kite")
    states = {s: {i.name for i in all_items(state=s)} for s in library.REVIEW_STATES[1:]}
    assert states["changed"] == {"B.JPG", "c.Png"}
    assert states["edited"] == {"a.jpg"}
    assert len(states["failed"]) == 4 and "a.jpg" not in states["done"] and len(states["done"]) == len(good) - 3
    assert sum(library.photos(state=s).total for s in library.REVIEW_STATES[1:]) == library.photos().total

    # folder (any depth), words (as search), both together
    sub = {i.path for i in all_items(folder=root / "sub")}
    assert sub == {str(p) for p in files["good"] if "sub" in p.parts}
    assert {i.name for i in library.photos(text="kite sister").items} == {"a.jpg"}
    assert library.photos(text="kite", folder=root / "sub").total == 0
    assert library.photos(text="-(*").total == 0  # any text, never an error
    # pages do not overlap and keep the order
    pages = [library.photos(offset=o, limit=4).items for o in range(0, library.photos().total, 4)]
    assert [i.path for p in pages for i in p] == [i.path for i in library.photos(limit=100).items]

    assert library.photo(root / "a.jpg").caption == "My sister's red kite"
    assert library.photo(root / "bad" / "text.jpg").state == "failed"
    assert library.photo(tmp_path / "nowhere.jpg") is None
    for bad_args in ({"state": "new"}, {"offset": -1}, {"limit": 0}, {"limit": 10_001}):
        with pytest.raises(UsageError) as err:
            library.photos(**bad_args)
        assert "\n" not in str(err.value)


def test_failures_clear_once_fixed_and_a_rescan_keeps_the_newest(tmp_path):
    root = tmp_path / "p"
    save_photo(root / "ok.jpg", 1)
    (root / "broken.jpg").write_bytes(b"not a photo")
    library.scan(root, engine=FakeEngine())
    assert library.photo(root / "broken.jpg").state == "failed"
    save_photo(root / "broken.jpg", 2)  # fixed
    library.scan(root, engine=FakeEngine())
    assert library.photo(root / "broken.jpg").state == "done"
    (root / "gone.jpg").write_bytes(b"nope")
    library.scan(root, engine=FakeEngine())
    (root / "gone.jpg").unlink()
    library.scan(root, engine=FakeEngine())  # a finished scan forgets failures of files no longer there
    assert library.photo(root / "gone.jpg") is None and library.photos(state="failed").total == 0


def test_ten_thousand_photos_page_fast(tmp_path):
    """10,000 records made directly in the index (the scan is tested elsewhere); timings printed."""
    root = tmp_path / "big"
    labels = json.dumps([{"name": "tabby cat", "score": 0.6, "index": 281}])
    with Index(db(tmp_path)) as index, index.transaction() as tx:
        for i in range(10_000):
            tx.execute(
                "INSERT INTO photos(hash, path, name, size, mtime_ns, file_hash, caption, labels, label_text,"
                " settings_key, model_ids, scan_id, done_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (f"h{i}", f"{root}/d{i % 20}/IMG_{i:05d}.jpg", f"IMG_{i:05d}.jpg", 1, 1, f"h{i}",
                 f"a dog number {i} on a beach" if i % 3 else f"a cat {i}", labels, "tabby cat", "k", "{}",
                 1 + i // 1000, time.time()),
            )
        for i in range(50):
            index.set_failure(tx, f"{root}/bad/b{i}.jpg", "read", "damaged or truncated image", 11)
    timings = {}
    t = time.perf_counter()
    first = library.photos(limit=48)
    timings["first page"] = time.perf_counter() - t
    t = time.perf_counter()
    last = library.photos(offset=10_000, limit=48)
    timings["last page"] = time.perf_counter() - t
    t = time.perf_counter()
    seen = 0
    for offset in range(0, 10_050, 48 * 10):  # every tenth page
        seen += len(library.photos(offset=offset, limit=48).items)
    timings["21 pages"] = time.perf_counter() - t
    t = time.perf_counter()
    words = library.photos(text="dog beach", folder=root / "d3", limit=48)
    timings["words + folder"] = time.perf_counter() - t
    t = time.perf_counter()
    changed = library.photos(state="changed", limit=48)
    timings["changed (10,000 stats)"] = time.perf_counter() - t
    print("\nreview of 10,050 photos: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in timings.items()))
    assert first.total == 10_050 and len(first.items) == 48
    assert {i.state for i in first.items} == {"failed"}  # photos never read come first
    second = library.photos(offset=48, limit=4).items
    # then by folder (d0, d1, d10 ...), by name within it
    assert [i.name for i in second] == ["b8.jpg", "b9.jpg", "IMG_00000.jpg", "IMG_00020.jpg"]
    assert [i.name for i in last.items] == [f"IMG_{9 + 20 * k:05d}.jpg" for k in range(450, 498)]  # d9 ends
    assert seen == 48 * 21
    assert words.total == 333 and all("dog" in i.caption for i in words.items)
    assert changed.total == 10_000  # none of these files exist


# -- the person's own caption

def test_set_caption_sidecar_is_the_description_and_scans_keep_it(tmp_path, capsys):
    root = tmp_path / "p"
    photos = [save_photo(root / f"p{i}.jpg", i, exif=True) for i in range(3)]
    before = sha(photos[0])
    library.scan(root, engine=FakeEngine(version="1"))
    result = library.set_caption(photos[0], "  Grandma's garden in June ")
    sidecar = root / "p0.jpg.xmp"
    assert result == library.EditResult(str(photos[0]), str(sidecar), "Saved; written to p0.jpg.xmp.")
    assert sha(photos[0]) == before  # a sidecar: the photo is untouched
    t = exif_tags(sidecar)
    assert t["XMP-dc:Description"] == "Grandma's garden in June"
    assert "XMP-loupe:Caption" not in t  # the person's, not Loupe's
    assert as_list(t["XMP-dc:Subject"])  # keywords kept
    assert [h.path for h in library.search("grandma garden")] == [str(photos[0])]  # searchable at once
    item = library.photo(photos[0])
    assert (item.caption, item.caption_by, item.state) == ("Grandma's garden in June", "person", "edited")

    again = library.scan(root, engine=FakeEngine(version="1"))  # same settings: nothing to say
    assert (again.skipped, again.notices) == (3, [])
    redo = library.scan(root, engine=FakeEngine(version="2"))  # new model: captions redone, hers kept
    assert redo.done == 3
    [note] = redo.notices
    assert (note.path, note.kind) == (str(photos[0]), "own-caption")
    assert note.message.startswith("kept your own caption (\"Grandma's garden in June\")")
    assert "own caption kept" in redo.decisions_text()
    assert exif_tags(sidecar)["XMP-dc:Description"] == "Grandma's garden in June"
    assert library.photo(photos[0]).caption == "Grandma's garden in June"
    assert " v2 " in library.photo(photos[1]).caption and library.photo(photos[1]).caption_by == "loupe"
    third = library.scan(root, engine=FakeEngine(version="3"))  # the same decision is not told again
    assert third.done == 3 and third.notices == []
    # renames follow her caption
    renamed = library.scan(root, engine=FakeEngine(version="3"), rename=True)
    assert renamed.renamed == 3 and (root / "grandma-s-garden-in-june.jpg").exists()
    assert library.photo(root / "grandma-s-garden-in-june.jpg").caption_by == "person"
    assert library.undo() == 3 and library.photo(photos[0]).state == "edited"

    # an edit of an edit says nothing about replacing someone else's text
    second = library.set_caption(photos[0], "Grandma's garden, June 2019")
    assert second.message == "Saved; written to p0.jpg.xmp."


def test_set_caption_embed_every_place_and_rescan_does_not_redo(tmp_path):
    root = tmp_path / "p"
    photo = save_photo(root / "p.jpg", 1, exif=True)
    pixels = decoded(photo)
    library.scan(root, engine=FakeEngine(), write="embed")
    result = library.set_caption(photo, "Zürich, café — 東京")
    assert result.written == str(photo) and result.message == "Saved; written into p.jpg."
    t = exif_tags(photo)
    assert t["XMP-dc:Description"] == t["IPTC:Caption-Abstract"] == t["IFD0:ImageDescription"] == "Zürich, café — 東京"
    assert "XMP-loupe:Caption" not in t
    assert (decoded(photo) == pixels).all()
    assert library.photo(photo).state == "edited"  # the index knows the new bytes: not "changed"
    data = photo.read_bytes()
    again = library.scan(root, engine=FakeEngine(), write="embed")
    assert (again.done, again.skipped, again.written) == (0, 1, 0) and photo.read_bytes() == data


def test_set_caption_someone_elses_description_is_replaced_only_when_confirmed(tmp_path):
    root = tmp_path / "p"
    photo = save_photo(root / "p.jpg", 1)
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-XMP-dc:Description=Old text by Ann", str(photo)],
                   check=True)
    summary = library.scan(root, engine=FakeEngine())
    assert [n.kind for n in summary.notices] == ["kept"]
    assert "loupe:caption" not in summary.notices[0].message
    sidecar = (root / "p.jpg.xmp").read_bytes()
    with pytest.raises(library.DescriptionExists) as asked:
        library.set_caption(photo, "Ann's cat")
    assert asked.value.existing == "Old text by Ann"
    assert (root / "p.jpg.xmp").read_bytes() == sidecar  # nothing written without the confirmation
    assert exif_tags(root / "p.jpg.xmp")["XMP-dc:Description"] == "Old text by Ann"
    proc = subprocess.run([sys.executable, "-m", "loupe", "library", "edit", str(photo), "Ann's cat"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "loupe: p.jpg already has a description someone wrote: “Old text by Ann”; "
        "add --replace to replace it with yours.")
    result = library.set_caption(photo, "Ann's cat", replace_others=True)
    assert result.message == "Saved; written to p.jpg.xmp. It replaces the description that was there (\u201cOld text by Ann\u201d)."
    assert exif_tags(root / "p.jpg.xmp")["XMP-dc:Description"] == "Ann's cat"


def test_set_caption_errors_are_one_line_naming_the_photo(tmp_path):
    root = tmp_path / "p"
    photo = save_photo(root / "p.jpg", 1)
    other = save_photo(tmp_path / "elsewhere.jpg", 2)
    library.scan(root, engine=FakeEngine())
    for path, text, kind, words in [
        (photo, "   ", UsageError, "empty"),
        (other, "a caption", UsageError, "elsewhere.jpg is not in the library"),
        (photo, "x" * 2001, UsageError, "2000"),
    ]:
        with pytest.raises(kind, match=words):
            library.set_caption(path, text)
    sidecar = root / "p.jpg.xmp"
    os.chmod(sidecar, 0o444)
    try:
        with pytest.raises(library.CaptionNotSaved) as err:
            library.set_caption(photo, "Mine")
    finally:
        os.chmod(sidecar, 0o644)
    assert "p.jpg" in str(err.value) and "\n" not in str(err.value) and "/tmp/" not in str(err.value).split(":")[0]
    assert library.photo(photo).caption_by == "loupe"  # nothing recorded that is not on disk
    with pytest.raises(library.CaptionNotSaved, match="GIF"):
        gif = save_photo(root / "anim.gif", 3)
        library.scan(root, engine=FakeEngine())
        library.set_caption(gif, "a gif", write="embed")
    photo.unlink()
    with pytest.raises(library.CaptionNotSaved, match="no longer there"):
        library.set_caption(photo, "gone")


def test_a_v1_index_is_migrated_in_place(tmp_path):
    root = tmp_path / "p"
    photo = save_photo(root / "p.jpg", 1)
    library.scan(root, engine=FakeEngine())
    path = db(tmp_path)
    con = sqlite3.connect(path)  # make it as Loupe's schema 1 left it
    con.executescript("DROP INDEX photos_by_scan; DROP INDEX failures_by_scan; DROP TABLE failures;"
                      "DROP TABLE notices; ALTER TABLE photos DROP COLUMN caption_by; PRAGMA user_version=1;")
    con.close()
    [item] = library.photos().items
    assert (item.caption_by, item.state) == ("loupe", "done")
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == index_mod.SCHEMA_VERSION == 3
    finally:
        con.close()
    library.set_caption(photo, "After the move")
    assert library.search("after move")[0].path == str(photo)
    assert library.scan(root, engine=FakeEngine()).skipped == 1


# -- thumbnails

def test_thumbnail_is_aspect_correct_oriented_cached_and_rebuilt(tmp_path):
    photo = tmp_path / "tall.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees: portrait
    Image.new("RGB", (1600, 1200), (200, 30, 30)).save(photo, "JPEG", exif=exif.tobytes())
    thumb = library.thumbnail(photo, 320)
    assert thumb.parent.parent == tmp_path / "loupe-home" / "data" / "thumbnails"
    with Image.open(thumb) as im:
        assert im.format == "JPEG" and im.size == (240, 320)
    assert library.thumbnail(photo, 320) == thumb and library.thumbnail(photo, 64) != thumb
    made = thumb.stat().st_mtime_ns
    assert library.thumbnail(photo, 320).stat().st_mtime_ns == made  # cached, not remade
    Image.new("RGB", (400, 100), (0, 0, 200)).save(photo, "JPEG")  # the photo changed
    new = library.thumbnail(photo, 320)
    with Image.open(new) as im:
        assert new != thumb and im.size == (320, 80)
    assert not list(new.parent.glob(".loupe-tmp-*"))
    (tmp_path / "bad.jpg").write_bytes(b"not a photo")
    with pytest.raises(UnreadableImage, match="bad.jpg"):
        library.thumbnail(tmp_path / "bad.jpg")
    with pytest.raises(UsageError):
        library.thumbnail(photo, 0)


# -- progress and Stop

def test_progress_per_photo_first_before_any_model_work_and_rate_counts_only_captioned(tmp_path):
    root = tmp_path / "p"
    for i in range(12):
        save_photo(root / f"p{i:02d}.jpg", i)
    engine = FakeEngine(batch_size=2, delay=0.15)
    reports: list[tuple[library.ScanProgress, int]] = []
    library.scan(root, engine=engine, progress=lambda p: reports.append((p, len(engine.calls))))
    first, calls = reports[0]
    assert (first.phase, first.total, calls) == ("finding", 0, 0)
    phases = [p.phase for p, _ in reports]
    assert phases[-1] == "finished" and {"checking", "captioning", "writing"} <= set(phases)
    captioning = [p for p, _ in reports if p.phase == "captioning"]
    sizes = [len(ds) for kind, ds in engine.calls if kind == "caption"]
    assert sizes[0] == 1 and max(sizes) == 2 and sum(sizes) == 12  # the first batch: one photo (stopping.py)
    assert len(captioning) == len(sizes) and all(p.current.endswith(".jpg") for p in captioning)  # each batch, named
    # photos of a batch finish together; each batch's count is reported
    assert {0, *itertools.accumulate(sizes)} <= {p.inferred for p, _ in reports}
    assert [p.done for p, _ in reports] == sorted(p.done for p, _ in reports)
    assert all(p.eta_s is None for p, _ in reports if p.inferred == 0)  # no steps told: nothing measured yet
    late = [p for p, _ in reports if p.inferred >= 6 and p.phase != "finished"]
    assert all(2 < p.rate < 20 and p.eta_s is not None for p in late)

    # resumed: half of it done, the other half new. Photos already done go by fast, yet
    # neither inflate the speed nor count in the time left.
    for i in range(12, 24):
        save_photo(root / f"p{i:02d}.jpg", i)
    reports.clear()
    library.scan(root, engine=engine, progress=lambda p: reports.append((p, len(engine.calls))))
    first_batch = next(p for p, _ in reports if p.phase == "captioning")
    assert first_batch.done == 12 and first_batch.rate == 0 and first_batch.eta_s is None
    later = [p for p, _ in reports if p.inferred >= 4 and p.phase != "finished"]
    assert later and all(p.rate < 20 for p in later)
    for p in later:  # from measured throughput (a last half batch priced as at most a whole one)
        left = 24 - p.done
        assert 0 <= p.eta_s <= (left + 1) / p.rate * 1.01


def test_stop_with_the_tiny_models_keeps_what_was_written(installed, tmp_path):
    """Stop from the progress callback (as the UI's button does, from another thread) during a
    scan with the real engine: it returns within 2 s, and every photo recorded has its sidecar."""
    from engine.inference import get_engine

    root = tmp_path / "p"
    photos = [save_photo(root / f"p{i:02d}.jpg", i, size=(320, 240)) for i in range(40)]
    cancel = threading.Event()
    stopped_at: list[float] = []

    def progress(p):
        if p.inferred >= 3 and not cancel.is_set():
            stopped_at.append(time.perf_counter())
            cancel.set()

    summary = library.scan(root, engine=get_engine(), progress=progress, cancel=cancel, batch_size=2,
                           num_beams=3, max_new_tokens=60)
    latency = time.perf_counter() - stopped_at[0]
    print(f"\nStop answered in {latency * 1000:.0f} ms after {summary.done} photos")
    assert summary.cancelled and 3 <= summary.done < 40 and latency < 2.0
    kept = {i.path for i in all_items()}
    assert len(kept) == summary.done
    assert all(Path(p + ".xmp").exists() for p in kept)
    assert not [p for p in photos if str(p) not in kept and p.with_name(p.name + ".xmp").exists()]
    assert [s["status"] for s in library.scans()] == ["cancelled"]
    rest = library.scan(root, engine=get_engine(), batch_size=2, num_beams=3, max_new_tokens=60)
    assert (rest.skipped, rest.done) == (summary.done, 40 - summary.done)


# -- keyword threshold and caption style

def test_labels_below_the_threshold_are_indexed_not_written(tmp_path):
    root = tmp_path / "p"
    photo = save_photo(root / "p.jpg", 1)
    # FakeEngine's labels score 60 %, 25 %, 10 %
    library.scan(root, engine=FakeEngine(), keyword_threshold=20)
    names = [label.name for label in library.photo(photo).labels]
    assert len(names) == 3
    assert as_list(exif_tags(root / "p.jpg.xmp")["XMP-dc:Subject"]) == names[:2]
    assert [h.path for h in library.search(names[2])] == [str(photo)]  # still searchable
    library.scan(root, engine=FakeEngine(), keyword_threshold=5)  # another threshold: rewritten
    assert as_list(exif_tags(root / "p.jpg.xmp")["XMP-dc:Subject"]) == names
    embedded = save_photo(tmp_path / "e" / "e.jpg", 2)
    library.scan(embedded.parent, engine=FakeEngine(), write="embed", keyword_threshold=30)
    t = exif_tags(embedded)
    assert len(as_list(t["XMP-dc:Subject"])) == 1 and as_list(t["IPTC:Keywords"]) == as_list(t["XMP-dc:Subject"])
    assert as_list(t["XMP-dc:Subject"])[0] in LABELS
    with pytest.raises(UsageError, match="0 to 100"):
        library.scan(root, engine=FakeEngine(), keyword_threshold=101)


def test_caption_style_sets_the_captioners_options(tmp_path):
    root = tmp_path / "p"
    save_photo(root / "p.jpg", 1)

    def last_style() -> str:
        con = sqlite3.connect(db(tmp_path))
        try:
            options = con.execute("SELECT options FROM scans ORDER BY id DESC LIMIT 1").fetchone()[0]
        finally:
            con.close()
        return json.loads(options)["caption_style"]

    assert library.CAPTION_STYLES["detailed"][1] == {"num_beams": 3} and library.DEFAULT_CAPTION_STYLE == "detailed"
    assert library.scan(root, engine=FakeEngine()).done == 1
    assert library.scan(root, engine=FakeEngine(), caption_style="quick").done == 1  # other options: redone
    assert last_style() == "quick"
    assert library.scan(root, engine=FakeEngine(), caption_style="quick").skipped == 1
    # an explicit num_beams wins over the style: quick with 3 is detailed's result
    assert library.scan(root, engine=FakeEngine(), caption_style="quick", num_beams=3).done == 1
    assert library.scan(root, engine=FakeEngine()).skipped == 1
    with pytest.raises(UsageError, match="detailed or quick"):
        library.scan(root, engine=FakeEngine(), caption_style="best")


# -- the command line

def test_cli_scan_options_edit_and_photos(tmp_path, capsys):
    from loupe.cli import main

    root = tmp_path / "p"
    photo = save_photo(root / "p.jpg", 1)
    assert main(["library", "scan", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--keyword-threshold PCT" in help_text and "[default: 10; 0<=x<=100]" in help_text
    assert "Detailed (slower)" in help_text and "--prefix" in help_text and "loupe:caption" not in help_text
    assert main(["library", "scan", str(root), "--keyword-threshold", "101"]) == 2
    capsys.readouterr()
    # the tiny real models are not needed for the command line's plumbing: FakeEngine via the API
    library.scan(root, engine=FakeEngine())
    assert main(["library", "edit", str(photo), "Our first flat"]) == 0
    assert capsys.readouterr().out.strip() == "Saved; written to p.jpg.xmp."
    assert main(["library", "photos", "--state", "edited", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["total"] == 1 and listed["items"][0]["caption"] == "Our first flat"
    assert listed["items"][0]["caption_by"] == "person"
    assert main(["library", "edit", str(photo), " "]) == 2
    assert "empty" in capsys.readouterr().err


def test_stop_does_not_wait_for_a_slow_first_load(tmp_path):
    """Stop while the loader threads are in a long first model load (or a huge decode)."""
    root = tmp_path / "p"
    for i in range(6):
        save_photo(root / f"p{i}.jpg", i)

    class SlowLoad(FakeEngine):
        def prepare(self, task, path, options):
            time.sleep(6)  # like a first load of the full-size models
            return super().prepare(task, path, options)

    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    t = time.perf_counter()
    summary = library.scan(root, engine=SlowLoad(), cancel=cancel)
    took = time.perf_counter() - t
    print(f"\nStop during a 6 s load answered after {took:.2f} s")
    assert summary.cancelled and summary.done == 0 and took < 2.5
    assert [s["status"] for s in library.scans()] == ["cancelled"]
