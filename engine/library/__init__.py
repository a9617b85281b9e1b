"""Loupe's library: caption and label whole photo folders, write where photo tools read,
search by words.

    from engine import library
    summary = library.scan("~/Pictures", write="sidecar", progress=cb, cancel=event)
    hits = library.search("dog beach")
    library.export("captions.csv")
    library.undo()          # reverse the last run's renames
    page = library.photos(folder="~/Pictures", state="failed")   # the review, a page at a time
    library.set_caption(page.items[0].path, "My sister at the lake")   # the person's own caption
    library.thumbnail(page.items[0].path)                          # a cached JPEG for the grid

Settings read when an argument is left as None (engine.paths settings.json; every scan
option, its choices and its fallback are declared once in options.py):
    "library_write": "sidecar" | "embed" | "none"        (default "sidecar")
    "sidecar_style": "darktable" | "lightroom"            (default "darktable")
The index is `paths.data_dir()/library.db`; the rename undo log sits next to it.

A scan is stages over plain records (records.py), wired in scanner.py: plan.py (walk,
identify, decide), compute.py (decode + the engine's batch loop; ray_scan.RayCompute on a
cluster), writers.py (sidecar | embed | none, then rename; shared with edit.py), record.py
(one transaction per batch). options.py declares the scan's options once; keys.py keys each
task's results, so a model added later computes only its own.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..batching import Inference
from ..errors import LoupeError, UsageError
from ..files import TEMP_PREFIX, cleanup_stale
from .index import NO_MATCH, Hit, Index, IndexUnavailable
from .progress import ProgressCallback, ScanProgress, progress_bar
from .descriptions import EXISTING_POLICIES
from .edit import CaptionNotSaved, DescriptionExists, EditResult
from .review import REVIEW_STATES, PhotoItem, PhotoPage
from .options import SCAN_OPTIONS, WRITERS, Options
from .records import NOTICE_KINDS, Notice, Problem, ScanSummary
from .settings import CAPTION_STYLES, DEFAULT_CAPTION_STYLE, KEYWORD_THRESHOLD
from .thumbnails import thumbnail

if TYPE_CHECKING:
    from .fusion import Answer, RankedHit

__all__ = [
    "scan", "search", "export", "undo", "scans", "cleanup_stale", "progress_bar", "default_db_path",
    "photos", "photo", "set_caption", "thumbnail",
    "EXISTING_POLICIES", "Hit", "NO_MATCH", "ScanProgress", "Problem", "Notice", "NOTICE_KINDS", "ScanSummary",
    "IndexUnavailable", "TEMP_PREFIX", "WRITERS", "REVIEW_STATES", "PhotoItem", "PhotoPage", "EditResult", "DescriptionExists",
    "CaptionNotSaved", "CAPTION_STYLES", "DEFAULT_CAPTION_STYLE", "KEYWORD_THRESHOLD", "SCAN_OPTIONS",
]


def default_db_path() -> Path:
    from ..paths import data_dir

    return data_dir() / "library.db"


def _db(db_path: str | os.PathLike[str] | None) -> Path:
    return Path(db_path).expanduser() if db_path is not None else default_db_path()


def _log_for(db: Path):
    from .rename import RenameLog

    return RenameLog(db.with_name(db.stem + "-renames.jsonl"))


def scan(
    folder: str | os.PathLike[str],
    *,
    engine: "Inference | None" = None,
    write: str | None = None,
    sidecar_style: str | None = None,
    rename: bool = False,
    existing: str | None = None,
    caption_style: str | None = None,
    keyword_threshold: int | None = None,
    hierarchy_root: str | None = None,
    exclude: str | None = None,
    remove_gone_sidecars: bool = False,
    db_path: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    batch_size: int | None = None,
    workers: int = 2,
    ray_address: str | None = None,
    **model_options: Any,
) -> ScanSummary:
    """Caption and label every photo under `folder` not yet done with these models/settings.

    `write`: "sidecar" (XMP next to each photo; originals untouched), "embed" (XMP inside
    JPEG/PNG/TIFF/WebP, pixels untouched) or "none". `rename`: rename photos after their
    captions (undo with `undo()`). `existing`: what to do with a description someone else wrote
