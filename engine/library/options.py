"""The scan's options."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import UsageError
from . import xmp
from .descriptions import check_policy
from .settings import DEFAULT_CAPTION_STYLE, KEYWORD_THRESHOLD, check_caption_style

WRITERS = ("sidecar", "embed", "none")


@dataclass(frozen=True)
class Options:
    write: str = "sidecar"
    sidecar_style: str = "darktable"
    rename: bool = False
    existing: str = "keep"  # a description someone else wrote: keep, replace or append (descriptions.py)
    caption_style: str = DEFAULT_CAPTION_STYLE  # a key of CAPTION_STYLES (already folded into `models`)
    keyword_threshold: int = KEYWORD_THRESHOLD.default  # percent: labels below it are not written as keywords
    batch_size: int = 8
    workers: int = 2
    # task -> that model's options, checked by the registry (defaults filled in)
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def validate(self) -> None:
        if self.write not in WRITERS:
            raise UsageError(f"Unknown writer {self.write!r}; choose one of {', '.join(WRITERS)}.")
        if self.sidecar_style not in xmp.SIDECAR_STYLES:
            raise UsageError(f"Unknown sidecar style {self.sidecar_style!r}; choose darktable or lightroom.")
        check_policy(self.existing)
        check_caption_style(self.caption_style)
        KEYWORD_THRESHOLD.check(self.keyword_threshold)
        if self.batch_size < 1 or self.workers < 0:
            raise UsageError("batch_size must be at least 1, workers at least 0.")
