"""One search over words and meaning: FTS5 word ranks (bm25 over captions, labels, names) and
meaning scores (a query's text embedding against the photos' image embeddings), fused by
reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009):

    fused(photo) = sum over the lists it is in of 1 / (RRF_K + its rank there)

so a photo both lists rank well comes first, and one that only one list finds still comes.
Ranks, not scores, are fused: bm25 and cosine are on scales that cannot be added.

Each hit says its word rank and bm25 score, its meaning rank and cosine, and its fused rank,
so scripts (and people) can see why it is where it is. Filters (a folder, a set of record ids
such as a review state's) apply before ranking, on both sides.

Ties (equal fused score) go to the hit with the better single rank, then to a word match, then
to the lower record id: the same order on every run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from ..errors import UsageError
from ..results import Label
from .index import Index, _labels, fts_query, under
from .vectors import Vectors

RRF_K = 60  # the constant of the RRF paper: dampens how much the very top ranks dominate
DEPTH = 100  # candidates taken from each list before fusing (at least the limit asked)
BY = ("words", "meaning", "both")
BM25_WEIGHTS = (2.0, 1.0, 0.5)  # caption, labels, name: as Index.search weighs them


@dataclass(frozen=True)
class RankedHit:
    """One photo found. Ranks are 1-based; None where that side did not rank it (or was not
    asked). `fused_rank` is its place in the answer."""

    photo_id: int
    path: str
    name: str
    caption: str
    labels: tuple[Label, ...]
    hash: str
    fused_rank: int
    fused_score: float
    word_rank: int | None = None
    word_score: float | None = None  # bm25 made positive: higher is better
    meaning_rank: int | None = None
    meaning_score: float | None = None  # cosine similarity, -1..1

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "name": self.name, "caption": self.caption,
            "labels": [l.to_dict() for l in self.labels], "hash": self.hash,
            "fused_rank": self.fused_rank, "fused_score": round(self.fused_score, 6),
            "word_rank": self.word_rank, "word_score": None if self.word_score is None else round(self.word_score, 6),
            "meaning_rank": self.meaning_rank,
            "meaning_score": None if self.meaning_score is None else round(self.meaning_score, 6),
        }


@dataclass(frozen=True)
class Answer:
    hits: list[RankedHit]
    by: str  # what ranked them: "words", "meaning" or "both"
    notes: list[str] = field(default_factory=list)  # what a front end should say beside the hits


def allowed_ids(index: Index, folder: str | None) -> set[int] | None:
    """Record ids of the photos on disk under `folder` (None: no folder filter)."""
    if folder is None:
        return None
    lo, hi = under(folder)
    return {int(r[0]) for r in index.query("SELECT id FROM photos WHERE path >= ? AND path < ?", (lo, hi))}


def word_ranks(index: Index, text: str, depth: int, allowed: set[int] | None = None) -> list[tuple[int, float]]:
    """(record id, bm25 made positive) of the photos whose words match `text` (see
    `index.fts_query`), best first, ties by id; at most `depth`."""
    match = fts_query(text)
    if match is None or depth <= 0:
        return []
    w = BM25_WEIGHTS
    sql = (f"SELECT p.id, bm25(photos_fts, {w[0]}, {w[1]}, {w[2]}) AS rank FROM photos_fts"
           " JOIN photos p ON p.id = photos_fts.rowid WHERE photos_fts MATCH ? AND p.path IS NOT NULL"
           " ORDER BY rank, p.id")
    rows = index.query(sql if allowed is not None else sql + " LIMIT ?", (match,) if allowed is not None else (match, depth))
    out = [(int(r[0]), -float(r[1])) for r in rows if allowed is None or int(r[0]) in allowed]
    return out[:depth]


def fuse(words: Sequence[tuple[int, float]], meaning: Sequence[tuple[int, float]], limit: int,
         k: int = RRF_K) -> list[dict[str, Any]]:
    """Reciprocal rank fusion of two ranked lists of (record id, score), best first. Returns up
    to `limit` dicts {photo_id, fused_score, word_rank, word_score, meaning_rank, meaning_score},
    in fused order (ties: better single rank, then a word match, then lower id)."""
    table: dict[int, dict[str, Any]] = {}
    for side, ranked in (("word", words), ("meaning", meaning)):
        for rank, (photo_id, score) in enumerate(ranked, start=1):
            row = table.setdefault(photo_id, {"photo_id": photo_id, "fused_score": 0.0, "word_rank": None,
                                              "word_score": None, "meaning_rank": None, "meaning_score": None})
            if row[f"{side}_rank"] is None:  # a list names a photo once; keep its first place
                row[f"{side}_rank"], row[f"{side}_score"] = rank, score
                row["fused_score"] += 1.0 / (k + rank)

    def order(row: dict[str, Any]) -> tuple:
        ranks = [r for r in (row["word_rank"], row["meaning_rank"]) if r is not None]
        return (-round(row["fused_score"], 12), min(ranks), row["word_rank"] is None, row["photo_id"])

    return sorted(table.values(), key=order)[:max(0, limit)]


def search(index: Index, text: str, *, by: str = "both", vectors: Vectors | None = None,
           embed_query: Callable[[str], Any] | None = None, folder: str | None = None,
           ids: Iterable[int] | None = None, limit: int = 50, unavailable: str | None = None) -> Answer:
    """Photos for `text`, ranked by words, by meaning or by both fused.

    `vectors` are the index's image embeddings (`vectors.cached`) and `embed_query(text)` gives
    the query's unit text embedding [D] (the encoder's `embed_text`); it is only called when
    there are vectors to compare. Without either, "both" ranks by words and says so in `notes`;
    "meaning" raises UsageError. `unavailable`: why there is no encoder, when the caller knows
    (e.g. its weights are damaged). `folder` and `ids` (record ids) filter before ranking.
    """
    if by not in BY:
        raise UsageError(f"unknown ranking {by!r}; choose one of {', '.join(BY)}")
    if limit < 1:
        raise UsageError("the limit must be at least 1")
    allowed = allowed_ids(index, folder)
    if ids is not None:
        given = {int(i) for i in ids}
        allowed = given if allowed is None else allowed & given
    depth = max(limit, DEPTH)
    notes: list[str] = []
    word: list[tuple[int, float]] = []
    meaning: list[tuple[int, float]] = []
    if by in ("words", "both"):
        word = word_ranks(index, text, depth, allowed)
    if by in ("meaning", "both"):
        if vectors is None or embed_query is None or not len(vectors):
            reason = ("no photo has an embedding yet: scan with the encoder installed" if embed_query is not None
                      else unavailable or
                      "the encoder (siglip-base) is not installed: `loupe models download siglip-base`")
            if by == "meaning":
                raise UsageError(f"Cannot search by meaning: {reason}.")
            notes.append(f"Ranked by words only: {reason}.")
            by = "words"
        elif text.strip():
            query = embed_query(text)
            meaning = [(m.photo_id, m.score) for m in vectors.top(query, depth, allowed=allowed)]
    fused = fuse(word, meaning, limit)
    return Answer(_hits(index, fused), by, notes)


def similar(index: Index, photo_id: int, vectors: Vectors, *, folder: str | None = None,
            limit: int = 50) -> list[RankedHit]:
    """"More like this": the photos whose image embeddings are nearest record `photo_id`'s,
    best first, itself left out. UsageError when that photo has no embedding yet."""
    if vectors.vector(photo_id) is None:
        raise UsageError("This photo has no embedding yet: scan its folder with the encoder installed.")
    matches = vectors.like(photo_id, limit, allowed=allowed_ids(index, folder))
    fused = fuse([], [(m.photo_id, m.score) for m in matches], limit)
    return _hits(index, fused)


def _hits(index: Index, fused: list[dict[str, Any]]) -> list[RankedHit]:
    """Fused rows -> hits with each photo's record (those no longer on disk are dropped)."""
    ids = [row["photo_id"] for row in fused]
    records: dict[int, Any] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for r in index.query(f"SELECT id, path, name, caption, labels, hash FROM photos"
                             f" WHERE id IN ({marks}) AND path IS NOT NULL", chunk):
            records[int(r["id"])] = r
    hits = []
    for row in fused:
        r = records.get(row["photo_id"])
        if r is None:
            continue
        hits.append(RankedHit(row["photo_id"], r["path"], r["name"], r["caption"], _labels(r["labels"]), r["hash"],
                              len(hits) + 1, row["fused_score"], row["word_rank"], row["word_score"],
                              row["meaning_rank"], row["meaning_score"]))
    return hits
