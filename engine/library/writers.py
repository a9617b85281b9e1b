"""The write stage: one photo's caption and keywords where photo tools read them, then rename.

    sidecar   XMP beside the photo (photo.jpg.xmp, or photo.xmp for Lightroom unless another
              file shares the stem), the photo untouched
    embed     XMP/IPTC/EXIF inside the photo, pixels untouched; refused for a read-only file
              or one that changed since it was hashed; atomic (a copy renamed over it)
    none      only the index

`sidecar` and `embed` are the whole of each writer, used by the scan (`Writer`, one photo ->
a `Files` record) and by `library edit` (edit.py) alike. A new writer (a format, a tool's own
sidecar) is one function here and one choice in options.py's WRITE.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import LoupeError
from ..images import is_raw_name
from ..files import atomic_write, hash_bytes, is_read_only, link_count, os_reason
from . import xmp
from .descriptions import WriteResult
from .index import IndexUnavailable, PhotoRow
from .limits import IPTC_LIMIT_NOTE
from .records import READ_ONLY_FOLDER, Decision, Files, Location, Problem, Told
from .rename import Renamer, sidecars_of
from .settings import HIERARCHY_ROOT, keyword_names


@dataclass(frozen=True)
class How:
    """How the scan writes: the options that change the files, and the settings they carry."""

    write: str  # options.WRITE's choices
    sidecar_style: str
    existing: str
    keyword_threshold: int
    settings: str  # keys.ResultKeys.combined: stamped into the file as loupe:settings
    hierarchy_root: str = HIERARCHY_ROOT.default  # labels' root in an existing keyword hierarchy

    @property
    def written_key(self) -> str | None:
        """What a record's written key says when these files are up to date (None: not writing)."""
        policy = f"{self.existing}:k{self.keyword_threshold}"
        if self.hierarchy_root != HIERARCHY_ROOT.default:
            policy += f":h{hashlib.sha256(self.hierarchy_root.encode()).hexdigest()[:8]}"
        return {"embed": f"embed:{policy}:{self.settings}",
                "sidecar": f"sidecar:{self.sidecar_style}:{policy}:{self.settings}"}.get(self.write)


def sidecar_style_for(path: Path, style: str, stems: Counter[tuple[Path, str]]) -> str:
    """`style`, unless Lightroom's photo.xmp would be shared with another file of that stem
    (photo.jpg and photo.png, a RAW beside its JPEG): then darktable's photo.jpg.xmp."""
    if style == "lightroom" and stems[(path.parent, path.stem.lower())] > 1:
        return "darktable"
    return style


def sidecar(path: Path, caption: str, keywords: list[str], *, style: str, settings: str, existing: str = "keep",
            persons: bool = False, hierarchy_root: str = HIERARCHY_ROOT.default) -> WriteResult:
    """Write (or update) the photo's sidecar in `style` (xmp.write_sidecar: atomic, other
    fields kept, a new sidecar given the photo's owner, group and mode). Raises OSError or
    LoupeError."""
    return xmp.write_sidecar(path, caption, keywords, style=style, settings=settings, existing=existing,
                             persons=persons, hierarchy_root=hierarchy_root)


def embed(path: Path, caption: str, keywords: list[str], *, settings: str, existing: str = "keep",
          persons: bool = False, expect_hash: str | None = None,
          hierarchy_root: str = HIERARCHY_ROOT.default) -> tuple[WriteResult, Location, bool]:
    """Write into the photo itself (atomic, pixels untouched) -> (what was decided, the file's
    new bytes as a Location, whether they changed). Refused (LoupeError) for a read-only file
    or, with `expect_hash`, one whose bytes are no longer those hashed; OSError as it comes."""
    if is_read_only(path):
        raise LoupeError("read-only file: not changed (make it writable, or use sidecars)")
    data = path.read_bytes()
    if expect_hash is not None and hash_bytes(data) != expect_hash:
        raise LoupeError("the file changed during the scan: not written (scan again)")
    result = xmp.embed(data, caption, keywords, suffix=path.suffix, settings=settings, existing=existing,
                       persons=persons, hierarchy_root=hierarchy_root)
    new = result.data if result.data is not None else data
    if new != data:
        atomic_write(path, new, like=path)
    st = path.stat()
    return result, Location(st.st_size, st.st_mtime_ns, hash_bytes(new)), new != data


def loupe_sidecars(path: Path) -> list[Path]:
    """The sidecars beside `path` (either style) that Loupe wrote (they hold its namespace);
    photo.xmp only when no other file of that stem is left (it may be theirs: a RAW's)."""
    out = []
    for style in xmp.SIDECAR_STYLES:
        side = xmp.sidecar_path(path, style)
        try:
            if style == "lightroom" and any(
                    p.stem.lower() == path.stem.lower() and p.suffix.lower() != ".xmp" and not p.name.endswith(".xmp")
                    for p in path.parent.iterdir()):
                continue
            if side not in out and xmp.LOUPE_NS.encode() in side.read_bytes():
                out.append(side)
        except OSError:
            continue
    return out


