"""`loupe library ...` through loupe.cli.main, in process, with FakeEngine as the engine."""
from __future__ import annotations

import json

import pytest

import engine
from loupe.cli import main

from library_fixtures import FakeEngine, save_photo


@pytest.fixture()
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("LOUPE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(engine, "get_engine", lambda: FakeEngine())
    root = tmp_path / "photos"
    for i in range(3):
        save_photo(root / f"p{i}.jpg", i)
    return root


def test_scan_search_export_scans_undo(folder, tmp_path, capsys):
    assert main(["library", "scan", str(folder), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["done"] == 3 and summary["written"] == 3

    (folder / "bad.jpg").write_bytes(b"")
    assert main(["library", "scan", str(folder), "--rename"]) == 3  # some photo had a problem
    out, err = capsys.readouterr()
    assert "1 unreadable" in out and "3 renamed" in out
    assert err.strip() == f"loupe: {folder / 'bad.jpg'}: empty file"

    assert main(["library", "search", "v1", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3
    assert main(["library", "export", str(tmp_path / "x.csv")]) == 0
    assert capsys.readouterr().out.strip().endswith("3 photos")
    assert main(["library", "scans", "--json"]) == 0
    assert [s["status"] for s in json.loads(capsys.readouterr().out)] == ["done", "done"]
    assert main(["library", "undo"]) == 0
    assert capsys.readouterr().out.strip() == "3 photos put back"
    assert sorted(p.name for p in folder.glob("*.jpg")) == ["bad.jpg", "p0.jpg", "p1.jpg", "p2.jpg"]


def test_errors_are_one_line(folder, tmp_path, capsys):
    bad_db = tmp_path / "bad.db"
    bad_db.write_bytes(b"garbage" * 1000)
    assert main(["library", "search", "x", "--db", str(bad_db)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("loupe: The library index") and "damaged" in err and "Traceback" not in err
    assert main(["library", "scan", str(tmp_path / "nope")]) == 2
    assert main(["library", "export", str(tmp_path / "x.xlsx")]) == 2
    capsys.readouterr()
    assert main(["library", "scan", str(folder), "--write", "paper"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("loupe: Invalid value for '--write'") and "--help" in err
    # options are checked before the folder is looked at
    assert main(["library", "scan", str(tmp_path / "nope"), "--top", "0"]) == 2
    assert "--top" in capsys.readouterr().err


def test_decisions_are_in_the_text_summary(folder, tmp_path, capsys):
    """What Loupe decided on the person's behalf is counted in the summary line and listed,
    not only in --json: a kept description, a Lightroom name clash, a duplicate."""
    import shutil

    from library_fixtures import THIRD_PARTY_XMP

    save_photo(folder / "p0.png", 10)  # p0.jpg and p0.png share the stem "p0"
    shutil.copy(folder / "p1.jpg", folder / "copy of p1.jpg")  # same bytes as p1.jpg
    (folder / "p2.xmp").write_text(THIRD_PARTY_XMP.replace(
        "<dc:creator>", '<dc:description><rdf:Alt><rdf:li xml:lang="x-default">Grandma\'s garden</rdf:li>'
        "</rdf:Alt></dc:description><dc:creator>"), encoding="utf-8")
    assert main(["library", "scan", str(folder), "--sidecar-style", "lightroom"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "1 description kept, 2 sidecar names changed, 1 duplicate" in out[0]
    listed = "\n".join(out[1:])
    assert f"{folder / 'p2.xmp'}: kept the description someone else wrote (\"Grandma's garden\")" in listed
    assert f"{folder / 'p0.jpg'}: another photo has the name stem 'p0', so this one got p0.jpg.xmp, " \
           "which Lightroom does not read" in listed
    # walk order: "copy of p1.jpg" comes first and is captioned; p1.jpg is the duplicate
    assert f"{folder / 'p1.jpg'}: skipped, same photo as {folder / 'copy of p1.jpg'}" in listed
    assert len(out) == 1 + 4 + 1 and out[-1].startswith("Search by meaning is off")  # no encoder here: said
    assert "loupe:caption" not in "\n".join(out)  # a field name means nothing to most people
    # a rescan of unchanged photos does not tell the same decisions again, but still counts the duplicate
    assert main(["library", "scan", str(folder), "--sidecar-style", "lightroom"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "4 already done" in out[0] and "1 duplicate" in out[0] and len(out) == 1


def test_search_any_text_is_a_query_and_no_match_says_so(tmp_path, monkeypatch, capsys):
    from library_fixtures import index_captions

    monkeypatch.setenv("LOUPE_HOME", str(tmp_path / "home"))
    photos = index_captions(tmp_path / "photos", {"a green boat on a lake": "p0.jpg",
                                                  "a boat that is green": "p1.jpg"})
    boat_first, boat_second = (str(p) for p in photos.values())

    def search(*argv: str) -> tuple[int, str, str]:
        code = main(["library", "search", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = search("-boat", "--by", "words")  # issue 11: was "unrecognized arguments", exit 2
    assert code == 0 and err == "" and boat_first in out and boat_second in out
    code, out, err = search("green-boat", "--json")  # issue 11: matched both
    assert code == 0 and [h["path"] for h in json.loads(out)] == [boat_first]
    code, out, err = search("--limit", "1", "-boat", "--json")
    assert code == 0 and len(json.loads(out)) == 1
    code, out, err = search("--db", str(tmp_path / "home" / "data" / "library.db"), "-green", "-boat")
    assert code == 0 and out.count("\n    ") == 2
    assert search("--", "--json")[0] == 1  # after "--" even an option's name is a word

    # issue 11: no hits printed nothing; now one line on stderr, exit 1 like grep
    code, out, err = search("-zebra", "NOT", "*", "--by", "words")
    assert (code, out, err) == (1, "", "loupe: no photos match -zebra NOT *\n")
    code, out, err = search("zebra", "--json")  # default: both; without the encoder, words only (said)
    assert (code, json.loads(out)) == (1, [])
    assert err.splitlines() == ["Ranked by words only: the encoder (siglip-base) is not installed: "
                                "`loupe models download siglip-base`.", "loupe: no photos match zebra"]

    # still usage errors: no words, a bad option value
    assert main(["library", "search", "--json"]) == 2
    assert "Missing argument 'WORDS...'" in capsys.readouterr().err
    assert main(["library", "search", "boat", "--limit", "0"]) == 2
    assert "'--limit': 0 is not in the range" in capsys.readouterr().err


def test_summary_speed_reads_as_a_person_would():
    """Fresh-user review: "0.0 photos/s" on a run with nothing to caption read like a stall."""
    from loupe.library import _pace

    assert (_pace(0.0), _pace(0.05), _pace(0.8)) == ("", "20 s/photo, ", "0.8 photos/s, ")


def test_a_port_out_of_range_is_a_usage_error():
    from loupe.cli import main

    assert main(["--browser", "--port", "99999"]) == 2
