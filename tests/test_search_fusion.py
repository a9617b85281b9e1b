"""Vector storage and fused ranking (issue 21) with vectors the tests choose: no model runs here."""
from __future__ import annotations

import numpy as np
import pytest

from engine.errors import UsageError
from engine.library import fusion, vectors
from engine.library.index import Index
from engine.results import Label

MODEL = "siglip-base@test"
D = 8


def unit(*weights: float) -> np.ndarray:
    v = np.zeros(D, dtype=np.float32)
    v[:len(weights)] = weights
    return v / np.linalg.norm(v)


RED_CAR = unit(1)
DOG = unit(0, 1)
# (path, caption, vector or None)
PHOTOS = [
    ("/lib/a/car.jpg", "a red car parked on a street", RED_CAR),
    ("/lib/a/dog.jpg", "a dog running on the beach", DOG),
    ("/lib/b/boat.jpg", "a boat on a lake", unit(0.9, 0.1, 0.4)),  # looks like a red car, says nothing of it
    ("/lib/b/bike.jpg", "a red car toy next to a bicycle", None),  # words, no vector (not embedded yet)
    ("/lib/b/IMG_0001.jpg", "", unit(0.95, 0, 0.3)),  # a vector, no words (caption empty)
]


@pytest.fixture
def library(tmp_path):
    index = Index(tmp_path / "index.db")
    scan = index.begin_scan("/lib", "k", {})
    ids = {}
    with index.transaction() as db:
        for n, (path, caption, vec) in enumerate(PHOTOS):
            ids[path] = index.save_result(db, content_hash=f"{n:064x}", path=path, size=1, mtime_ns=1, caption=caption,
                                          labels=(Label("thing", 0.5, 1),), settings_key="k", model_ids={}, scan_id=scan)
    vectors.ensure_table(index)
    with index.transaction() as db:
        for path, _caption, vec in PHOTOS:
            if vec is not None:
                vectors.save(db, ids[path], MODEL, vec)
    yield index, ids
    index.close()


def by_path(answer_hits):
    return {h.path: h for h in answer_hits}


def test_fuse_order_and_ties():
    rows = fusion.fuse([(10, 5.0), (11, 4.0)], [(11, 0.9), (12, 0.8)], limit=10)
    assert [r["photo_id"] for r in rows] == [11, 10, 12]  # in both lists first
    assert rows[0]["fused_score"] == pytest.approx(1 / 62 + 1 / 61)
    assert (rows[0]["word_rank"], rows[0]["meaning_rank"]) == (2, 1)
    # equal fused scores: the better single rank, then a word match, then the lower id
    assert [r["photo_id"] for r in fusion.fuse([(7, 1.0)], [(2, 0.5)], limit=10)] == [7, 2]
    assert [r["photo_id"] for r in fusion.fuse([(5, 2.0), (3, 1.0)], [(3, 0.9), (5, 0.8)], limit=10)] == [3, 5]
    assert [r["photo_id"] for r in fusion.fuse([(1, 1.0), (2, 1.0)], [(3, 0.5)], limit=2)] == [1, 3]
    assert fusion.fuse([], [], limit=5) == []


def test_both_finds_what_says_so_and_what_looks_so(library):
    index, ids = library
    vecs = vectors.cached(index, MODEL)
    answer = fusion.search(index, "red car", vectors=vecs, embed_query=lambda text: RED_CAR, limit=10)
    assert answer.by == "both" and not answer.notes
    hits = answer.hits
    assert hits[0].path == "/lib/a/car.jpg"  # says so and looks so
    assert (hits[0].word_rank, hits[0].meaning_rank, hits[0].fused_rank) == (1, 1, 1)
    assert hits[0].meaning_score == pytest.approx(1.0, abs=1e-3)  # float16 storage
    found = by_path(hits)
    # words but no vector: found by words alone
    assert found["/lib/b/bike.jpg"].word_rank == 2 and found["/lib/b/bike.jpg"].meaning_rank is None
    # a vector but no words: found by meaning alone
    assert found["/lib/b/IMG_0001.jpg"].word_rank is None and found["/lib/b/IMG_0001.jpg"].meaning_rank == 2
    assert [h.fused_rank for h in hits] == list(range(1, len(hits) + 1))
    d = hits[0].to_dict()
    assert {"word_rank", "word_score", "meaning_rank", "meaning_score", "fused_rank", "fused_score"} <= set(d)

    words = fusion.search(index, "red car", by="words", limit=10).hits
    assert [h.path for h in words] == ["/lib/a/car.jpg", "/lib/b/bike.jpg"]
    assert all(h.meaning_score is None for h in words)

    meaning = fusion.search(index, "red car", by="meaning", vectors=vecs, embed_query=lambda t: RED_CAR, limit=2).hits
    assert [h.path for h in meaning] == ["/lib/a/car.jpg", "/lib/b/IMG_0001.jpg"]
    assert all(h.word_rank is None for h in meaning)


