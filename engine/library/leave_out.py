"""What a scan looks at, and what it leaves out (and why): decided here, said in every summary.

A scan looks at every photo file under its folder whose format Loupe reads (engine/images.py),
following links as `loupe caption` does (each real file once). It leaves out:

    HOUSEKEEPING   folders other software keeps for itself (NAS thumbnails and recycle bins,
                   system folders, photo apps' libraries and caches): captioning them would
                   caption thumbnails and write into folders that software manages
    hidden names   names starting with "." (.git and git-annex objects, .thumbnails, macOS
                   ._x.jpg resource forks, Loupe's own temp files)
    your excludes  the scan's `exclude` option (or the library_exclude setting) and a
                   `.loupeignore` file in any folder of the scan: glob patterns, one per line
                   (or separated by ";" in the option), matched against a name or a path
                   relative to the folder holding the pattern; "Screenshots/" matches folders
    formats        RAW beside a JPEG of the same name (a RAW+JPEG pair is captioned once,
                   from the JPEG), formats with no decoder here (images.UNDECODED)
    links          link loops, dangling links, a second link to a file already included

Each is counted by REASONS' key; front ends print REASONS' words ("12 files in Synology
thumbnail folders"). A new rule is one line in HOUSEKEEPING with its source.
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

IGNORE_FILE = ".loupeignore"


@dataclass(frozen=True)
class Rule:
    pattern: str  # a folder name, a glob, compared without case
    reason: str  # a key of REASONS
    source: str  # who makes such folders, and where that is written down


HOUSEKEEPING: tuple[Rule, ...] = (
    Rule("@eaDir", "synology", "Synology DSM's per-photo thumbnails (SYNOPHOTO_THUMB_*) and index data; "
         "Synology KB 'What is the @eaDir folder'; Immich and PhotoPrism skip it"),
    Rule("@__thumb", "nas-thumbs", "QNAP Photo Station / QuMagie thumbnails"),
    Rule("#recycle", "recycle", "Synology and QNAP share recycle bins (DSM Control Panel > Shared Folder)"),
    Rule("@Recycle", "recycle", "QNAP network recycle bin"),
    Rule("@Recently-Snapshot", "recycle", "QNAP snapshot folder"),
    Rule("#snapshot", "recycle", "Synology Btrfs snapshots shown in a share"),
    Rule("$RECYCLE.BIN", "recycle", "Windows Recycle Bin on every NTFS/FAT volume (Vista and later)"),
    Rule("RECYCLER", "recycle", "Windows XP Recycle Bin"),
    Rule(".Trashes", "recycle", "macOS trash on external volumes"),
    Rule(".Trash-*", "recycle", "freedesktop.org Trash specification, trash on a mounted volume"),
    Rule("System Volume Information", "system", "Windows restore points and search index on every volume"),
    Rule("lost+found", "system", "fsck's recovered fragments on ext2/3/4"),
    Rule("*.photoslibrary", "app-library", "macOS Photos library package (osxphotos issues; Apple: never edit "
         "its contents)"),
    Rule("*.photolibrary", "app-library", "iPhoto library package"),
    Rule("*.aplibrary", "app-library", "Aperture library package"),
    Rule("*.lrdata", "app-library", "Lightroom Classic previews and smart previews (Catalog Previews.lrdata)"),
    Rule("*.cocatalog", "app-library", "Capture One catalog package"),
    Rule("CaptureOne", "app-library", "Capture One session cache and settings folder beside the photos"),
    Rule("*.cosessiondb", "app-library", "Capture One session database"),
    Rule("mipmaps-*", "app-library", "darktable's thumbnail cache (mipmaps-<hash>.d)"),
    Rule("digikam4.db-*", "app-library", "digiKam database folders"),
    Rule("*.dtrash", "recycle", "digiKam's trash (.dtrash in each collection)"),
    Rule("Thumbs.db", "system", "Windows Explorer thumbnail cache (a file, listed for completeness)"),
)

# key -> (one, several): what the summary says, after the count
REASONS: dict[str, tuple[str, str]] = {
    "synology": ("file in Synology thumbnail folders", "files in Synology thumbnail folders"),
    "nas-thumbs": ("file in NAS thumbnail folders", "files in NAS thumbnail folders"),
    "recycle": ("file in recycle bins or snapshots", "files in recycle bins or snapshots"),
    "system": ("file in system folders", "files in system folders"),
    "app-library": ("file inside photo apps' libraries", "files inside photo apps' libraries"),
    "hidden": ("file with a hidden name or in a hidden folder", "files with hidden names or in hidden folders"),
    "excluded": ("file left out by your excludes", "files left out by your excludes"),
    "raw-pair": ("RAW file beside its JPEG (captioned once, from the JPEG)",
                 "RAW files beside their JPEGs (captioned once, from the JPEG)"),
    "no-decoder-raw": ("RAW file (rawpy is not installed)", "RAW files (rawpy is not installed)"),
    "no-decoder-jxl": ("JPEG XL file (no JPEG XL decoder installed: pip install pillow-jxl-plugin)",
                       "JPEG XL files (no JPEG XL decoder installed: pip install pillow-jxl-plugin)"),
    "no-decoder-avif": ("AVIF file (this Pillow cannot decode AVIF)", "AVIF files (this Pillow cannot decode AVIF)"),
    "no-decoder-heif": ("HEIC file (pip install pillow-heif)", "HEIC files (pip install pillow-heif)"),
    "link-loop": ("link loop", "link loops"),
    "dangling-link": ("dangling link", "dangling links"),
    "same-file": ("second link to a file already included", "second links to files already included"),
}


def housekeeping(name: str) -> str | None:
    """The reason key when a folder (or file) named `name` belongs to other software, else None."""
    low = name.lower()
    for rule in HOUSEKEEPING:
        if fnmatch.fnmatchcase(low, rule.pattern.lower()):
            return rule.reason
    return None


def parse_patterns(text: str | None) -> tuple[str, ...]:
    """The scan option's patterns: separated by ";" or new lines, blanks and #comments dropped."""
    if not text:
        return ()
    parts = (p.strip() for line in text.splitlines() for p in line.split(";"))
    return tuple(p for p in parts if p and not p.startswith("#"))


def read_ignore_file(folder: Path) -> tuple[str, ...]:
    """The patterns of `folder`/.loupeignore (none when there is no such file or it cannot be read)."""
    try:
        text = (folder / IGNORE_FILE).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return ()
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


class Excludes:
    """A person's patterns, each tied to the folder it applies under (the scan's folder for
    the option, the ignore file's folder for its lines)."""

    def __init__(self) -> None:
        self.rules: list[tuple[str, str, bool]] = []  # (base folder, pattern, folders only)

    def add(self, base: str | os.PathLike[str], patterns: tuple[str, ...]) -> None:
        for p in patterns:
            self.rules.append((os.fspath(base), p.rstrip("/").lstrip("/"), p.endswith("/")))

    def match(self, path: str, is_dir: bool) -> bool:
        """Whether `path` (absolute, as walked) is left out by one of the patterns."""
        name = os.path.basename(path)
        for base, pattern, dirs_only in self.rules:
            if dirs_only and not is_dir:
                continue
            if not path.startswith(base + os.sep):
                continue
            rel = path[len(base) + 1:]
            if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(rel, pattern):
                return True
        return False


def words(counts: dict[str, int]) -> list[str]:
    """["3 RAW files (...)", "1 link loop"]: each reason that occurred, counted, in REASONS' order."""
    return [f"{counts[key]} {REASONS[key][counts[key] != 1]}" for key in REASONS if counts.get(key)]
