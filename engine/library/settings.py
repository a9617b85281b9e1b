"""The scan's own options, defined once: the CLI (`loupe library scan`), the Library tab and
the scanner all read their defaults, limits and words from here."""
from __future__ import annotations

from typing import Any, Mapping

from ..errors import UsageError
from ..models.spec import Option

# Labels the classifier is less sure of than this are kept in the index (and found by search)
# but not written into the photo's keywords (XMP dc:subject, IPTC Keywords): a keyword a
# photo tool shows should be one the person can trust.
KEYWORD_THRESHOLD = Option(
    "keyword_threshold", "Keywords only above (% sure)", int, 10, minimum=0, maximum=100,
    cli="--keyword-threshold",
    help="Write a label as a keyword only when Loupe is at least this sure of it, in percent "
         "(labels below it are still searchable)",
)

# Where a sidecar or photo already keeps a keyword hierarchy (Lightroom's
# lr:hierarchicalSubject, digiKam's TagsList), Loupe's labels go into it too under this root
# ("Loupe|tabby cat"), so tools that read the hierarchy first (Immich, Lightroom) see them.
HIERARCHY_ROOT = Option(
    "hierarchy_root", "Keyword hierarchy root", str, "Loupe", maximum=40, cli="--hierarchy-root",
    setting="hierarchy_root",
    help="Where a photo already has a keyword hierarchy (Lightroom, digiKam), put Loupe's labels "
         "in it under this root (ROOT|label)",
)


def check_hierarchy_root(root: str) -> str:
    """`root`, or UsageError (one line) when it is empty or holds a hierarchy separator."""
    if not isinstance(root, str) or not root.strip() or any(c in root for c in "|/\n"):
        raise UsageError("The keyword hierarchy root must be a plain word or phrase (no | or /).")
    return root.strip()


# style -> (what a person reads, the captioner's options it sets)
CAPTION_STYLES: dict[str, tuple[str, dict[str, Any]]] = {
    "detailed": ("Detailed (slower)", {"num_beams": 3}),
    "quick": ("Quick", {"num_beams": 1}),
}
DEFAULT_CAPTION_STYLE = "detailed"


def check_caption_style(style: str | None) -> str:
    """The style name (None: the default); UsageError naming the choices for another."""
    if style is None:
        return DEFAULT_CAPTION_STYLE
    if style not in CAPTION_STYLES:
        raise UsageError(f"Unknown caption style {style!r}; choose {' or '.join(CAPTION_STYLES)}.")
    return style


def style_options(style: str | None, given: Mapping[str, Any]) -> dict[str, Any]:
    """The model options for a scan: the style's captioner options, under the ones given by
    name (an explicit `num_beams=` wins over the style)."""
    return {**CAPTION_STYLES[check_caption_style(style)][1], **given}


def keyword_names(labels: Any, threshold: int) -> list[str]:
    """Names of the labels (engine.results.Label, score 0..1) at or above `threshold` percent."""
    return [label.name for label in labels if float(label.score) * 100 >= threshold]