("keep", "replace" or "append"; see descriptions.py). `caption_style`: a key of CAPTION_STYLES
    ("detailed" or "quick"), setting the captioner's options. `keyword_threshold`: percent (see
    KEYWORD_THRESHOLD); labels less sure than it are indexed but not written as keywords.
    `hierarchy_root`: where a photo or sidecar already keeps a keyword hierarchy, labels go in
    it under this root (HIERARCHY_ROOT; None: the setting, else "Loupe"). `exclude`: glob
    patterns separated by ";" to leave out (options.EXCLUDE; leave_out.py says what a scan
    always leaves out and how .loupeignore files add patterns). `remove_gone_sidecars`: delete
    the sidecars Loupe wrote for photos of the folder that are no longer there (else listed, kept).
    `model_options`: the models' options by name, as in the registry (`top=5`, `prefix=...`;
    an explicit `num_beams=` wins over the style), checked before any file is touched.
    A photo whose caption the person wrote (`set_caption`) keeps it; the scan says so once.
    `progress` gets a ScanProgress at least once per photo, the first before any model work.
    `cancel.set()` stops between photos or within a generation step (a batch expected to end
    within ~1.5 s is let finish and kept: engine/stopping.py); the summary then has
    `cancelled=True` and the next scan resumes. Photos that cannot be read, written or
    renamed are in `summary.problems`, decisions Loupe took in `summary.notices`; the scan
    goes on. Raises UsageError for bad arguments and IndexUnavailable (a LoupeError) when the
    index cannot be used.

    `ray_address`: run decoding and the models on a Ray cluster instead (ray_scan.py):
    "local" starts one on this machine, "auto" or "ray://head:10001" joins one; the photos
    must be on storage every node reads. `engine` is then not used. RayMissing (a UsageError)
    without the `ray` extra.
    """
    from ..models.registry import for_task, split_options
    from ..paths import load_settings
    from .options import resolve
    from .settings import style_options

    settings = load_settings()
    chosen = resolve({"write": write, "sidecar_style": sidecar_style, "rename": rename, "existing": existing,
                      "caption_style": caption_style, "keyword_threshold": keyword_threshold,
                      "hierarchy_root": hierarchy_root, "exclude": exclude,
                      "remove_gone_sidecars": remove_gone_sidecars}, settings)
    models = split_options(style_options(chosen["caption_style"], model_options))
    notes = []
    if search_encoder_installed():
        models["embed"] = {}  # search by meaning: on once the encoder is installed
    else:
        notes.append(EMBED_OFF)
    folder_path = Path(folder).expanduser()
    if not folder_path.is_dir():
        raise UsageError(f"Not a folder: {folder_path}")
    folder_path = folder_path.resolve()
    if ray_address is not None:
        from .ray_scan import require_ray

        require_ray()  # before anything is touched: one line saying how to install it
    if engine is None and ray_address is None:
        from .. import get_engine

        engine = get_engine()
    options = Options(
        **chosen,
        batch_size=int(batch_size or (engine.batch_size("caption") if engine is not None else for_task("caption").batch_size)),
        workers=int(workers),
        models=models,
    )
    options.validate()
    from .scanner import local, run_scan

    db = _db(db_path)
    with Index(db) as index:
        if ray_address is not None:
            from . import ray_scan

            summary = ray_scan.run(ray_address, folder_path, options, index, _log_for(db), progress, cancel)
        else:
            summary = run_scan(folder_path, engine.model_ids, local(engine), options, index, _log_for(db), progress,
                               cancel)
        for line in notes:  # told once per folder, like the scan's decisions
            if (str(folder_path), "embed-off", line) not in index.notices_told():
                with index.transaction() as tx:
                    index.add_notice(tx, str(folder_path), "embed-off", line)
                summary.notes.append(line)
    return summary


#: what a scan says once when the search encoder is not installed
EMBED_OFF = ("Search by meaning is off: the encoder (siglip-base) is not installed; "
             "`loupe models download siglip-base` (or the Models tab), then scan again to fill it in.")


def search_encoder_installed() -> bool:
    """Whether the image-text encoder's weights are installed (verified), so scans embed photos."""
    from .. import weights

    return weights.is_installed("siglip-base")