class Writer:
    """The scan's write stage: `writer(decision, row)` -> Files, for one photo, in order:
    its sidecar or embed (unless already up to date), then its rename. A photo that cannot be
    written or renamed becomes a Problem in the record; the scan goes on."""

    def __init__(self, how: How, told: Told, stems: Counter[tuple[Path, str]], renamer: Renamer | None,
                 folder: str = "") -> None:
        self.how = how
        self.folder = folder  # the scanned folder: notes said once per scan are said for it
        self.pairs: dict[Path, Path] = {}  # the JPEG of a RAW+JPEG pair -> its RAW (walk.Walked.pairs)
        self.told = told
        self.stems = stems
        self.renamer = renamer

    def __call__(self, decision: Decision, row: PhotoRow) -> Files:
        path = decision.found.path
        files = Files(found_at=str(path), path=str(path))
        key = self.how.written_key
        if key is not None:
            try:
                if is_read_only(path.parent):  # a card, a read-only share: said once per folder
                    raise LoupeError(READ_ONLY_FOLDER)
                if self.how.write == "sidecar":
                    self.write_sidecar(files, path, row, key)
                else:
                    self.write_embedded(files, decision, path, row, key)
            except IndexUnavailable:
                raise  # the index itself failed: not this photo's problem, stop
            except (OSError, LoupeError) as exc:
                files.problems.append(Problem(str(path), "write", _reason(exc)))
        if self.renamer is not None and row.caption:
            self.rename(files, path, row)
        return files

    def keywords(self, row: PhotoRow) -> list[str]:
        return keyword_names(row.labels, self.how.keyword_threshold)

    def write_sidecar(self, files: Files, path: Path, row: PhotoRow, key: str) -> None:
        style = sidecar_style_for(path, self.how.sidecar_style, self.stems)
        if style != self.how.sidecar_style:
            files.notices += self.told.notice(
                str(path), "sidecar-name",
                f"another photo has the name stem {path.stem!r}, so this one got {path.name}.xmp, "
                "which Lightroom does not read; rename one of them and scan again for photo.xmp")
        target = xmp.sidecar_path(path, style)
        raw = self.pairs.get(path) if style == "darktable" else None
        if row.written_key == key and row.path == str(path) and target.exists() and (
                raw is None or xmp.sidecar_path(raw, style).exists()):
            return  # (the written key is the record's: a copy elsewhere has its own sidecar)
        changed = False
        # A RAW+JPEG pair is captioned once, from the JPEG; darktable and digiKam read the RAW's
        # own IMG.CR2.xmp, so it gets the same caption (Lightroom's IMG.xmp serves both).
        for one in (path, raw) if raw is not None else (path,):
            result = sidecar(one, row.caption, self.keywords(row), style=style, settings=self.how.settings,
                             existing=self.how.existing, persons=row.caption_by == "person",
                             hierarchy_root=self.how.hierarchy_root)
            self.decided(files, xmp.sidecar_path(one, style), result)
            changed = changed or result.changed
        files.written_key, files.changed = key, changed

    def write_embedded(self, files: Files, decision: Decision, path: Path, row: PhotoRow, key: str) -> None:
        known = decision.known
        if known is not None and known.bytes_written_key == key:
            return  # these very bytes are Loupe's embed for these settings
        why = ("is a link: embedding would replace the link with a copy" if path.is_symlink() else
               "is a RAW file, which Loupe never rewrites" if is_raw_name(path) else
               f"is a {path.suffix.lstrip('.').upper() or 'file'} file, which cannot hold XMP"
               if path.suffix.lower() not in xmp.EMBED_EXTENSIONS else None)
        if why is not None:
            files.notices += self.told.notice(
                str(path), "linked", f"{why}, so its caption went to a sidecar "
                f"({xmp.sidecar_path(path, sidecar_style_for(path, self.how.sidecar_style, self.stems)).name})")
            self.write_sidecar(files, path, row, key)
            return
        links = link_count(path)
        if links > 1:  # rewriting it would split its names into separate files (see README)
            files.notices += self.told.notice(
                str(path), "hard-links", f"has {links} hard links: embedding would split them into separate "
                f"files, so its caption went to a sidecar ({xmp.sidecar_path(path, self.how.sidecar_style).name})")
            self.write_sidecar(files, path, row, key)
            return
        result, location, changed = embed(
            path, row.caption, self.keywords(row), settings=self.how.settings, existing=self.how.existing,
            persons=row.caption_by == "person", expect_hash=decision.found.file_hash,
            hierarchy_root=self.how.hierarchy_root)
        self.decided(files, path, result)
        files.written_key, files.changed = key, changed
        files.location = Location(location.size, location.mtime_ns, location.file_hash, key)

    def rename(self, files: Files, old: Path, row: PhotoRow) -> None:
        try:
            if is_read_only(old):
                raise LoupeError("read-only file: not renamed")
            new = self.renamer.rename(old, row.caption, sidecars_of(old))  # type: ignore[union-attr]
        except (OSError, LoupeError) as exc:
            files.problems.append(Problem(str(old), "rename", _reason(exc)))
            return
        if new is not None:
            files.renamed_from, files.path = str(old), str(new)

    def decided(self, files: Files, where: Path, result: WriteResult) -> None:
        """Say what was done with a description someone else wrote (kept, appended, replaced)."""
        note = result.note()
        if note is not None:
            files.notices += self.told.notice(str(where), result.decision, note)
        if result.cut:  # IPTC's size limits: said once per scan (summary.py counts notices by kind)
            files.notices += self.told.notice(self.folder, "iptc-limit", IPTC_LIMIT_NOTE)


def _reason(exc: BaseException) -> str:
    return os_reason(exc) if isinstance(exc, OSError) else str(exc)
