"""Renaming photos from their captions, with an undo log written before every rename.

The log is JSON lines next to the index (`library-renames.jsonl`), each line fsynced:
  {"op": "rename", "run": R, "id": I, "moves": [[from, to], ...]}   before the renames
  {"op": "done", "run": R, "id": I}                                 after them
  {"op": "undone", "run": R}                                        after `undo` reversed run R
A kill between the first two lines is finished forward by `recover` at the next start, so a
photo never ends up parted from its sidecar. Renames never overwrite: a hard link is made
first (fails if the name exists), then the old name is removed; where the file system has
no hard links, an existence check and `os.rename` are used instead.
"""
from __future__ import annotations

import errno
import json
import os
import re
import time
import unicodedata
import uuid
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

from ..names import json_text
from ..files import fsync_dir

MAX_SLUG = 60
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}

Mover = Callable[[str, str], None]  # called (old path, new path) for each photo moved


def slugify(text: str, max_len: int = MAX_SLUG) -> str:
    """'A Dog, on the beach!' -> 'a-dog-on-the-beach'. Letters of any script are kept."""
    text = unicodedata.normalize("NFKC", text).lower()
    slug = re.sub(r"[\W_]+", "-", text, flags=re.UNICODE).strip("-")
    if len(slug) > max_len:
        cut = slug[: max_len + 1]
        at = cut.rfind("-")
        # Cut at a word boundary unless that throws most of it away.
        slug = cut[:at] if at >= max_len // 2 else slug[:max_len]
        slug = slug.strip("-")
    if slug in _WINDOWS_RESERVED:
        slug += "-photo"
    return slug


class RenameLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, entry: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json_text(json.dumps(entry, ensure_ascii=False)) + "\n"  # exact names (names.py)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def entries(self) -> list[dict]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a crash: it was never acted on
        return out


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


def _no_replace_rename(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EACCES):
            raise
        if dst.exists() and not _same(src, dst):
            raise FileExistsError(errno.EEXIST, "exists", str(dst)) from None
        os.rename(src, dst)
        return
    os.unlink(src)


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _finish(src: Path, dst: Path) -> bool:
    """Complete one logged move if it is half done or not started. True when moved now."""
    if src.exists() and dst.exists() and _same(src, dst):
        os.unlink(src)  # killed between link and unlink
        return True
    if src.exists() and not dst.exists():
        _no_replace_rename(src, dst)
        return True
    return False


def recover(log: RenameLog, on_move: Mover | None = None) -> int:
    """Finish renames whose intent was logged but not marked done (the process died)."""
    entries = log.entries()
    done = {e["id"] for e in entries if e.get("op") == "done"}
    fixed = 0
    for e in entries:
        if e.get("op") != "rename" or e["id"] in done:
            continue
        for i, (src, dst) in enumerate(e["moves"]):
            try:
                moved = _finish(Path(src), Path(dst))
            except OSError:
                continue
            if moved and i == 0:
                fixed += 1
        if on_move is not None:
            on_move(e["moves"][0][0], e["moves"][0][1])
        log.append({"op": "done", "run": e["run"], "id": e["id"]})
    return fixed


