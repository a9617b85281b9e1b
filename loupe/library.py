"""`loupe library ...`: folders of photos, thin over `engine.library`.

Exit codes follow `loupe caption`: 0 all good, 3 some photos unreadable or unwritten (each on
stderr as `loupe: PATH: reason`), 2 usage, 130 cancelled.
"""
from __future__ import annotations

import json
import time
from typing import Any

import click

from engine.library.descriptions import EXISTING_POLICIES

from .logged import LoggedGroup
from .options import model_options, pick

_DB = click.option("--db", default=None, metavar="PATH", help="Index file (default: the data folder's library.db).")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


@click.group(cls=LoggedGroup)
def library() -> None:
    """Caption and label whole folders, write sidecars, search by words."""


@library.command()
@click.argument("folder")
@click.option("--write", type=click.Choice(["sidecar", "embed", "none"]), default=None,
              help="Where results go: XMP sidecars beside the photos, embedded in the photos, or only the "
                   "index (default: the library_write setting, else sidecar).")
@click.option("--sidecar-style", type=click.Choice(["darktable", "lightroom"]), default=None,
              help="photo.jpg.xmp (darktable, digiKam) or photo.xmp (Lightroom).")
@click.option("--rename", is_flag=True, help="Rename photos after their captions (undo: loupe library undo).")
@click.option("--existing", type=click.Choice(EXISTING_POLICIES), default=EXISTING_POLICIES[0], show_default=True,
              help="A description someone else wrote (XMP, IPTC or EXIF): keep it (the caption goes to "
                   "loupe:caption), replace it with the caption, or append the caption to it.")
@model_options("caption", "classify")
@click.option("--batch-size", type=click.IntRange(1, 256), default=None, help="Photos per batch (default: the captioner's).")
@click.option("--workers", type=click.IntRange(0, 64), default=2, show_default=True, help="Photo loader threads (0: load inline).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Run on a Ray cluster: alone, a local one on this machine; with ADDRESS (auto, "
                   "ray://head:10001) that cluster. Photos must be on a folder every node reads. "
                   "Needs pip install 'loupe[ray]'.")
@_DB
@_JSON
def scan(folder: str, write: str | None, sidecar_style: str | None, rename: bool, existing: str, batch_size: int | None,
         workers: int, ray_address: str | None, db: str | None, as_json: bool, **options: Any) -> int:
    """Caption and label every new photo under FOLDER (resumable)."""
    from engine import library

    from engine.logs import note

    model_options = {**pick("caption", options), **pick("classify", options)}
    with library.progress_bar() as bar:  # on stderr, only when it is a terminal
        summary = library.scan(folder, write=write, sidecar_style=sidecar_style, rename=rename, existing=existing, db_path=db,
                               progress=bar, batch_size=batch_size, workers=workers, ray_address=ray_address,
                               **model_options)
    note(done=summary.done, skipped=summary.skipped, failed=summary.failed, written=summary.written)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(summary_text(summary))
    for problem in summary.problems:
        click.echo(f"loupe: {problem.path}: {problem.reason}", err=True)
    if summary.cancelled:
        click.echo("loupe: cancelled; run the same command again to resume", err=True)
        return 130
    return 3 if summary.problems else 0


def summary_text(summary: Any) -> str:
    """The scan's outcome: one summary line, then each decision Loupe took, one per line."""
    lines = [
        f"{summary.folder}: {summary.done} captioned, {summary.skipped} already done, "
        f"{summary.failed} unreadable, {summary.written} written"
        + (f", {summary.write_failed} not written" if summary.write_failed else "")
        + f", {summary.renamed} renamed{summary.decisions_text()}"
        f" ({summary.rate:.1f} photos/s, scan {summary.scan_id})"
    ]
    lines += [f"  {notice.path}: {notice.message}" for notice in summary.notices]
    return "\n".join(lines)


@library.command(context_settings={"ignore_unknown_options": True})
@click.argument("words", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="Most photos to list.")
@_DB
@_JSON
def search(words: tuple[str, ...], limit: int, db: str | None, as_json: bool) -> int:
    """Photos whose caption, labels or name hold all the WORDS.

    Any text is a query (a leading `-` included; after `--` even an option's name); a
    hyphenated word is a phrase. Exit 1 with "no photos match" when nothing matches."""
    from engine import library

    from engine.logs import note

    query = " ".join(words)
    hits = library.search(query, limit=limit, db_path=db)
    note(hits=len(hits))
    if as_json:
        click.echo(json.dumps([h.to_dict() for h in hits], indent=2, ensure_ascii=False))
    if not hits:  # like grep: nothing on stdout, a line on stderr, exit 1
        click.echo(f"loupe: {library.NO_MATCH.format(words=query)}", err=True)
        return 1
    for h in hits if not as_json else ():
        labels = ", ".join(label.name for label in h.labels)
        click.echo(f"{h.path}\n    {h.caption}" + (f"  [{labels}]" if labels else ""))
    return 0


@library.command()
@click.argument("out")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default=None, help="Default: from the extension.")
@click.option("--scan", "scan_id", type=click.IntRange(1), default=None, metavar="ID",
              help="Only this scan (see: loupe library scans).")
@_DB
def export(out: str, fmt: str | None, scan_id: int | None, db: str | None) -> int:
    """Write the index (or one scan) as CSV or JSON."""
    from engine import library

    n = library.export(out, fmt=fmt, scan_id=scan_id, db_path=db)
    click.echo(f"{out}: {n} photos")
    return 0


@library.command()
@_DB
def undo(db: str | None) -> int:
    """Put back the photos renamed by the last scan."""
    from engine import library

    n = library.undo(db_path=db)
    click.echo(f"{n} photos put back" if n else "nothing to undo")
    return 0


@library.command()
@_DB
@_JSON
def scans(db: str | None, as_json: bool) -> int:
    """List past scans."""
    from engine import library

    rows = library.scans(db_path=db)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["started"]))
        click.echo(f"{r['id']:4}  {when}  {r['status']:11} {r['done']:6} done {r['failed']:4} failed  {r['folder']}")
    return 0