def test_filters_apply_to_both_sides(library):
    index, ids = library
    vecs = vectors.cached(index, MODEL)
    hits = fusion.search(index, "red car", vectors=vecs, embed_query=lambda t: RED_CAR, folder="/lib/b").hits
    assert {h.path for h in hits} == {"/lib/b/bike.jpg", "/lib/b/IMG_0001.jpg", "/lib/b/boat.jpg"}
    only = fusion.search(index, "red car", vectors=vecs, embed_query=lambda t: RED_CAR,
                         ids=[ids["/lib/a/dog.jpg"], ids["/lib/b/bike.jpg"]]).hits
    assert {h.path for h in only} == {"/lib/a/dog.jpg", "/lib/b/bike.jpg"}


def test_empty_index_and_no_encoder(tmp_path):
    index = Index(tmp_path / "empty.db")
    vecs = vectors.cached(index, MODEL)
    assert len(vecs) == 0 and vecs.top(RED_CAR, 5) == []
    answer = fusion.search(index, "red car", vectors=vecs, embed_query=lambda t: RED_CAR)
    assert answer.hits == [] and answer.by == "words" and "no photo has an embedding yet" in answer.notes[0]
    with pytest.raises(UsageError, match="not installed"):
        fusion.search(index, "red car", by="meaning")
    with pytest.raises(UsageError, match="unknown ranking"):
        fusion.search(index, "red car", by="colour")


def test_more_like_this(library):
    index, ids = library
    vecs = vectors.cached(index, MODEL)
    hits = fusion.similar(index, ids["/lib/a/car.jpg"], vecs, limit=3)
    assert [h.path for h in hits] == ["/lib/b/IMG_0001.jpg", "/lib/b/boat.jpg", "/lib/a/dog.jpg"]  # itself left out
    assert hits[0].meaning_score > hits[1].meaning_score > hits[2].meaning_score
    with pytest.raises(UsageError, match="no embedding yet"):
        fusion.similar(index, ids["/lib/b/bike.jpg"], vecs)


def test_storage_float16_reload_backfill_and_cascade(library):
    index, ids = library
    blob = vectors.to_blob(np.arange(1, D + 1, dtype=np.float32))
    assert len(blob) == 2 * D
    back = vectors.from_blob(blob, D)
    assert abs(float(np.linalg.norm(back)) - 1) < 1e-3
    with pytest.raises(ValueError):
        vectors.to_blob(np.zeros(D))

    first = vectors.cached(index, MODEL)
    assert vectors.cached(index, MODEL) is first  # loaded once per process
    assert [p for _, p in vectors.missing(index, MODEL)] == ["/lib/b/bike.jpg"]
    assert len(vectors.missing(index, "another@model")) == len(PHOTOS)  # another encoder's: redo them all
    with index.transaction() as db:
        vectors.save(db, ids["/lib/b/bike.jpg"], MODEL, DOG)
    again = vectors.cached(index, MODEL)
    assert again is not first and len(again) == 5 and vectors.missing(index, MODEL) == []
    with index.transaction() as db:
        vectors.save(db, ids["/lib/b/bike.jpg"], MODEL, RED_CAR)  # replaced in place: seen too
    np.testing.assert_allclose(vectors.cached(index, MODEL).vector(ids["/lib/b/bike.jpg"]), RED_CAR, atol=1e-3)
    with index.transaction() as db:
        db.execute("DELETE FROM photos WHERE id=?", (ids["/lib/a/dog.jpg"],))
    assert vectors.count(index, MODEL) == 4  # its vector went with it
