"""Image embeddings in the library index: stored as float16 blobs in the index's own SQLite file
(table `embeddings`, one row per photo record, keyed like the results by `photos.id`), loaded
once per process into one matrix, and ranked by brute force (a dot product of unit vectors is
their cosine similarity).

The table is created on first use (`CREATE TABLE IF NOT EXISTS`), so an index of any schema
version gains it without a migration; deleting a photo record deletes its vector (foreign key,
ON DELETE CASCADE, which the index turns on). Each vector carries the encoder that made it
(`model`, e.g. "siglip-base@7fd15f0…"): vectors of another encoder are never compared with a
query, and `missing()` lists them for the next scan to fill in again.

In memory the matrix stays float16 (2 bytes per number: 1.5 KB a photo at 768 dimensions,
~150 MB per 100,000 photos) and torch's half-precision matrix-vector product ranks it; the
measured latencies are in bench/README.md ("Search").
"""
from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..cpu_share import one_thread_here
from .index import Index, under

TABLE_SQL = """
CREATE TABLE IF NOT EXISTS embeddings(
    photo_id INTEGER PRIMARY KEY REFERENCES photos(id) ON DELETE CASCADE,
    model TEXT NOT NULL,                -- the encoder and pin that made it: "siglip-base@<revision>"
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL                -- float16 little-endian, unit length
);
-- one row, bumped on every change: a process's matrix is read again only after one
CREATE TABLE IF NOT EXISTS embeddings_changes(n INTEGER NOT NULL);
INSERT INTO embeddings_changes(n) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM embeddings_changes);
CREATE TRIGGER IF NOT EXISTS embeddings_ai AFTER INSERT ON embeddings BEGIN UPDATE embeddings_changes SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS embeddings_au AFTER UPDATE ON embeddings BEGIN UPDATE embeddings_changes SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS embeddings_ad AFTER DELETE ON embeddings BEGIN UPDATE embeddings_changes SET n = n + 1; END;
"""
DTYPE = np.dtype("<f2")


def ensure_table(index: Index) -> None:
    """Create the embeddings table (and its change counter) in `index` if not there (idempotent)."""
    if getattr(index, "_embeddings_ready", False):
        return
    with index.transaction() as db:
        for statement in TABLE_SQL.strip().split(";\n"):
            if statement.strip():
                db.execute(statement)
    index._embeddings_ready = True


def to_blob(vector: Any) -> bytes:
    """A vector (any float array [D]) -> its stored bytes: float16, normalised to unit length.
    ValueError for an empty, non-finite or all-zero vector (it could never rank)."""
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(v)) if v.size else 0.0
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("an embedding must be finite and non-zero")
    return (v / norm).astype(DTYPE).tobytes()


def from_blob(blob: bytes, dim: int) -> np.ndarray:
    """Stored bytes -> float32 [dim]. ValueError when the length does not match `dim`."""
    if len(blob) != dim * DTYPE.itemsize:
        raise ValueError(f"embedding of {len(blob)} bytes, expected {dim * DTYPE.itemsize}")
    return np.frombuffer(blob, dtype=DTYPE).astype(np.float32)