class Renamer:
    """Renames photos of one run, remembering which names each folder already uses."""

    def __init__(self, log: RenameLog, run_id: str | None = None) -> None:
        self.log = log
        self.run_id = run_id or new_run_id()
        self._stems: dict[Path, set[str]] = {}

    def _taken(self, folder: Path) -> set[str]:
        # Stems (lower case) of photos and sidecars: a new name must not share a stem with
        # another photo (Lightroom's photo.xmp would be shared; case-insensitive disks).
        if folder not in self._stems:
            # Every file counts, not only photos Loupe reads: a RAW (IMG_1.CR2) or a video
            # pairs with IMG_1.xmp just the same.
            stems: set[str] = set()
            for name in os.listdir(folder):
                if not name.startswith("."):
                    stems.add(name.lower().split(".", 1)[0])
            self._stems[folder] = stems
        return self._stems[folder]

    def rename(self, photo: Path, caption: str, sidecars: Iterable[Path] = ()) -> Path | None:
        """Rename `photo` (and its sidecars) after `caption`; None when nothing to do."""
        slug = slugify(caption)
        if not slug:
            return None
        stem = photo.name[: -len(photo.suffix)] if photo.suffix else photo.name
        if stem == slug or re.fullmatch(re.escape(slug) + r"-\d+", stem):
            return None  # already named after this caption
        folder = photo.parent
        taken = self._taken(folder)
        sidecars = [s for s in sidecars if s.exists()]
        n = 1
        while True:
            new_stem = slug if n == 1 else f"{slug}-{n}"
            n += 1
            if new_stem.lower() in taken and new_stem.lower() != stem.lower():
                continue
            target = folder / (new_stem + photo.suffix)
            side_targets = [_sidecar_target(s, photo, target) for s in sidecars]
            if any(t.exists() and not _same(t, s) for t, s in zip([target, *side_targets], [photo, *sidecars])):
                continue
            break
        moves = [(photo, target), *zip(sidecars, side_targets)]
        entry_id = uuid.uuid4().hex
        self.log.append({"op": "rename", "run": self.run_id, "id": entry_id, "moves": [[str(a), str(b)] for a, b in moves]})
        for src, dst in moves:
            _no_replace_rename(src, dst)
        fsync_dir(folder)
        self.log.append({"op": "done", "run": self.run_id, "id": entry_id})
        taken.discard(stem.lower())
        taken.add(new_stem.lower())
        return target


def _sidecar_target(sidecar: Path, photo: Path, target: Path) -> Path:
    if sidecar.name == photo.name + ".xmp":
        return target.with_name(target.name + ".xmp")
    return target.with_suffix(sidecar.suffix)  # photo.xmp style


def sidecars_of(photo: Path) -> list[Path]:
    """Sidecars to move with the photo: `photo.jpg.xmp`, and `photo.xmp` unless another
    file in the folder has the same stem (then it is not this photo's alone: `IMG_1.xmp` next
    to `IMG_1.jpg` and `IMG_1.CR2` holds the RAW's develop settings and stays with the RAW)."""
    out = [photo.with_name(photo.name + ".xmp")]
    lightroom = photo.with_suffix(".xmp")
    if lightroom.exists() and stem_counts([photo.parent])[(photo.parent, photo.stem.lower())] <= 1:
        out.append(lightroom)
    return [p for p in out if p.exists()]


def stem_counts(folders: Iterable[Path]) -> Counter[tuple[Path, str]]:
    """(folder, lower-case stem) -> how many files in `folders` a Lightroom-style `stem.xmp`
    sidecar could belong to. Every file but sidecars and hidden files counts, not only the
    photos Loupe reads: photo tools pair `IMG_1.xmp` with `IMG_1.CR2`, `IMG_1.MOV` or
    `IMG_1.psd` as much as with `IMG_1.jpg`. A folder that cannot be listed counts nothing."""
    counts: Counter[tuple[Path, str]] = Counter()
    for folder in folders:
        try:
            with os.scandir(folder) as entries:
                names = [e.name for e in entries if not e.is_dir()]
        except OSError:
            continue
        for name in names:
            if not name.startswith(".") and not name.lower().endswith(".xmp"):
                counts[(folder, Path(name).stem.lower())] += 1
    return counts


def undo(log: RenameLog, on_move: Mover | None = None) -> int:
    """Reverse the renames of the last run not yet undone; returns photos put back."""
    recover(log, on_move)
    entries = log.entries()
    undone = {e["run"] for e in entries if e.get("op") == "undone"}
    runs = [e["run"] for e in entries if e.get("op") == "rename" and e["run"] not in undone]
    if not runs:
        return 0
    run = runs[-1]
    restored = 0
    for e in reversed([e for e in entries if e.get("op") == "rename" and e["run"] == run]):
        for i, (src, dst) in reversed(list(enumerate(e["moves"]))):
            src_p, dst_p = Path(src), Path(dst)
            try:
                if dst_p.exists() and not src_p.exists():
                    _no_replace_rename(dst_p, src_p)
                elif dst_p.exists() and _same(src_p, dst_p):
                    os.unlink(dst_p)  # killed mid-undo between link and unlink
                else:
                    continue  # moved or deleted since, or the old name is taken: leave it
            except OSError:
                continue
            if i == 0:
                restored += 1
                if on_move is not None:
                    on_move(dst, src)
        fsync_dir(Path(e["moves"][0][0]).parent)
    log.append({"op": "undone", "run": run})
    return restored
