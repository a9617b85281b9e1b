"""The scan's options, declared once: each an `Option` (engine/models/spec.py) with its
choices and the words for them, its default, its flag and the setting it falls back on.

    loupe/library.py       makes the `loupe library scan` / `edit` flags from them (click_option)
    desktop/library_tab.py makes the Library tab's controls from them
    `resolve()`            given values -> settings -> defaults, each checked (UsageError)
    `Options`              what one scan runs with, checked (`validate`)

A new scan option is one Option here (and its use in the stage it changes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import UsageError
from ..models.spec import Option
from . import xmp
from .descriptions import EXISTING_POLICIES
from .settings import CAPTION_STYLES, DEFAULT_CAPTION_STYLE, HIERARCHY_ROOT, KEYWORD_THRESHOLD, check_hierarchy_root

WRITERS = ("sidecar", "embed", "none")  # writers.py: one function each

WRITE = Option(
    "write", "Write results", str, "sidecar", cli="--write", setting="library_write", noun="writer",
    choices=tuple(zip(WRITERS, ("Sidecar file (photo untouched)", "Inside the photo", "Nowhere (search only)"))),
    help="Where results go: XMP sidecars beside the photos, embedded in the photos, or only the index",
)
SIDECAR_STYLE = Option(
    "sidecar_style", "Sidecar name", str, "darktable", cli="--sidecar-style", setting="sidecar_style",
    choices=tuple(zip(xmp.SIDECAR_STYLES, ("photo.jpg.xmp (darktable, digiKam)", "photo.xmp (Lightroom)"))),
    help="photo.jpg.xmp (darktable, digiKam) or photo.xmp (Lightroom)",
)
EXISTING = Option(
    "existing", "A description someone already wrote", str, EXISTING_POLICIES[0], cli="--existing",
    noun="policy for existing descriptions",
    choices=tuple(zip(EXISTING_POLICIES, ("Keep it", "Replace it", "Add the caption after it"))),
    help="A description someone else wrote (XMP, IPTC or EXIF): keep it (Loupe's caption goes to its own "
         "caption field), replace it with the caption, or append the caption to it",
)
CAPTION_STYLE = Option(
    "caption_style", "Captions", str, DEFAULT_CAPTION_STYLE, cli="--caption-style",
    choices=tuple((key, words) for key, (words, _) in CAPTION_STYLES.items()),
    help="; ".join(f"{key}: {words}" for key, (words, _) in CAPTION_STYLES.items()) + " (--beams, when given, wins over it)",
)
RENAME = Option("rename", "Rename files from captions", bool, False, cli="--rename",
                help="Rename photos after their captions (undo: loupe library undo)")
EXCLUDE = Option(
    "exclude", "Leave out", str, None, maximum=2000, cli="--exclude", setting="library_exclude",
    help="Leave out files and folders matching these glob patterns, separated by ';' (e.g. "
         "'Screenshots/;*-thumb.jpg'); a .loupeignore file in a folder adds patterns, one per line "
         "(what a scan always leaves out: see the README)",
)
REMOVE_GONE_SIDECARS = Option(
    "remove_gone_sidecars", "Delete the sidecars of photos no longer there", bool, False, cli="--remove-gone-sidecars",
    help="Delete the sidecars Loupe wrote for photos of the folder that are no longer there (kept unless asked)",
)
#: every scan option, in the order front ends show them
SCAN_OPTIONS = (CAPTION_STYLE, KEYWORD_THRESHOLD, WRITE, SIDECAR_STYLE, EXISTING, RENAME, HIERARCHY_ROOT, EXCLUDE, REMOVE_GONE_SIDECARS)
#: the options `library edit` takes (how the person's caption is written)
EDIT_OPTIONS = (WRITE, SIDECAR_STYLE)


def resolve(given: Mapping[str, Any], settings: Mapping[str, Any],
            options: tuple[Option, ...] = SCAN_OPTIONS) -> dict[str, Any]:
    """name -> value for `options`: the value given (None: not given), else the option's
    setting, else its default; each checked (UsageError naming the choices)."""
    out = {}
    for opt in options:
        value = given.get(opt.name)
        if value is None and opt.setting:
            value = settings.get(opt.setting) or None
        out[opt.name] = opt.check(opt.default if value is None else value)
    return out


@dataclass(frozen=True)
class Options:
    """What one scan runs with (see SCAN_OPTIONS for the person's options)."""

    write: str = WRITE.default
    sidecar_style: str = SIDECAR_STYLE.default
    rename: bool = RENAME.default
    existing: str = EXISTING.default
    caption_style: str = CAPTION_STYLE.default  # already folded into `models`
    keyword_threshold: int = KEYWORD_THRESHOLD.default  # percent: labels below it are not written as keywords
    hierarchy_root: str = HIERARCHY_ROOT.default  # labels' root in an existing keyword hierarchy
    exclude: str | None = EXCLUDE.default  # the person's patterns (leave_out.py)
    remove_gone_sidecars: bool = REMOVE_GONE_SIDECARS.default
    batch_size: int = 8
    workers: int = 2
    # task -> that model's options, checked by the registry (defaults filled in)
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def validate(self) -> None:
        for opt in SCAN_OPTIONS:
            opt.check(getattr(self, opt.name))
        check_hierarchy_root(self.hierarchy_root)
        if self.batch_size < 1 or self.workers < 0:
            raise UsageError("batch_size must be at least 1, workers at least 0.")
