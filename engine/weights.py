"""Model weights: where they come from, and installing, verifying, importing and removing them.

The name -> source table comes from the model registry (`engine.models.registry`), each
source pinned to a revision and every file to its size and sha256 (as whisper pins its
checkpoints). Downloads go to a per-model staging folder under the
weights folder, are checked against the pins, and only then is the folder renamed into place:
the final path never holds a half or unverified file. A retry resumes from what is staged.

`LOUPE_SOURCES` may name a JSON file that overrides entries of the table (a mirror, an
internal endpoint; the test suite uses it to serve tiny models from 127.0.0.1).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

from . import paths
from .files import atomic_write
from .errors import Cancelled, DownloadError, IntegrityError, UsageError, WeightsMissing

MANIFEST = ".loupe-weights.json"
HF_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class WeightFile:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Source:
    name: str
    title: str
    kind: str  # "hf": a Hugging Face repo at a pinned commit; "url": files under a base URL
    files: tuple[WeightFile, ...]
    repo: str = ""
    revision: str = ""
    base_url: str = ""
    endpoint: str = ""  # hf only; empty means HF_ENDPOINT or huggingface.co

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def url_for(self, filename: str) -> str:
        if self.kind == "url":
            return self.base_url.rstrip("/") + "/" + filename
        endpoint = self.endpoint or os.environ.get("HF_ENDPOINT") or HF_ENDPOINT
        return f"{endpoint.rstrip('/')}/{self.repo}/resolve/{self.revision}/{filename}"


ProgressFn = Callable[["Progress"], None]


@dataclass(frozen=True)
class Progress:
    model: str
    file: str
    done: int  # bytes of this file
    total: int
    overall_done: int  # bytes of the whole model
    overall_total: int

    @property
    def fraction(self) -> float:
        return self.overall_done / self.overall_total if self.overall_total else 1.0


@dataclass(frozen=True)
class Status:
    name: str
    title: str
    installed: bool
    path: Path
    size: int  # bytes on disk when installed, else the download size
    revision: str


# --------------------------------------------------------------------------- the table


def sources() -> dict[str, Source]:
    """Each registered model's source (engine.models.registry), with the entries of
    `LOUPE_SOURCES` (a JSON file) laid over it."""
    from .models.registry import MODELS

    table = {spec.name: spec.source for spec in MODELS}
    override = os.environ.get("LOUPE_SOURCES")
    if not override:
        return table
    try:
        data = json.loads(Path(override).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"LOUPE_SOURCES: cannot read {override}: {exc}") from None
    for name, entry in data.items():
        base = table.get(name)
        files = tuple(WeightFile(f["name"], int(f["size"]), f["sha256"].lower()) for f in entry.get("files", []))
        known = {k: v for k, v in entry.items() if k in Source.__dataclass_fields__ and k not in ("files", "name")}
        if base is None:
            table[name] = Source(name=name, title=entry.get("title", name), kind=entry["kind"], files=files, **{k: v for k, v in known.items() if k not in ("title", "kind")})
        else:
            table[name] = replace(base, **known, **({"files": files} if files else {}))
    return table


def source(name: str) -> Source:
    table = sources()
    if name not in table:
        raise UsageError(f"unknown model {name!r}; known: {', '.join(table)}")
    return table[name]


# --------------------------------------------------------------------------- status


def model_path(name: str) -> Path:
    return paths.weights_dir() / name


def _read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_installed(name: str) -> bool:
    src = source(name)
    folder = model_path(name)
    manifest = _read_manifest(folder)
    if not manifest or manifest.get("files") != {f.name: f.sha256 for f in src.files}:
        return False
    # Sizes are cheap to check on every start; full hashes are checked by `verify`.
    for f in src.files:
        try:
            if (folder / f.name).stat().st_size != f.size:
                return False
        except OSError:
            return False
    return True


def status() -> list[Status]:
    out = []
    for name, src in sources().items():
        installed = is_installed(name)
        size = _du(model_path(name)) if installed else src.size
        out.append(Status(name, src.title, installed, model_path(name), size, src.revision or src.base_url))
    return out


def model_dir(name: str) -> Path:
    """The folder holding `name`'s verified files, or WeightsMissing saying what to do."""
    if not is_installed(name):
        src = source(name)
        raise WeightsMissing(
            f"{src.title}: weights not installed. Run `loupe models download` "
            f"({_mb(src.size)}, needs internet once) or `loupe models import FOLDER`."
        )
    return model_path(name)


