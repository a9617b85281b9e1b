"""What `loupe models status` and `loupe models verify` print, as small functions over
`engine.weights`, so any front end (argparse today, click tomorrow, the UI) shows the same words.

    for line in status_lines(weights.status()): print(line)
    results = verify(names)                 # full re-hash of every model with files present
    for s in results: print(verify_line(s))
    raise_if_bad(results)                   # WeightsDamaged (exit 6) / WeightsMissing (exit 4)
"""
from __future__ import annotations

from typing import Any, Sequence

from . import paths, weights
from .errors import WeightsDamaged, WeightsMissing
from .units import format_size
from .weights import DAMAGED, INSTALLED, NOT_INSTALLED, PARTIAL, Status


def state_text(s: Status) -> str:
    """The state of one model in a few words, with what to do when it is not usable."""
    if s.state == INSTALLED:
        return f"installed, {format_size(s.on_disk)}"
    if s.state == DAMAGED:
        return f"damaged — run `loupe models verify` or `loupe models download {s.name}`"
    if s.state == PARTIAL:
        return (f"partial download ({format_size(s.on_disk)} of {format_size(s.size)}) — "
                f"`loupe models download {s.name}` resumes")
    return f"not installed ({format_size(s.size)} to download)"


def status_lines(rows: Sequence[Status]) -> list[str]:
    """`loupe models status` as text: the weights folder, then one line per model."""
    width = max([len(state_text(r)) for r in rows] + [34])
    lines = [f"Weights folder: {paths.weights_dir()}"]
    lines += [f"  {r.name:10} {state_text(r):{width}} {r.title}" for r in rows]
    return lines


def status_json(rows: Sequence[Status]) -> list[dict[str, Any]]:
    """`loupe models status --json`: one object per model. `bytes` is on disk when installed,
    else the download size; `problems` lists each bad file of a damaged model."""
    return [{"name": r.name, "title": r.title, "state": r.state, "installed": r.installed, "path": str(r.path),
             "bytes": r.size, "on_disk": r.on_disk, "revision": r.revision,
             "problems": [{"file": p.file, "reason": p.reason} for p in r.problems]} for r in rows]


def verify(names: Sequence[str] = ()) -> list[Status]:
    """Re-hash the named models, or (none named) every model with any file present.

    Returns each model's full `check`; names are checked against the table first (UsageError)."""
    for name in names:
        weights.source(name)
    if names:
        return [weights.check(name, full=True) for name in names]
    present = [s.name for s in weights.status() if s.state in (INSTALLED, DAMAGED)]
    return [weights.check(name, full=True) for name in present]


def verify_line(s: Status) -> str:
    """`NAME: ok`, `NAME: damaged: FILE: reason[; FILE: reason]` or `NAME: not installed`."""
    if s.state == INSTALLED:
        return f"{s.name}: ok"
    if s.state == DAMAGED:
        return f"{s.name}: damaged: {s.reason}"
    return f"{s.name}: {s.state}"


def raise_if_bad(results: Sequence[Status]) -> None:
    """One error line for a verify run: WeightsDamaged (exit 6) naming the damaged models and
    how to repair them, else WeightsMissing (exit 4) when a model asked for is not installed."""
    damaged = [s.name for s in results if s.state == DAMAGED]
    if damaged:
        raise WeightsDamaged(f"damaged: {', '.join(damaged)}. Run `loupe models download {' '.join(damaged)}` "
                             f"to repair (only the bad files are fetched).")
    missing = [s.name for s in results if s.state in (NOT_INSTALLED, PARTIAL)]
    if missing:
        raise WeightsMissing(f"not installed: {', '.join(missing)}. Run `loupe models download "
                             f"{' '.join(missing)}` or `loupe models import FOLDER`.")


def nothing_to_verify() -> str:
    return f"no model weights in {paths.weights_dir()}: nothing to verify"
