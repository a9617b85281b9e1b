"""Model weights: where they come from, and installing, verifying, importing and removing them.

The name -> source table comes from the model registry (`engine.models.registry`), each
source pinned to a revision and every file to its size and sha256 (as whisper pins its
checkpoints). Downloads go to a per-model staging folder under the
weights folder, are checked against the pins, and only then is the folder renamed into place:
the final path never holds a half or unverified file. A retry resumes from what is staged.

Each model folder's manifest (`.loupe-weights.json`) carries a verified stamp per file: its size,
mtime_ns and the sha256 computed for them. `check()` trusts a stamp while size and mtime are
unchanged and re-hashes only a file whose size or mtime changed (then stores the new stamp), so
a start costs a few stat calls, not a hash of 1 GB. `verify()` re-hashes everything. A model is
"installed" only when every pinned file is there and verified; files that are present but
missing, of the wrong size or the wrong hash make it "damaged", and loading it is refused.

`LOUPE_SOURCES` may name a JSON file that overrides entries of the table (a mirror, an
internal endpoint; the test suite uses it to serve tiny models from 127.0.0.1).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import shutil
import stat
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

from . import paths
from .errors import Cancelled, DownloadError, IntegrityError, LoupeError, UsageError, WeightsDamaged, WeightsMissing
from .files import atomic_write, sha256_file
from .units import format_size

log = logging.getLogger("loupe.weights")

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

    @property
    def pin(self) -> str:
        """The weights' identity: the repo revision, or the files' sha256 prefixes."""
        return self.revision or ",".join(f.sha256[:12] for f in self.files)

    def url_for(self, filename: str) -> str:
        if self.kind == "url":
            return self.base_url.rstrip("/") + "/" + filename
        endpoint = self.endpoint or os.environ.get("HF_ENDPOINT") or HF_ENDPOINT
        return f"{endpoint.rstrip('/')}/{self.repo}/resolve/{self.revision}/{filename}"


ProgressFn = Callable[["DownloadProgress"], None]


@dataclass(frozen=True)
class DownloadProgress:
    model: str
    file: str
    done: int  # bytes of this file
    total: int
    overall_done: int  # bytes of the whole model
    overall_total: int

    @property
    def fraction(self) -> float:
        return self.overall_done / self.overall_total if self.overall_total else 1.0


# The states of a model's weights (Status.state).
INSTALLED = "installed"  # every pinned file present and verified (by its stamp or its hash)
DAMAGED = "damaged"  # files present, but one is missing, of the wrong size or hash, or unexpected
PARTIAL = "partial download"  # nothing installed; a started download waits to be resumed
NOT_INSTALLED = "not installed"  # nothing on disk


@dataclass(frozen=True)
class FileProblem:
    """Why one file of an installed model is not the pinned one."""

    file: str  # the file's name in the model folder
    reason: str  # "missing", "size 4,096 bytes, expected 8,192", "sha256 ... does not match ..."

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


@dataclass(frozen=True)
class Status:
    """A model's weights as found on disk (see `check`)."""

    name: str
    title: str
    state: str  # INSTALLED, DAMAGED, PARTIAL or NOT_INSTALLED
    path: Path  # the model folder (it need not exist)
    size: int  # bytes on disk when installed, else the download size
    revision: str
    problems: tuple[FileProblem, ...] = ()  # when DAMAGED: each bad file and why, in table order
    on_disk: int = 0  # bytes now on disk for this model: its folder, or the staged download

    @property
    def installed(self) -> bool:
        return self.state == INSTALLED

    @property
    def reason(self) -> str:
        """The problems in one line ("" unless damaged)."""
        return "; ".join(map(str, self.problems))


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
    """The model folder's manifest, or None when absent or unreadable (then stamps are re-made)."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if not isinstance(data.get("verified"), dict):
        data.pop("verified", None)
    return data


def _staging(name: str) -> Path:
    return paths.weights_dir() / ".partial" / name


def check(name: str, *, full: bool = False) -> Status:
    """Where `name`'s weights stand on disk: INSTALLED, DAMAGED, PARTIAL or NOT_INSTALLED.

    Fast by default: a file whose size and mtime_ns equal its stamp is taken as verified
    without reading it; any other file is re-hashed and its stamp updated (atomically; a
    read-only weights folder just keeps re-hashing). `full=True` re-hashes every file.
    Any pinned file or a manifest in the model folder counts as "files present": from then
    on a missing file is damage, not "not installed". Unexpected non-hidden files in the
    folder are damage too: a loader could read them instead of the pinned ones (an extra
    `model.safetensors` wins over `pytorch_model.bin` in transformers). Raises UsageError
    for an unknown name only.
    """
    src = source(name)
    folder = model_path(name)
    revision = src.revision or src.base_url
    manifest = _read_manifest(folder)
    pinned = {f.name for f in src.files}
    try:
        entries = {e.name for e in os.scandir(folder)}
    except OSError:
        entries = set()
    if manifest is None and not entries & pinned:
        staged = _du(_staging(name))
        return Status(name, src.title, PARTIAL if staged else NOT_INSTALLED, folder, src.size, revision,
                      on_disk=staged)
    stamps = dict((manifest or {}).get("verified") or {})
    fresh: dict[str, dict] = {}
    problems = []
    for f in src.files:
        stamp, problem = _stamp_of(folder / f.name, f, None if full else stamps.get(f.name))
        if stamp is not None and stamp != stamps.get(f.name):
            fresh[f.name] = stamp
        if problem:
            problems.append(FileProblem(f.name, problem))
    for extra in sorted(entries - pinned):
        if not extra.startswith("."):
            problems.append(FileProblem(extra, "not one of the pinned files (a loader could read it instead)"))
    if fresh:
        _save_stamps(folder, src, manifest, {**stamps, **fresh})
    state = DAMAGED if problems else INSTALLED
    on_disk = _du(folder)
    return Status(name, src.title, state, folder, on_disk if state == INSTALLED else src.size, revision,
                  tuple(problems), on_disk)


def _stamp_of(path: Path, wf: WeightFile, stamp: dict | None) -> tuple[dict | None, str]:
    """(the file's stamp, "" or why it is not the pinned file). `stamp`, when its size and
    mtime_ns still match the file, stands in for hashing it."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None, "missing"
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    if not stat.S_ISREG(st.st_mode):
        return None, "not a regular file"
    if st.st_size != wf.size:
        return None, f"size {st.st_size:,} bytes, expected {wf.size:,}: incomplete or another file"
    if not (isinstance(stamp, dict) and stamp.get("size") == st.st_size and stamp.get("mtime_ns") == st.st_mtime_ns
            and isinstance(stamp.get("sha256"), str)):
        try:
            digest = sha256_file(path)
            after = path.stat()
        except OSError as exc:
            return None, f"cannot be read ({exc.strerror or exc})"
        # A file that changed while being hashed gets no stamp: the next check hashes it again.
        same = (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
        stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest} if same else None
        if stamp is None:
            return None, "changed while being checked"
    if stamp["sha256"] != wf.sha256:
        return stamp, f"sha256 {stamp['sha256'][:12]}… does not match the pinned {wf.sha256[:12]}…: damaged or changed"
    return stamp, ""


def _save_stamps(folder: Path, src: Source, manifest: dict | None, stamps: dict[str, dict]) -> None:
    """Store verified stamps in the manifest. A stamp is a cache: failing to write it (a
    read-only weights folder, a full disk) only means hashing again next time."""
    data = dict(manifest) if manifest else _new_manifest(src)
    data["verified"] = stamps
    try:
        atomic_write(folder / MANIFEST, json.dumps(data, indent=2).encode("utf-8"))
    except OSError as exc:
        log.info("cannot store verified stamps in %s: %s", folder, exc)


def _new_manifest(src: Source) -> dict:
    return {
        "name": src.name,
        "revision": src.revision or src.base_url,
        "files": {f.name: f.sha256 for f in src.files},
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def is_installed(name: str) -> bool:
    """True when every pinned file of `name` is present and verified (the fast `check`)."""
    return check(name).installed


def status() -> list[Status]:
    """The fast `check` of every model in the table, in table order."""
    return [check(name) for name in sources()]


def damaged_message(st: Status) -> str:
    """One line: which model, which file and why, and what to do."""
    first = str(st.problems[0]) if st.problems else "files do not match their pins"
    more = f" and {len(st.problems) - 1} more" if len(st.problems) > 1 else ""
    return (f"{st.title}: weights damaged in {st.path} ({first}{more}). Run `loupe models download "
            f"{st.name}` to repair, or `loupe models verify` for details.")


def _missing_message(st: Status) -> str:
    src = source(st.name)
    if st.state == PARTIAL:
        return (f"{src.title}: weights not installed; a download was started ({format_size(st.on_disk)} of "
                f"{format_size(src.size)}). Run `loupe models download {st.name}` to resume, or "
                f"`loupe models import FOLDER`.")
    return (f"{src.title}: weights not installed. Run `loupe models download` "
            f"({format_size(src.size)}, needs internet once) or `loupe models import FOLDER`.")


def model_dir(name: str) -> Path:
    """The folder holding `name`'s verified files (the fast `check`).

    Raises WeightsDamaged (files present but not the pinned ones: names the file and reason)
    or WeightsMissing (nothing installed), each saying what to do."""
    st = check(name)
    if st.installed:
        return st.path
    if st.state == DAMAGED:
        raise WeightsDamaged(damaged_message(st))
    raise WeightsMissing(_missing_message(st))


def verify(name: str) -> Status:
    """Re-hash every file of installed `name`; its Status when intact.

    Raises WeightsDamaged naming the bad file(s), or WeightsMissing when no file is there."""
    st = check(name, full=True)
    if st.state == DAMAGED:
        raise WeightsDamaged(damaged_message(st))
    if not st.installed:
        raise WeightsMissing(_missing_message(st))
    return st


@contextlib.contextmanager
def load_guard(name: str, folder: Path) -> Iterator[None]:
    """Wrap loading `name` from `folder`: any failure becomes one LoupeError line.

    A LoupeError passes through. Anything else (a truncated zip in torch, a pickle refused
    by weights_only, a shape mismatch in transformers) first triggers a full re-hash, since
    the likeliest cause is bytes changed behind an unchanged size and mtime: then it is
    WeightsDamaged naming the file. When every file matches its pin, the message names the
    model, the folder and the original error on one line (the traceback goes to the log).
    """
    try:
        yield
    except LoupeError:
        raise
    except MemoryError:
        raise LoupeError(f"{name}: not enough memory to load the weights in {folder}. Close other "
                         f"programs and retry.") from None
    except Exception as exc:
        log.info("loading %s from %s failed", name, folder, exc_info=True)
        try:
            st = check(name, full=True)
        except LoupeError:
            st = None
        if st is not None and st.state == DAMAGED:
            raise WeightsDamaged(damaged_message(st)) from None
        if isinstance(exc, pickle.UnpicklingError):
            # torch.load(weights_only=True) met a pickle that would run code. torch's own text
            # advises weights_only=False: never.
            raise LoupeError(
                f"{name}: the weights file in {folder} is not plain tensor data (it would run code "
                "when loaded); refused. Remove the model and download or import it again from a "
                "trusted source."
            ) from None
        text = " ".join(str(exc).split())  # torch's messages run over several lines
        text = text if len(text) <= 240 else text[:239] + "…"
        raise LoupeError(f"{name}: cannot load the weights in {folder} ({type(exc).__name__}"
                         f"{': ' + text if text else ''}); its files match their pinned sha256.") from None


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
    """Fetch every file not yet verified in `staging`; returns the verified stamps by file."""
    overall_total = src.size
    finished = 0
    stamps: dict[str, dict] = {}
    for f in src.files:
        if cancel is not None and cancel.is_set():
            raise Cancelled("download cancelled")
        target = staging / f.name
        stamp, problem = _stamp_of(target, f, (known or {}).get(f.name))
        if problem:
            _fetch(src, f, staging, _reporter(src.name, f, finished, overall_total, progress, cancel))
            try:
                stamp = _check(target, f)
            except IntegrityError:
                target.unlink(missing_ok=True)  # never resume from bytes known to be wrong
                raise
        stamps[f.name] = stamp
        finished += f.size
        if progress:
            progress(DownloadProgress(src.name, f.name, f.size, f.size, finished, overall_total))
    return stamps


def _reporter(model, wf, before, overall_total, progress, cancel):
    def report(done: int) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("download cancelled")
        if progress:
            done = max(0, min(done, wf.size))
            progress(DownloadProgress(model, wf.name, done, wf.size, before + done, overall_total))

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


IMPORT_PREFIX = ".import-"
_STALE_IMPORT_S = 3600  # an import that has not touched its folder for this long was killed


def cleanup_stale() -> None:
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


# --------------------------------------------------------------------------- helpers




def _check(path: Path, wf: WeightFile) -> dict:
    """Hash a freshly fetched or copied file; its verified stamp, or IntegrityError."""
    try:
        st = path.stat()
    except OSError:
        raise IntegrityError(f"{wf.name}: missing") from None
    if st.st_size != wf.size:
        raise IntegrityError(f"{wf.name}: size {st.st_size:,} bytes, expected {wf.size:,}: the file is incomplete or wrong")
    digest = sha256_file(path)
    if digest != wf.sha256:
        raise IntegrityError(f"{wf.name}: sha256 {digest[:12]}… does not match the pinned {wf.sha256[:12]}…: refusing it")
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}


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


def _remove_path(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)