def save(db: sqlite3.Connection, photo_id: int, model: str, vector: Any) -> None:
    """Store (or replace) record `photo_id`'s image embedding, inside the caller's transaction."""
    blob = to_blob(vector)
    db.execute(
        "INSERT INTO embeddings(photo_id, model, dim, vector) VALUES (?,?,?,?) ON CONFLICT(photo_id)"
        " DO UPDATE SET model=excluded.model, dim=excluded.dim, vector=excluded.vector",
        (photo_id, model, len(blob) // DTYPE.itemsize, blob),
    )


def missing(index: Index, model: str, folder: str | None = None) -> list[tuple[int, str]]:
    """(photo id, path) of every photo on disk (optionally under `folder`) with no vector made by
    `model`: what a scan fills in without redoing captions (back-fill)."""
    ensure_table(index)
    sql = ("SELECT p.id, p.path FROM photos p LEFT JOIN embeddings e ON e.photo_id = p.id AND e.model = ?"
           " WHERE p.path IS NOT NULL AND e.photo_id IS NULL")
    params: list[Any] = [model]
    if folder is not None:
        lo, hi = under(folder)
        sql += " AND p.path >= ? AND p.path < ?"
        params += [lo, hi]
    return [(int(r[0]), r[1]) for r in index.query(sql + " ORDER BY p.path", params)]


def count(index: Index, model: str) -> int:
    ensure_table(index)
    return int(index.query("SELECT count(*) FROM embeddings WHERE model=?", (model,))[0][0])


@dataclass(frozen=True)
class Match:
    """One photo record ranked by meaning: its id and cosine similarity to the query (-1..1)."""

    photo_id: int
    score: float


class Vectors:
    """Every stored embedding of one encoder as one float16 matrix [N, D] (torch, CPU) with the
    photo ids of its rows (int64 [N], ascending). Immutable once built."""

    def __init__(self, ids: np.ndarray, matrix: Any, model: str) -> None:
        self.ids = np.ascontiguousarray(ids, dtype=np.int64)
        self.matrix = matrix
        self.model = model
        self._row = {int(i): n for n, i in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1]) if len(self) else 0

    @classmethod
    def from_arrays(cls, ids: Sequence[int], vectors: Any, model: str) -> "Vectors":
        """From photo ids and their vectors (float [N, D], unit rows), e.g. synthetic ones."""
        import torch

        order = np.argsort(np.asarray(ids, dtype=np.int64), kind="stable")
        ids = np.asarray(ids, dtype=np.int64)[order]
        mat = np.asarray(vectors)[order].astype(DTYPE)
        return cls(ids, torch.from_numpy(np.ascontiguousarray(mat)), model)

    @classmethod
    def load(cls, index: Index, model: str) -> "Vectors":
        """Read every vector of `model`, in photo id order; rows of another length than the
        first are skipped (never compared). Photos no longer on disk keep their row here and are
        dropped when hits are made (a join here cost most of the load time)."""
        import torch

        ensure_table(index)
        first = index.query("SELECT dim FROM embeddings WHERE model=? LIMIT 1", (model,))
        if not first:
            return cls(np.zeros(0, np.int64), torch.zeros((0, 0), dtype=torch.float16), model)
        dim = int(first[0][0])
        width = dim * DTYPE.itemsize
        with index._errors():
            cur = index.db.cursor()
            cur.row_factory = None  # plain tuples: sqlite3.Row objects cost seconds at 100k rows
            rows = cur.execute("SELECT photo_id, vector FROM embeddings WHERE model=? AND dim=? ORDER BY photo_id",
                               (model, dim)).fetchall()
        rows = [r for r in rows if len(r[1]) == width]
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        flat = np.frombuffer(b"".join(r[1] for r in rows), dtype=DTYPE).reshape(len(rows), dim)
        return cls(ids, torch.from_numpy(flat.copy()), model)

    def vector(self, photo_id: int) -> np.ndarray | None:
        """Record `photo_id`'s vector (float32 [D]), or None when it has none."""
        n = self._row.get(int(photo_id))
        return None if n is None else self.matrix[n].float().numpy()

    def scores(self, query: Any) -> np.ndarray:
        """Cosine of every row with the unit `query` [D]: float32 [N], in row order."""
        import torch

        if not len(self):
            return np.zeros(0, np.float32)
        one_thread_here()  # a UI thread: no OpenMP team of its own beside the compute thread's
        q = torch.as_tensor(np.asarray(query, dtype=np.float32).reshape(-1))
        if q.shape[0] != self.dim:
            raise ValueError(f"query of {q.shape[0]} dimensions against vectors of {self.dim}")
        with torch.inference_mode():
            return torch.mv(self.matrix, q.to(self.matrix.dtype)).float().numpy()

    def top(self, query: Any, k: int, *, allowed: Iterable[int] | None = None,
            exclude: Iterable[int] = ()) -> list[Match]:
        """The `k` rows most like `query`, best first; ties by photo id (lower first). Only ids in
        `allowed` (when given) and none in `exclude`."""
        scores = self.scores(query)
        keep = np.ones(len(self), dtype=bool)
        if allowed is not None:
            keep &= np.isin(self.ids, np.fromiter(allowed, dtype=np.int64))
        excluded = np.fromiter(exclude, dtype=np.int64)
        if excluded.size:
            keep &= ~np.isin(self.ids, excluded)
        candidates = np.flatnonzero(keep)
        if k <= 0 or not candidates.size:
            return []
        sub = scores[candidates]
        if candidates.size > k:
            # the k-th best score, then every row at least that good (ties at the edge kept)
            edge = np.partition(sub, candidates.size - k)[candidates.size - k]
            chosen = candidates[sub >= edge]
        else:
            chosen = candidates
        # ids ascend with rows, so a stable sort on -score breaks ties by photo id
        chosen = chosen[np.argsort(-scores[chosen], kind="stable")][:k]
        return [Match(int(self.ids[n]), float(scores[n])) for n in chosen]

    def like(self, photo_id: int, k: int, *, allowed: Iterable[int] | None = None) -> list[Match]:
        """"More like this": the `k` photos nearest record `photo_id`'s vector, itself excluded;
        [] when it has no vector."""
        v = self.vector(photo_id)
        return [] if v is None else self.top(v, k, allowed=allowed, exclude=[photo_id])


# One matrix per (index file, encoder) per process, reloaded when the stored vectors change.
_cache: dict[tuple[str, str], tuple[int, Vectors]] = {}
_cache_lock = threading.Lock()


def cached(index: Index, model: str) -> Vectors:
    """`Vectors.load`, kept for the process: read again only after the index's vectors changed
    (a scan added, replaced or removed some: the change counter the table's triggers keep)."""
    ensure_table(index)
    stamp = int(index.query("SELECT n FROM embeddings_changes")[0][0])
    key = (str(Path(index.path).resolve()), model)
    with _cache_lock:
        found = _cache.get(key)
        if found is not None and found[0] == stamp:
            return found[1]
    vectors = Vectors.load(index, model)
    with _cache_lock:
        _cache[key] = (stamp, vectors)
    return vectors
