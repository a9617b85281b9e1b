"""Install (download into staging, verify, rename into place), repair and remove a model's weights."""
from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from pathlib import Path

from .. import paths
from ..errors import DownloadError, IntegrityError
from ..files import atomic_write
from ..models.spec import Source, WeightFile
from .table import source
from .stamps import (
    DAMAGED, MANIFEST, Status, _check, _new_manifest, _raise_if_cancelled, _read_manifest, _stamp_of, check, model_path,
)
from .transfer import DOWNLOADING, DownloadProgress, ProgressFn, VERIFYING, _fetch


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(name, threading.Lock())

def install(
    name: str,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Download, verify and install one model; returns its folder. Idempotent.

    A damaged model is repaired: its verified files are kept (hard-linked into the staging
    folder) and only the missing or wrong ones are fetched."""
    src = source(name)
    current = check(name)
    if current.installed:
        return current.path
    lock = _lock_for(name)
    if not lock.acquire(blocking=False):
        raise DownloadError(f"{src.title}: a download is already running")
    try:
        from filelock import FileLock, Timeout

        root = paths.weights_dir()
        staging = root / ".partial" / name
        try:
            staging.mkdir(parents=True, exist_ok=True)
            with FileLock(str(root / ".partial" / f"{name}.lock"), timeout=0):
                known = _seed_from(current, staging) if current.state == DAMAGED else {}
                stamps = _download_all(src, staging, progress, cancel, known)
                return _commit(src, staging, stamps)
        except Timeout:
            raise DownloadError(f"{src.title}: another Loupe is downloading it already") from None
        except OSError as exc:  # the weights folder itself: read-only, full, gone
            raise DownloadError(_folder_failure(src, root, exc)) from None
    finally:
        lock.release()

def _seed_from(current: Status, staging: Path) -> dict[str, dict]:
    """Put the verified files of a damaged install into `staging`, so a repair fetches only
    the bad ones; returns their stamps (a hard link keeps size and mtime, so they still hold)."""
    bad = {p.file for p in current.problems}
    stamps = (_read_manifest(current.path) or {}).get("verified") or {}
    for f in source(current.name).files:
        target = staging / f.name
        if f.name in bad or target.exists():
            continue
        try:
            os.link(current.path / f.name, target)
        except OSError:  # a file system without hard links
            shutil.copy2(current.path / f.name, target)
    return {n: s for n, s in stamps.items() if n not in bad}

def _download_all(src: Source, staging: Path, progress: ProgressFn | None, cancel: threading.Event | None,
                  known: dict[str, dict] | None = None) -> dict[str, dict]:
    """Fetch every file not yet verified in `staging`; returns the verified stamps by file.

    Raises Cancelled within about POLL_S of `cancel` being set, in any phase (connecting,
    receiving, verifying); what was received stays staged for the next call to resume."""
    overall_total = src.size
    finished = 0
    stamps: dict[str, dict] = {}
    for f in src.files:
        _raise_if_cancelled(cancel)
        target = staging / f.name

        def report(phase: str, done: int, f: WeightFile = f, before: int = finished) -> None:
            if progress:
                done = max(0, min(done, f.size))
                # While verifying, `done` counts bytes hashed; the bytes downloaded stay all there.
                overall = before + (f.size if phase == VERIFYING else done)
                progress(DownloadProgress(src.name, f.name, done, f.size, overall, overall_total,
                                          phase=phase, host=src.host))

        stamp = None
        if known and f.name in known:  # a verified file of the install being repaired
            stamp, problem = _stamp_of(target, f, known[f.name])
            stamp = None if problem else stamp
        if stamp is None and target.is_file():  # fetched by an earlier run, cancelled while verifying
            try:
                stamp = _check(target, f, cancel=cancel, on_bytes=lambda n: report(VERIFYING, n))
            except IntegrityError:
                target.unlink(missing_ok=True)
        if stamp is None:
            _fetch(src, f, staging, report, cancel)
            try:
                stamp = _check(target, f, cancel=cancel, on_bytes=lambda n: report(VERIFYING, n))
            except IntegrityError:
                target.unlink(missing_ok=True)  # never resume from bytes known to be wrong
                raise
        stamps[f.name] = stamp
        finished += f.size
        if progress:
            progress(DownloadProgress(src.name, f.name, f.size, f.size, finished, overall_total,
                                      phase=DOWNLOADING, host=src.host))
    return stamps

def _folder_failure(src: Source, root: Path, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if exc.errno == 28:
        return f"{src.title}: the disk holding {root} is full. Free some space and retry."
    if exc.errno in (1, 13, 30):  # EPERM, EACCES, EROFS
        return (f"{src.title}: cannot write to the weights folder {root} ({reason}). Make it writable "
                f"or choose another weights folder, then retry.")
    return f"{src.title}: cannot save into the weights folder {root} ({reason}). Retry to resume."

def _commit(src: Source, staging: Path, stamps: dict[str, dict]) -> Path:
    """Write the manifest with the verified stamps, then swap the staged folder into place in
    one rename."""
    for f in src.files:
        if not (staging / f.name).is_file():
            raise DownloadError(f"{src.title}: {f.name} is missing after download")
    manifest = {**_new_manifest(src), "verified": stamps}
    shutil.rmtree(staging / ".cache", ignore_errors=True)  # huggingface_hub's bookkeeping
    for leftover in staging.iterdir():
        if leftover.name not in manifest["files"]:
            _remove_path(leftover)
    atomic_write(staging / MANIFEST, json.dumps(manifest, indent=2).encode("utf-8"))
    final = model_path(src.name)
    old = None
    if final.exists():
        old = final.with_name(f".old-{src.name}-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final

def remove(name: str) -> bool:
    """Delete an installed model (and any partial download). True if anything was removed."""
    source(name)
    removed = False
    for folder in (model_path(name), paths.weights_dir() / ".partial" / name):
        if folder.exists():
            trash = folder.with_name(f".trash-{name}-{uuid.uuid4().hex[:8]}")
            os.replace(folder, trash)  # gone from view at once, even if deletion is slow
            shutil.rmtree(trash, ignore_errors=True)
            removed = True
    return removed

def _remove_path(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)
