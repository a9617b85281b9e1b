"""The table: each registered model's pinned source, with any LOUPE_SOURCES overlay laid over it."""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from ..errors import UsageError
from ..models.spec import Source, WeightFile


def sources() -> dict[str, Source]:
    """Each registered model's source (engine.models.registry), with the entries of
    `LOUPE_SOURCES` (a JSON file) laid over it."""
    from ..models.registry import INSTALLABLE

    table = {spec.name: spec.source for spec in INSTALLABLE}
    override = os.environ.get("LOUPE_SOURCES")
    if not override:
        return table
    try:
        data = json.loads(Path(override).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"LOUPE_SOURCES: cannot read {override}: {exc}") from None
    for name, entry in data.items():
        base = table.get(name)
        files = tuple(WeightFile(f["name"], int(f["size"]), f["sha256"].lower()) for f in entry.get("files", []))
        known = {k: v for k, v in entry.items() if k in Source.__dataclass_fields__ and k not in ("files", "name")}
        if base is None:
            table[name] = Source(name=name, title=entry.get("title", name), kind=entry["kind"], files=files, **{k: v for k, v in known.items() if k not in ("title", "kind")})
        else:
            table[name] = replace(base, **known, **({"files": files} if files else {}))
    return table

def source(name: str) -> Source:
    table = sources()
    if name not in table:
        raise UsageError(f"unknown model {name!r}; known: {', '.join(table)}")
    return table[name]
