"""The library with the real engine (tiny models from the suite's local hub): a smoke test that
the scanner and the engine fit together. Library logic is covered with FakeEngine elsewhere."""
from __future__ import annotations

import json

from engine import library

from library_fixtures import read_xmp_file, save_photo, sha


def test_scan_with_the_real_engine_and_tiny_models(installed, tmp_path):
    root = tmp_path / "photos"
    photos = [save_photo(root / f"p{i}.jpg", i, size=(640, 480), exif=True) for i in range(3)]
    (root / "broken.jpg").write_bytes(b"not a photo")
    before = {p: sha(p) for p in photos}

    # keyword_threshold=0: a tiny random model is sure of nothing (scores ~0.1 %); by default
    # such labels are indexed but not written as keywords
    summary = library.scan(root, keyword_threshold=0)  # engine=None: engine.get_engine()
    assert (summary.done, summary.failed, summary.written) == (3, 1, 3), summary.problems
    assert {p: sha(p) for p in photos} == before
    for p in photos:
        meta = read_xmp_file(p.with_name(p.name + ".xmp"))
        assert meta["Xmp.loupe.caption"] and meta["Xmp.dc.subject"]

    again = library.scan(root)
    assert (again.done, again.skipped, again.written) == (0, 3, 3)
    for p in photos:  # the default threshold: the same labels, none sure enough to be keywords
        meta = read_xmp_file(p.with_name(p.name + ".xmp"))
        assert meta["Xmp.loupe.caption"] and "Xmp.dc.subject" not in meta

    out = tmp_path / "all.json"
    assert library.export(out) == 3
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert all("blip-base@" in r["models"]["caption"] and len(r["labels"]) == 3 for r in rows)
    label = rows[0]["labels"][0]["name"]  # an ImageNet name (tiny-model captions are random tokens)
    assert rows[0]["path"] in [h.path for h in library.search(label, limit=10)]
