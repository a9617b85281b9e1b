"""Results keyed per task: a library scanned before per-task keys is not captioned again, and
a model whose settings change (or a model added later) fills in only its own results."""
from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest

from engine import library
from engine.library.index import PhotoRow
from engine.library.keys import ResultKeys
from engine.models.registry import for_task

from library_fixtures import FakeEngine, save_photo


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("LOUPE_HOME", str(tmp_path / "home"))


def _old_settings_key(model_ids: dict, models: dict) -> str:
    """The settings key as the scanner of main 3ff5258 computed it (scanner.settings_key)."""
    payload = {"models": dict(model_ids), **{task: dict(models[task]) for task in ("caption", "classify")}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def test_a_library_scanned_with_the_old_key_is_not_captioned_again(tmp_path):
    root = tmp_path / "p"
    photos = [save_photo(root / f"p{i}.jpg", i) for i in range(3)]
    db = tmp_path / "home" / "data" / "library.db"
    # The index as the old scanner left it: schema 2, no task_keys, one combined settings key.
    engine = FakeEngine()
    models = {"caption": for_task("caption").check_options({"num_beams": 3}), "classify": for_task("classify").check_options()}
    old_key = _old_settings_key(engine.model_ids(), models)
    library.scan(root, engine=engine, write="none")
    con = sqlite3.connect(db)
    con.executescript("ALTER TABLE photos DROP COLUMN task_keys; PRAGMA user_version=2;")
    assert {r[0] for r in con.execute("SELECT settings_key FROM photos")} == {old_key}
    captions = dict(con.execute("SELECT path, caption FROM photos").fetchall())
    con.close()

    again = FakeEngine()
    summary = library.scan(root, engine=again, write="none")
    assert (summary.done, summary.skipped) == (0, 3) and again.calls == []  # nothing computed again
    con = sqlite3.connect(db)
    rows = con.execute("SELECT path, caption, task_keys FROM photos").fetchall()
    con.close()
    assert {p: c for p, c, _ in rows} == captions
    assert all(set(json.loads(k)) == {"caption", "classify"} for _, _, k in rows)  # migrated
    assert library.scan(root, engine=again, write="none").skipped == len(photos) and again.calls == []


def test_a_changed_model_fills_in_only_its_own_results(tmp_path):
    root = tmp_path / "p"
    for i in range(3):
        save_photo(root / f"p{i}.jpg", i)
    library.scan(root, engine=FakeEngine())
    before = {h.path: h.caption for h in library.search("v1", limit=10)}
    engine = FakeEngine()
    summary = library.scan(root, engine=engine, top=1)  # the classifier's options changed
    assert summary.done == 3
    assert {kind for kind, _ in engine.calls} == {"classify"}  # captions were not made again
    assert {h.path: h.caption for h in library.search("v1", limit=10)} == before
    assert all(len(item.labels) == 1 for item in library.photos().items)


def test_a_model_added_later_is_the_only_task_to_run():
    ids = {"caption": "c@1", "classify": "l@1", "precision": "fp32"}
    models = {"caption": {"num_beams": 3}, "classify": {"top": 3}}
    two = ResultKeys(ids, models, ("caption", "classify"))
    row = PhotoRow(1, "h", "/p.jpg", 1, 1, "h", "a cat", (), two.combined, None, task_keys=two.per_task)
    three = ResultKeys({**ids, "encode": "e@1"}, {**models, "encode": {}}, ("caption", "classify", "encode"))
    assert three.missing(row) == ("encode",)
    legacy = PhotoRow(1, "h", "/p.jpg", 1, 1, "h", "a cat", (), two.combined, None)  # schema 2
    assert three.missing(legacy) == ("encode",) and two.missing(legacy) == ()
    assert ResultKeys({**ids, "precision": "bf16"}, models, ("caption", "classify")).missing(row) == ("caption", "classify")
