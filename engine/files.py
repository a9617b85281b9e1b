"""Files on disk: hashing, Loupe's atomic writes and its temp files.

Every file Loupe writes (a sidecar, an embedded photo, settings, a manifest) goes through
`atomic_write`: a temp file named `.loupe-tmp-<pid>-<random><ext>` in the same folder, fsync,
rename over the target, fsync the folder. A kill at any point leaves either the old file or the
new one, plus at worst a temp file that `cleanup_stale` removes later (its owner is dead).
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import sys
import tempfile
import time
from pathlib import Path


TEMP_PREFIX = ".loupe-tmp-"


# sha256 of a file's bytes: the one helper, shared with the weights pins.
def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks. The one file hash in Loupe (weights
    pins, photo identity in the library); sha256 because the pins are sha256 and SHA-NI makes
    it the fastest of the standard hashes on current CPUs. Raises OSError if the file cannot be read."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def os_reason(exc: OSError) -> str:
    """An OSError in a few words a person understands ("disk full", "permission denied")."""
    if exc.errno == errno.ENOSPC:
        return "disk full"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    return exc.strerror or str(exc)


def is_read_only(path: Path, st: os.stat_result | None = None) -> bool:
    """True when the owner write bit is off (checked by mode, as root `os.access` says yes)."""
    st = st or os.stat(path)
    return not (st.st_mode & stat.S_IWUSR) or not os.access(path, os.W_OK)


def fsync_dir(folder: Path) -> None:
    """Make a rename durable. Not possible (nor needed) on Windows."""
    if sys.platform == "win32":  # pragma: no cover
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems (network, FUSE) refuse fsync on a folder
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def new_file_mode() -> int:
    """0o666 & ~umask: the mode a plain `open(..., "w")` would give a new file. mkstemp makes
    0600 files; a new sidecar (or cache beside shared weights) should get the usual mode so
    other users and photo servers can read it like the files next to it. The umask is read
    from /proc/self/status where Linux says it: setting it to read it back (`os.umask`) is
    process-wide, and a file another thread created in between would get mode 0666."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(target: Path, data: bytes, *, like: Path | None = None, owner_of: Path | None = None) -> None:
    """Write `data` to `target` atomically, keeping the file's identity.

    Replacing a file (`like`, else the existing target): its permission bits, extended
    attributes (ACLs, tags, labels) and owner and group carry over. A new file with `owner_of`
    (a new sidecar: the photo) takes that file's owner, group and read/write bits, so the
    photo's owner can edit it; otherwise the umask's bits. Owner and group are set where the
    OS allows (as root, or a group the user is in); elsewhere the file is the user's, as any
    file they write.

    Renaming over a file gives the name a new inode: the caller must not use this for a file
    with several hard links (`link_count`) unless splitting them is meant.
    """
    folder = target.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=target.suffix, dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        source = like if like is not None else (target if target.exists() else None)
        if source is not None:
            shutil.copystat(source, tmp)  # mode bits, xattrs (and times, reset just below)
            os.utime(tmp)  # the content changed: a fresh mtime tells photo tools to re-read
            _copy_owner(os.stat(source), tmp)
        elif owner_of is not None:
            st = os.stat(owner_of)
            # read/write bits only: a photo's stray execute bit is not a sidecar's
            os.chmod(tmp, stat.S_IMODE(st.st_mode) & 0o666)
            _copy_owner(st, tmp)
        else:
            os.chmod(tmp, new_file_mode())
        os.replace(tmp, target)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    fsync_dir(folder)


def _copy_owner(st: os.stat_result, path: Path) -> None:
    """chown `path` to st's owner and group where allowed. Ownership is set after the mode bits:
    chown clears setuid/setgid, which photos and sidecars never need."""
    if sys.platform == "win32":  # pragma: no cover
        return
    here = os.stat(path)
    if (here.st_uid, here.st_gid) == (st.st_uid, st.st_gid):
        return
    try:
        os.chown(path, st.st_uid, st.st_gid)
    except PermissionError:
        try:  # not root: the group still carries over when the user is in it
            os.chown(path, -1, st.st_gid)
        except PermissionError:
            pass


def link_count(path: Path) -> int:
    """How many names (hard links) the file has; 1 where the OS cannot say."""
    try:
        return max(1, os.stat(path).st_nlink)
    except OSError:
        return 1


def cleanup_stale(folder: str | os.PathLike[str], *, older_than: float | None = None) -> int:
    """Remove Loupe's own temp files under `folder` left by a run that died.

    Only names starting with `.loupe-tmp-` are touched; one is removed when it is older
    than `older_than` (default: now) and the process that made it is not running.
    Returns how many were removed.
    """
    cutoff = time.time() if older_than is None else older_than
    removed = 0
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # the scan never writes there
        for name in files:
            if not name.startswith(TEMP_PREFIX):
                continue
            path = Path(root, name)
            try:
                if path.is_symlink() or path.lstat().st_mtime >= cutoff:
                    continue
                if _owner_alive(name):
                    continue
                path.unlink()
                removed += 1
            except FileNotFoundError:
                continue
            except OSError:
                continue  # cannot remove (read-only folder): harmless, try next time
    return removed


def _owner_alive(name: str) -> bool:
    """Whether the process id in a temp name is another live process (a concurrent scan)."""
    rest = name[len(TEMP_PREFIX):]
    pid_text = rest.split("-", 1)[0]
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # our own leftovers from an earlier scan in this process
    return pid_alive(pid)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs (also when it belongs to another user). On Windows, where
    os.kill(pid, 0) would terminate it, every pid counts as alive: nothing is cleaned up early."""
    if sys.platform == "win32":  # pragma: no cover
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, someone else's
        return True
    return True
