"""Import weights from a folder (offline installs), and clean up what killed imports and
downloads left behind."""
from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Iterable

from .. import paths
from ..errors import DownloadError, UsageError, WeightsMissing
from ..files import sha256_file
from ..models.spec import Source
from .table import sources
from .stamps import _check
from .transfer import DownloadProgress, ProgressFn
from .install import _commit, _folder_failure


IMPORT_PREFIX = ".import-"

_STALE_IMPORT_S = 3600  # an import that has not touched its folder for this long was killed

def drop_leftovers() -> None:
    """Drop trash, old and import folders that a killed process left behind."""
    root = paths.weights_dir()
    if root.is_dir():
        for entry in root.iterdir():
            if entry.name.startswith((".trash-", ".old-")):
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.startswith(IMPORT_PREFIX):
                # Another process may be importing right now: only old folders are stale.
                try:
                    stale = time.time() - entry.stat().st_mtime > _STALE_IMPORT_S
                except OSError:
                    continue
                if stale:
                    shutil.rmtree(entry, ignore_errors=True)

def import_folder(folder: str | os.PathLike[str], progress: ProgressFn | None = None) -> list[str]:
    """Install every model whose files are all found under `folder` (any depth); verified.

    Works with a plain folder of the files, a Hugging Face cache (`models--.../snapshots/REV`)
    and torch's hub cache (`checkpoints/resnet18-*.pth`). Returns the names installed.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise UsageError(f"{root}: not a folder")
    by_name: dict[str, list[Path]] = {}
    for path in _walk_files(root):
        by_name.setdefault(path.name, []).append(path)
    installed, problems = [], []
    for name, src in sources().items():
        chosen: dict[str, Path] = {}
        for f in src.files:
            for candidate in by_name.get(f.name, []):
                if candidate.stat().st_size == f.size and sha256_file(candidate) == f.sha256:
                    chosen[f.name] = candidate
                    break
        if len(chosen) == len(src.files):
            _import_one(src, chosen, progress)
            installed.append(name)
        elif chosen or any(by_name.get(f.name) for f in src.files):
            missing = [f.name for f in src.files if f.name not in chosen]
            problems.append(f"{src.title}: missing or not matching the pinned sha256: {', '.join(missing)}")
    if not installed:
        detail = "; ".join(problems) if problems else "none of the expected files are there"
        raise WeightsMissing(f"nothing to import from {root}: {detail}")
    return installed

def _import_one(src: Source, chosen: dict[str, Path], progress: ProgressFn | None) -> None:
    """Copy the chosen files into a private staging folder, verify the copies, commit.

    The staging folder is this import's own (never a download's `.partial/NAME`), and is gone
    afterwards whatever happens: renamed into place, or removed."""
    root = paths.weights_dir()
    staging = root / f"{IMPORT_PREFIX}{src.name}-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir(parents=True)
        stamps, done = {}, 0
        for f in src.files:
            shutil.copyfile(chosen[f.name], staging / f.name)
            done += f.size
            if progress:
                progress(DownloadProgress(src.name, f.name, f.size, f.size, done, src.size))
            stamps[f.name] = _check(staging / f.name, f)
        _commit(src, staging, stamps)
    except OSError as exc:  # the weights folder: read-only, full
        raise DownloadError(_folder_failure(src, root, exc)) from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    _drop_download_staging(src.name)

def _drop_download_staging(name: str) -> None:
    """Remove what a started download had staged for `name`, now installed another way."""
    from filelock import FileLock, Timeout

    partial = paths.weights_dir() / ".partial"
    if not (partial / name).exists():
        return
    try:
        with FileLock(str(partial / f"{name}.lock"), timeout=0):
            shutil.rmtree(partial / name, ignore_errors=True)
    except Timeout:  # that download is running; it will find the model installed
        return
    except OSError:
        return

def _walk_files(root: Path) -> Iterable[Path]:
    for dirpath, _dirs, files in os.walk(root, followlinks=True):
        for fn in files:
            p = Path(dirpath) / fn
            if p.is_file():  # HF caches hold symlinks to blobs; is_file follows them
                yield p
