"""Thumbnails for the review grid: aspect-correct JPEGs cached in the data folder.

A thumbnail is keyed by the photo's path, size, mtime and inode (its content identity as the
file system tells it, without reading the bytes) and the thumbnail size, so a cache hit costs
one stat, and a changed photo gets a new one. Stale thumbnails are left for `prune`.
"""
from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

from ..errors import UnreadableImage, UsageError
from ..files import atomic_write
from ..images import load_image

SIZES = (32, 2048)  # smallest and largest thumbnail side, pixels
QUALITY = 85


def cache_dir() -> Path:
    from ..paths import data_dir

    return data_dir() / "thumbnails"


def thumbnail(path: str | os.PathLike[str], size: int = 320) -> Path:
    """A JPEG of the photo at `path`, no larger than size x size (aspect kept, EXIF orientation
    applied), cached under data_dir()/thumbnails and rebuilt when the file changes.

    Raises UnreadableImage (a LoupeError naming the file) for a file that cannot be read as a
    photo, UsageError for a size outside SIZES."""
    if isinstance(size, bool) or not isinstance(size, int) or not SIZES[0] <= size <= SIZES[1]:
        raise UsageError(f"Thumbnail size must be a whole number from {SIZES[0]} to {SIZES[1]} pixels.")
    photo = Path(path).expanduser()
    try:
        st = photo.stat()
    except FileNotFoundError:
        raise UnreadableImage(photo, "no such file") from None
    except OSError as exc:
        raise UnreadableImage(photo, f"cannot open ({exc.strerror or exc})") from None
    key = f"{photo.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{size}"
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
    target = cache_dir() / digest[:2] / f"{digest}.jpg"
    if target.exists():
        return target
    # JPEG decodes at a reduced scale still at least `size`: a 12-MP photo in ~15 ms, not ~85.
    image = load_image(photo, draft_size=(size, size))
    image.thumbnail((size, size))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=QUALITY, optimize=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, out.getvalue())  # a grid reading it meanwhile never sees half a file
    return target


def prune(older_than_s: float = 30 * 86400) -> int:
    """Remove thumbnails not used (read or made) for `older_than_s` seconds; returns how many."""
    removed = 0
    limit = time.time() - older_than_s
    for file in cache_dir().glob("*/*.jpg"):
        try:
            st = file.stat()
            if max(st.st_atime, st.st_mtime) < limit:
                file.unlink()
                removed += 1
        except OSError:
            continue
    return removed
