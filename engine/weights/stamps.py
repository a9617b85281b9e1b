"""Status of installed weights: verified stamps per file (size, mtime, sha256), `check` (stat
calls while stamps hold), `verify` (re-hash all), `model_dir` (the folder, or the one-line
reason it cannot be used)."""
from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import paths
from ..errors import Cancelled, IntegrityError, WeightsDamaged, WeightsMissing
from ..files import atomic_write, sha256_file
from ..models.spec import Source, WeightFile
from ..units import format_size
from .table import source, sources

log = logging.getLogger("loupe.weights")


MANIFEST = ".loupe-weights.json"

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

def disk_usage() -> int:
    return _du(paths.weights_dir())

def _raise_if_cancelled(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("download cancelled")

# How often the waiting thread looks at cancel and reports progress.
POLL_S = 0.1

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