def photos(
    *, folder: str | os.PathLike[str] | None = None, text: str = "", state: str = "all", offset: int = 0,
    limit: int = 48, db_path: str | os.PathLike[str] | None = None,
) -> PhotoPage:
    """One page of the index's photos for review: PhotoPage(total matching, items).

    Newest scan first, then by name. `folder`: only photos under it (any depth). `text`: the
    same word matching as `search()` (photos never read have no text and do not match).
    `state`: one of REVIEW_STATES (see engine.library.review for what each means). Fast with
    10,000 photos: SQL paging for "all" and "failed"; the others stat each candidate. An empty
    page when there is no index yet. UsageError for an unknown state or a bad offset/limit."""
    from .review import check_query, page

    check_query(state, offset, limit)
    db = _db(db_path)
    if not db.exists():
        return PhotoPage(0, [])
    where = str(Path(folder).expanduser().resolve()) if folder is not None else None
    with Index(db) as index:
        return page(index, folder=where, text=text or "", state=state, offset=offset, limit=limit)


def photo(path: str | os.PathLike[str], *, db_path: str | os.PathLike[str] | None = None) -> PhotoItem | None:
    """The review's item for the photo at `path`, or None when the index does not know it."""
    from .review import one

    db = _db(db_path)
    if not db.exists():
        return None
    with Index(db) as index:
        return one(index, str(Path(path).expanduser().resolve()))


def set_caption(
    path: str | os.PathLike[str], caption: str, *, write: str | None = None, sidecar_style: str | None = None,
    replace_others: bool = False, db_path: str | os.PathLike[str] | None = None,
) -> EditResult:
    """Save the person's own caption for a photo in the index.

    Written the same safe way as a scan (atomic; sidecar, or embedded with the pixels
    untouched), per `write`, else the way the photo was last written, else the settings; it
    becomes the photo's description and is searchable at once. A later scan never replaces it
    (it keeps it and says so once among its notices). Returns EditResult(path, written, message).
    A description someone else wrote (sidecar, or the photo's XMP/IPTC/EXIF) is replaced only
    with `replace_others=True`; without it DescriptionExists (a UsageError, `.existing` the
    text) is raised and nothing is written.
    Raises UsageError for an empty caption or a photo not in the index, CaptionNotSaved (a
    LoupeError naming the photo) when its files cannot be written."""
    from ..paths import load_settings
    from .edit import set_caption as _set_caption

    db = _db(db_path)
    with Index(db) as index:
        return _set_caption(index, str(path), caption, write=write, sidecar_style=sidecar_style,
                            settings=load_settings(), replace_others=replace_others)


def search(words: str, *, limit: int = 50, db_path: str | os.PathLike[str] | None = None) -> list[Hit]:
    """Photos whose caption, labels or file name hold all the words, best (bm25) first.

    Any text is a query, never an error: words are matched as plain words (stemmed: "dogs"
    finds "dog"), a punctuated word ("green-boat", "e-mail") as the phrase of its parts, and
    a leading "-", quotes, *, ^, :, parentheses, AND/OR/NOT/NEAR are plain text (see
    `index.fts_query`). An empty list when nothing matches (say `NO_MATCH`) or there is no
    index yet. Raises UsageError for a bad `limit`, IndexUnavailable for a broken index."""
    if not isinstance(limit, int) or limit < 1:
        raise UsageError("limit must be a whole number of at least 1.")
    db = _db(db_path)
    if not db.exists():
        return []
    with Index(db) as index:
        return index.search(words, min(limit, 10_000))


