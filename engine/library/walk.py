"""The plan stage's walk: every photo under a folder, once, and what was left out and why.

Links are followed as `loupe caption` follows them (opening a file follows its links), so a
git-annex library, whose photos are links into .git/annex/objects, is captioned under the names
a person sees. Each real file is taken once (the first name in sorted order); a folder link
that leads back into its own ancestry is a loop, a link to nothing is dangling: both counted.
What is left out is decided by leave_out.py and counted by its reason keys.
Names stay as the OS gives them (str with surrogate escapes for bytes that are not UTF-8).
"""
from __future__ import annotations

import errno
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..images import EXTENSIONS, is_raw_name, undecoded_reason
from .leave_out import Excludes, housekeeping, read_ignore_file

_JPEG = (".jpg", ".jpeg", ".jpe", ".jfif")


@dataclass
class Walked:
    photos: list[Path] = field(default_factory=list)  # sorted, each real file once
    left_out: Counter[str] = field(default_factory=Counter)  # leave_out.REASONS key -> files
    examples: dict[str, str] = field(default_factory=dict)  # reason -> the first path left out for it
    unreadable: list[str] = field(default_factory=list)  # folders that could not be listed
    pairs: dict[Path, Path] = field(default_factory=dict)  # the JPEG of a RAW+JPEG pair -> its RAW

    def leave(self, reason: str, path: str, n: int = 1) -> None:
        if n:
            self.left_out[reason] += n
            self.examples.setdefault(reason, path)


def _photo_like(name: str) -> bool:
    suffix = os.path.splitext(name)[1].lower()
    return suffix in EXTENSIONS or undecoded_reason(name) is not None


def _count_inside(folder: str) -> int:
    """Photo-named files under a left-out folder (not following links): what the summary counts."""
    n = 0
    for _root, _dirs, files in os.walk(folder, followlinks=False):
        n += sum(_photo_like(f) for f in files)
    return n


def walk(folder: Path, excludes: Excludes, on_error: Callable[[OSError], None] | None = None) -> Walked:
    """Walk `folder` (absolute, resolved): see the module notes. `on_error` hears of each
    folder that cannot be listed (also kept in `unreadable`, so gone-photo checks skip it)."""
    out = Walked()
    seen_dirs: set[str] = set()
    seen_files: set[str] = set()

    def failed(exc: OSError) -> None:
        out.unreadable.append(str(exc.filename))
        if on_error is not None:
            on_error(exc)

    for root, dirs, files in os.walk(folder, onerror=failed, followlinks=True):
        real_root = os.path.realpath(root)
        if real_root in seen_dirs:  # reached again through a link: its files are already in
            dirs[:] = []
            continue
        seen_dirs.add(real_root)
        excludes.add(root, read_ignore_file(Path(root)))
        kept = []
        for d in sorted(dirs):
            full = os.path.join(root, d)
            reason = housekeeping(d) or ("hidden" if d.startswith(".") else None) or (
                "excluded" if excludes.match(full, True) else None)
            if reason is not None:
                if not os.path.islink(full):
                    out.leave(reason, full, _count_inside(full))
                continue
            if os.path.islink(full):
                target = os.path.realpath(full)
                if real_root == target or real_root.startswith(target.rstrip(os.sep) + os.sep):
                    out.leave("link-loop", full)
                    continue
            kept.append(d)
        dirs[:] = kept
        for name in sorted(files):
            full = os.path.join(root, name)
            if os.path.islink(full) and not os.path.exists(full):
                if _photo_like(name) or not os.path.splitext(name)[1]:
                    try:
                        os.stat(full)
                        reason = "dangling-link"
                    except OSError as exc:
                        reason = "link-loop" if exc.errno == errno.ELOOP else "dangling-link"
                    out.leave(reason, full)
                continue
            if not _photo_like(name):
                continue
            if name.startswith("."):
                out.leave("hidden", full)
                continue
            reason = housekeeping(name) or ("excluded" if excludes.match(full, False) else None)
            if reason is None:
                reason = undecoded_reason(name)
            if reason is not None:
                out.leave(reason, full)
                continue
            # one lstat, not one per path component: the folder's real path is known
            real = os.path.realpath(full) if os.path.islink(full) else os.path.join(real_root, name)
            if real in seen_files:
                out.leave("same-file", full)
                continue
            seen_files.add(real)
            out.photos.append(Path(full))
    out.photos.sort()
    _pairs(out)
    return out


def _pairs(out: Walked) -> None:
    """A RAW beside a JPEG of the same name (IMG_0101.CR2 + IMG_0101.JPG): the camera wrote one
    photo twice; it is captioned once, from the JPEG, and the RAW is counted."""
    jpegs = {(p.parent, p.stem.lower()): p for p in out.photos if p.suffix.lower() in _JPEG}
    kept = []
    for p in out.photos:
        jpeg = jpegs.get((p.parent, p.stem.lower()))
        if is_raw_name(p) and jpeg is not None:
            out.leave("raw-pair", str(p))
            out.pairs[jpeg] = p
        else:
            kept.append(p)
    out.photos = kept
