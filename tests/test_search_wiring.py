"""Search by meaning, wired (issue 21): the tiny SigLIP (installed through the real download code
from the local hub) joins the scan as a task of its own; a library scanned before the encoder was
installed gets its embeddings on the next scan without its captions being redone; `loupe library
search` fuses words and meaning and `loupe library similar` ranks by image embedding.

One library, scanned twice, asserted from several angles (the suite's time budget)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from engine import library, paths
from engine.inference import Engine
from engine.library import vectors
from engine.library.index import Index

from library_fixtures import save_photo


class CountingEngine(Engine):
    """The real engine, counting the photos each task's model is run on."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: dict[str, int] = {}

    def infer(self, task, inputs, options, cancel=None, on_step=None):
        self.runs[task] = self.runs.get(task, 0) + len(inputs)
        return super().infer(task, inputs, options, cancel=cancel, on_step=on_step)


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loupe", *argv], capture_output=True, text=True, timeout=180,
                          env=dict(os.environ))


def test_scan_fills_embeddings_later_without_recaptioning_and_search_uses_them(installed, tmp_path):
    # Weights folder without the encoder first (links to the session's installed models)
    without = tmp_path / "weights"
    without.mkdir()
    for name in ("blip-base", "resnet18"):
        (without / name).symlink_to(installed / name)
    paths.save_setting("weights_dir", str(without))
    root = tmp_path / "photos"
    photos = [save_photo(root / f"p{i}.jpg", i, color=c) for i, c in enumerate([(200, 30, 30), (205, 35, 30), (20, 20, 120), None])]

    first = CountingEngine()
    summary = library.scan(root, engine=first, keyword_threshold=0)
    assert (summary.done, summary.embedded) == (4, 0) and "embed" not in first.runs
    assert summary.notes == [library.EMBED_OFF]  # said (once per folder), in the summary
    db = paths.data_dir() / "library.db"
    with Index(db) as index:
        captions = {r["path"]: r["caption"] for r in index.query("SELECT path, caption FROM photos")}
    answer = library.find("red")  # no encoder: words only, and said
    assert answer.by == "words" and "not installed" in answer.notes[0]

    # The encoder installed: the next scan embeds every photo, and nothing else
    (without / "siglip-base").symlink_to(installed / "siglip-base")
    second = CountingEngine()
    word = max(" ".join(captions.values()).split(), key=len)  # a word some caption holds
    during = []  # a search while the scan runs (its index open, photos being recorded): answers

    def progress(p) -> None:
        if p.done >= 1 and not during:
            during.append(library.find(word))

    again = library.scan(root, engine=second, progress=progress)
    # a query that is not clean text (a command line's non-UTF-8 bytes, a page's lone surrogate)
    for odd in ("caf\udce9", "red \ud800"):
        assert library.find(odd, by="meaning").by == "meaning"
    assert during and during[0].hits and during[0].by in ("words", "both"), during
    assert second.runs == {"embed": 4}  # captions and labels not redone
    assert (again.done, again.skipped, again.embedded, again.notes) == (0, 4, 4, [])
    model = second.model_ids()["embed"]
    with Index(db) as index:
        assert {r["path"]: r["caption"] for r in index.query("SELECT path, caption FROM photos")} == captions
        assert vectors.missing(index, model) == [] and vectors.count(index, model) == 4
        stored = vectors.Vectors.load(index, model)
        assert len(stored) == 4 and stored.dim == 32
    third = CountingEngine()
    assert library.scan(root, engine=third).embedded == 0 and third.runs == {}  # all done: nothing runs

    # The same photo, the same vector as the engine gives it on its own (same decode, same tensor)
    with Index(db) as index:
        pid = index.query("SELECT id FROM photos WHERE path = ?", (str(photos[2]),))[0][0]
        np_vec = vectors.Vectors.load(index, model).vector(pid)
    alone = Engine().run_one("embed", photos[2])
    assert float(np_vec @ alone) > 0.999

    # Search from the CLI (a fresh process: the text side loads at the first search, said)
    proc = _cli("library", "search", "red", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "Loading the search model" in proc.stderr
    hits = json.loads(proc.stdout)
    assert [h["fused_rank"] for h in hits] == list(range(1, len(hits) + 1))
    assert len(hits) == 4 and all(h["meaning_score"] is not None for h in hits)  # meaning ranks every photo
    assert all({"word_rank", "meaning_score", "fused_rank"} <= h.keys() for h in hits)
    meaning = _cli("library", "search", "red", "--by", "meaning", "--json", "--folder", str(root), "--state", "done")
    assert meaning.returncode == 0, meaning.stderr
    ranked = json.loads(meaning.stdout)
    assert all(h["word_rank"] is None for h in ranked) and len(ranked) == 4
    scores = [h["meaning_score"] for h in ranked]
    assert scores == sorted(scores, reverse=True)

    like = _cli("library", "similar", str(photos[0]), "--json")
    assert like.returncode == 0, like.stderr
    near = json.loads(like.stdout)
    assert str(photos[0]) not in [h["path"] for h in near] and len(near) == 3
    assert near[0]["path"] == str(photos[1])  # the other red photo looks most like it
    text = _cli("library", "similar", str(photos[0]))
    assert text.returncode == 0 and str(photos[1]) in text.stdout.splitlines()[0]


def test_a_damaged_or_missing_encoder_and_an_undecodable_query(tmp_path, monkeypatch):
    """Fresh-user review of search: a damaged encoder is named as damaged (exit 6), a missing one
    as missing (exit 4), never answered from; a query that is not text never crashes."""
    from engine.errors import WeightsDamaged, WeightsMissing
    from engine.models.encoder import _escaped_only

    with pytest.raises(WeightsMissing):
        library.find("red", by="meaning")
    monkeypatch.setattr("engine.weights.model_dir",
                        lambda name: (_ for _ in ()).throw(WeightsDamaged("SigLIP: weights damaged in X", model=name)))
    with pytest.raises(WeightsDamaged):
        library.find("red", by="meaning")
    # text the tokenizer is given: an escaped byte becomes U+FFFD, a lone surrogate too
    assert _escaped_only("caf\udce9") and not _escaped_only("red \ud800")