def find(
    text: str, *, by: str = "both", folder: str | os.PathLike[str] | None = None, state: str = "all",
    limit: int = 50, db_path: str | os.PathLike[str] | None = None, engine: Any = None,
    loading: Callable[[], None] | None = None,
) -> "Answer":
    """One search over words and meaning (fusion.py): Answer(hits best first, by, notes).

    `by`: "words" (FTS5 bm25), "meaning" (the query's text embedding against the photos' image
    embeddings) or "both", fused by reciprocal rank fusion; each hit carries its word rank,
    meaning score and fused rank. `folder` and `state` (REVIEW_STATES) filter before ranking.
    The encoder's text tower loads at the first query of the process: `loading()` is called
    just before (a front end says so). Without the encoder or any embedding, "both" ranks by
    words and says why in `notes`; "meaning" raises UsageError. Reads only: works while a scan
    writes. UsageError for a bad `by`, `state` or `limit`."""
    from . import fusion, vectors
    from .review import ids_in_state

    if by not in fusion.BY:
        raise UsageError(f"unknown ranking {by!r}; choose one of {', '.join(fusion.BY)}")
    unavailable = None
    if by != "words" and not search_encoder_installed():
        from .. import weights
        from ..errors import WeightsDamaged

        try:  # damaged weights named as such (exit 6), missing ones as missing (exit 4)
            weights.model_dir("siglip-base")
        except LoupeError as exc:
            if by == "meaning":
                raise
            if isinstance(exc, WeightsDamaged):
                unavailable = str(exc).rstrip(".")
            # not installed: "both" ranks by words and fusion says so (and how to get it)
    db = _db(db_path)
    if not db.exists():
        return fusion.Answer([], by)
    where = str(Path(folder).expanduser().resolve()) if folder is not None else None
    with Index(db) as index:
        ids = ids_in_state(index, state, where)
        vecs, embed_query = None, None
        if by != "words" and search_encoder_installed():
            engine = engine or _engine()
            vecs = vectors.cached(index, engine.model_ids()["embed"])

            def embed_query(query: str) -> Any:
                if not engine.text_ready and loading is not None:
                    loading()
                return engine.embed_text([query])[0]

        return fusion.search(index, text, by=by, vectors=vecs, embed_query=embed_query, folder=where, ids=ids,
                             limit=limit, unavailable=unavailable)


def similar(
    path: str | os.PathLike[str], *, folder: str | os.PathLike[str] | None = None, limit: int = 50,
    db_path: str | os.PathLike[str] | None = None, engine: Any = None,
) -> list["RankedHit"]:
    """"More like this": the photos whose image embeddings are nearest the photo at `path`'s,
    best first (itself left out; `meaning_score` is the cosine). No model is loaded. UsageError
    when the photo is not in the index or has no embedding yet."""
    from . import fusion, vectors

    db = _db(db_path)
    where = str(Path(folder).expanduser().resolve()) if folder is not None else None
    target = str(Path(path).expanduser().resolve())
    if not db.exists():
        raise UsageError(f"{target} is not in the library yet: scan its folder first.")
    with Index(db) as index:
        found = index.query("SELECT id FROM photos WHERE path = ?", (target,))
        if not found:
            raise UsageError(f"{target} is not in the library yet: scan its folder first.")
        engine = engine or _engine()
        vecs = vectors.cached(index, engine.model_ids()["embed"])
        return fusion.similar(index, int(found[0][0]), vecs, folder=where, limit=limit)


def _engine() -> Any:
    from .. import get_engine

    return get_engine()


def export(
    path: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    scan_id: int | None = None,
    db_path: str | os.PathLike[str] | None = None,
) -> int:
    """Write the index (or one scan's photos, with status and reasons) as CSV or JSON.

    The format comes from the extension unless `fmt` is "csv"/"json". Returns rows written."""
    from .exporter import export_index, format_for

    target = Path(path).expanduser()
    format_for(target, fmt)  # a bad name fails before the index is opened
    with Index(_db(db_path)) as index:
        return export_index(index, target, fmt, scan_id)


def undo(*, db_path: str | os.PathLike[str] | None = None) -> int:
    """Put back the photos (and sidecars) renamed by the last scan; returns how many."""
    from .rename import undo as _undo

    db = _db(db_path)
    log = _log_for(db)
    if not log.path.exists():
        return 0
    with Index(db) as index:

        def moved(old: str, new: str) -> None:
            with index.transaction() as tx:
                index.set_path_only(tx, old, new)

        return _undo(log, moved)


def scans(*, db_path: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Past scans, oldest first: id, folder, started, finished, status and counts."""
    db = _db(db_path)
    if not db.exists():
        return []
    with Index(db) as index:
        return index.scans()