def verify(name: str) -> None:
    """Re-hash every installed file; IntegrityError if one changed on disk."""
    src = source(name)
    folder = model_dir(name)
    for f in src.files:
        _check(folder / f.name, f)


def disk_usage() -> int:
    return _du(paths.weights_dir())


# --------------------------------------------------------------------------- install

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
    """Download, verify and install one model; returns its folder. Idempotent."""
    src = source(name)
    if is_installed(name):
        return model_path(name)
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
                _download_all(src, staging, progress, cancel)
                return _commit(src, staging)
        except Timeout:
            raise DownloadError(f"{src.title}: another Loupe is downloading it already") from None
        except OSError as exc:  # the weights folder itself: read-only, full, gone
            raise DownloadError(_folder_failure(src, root, exc)) from None
    finally:
        lock.release()


def _download_all(src: Source, staging: Path, progress: ProgressFn | None, cancel: threading.Event | None) -> None:
    overall_total = src.size
    finished = 0
    for f in src.files:
        if cancel is not None and cancel.is_set():
            raise Cancelled("download cancelled")
        target = staging / f.name
        if not (target.exists() and target.stat().st_size == f.size and sha256_file(target) == f.sha256):
            _fetch(src, f, staging, _reporter(src.name, f, finished, overall_total, progress, cancel))
            try:
                _check(target, f)
            except IntegrityError:
                target.unlink(missing_ok=True)  # never resume from bytes known to be wrong
                raise
        finished += f.size
        if progress:
            progress(Progress(src.name, f.name, f.size, f.size, finished, overall_total))


def _reporter(model, wf, before, overall_total, progress, cancel):
    def report(done: int) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("download cancelled")
        if progress:
            done = max(0, min(done, wf.size))
            progress(Progress(model, wf.name, done, wf.size, before + done, overall_total))

    return report


def _fetch(src: Source, wf: WeightFile, staging: Path, report: Callable[[int], None]) -> None:
    """Fetch one file into `staging/name` (resuming a partial one) through huggingface_hub."""
    tqdm_class = _tqdm_for(report)
    try:
        if src.kind == "hf":
            from huggingface_hub import hf_hub_download

            hf_hub_download(
                src.repo,
                wf.name,
                revision=src.revision,
                local_dir=staging,
                endpoint=src.endpoint or os.environ.get("HF_ENDPOINT") or HF_ENDPOINT,
                tqdm_class=tqdm_class,
                token=False,
            )
        else:
            from huggingface_hub.file_download import http_get

            part = staging / f".{wf.name}.incomplete"
            resume = part.stat().st_size if part.exists() else 0
            if resume > wf.size:
                part.unlink()
                resume = 0
            with open(part, "ab") as fh:
                try:
                    http_get(src.url_for(wf.name), fh, resume_size=resume, expected_size=wf.size,
                             displayed_filename=wf.name, tqdm_class=tqdm_class)
                except OSError as exc:
                    if "Consistency check failed" in str(exc):
                        # The server finished a body of another length (an HTML error page, a
                        # proxy's answer): those bytes are no prefix of the file, never resume them.
                        fh.close()
                        part.unlink(missing_ok=True)
                    raise
            os.replace(part, staging / wf.name)
    except (Cancelled, IntegrityError):
        raise
    except Exception as exc:  # network, HTTP, disk: one readable line
        raise DownloadError(_describe_failure(src, wf, exc)) from exc


def _tqdm_for(report: Callable[[int], None]):
    from tqdm.auto import tqdm

    class _Bar(tqdm):  # receives byte counts from huggingface_hub; shows nothing itself
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._loupe_n = int(kwargs.get("initial") or 0)
            report(self._loupe_n)

        def update(self, n=1):
            self._loupe_n += int(n or 0)
            report(self._loupe_n)
            return super().update(n)

    return _Bar


