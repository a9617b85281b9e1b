"""Model weights: where they come from, and installing, verifying, importing and removing them.

The name -> source table comes from the model registry (`engine.models.registry`), each
source pinned to a revision and every file to its size and sha256 (as whisper pins its
checkpoints). Downloads go to a per-model staging folder under the
weights folder, are checked against the pins, and only then is the folder renamed into place:
the final path never holds a half or unverified file. A retry resumes from what is staged.
Since every file is pinned (URL, size, sha256), a download is a plain HTTP GET with a Range
header, moved by a worker thread while the caller's thread waits: offline is told within
CONNECT_TIMEOUT_S, and Cancel is honoured within POLL_S whether the download is resolving,
connecting, receiving or verifying (the hub client's own retries took ~23 s to say "offline",
and a blocked read could not be interrupted).

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
from .errors import (Cancelled, DownloadError, IntegrityError, LoupeError, Unreachable, UsageError, WeightsDamaged,
                     WeightsMissing)
from .files import atomic_write, sha256_file
from .models.spec import HF_ENDPOINT, Source, WeightFile  # noqa: F401  (HF_ENDPOINT: re-exported)
from .units import format_size

log = logging.getLogger("loupe.weights")

MANIFEST = ".loupe-weights.json"


ProgressFn = Callable[["DownloadProgress"], None]


@dataclass(frozen=True)
class DownloadProgress:
    """Where a download stands: reported every POLL_S while it runs (in the caller's thread)."""

    model: str
    file: str
    done: int  # bytes of this file
    total: int
    overall_done: int  # bytes of the whole model
    overall_total: int
    phase: str = "downloading"  # CONNECTING (no byte yet), DOWNLOADING or VERIFYING (done: bytes hashed)
    host: str = ""  # the server, e.g. "huggingface.co"

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
        raise WeightsDamaged(damaged_message(st), model=name)
    raise WeightsMissing(_missing_message(st), model=name)


def verify(name: str) -> Status:
    """Re-hash every file of installed `name`; its Status when intact.

    Raises WeightsDamaged naming the bad file(s), or WeightsMissing when no file is there."""
    st = check(name, full=True)
    if st.state == DAMAGED:
        raise WeightsDamaged(damaged_message(st), model=name)
    if not st.installed:
        raise WeightsMissing(_missing_message(st), model=name)
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
            raise WeightsDamaged(damaged_message(st), model=name) from None
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


def _raise_if_cancelled(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("download cancelled")


# How long a download may take to reach the server (resolve the name, open the connection),
# in seconds: offline must be said within a few seconds, not after the hub client's retries.
CONNECT_TIMEOUT_S = 5.0
# How long a server that answered may go without sending a byte before the attempt is given up.
STALL_TIMEOUT_S = 30.0
# How often the waiting thread looks at cancel and reports progress.
POLL_S = 0.1
# Fresh attempts (each resuming) after a connection that broke while bytes were flowing.
_RESUMES = 4


class _Unreachable(Exception):
    """The server was not reached within CONNECT_TIMEOUT_S (name not resolved, no route, refused)."""


class _WrongSize(Exception):
    """The server announced a body that cannot be the pinned file (an error page, a proxy's answer)."""


class _Transfer:
    """One HTTP GET of a pinned file into `part` (appending from its current size), run in a
    worker thread that only moves bytes. The caller's thread waits, reports and decides: it
    can abandon the transfer at any moment (`abort`), which shuts the socket down so the
    worker's blocking read returns at once."""

    def __init__(self, url: str, part: Path, size: int) -> None:
        self.url, self.part, self.size = url, part, size
        self.received = 0  # bytes of the file now in `part`
        self.connected = threading.Event()  # a TCP connection to the server is up
        self.flowing = threading.Event()  # the answer's headers came; bytes follow
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._sockets: list = []
        self._lock = threading.Lock()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # handed to the waiting thread
            self.error = exc
        finally:
            self.done.set()

    def abort(self) -> None:
        """Stop the worker: it writes nothing more, and a blocked read or wait ends now."""
        import socket

        self._stop.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _trace(self, event: str, info: dict) -> None:
        # httpcore's trace hook hands over each new connection's stream: keep its socket so
        # abort() can end a read that would otherwise block until STALL_TIMEOUT_S.
        if event == "connection.connect_tcp.complete" and info.get("return_value") is not None:
            sock = info["return_value"].get_extra_info("socket")
            if sock is not None:
                with self._lock:
                    self._sockets.append(sock)
                if self._stop.is_set():
                    self.abort()
            self.connected.set()

    def _run(self) -> None:
        import httpx2  # huggingface_hub's own HTTP client library (pinned with it)

        try:
            resume = self.part.stat().st_size
        except FileNotFoundError:
            resume = 0
        if resume >= self.size:  # more than the file can be: not a prefix of it
            self.part.unlink(missing_ok=True)
            resume = 0
        self.received = resume
        headers = {"Accept-Encoding": "identity", "User-Agent": "loupe"}
        if resume:
            headers["Range"] = f"bytes={resume}-"
        timeout = httpx2.Timeout(STALL_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        with httpx2.Client(follow_redirects=True, timeout=timeout, headers=headers) as client, \
                client.stream("GET", self.url, extensions={"trace": self._trace}) as r:
            self.connected.set()
            if self._stop.is_set():
                return
            if r.status_code not in (200, 206):
                r.raise_for_status()
            start = 0
            if r.status_code == 206:
                cr = r.headers.get("Content-Range", "")
                start = int(cr.split()[1].split("-")[0]) if cr.startswith("bytes ") else -1
                if start != resume:
                    raise _WrongSize(f"the server resumed at another place ({cr or 'no Content-Range'})")
            length = r.headers.get("Content-Length")
            if length is not None and start + int(length) != self.size:
                # Never written: those bytes are no part of the pinned file.
                raise _WrongSize(f"the server sent {int(length):,} bytes where {self.size - start:,} were expected")
            self.flowing.set()  # before the stop check: abort() reads them the other way round
            if self._stop.is_set():
                return
            with open(self.part, "r+b" if self.part.exists() else "wb") as fh:
                fh.truncate(start)  # a 200 to a resume starts over
                fh.seek(start)
                self.received = start
                for chunk in r.iter_raw():  # as each read returns: what came is on disk
                    if self._stop.is_set():
                        return
                    if self.received + len(chunk) > self.size:
                        raise _WrongSize("the server sent more bytes than the file has")
                    fh.write(chunk)
                    self.received += len(chunk)
        if not self._stop.is_set() and self.received != self.size:
            raise httpx2.RemoteProtocolError(f"the connection ended after {self.received:,} of {self.size:,} bytes")


# Phases of a download, as DownloadProgress.phase.
CONNECTING = "connecting"  # resolving the server's name, connecting, waiting for its answer
DOWNLOADING = "downloading"  # bytes are flowing
VERIFYING = "verifying"  # hashing the received file against its pinned sha256


def _fetch(src: Source, wf: WeightFile, staging: Path, report: Callable[[str, int], None],
           cancel: threading.Event | None) -> None:
    """Fetch one file into `staging/name`, resuming `staging/.name.incomplete`.

    The pins already say each file's URL, size and sha256, so this is a plain HTTP GET with a
    Range header (huggingface.co answers a `resolve` URL with a redirect to its CDN). Offline
    is told within about CONNECT_TIMEOUT_S; `cancel` is honoured within POLL_S in every phase;
    a connection that breaks while bytes flow is resumed a few times before giving up."""
    part = staging / f".{wf.name}.incomplete"
    url = src.url_for(wf.name)
    attempts = 0
    while True:
        transfer = _Transfer(url, part, wf.size)
        before = part.stat().st_size if part.exists() else 0
        try:
            _wait(transfer, wf, report, cancel)
        except (Cancelled, IntegrityError):
            raise
        except _Unreachable:
            raise Unreachable(_offline_message(src), host=src.host) from None
        except Exception as exc:
            attempts += 1
            if _transient(exc) and transfer.received > before and attempts <= _RESUMES:
                log.info("download of %s broke after %d bytes (%s); resuming", wf.name, transfer.received, exc)
                continue
            if isinstance(exc, _WrongSize):
                part.unlink(missing_ok=True)
            if _is_offline(exc):
                raise Unreachable(_offline_message(src), host=src.host) from exc
            raise DownloadError(_describe_failure(src, wf, exc)) from exc
        os.replace(part, staging / wf.name)
        return


def _wait(transfer: _Transfer, wf: WeightFile, report: Callable[[str, int], None],
          cancel: threading.Event | None) -> None:
    """Run `transfer` in a worker thread and wait for it here, reporting progress every POLL_S;
    raises Cancelled, _Unreachable, or the worker's own error."""
    worker = threading.Thread(target=transfer.run, name=f"loupe-download-{wf.name}", daemon=True)
    started = time.monotonic()
    worker.start()
    try:
        while not transfer.done.wait(POLL_S):
            _raise_if_cancelled(cancel)
            # The worker may sit in the resolver, which no socket timeout bounds: the deadline is kept here.
            if not transfer.connected.is_set() and time.monotonic() - started > CONNECT_TIMEOUT_S:
                raise _Unreachable()
            report(DOWNLOADING if transfer.flowing.is_set() else CONNECTING, transfer.received)
        _raise_if_cancelled(cancel)
        if transfer.error is not None:
            raise transfer.error
    finally:
        transfer.abort()
        # A worker that may hold the file gets its moment to close it (its read ends at once).
        # One that never got an answer (in the resolver, in connect) is left behind: it has
        # not opened the file and, its stop flag set, never will.
        if transfer.flowing.is_set():
            worker.join(1.0)


def _transient(exc: BaseException) -> bool:
    """A broken connection (worth resuming), not an answer (an HTTP status, a wrong size)."""
    import httpx2

    return isinstance(exc, (httpx2.ReadError, httpx2.RemoteProtocolError, httpx2.ReadTimeout, httpx2.WriteError))


def _is_offline(exc: BaseException) -> bool:
    import httpx2

    return isinstance(exc, (httpx2.ConnectError, httpx2.ConnectTimeout))


def _offline_message(src: Source) -> str:
    return (f"{src.title}: cannot reach {src.host}: this computer seems to be offline. Connect and retry, "
            f"or copy the files and run `loupe models import FOLDER`.")


def _describe_failure(src: Source, wf: WeightFile, exc: Exception) -> str:
    import httpx2

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    host = src.host
    if any(isinstance(e, OSError) and getattr(e, "errno", None) == 28 for e in _causes(exc)):
        return f"{src.title}: the disk is full while saving {wf.name}. Free some space and retry."
    if isinstance(exc, httpx2.HTTPStatusError):
        text = f"the server answered {exc.response.status_code} {exc.response.reason_phrase}".strip()
    elif isinstance(exc, httpx2.ReadTimeout):
        text = f"no data for {STALL_TIMEOUT_S:.0f} s"
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




def _check(path: Path, wf: WeightFile, *, cancel: threading.Event | None = None,
           on_bytes: Callable[[int], None] | None = None) -> dict:
    """Hash a freshly fetched or copied file; its verified stamp, or IntegrityError.

    With `cancel`, raises Cancelled within one 8 MiB read of it being set (a 1 GB file takes
    seconds to hash); `on_bytes(n)` hears the bytes hashed so far, every POLL_S at most."""
    try:
        st = path.stat()
    except OSError:
        raise IntegrityError(f"{wf.name}: missing") from None
    if st.st_size != wf.size:
        raise IntegrityError(f"{wf.name}: size {st.st_size:,} bytes, expected {wf.size:,}: the file is incomplete or wrong")
    if cancel is None and on_bytes is None:
        digest = sha256_file(path)
    else:
        digest = _hash_cancellable(path, cancel, on_bytes)
    if digest != wf.sha256:
        raise IntegrityError(f"{wf.name}: sha256 {digest[:12]}… does not match the pinned {wf.sha256[:12]}…: refusing it")
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}


def _hash_cancellable(path: Path, cancel: threading.Event | None, on_bytes: Callable[[int], None] | None) -> str:
    import hashlib

    h = hashlib.sha256()
    done, last = 0, 0.0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(8 << 20), b""):
            _raise_if_cancelled(cancel)
            h.update(chunk)
            done += len(chunk)
            if on_bytes is not None and time.monotonic() - last >= POLL_S:
                last = time.monotonic()
                on_bytes(done)
    _raise_if_cancelled(cancel)
    return h.hexdigest()


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