def _describe_failure(src: Source, wf: WeightFile, exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    host = src.url_for(wf.name).split("/")[2]
    chain = _causes(exc)
    if any(isinstance(e, OSError) and getattr(e, "errno", None) == 28 for e in chain):
        return f"{src.title}: the disk is full while saving {wf.name}. Free some space and retry."
    # Offline only when a connection really failed: the hub client also wraps a bad answer
    # (an HTML error page, say) in LocalEntryNotFoundError.
    names = " ".join(f"{type(e).__name__} {e}" for e in chain)
    if any(k in names for k in ("ConnectError", "ConnectTimeout", "NameResolution", "getaddrinfo",
                                 "OfflineModeIsEnabled", "Connection refused", "gaierror")):
        return (f"{src.title}: cannot reach {host} (offline?). Connect and retry, or copy the "
                f"files and run `loupe models import FOLDER`.")
    return f"{src.title}: download of {wf.name} from {host} failed ({text[:200]}). Retry to resume."


def _causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen and len(seen) < 10:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _folder_failure(src: Source, root: Path, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if exc.errno == 28:
        return f"{src.title}: the disk holding {root} is full. Free some space and retry."
    if exc.errno in (1, 13, 30):  # EPERM, EACCES, EROFS
        return (f"{src.title}: cannot write to the weights folder {root} ({reason}). Make it writable "
                f"or choose another weights folder, then retry.")
    return f"{src.title}: cannot save into the weights folder {root} ({reason}). Retry to resume."


def _commit(src: Source, staging: Path) -> Path:
    """Write the manifest, then swap the staged folder into place in one rename."""
    for f in src.files:
        if not (staging / f.name).is_file():
            raise DownloadError(f"{src.title}: {f.name} is missing after download")
    manifest = {
        "name": src.name,
        "revision": src.revision or src.base_url,
        "files": {f.name: f.sha256 for f in src.files},
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
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


def cleanup_stale() -> None:
    """Drop trash and old folders that a killed process left behind."""
    root = paths.weights_dir()
    if root.is_dir():
        for entry in root.iterdir():
            if entry.name.startswith((".trash-", ".old-")):
                shutil.rmtree(entry, ignore_errors=True)


# --------------------------------------------------------------------------- import


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
            staging = paths.weights_dir() / ".partial" / name
            try:
                staging.mkdir(parents=True, exist_ok=True)
                done = 0
                for f in src.files:
                    shutil.copyfile(chosen[f.name], staging / f.name)
                    done += f.size
                    if progress:
                        progress(Progress(name, f.name, f.size, f.size, done, src.size))
                    _check(staging / f.name, f)
                _commit(src, staging)
            except OSError as exc:  # the weights folder: read-only, full
                raise DownloadError(_folder_failure(src, paths.weights_dir(), exc)) from None
            installed.append(name)
        elif chosen or any(by_name.get(f.name) for f in src.files):
            missing = [f.name for f in src.files if f.name not in chosen]
            problems.append(f"{src.title}: missing or not matching the pinned sha256: {', '.join(missing)}")
    if not installed:
        detail = "; ".join(problems) if problems else "none of the expected files are there"
        raise WeightsMissing(f"nothing to import from {root}: {detail}")
    return installed


def _walk_files(root: Path) -> Iterable[Path]:
    for dirpath, _dirs, files in os.walk(root, followlinks=True):
        for fn in files:
            p = Path(dirpath) / fn
            if p.is_file():  # HF caches hold symlinks to blobs; is_file follows them
                yield p


# --------------------------------------------------------------------------- helpers


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check(path: Path, wf: WeightFile) -> None:
    try:
        size = path.stat().st_size
    except OSError:
        raise IntegrityError(f"{wf.name}: missing") from None
    if size != wf.size:
        raise IntegrityError(f"{wf.name}: size {size:,} bytes, expected {wf.size:,}: the file is incomplete or wrong")
    digest = sha256_file(path)
    if digest != wf.sha256:
        raise IntegrityError(f"{wf.name}: sha256 {digest[:12]}… does not match the pinned {wf.sha256[:12]}…: refusing it")


def _du(folder: Path) -> int:
    total = 0
    if folder.is_dir():
        for dirpath, _dirs, files in os.walk(folder):
            for fn in files:
                try:
                    total += (Path(dirpath) / fn).stat().st_size
                except OSError:
                    pass
    return total


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e3:,.0f} KB"


def _remove_path(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)
