"""`loupe library ...`: folders of photos, thin over `engine.library`.

Exit codes follow `loupe caption`: 0 all good, 3 some photos unreadable or unwritten (each on
stderr as `loupe: PATH: reason`), 2 usage, 130 cancelled.
"""
from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import click

from engine.names import json_text

from engine.library.options import (CAPTION_STYLE, EXCLUDE, EXISTING, HIERARCHY_ROOT, REMOVE_GONE_SIDECARS, RENAME,
                                    SIDECAR_STYLE, WRITE)
from engine.library.review import REVIEW_STATES
from engine.library.settings import KEYWORD_THRESHOLD

from .logged import LoggedGroup
from .options import model_options, pick, scan_option

_DB = click.option("--db", default=None, metavar="PATH", help="Index file (default: the data folder's library.db).")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


@click.group(cls=LoggedGroup)
def library() -> None:
    """Caption, label and embed whole folders, write sidecars, search by words and meaning."""


@library.command()
@click.argument("folder")
@scan_option(CAPTION_STYLE)
@scan_option(KEYWORD_THRESHOLD)
@scan_option(WRITE)
@scan_option(SIDECAR_STYLE)
@scan_option(EXISTING)
@scan_option(RENAME)
@scan_option(HIERARCHY_ROOT)
@scan_option(EXCLUDE)
@scan_option(REMOVE_GONE_SIDECARS)
@model_options("caption", "classify")
@click.option("--batch-size", type=click.IntRange(1, 256), default=None, help="Most photos per batch (default: the captioner's for this precision and beams). "
                   "A scan starts at one photo and grows its batches while Stop can still wait "
                   "for a batch or lose at most about one photo's work.")
@click.option("--workers", type=click.IntRange(0, 64), default=2, show_default=True, help="Photo loader threads (0: load inline).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Run on a Ray cluster: alone, a local one on this machine; with ADDRESS (auto, "
                   "ray://head:10001) that cluster; put it after FOLDER, or write --ray=ADDRESS. "
                   "Photos must be on a folder every node reads. "
                   "Needs pip install 'loupe[ray]'.")
@_DB
@_JSON
def scan(folder: str, write: str | None, sidecar_style: str | None, rename: bool, existing: str, caption_style: str,
         keyword_threshold: int, hierarchy_root: str | None, exclude: str | None,
         remove_gone_sidecars: bool, batch_size: int | None, workers: int, ray_address: str | None, db: str | None, as_json: bool,
         **options: Any) -> int:
    """Caption and label every new photo under FOLDER (resumable)."""
    from engine import library

    from engine.logs import note

    ctx = click.get_current_context()
    # Options left at their defaults are not passed: the caption style sets its own.
    given = {k: v for k, v in options.items()
             if ctx.get_parameter_source(k) is not click.core.ParameterSource.DEFAULT}
    model_options = {**pick("caption", given), **pick("classify", given)}
    cancel = threading.Event()
    with library.progress_bar() as bar, stop_on_ctrl_c(cancel):  # the bar: on stderr, only when it is a terminal
        summary = library.scan(folder, write=write, sidecar_style=sidecar_style, rename=rename, existing=existing,
                               caption_style=caption_style, keyword_threshold=keyword_threshold,
                               hierarchy_root=hierarchy_root, exclude=exclude,
                               remove_gone_sidecars=remove_gone_sidecars, db_path=db,
                               progress=bar, cancel=cancel, batch_size=batch_size, workers=workers,
                               ray_address=ray_address, **model_options)
    note(done=summary.done, skipped=summary.skipped, failed=summary.failed, written=summary.written)
    if as_json:
        click.echo(json_text(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False)))
    else:
        click.echo(summary_text(summary))
    for path, reason in summary.problem_lines():  # read-only places: one line per folder
        click.echo(f"loupe: {path}: {reason}", err=True)
    if summary.cancelled:
        click.echo(stopped_text(summary.done), err=True)
        return 130
    return 3 if summary.problems else 0


@contextlib.contextmanager
def stop_on_ctrl_c(cancel: threading.Event) -> Iterator[None]:
    """Within: the first Ctrl-C (SIGINT) sets `cancel`, so the scan stops as Stop does, keeping
    and saying what it did; a second one interrupts at once (KeyboardInterrupt). Only the
    main thread receives signals: elsewhere Ctrl-C keeps its usual meaning."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def first(signum: int, frame: Any) -> None:
        cancel.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def stopped_text(done: int) -> str:
    """The line a stopped scan ends with (local or on Ray: the same)."""
    return (f"Stopped: {done} photo{'s' if done != 1 else ''} captioned and kept; "
            "run the same command again to resume.")


def _pace(rate: float) -> str:
    """The summary's speed: photos/s, or s/photo when slower than one photo in 10 s; nothing when
    no photo was captioned ("0.0 photos/s" read as if the scan had stalled)."""
    if rate <= 0:
        return ""
    return f"{rate:.1f} photos/s, " if rate >= 0.1 else f"{1 / rate:.0f} s/photo, "


def summary_text(summary: Any) -> str:
    """The scan's outcome: one summary line, then each decision Loupe took, one per line."""
    lines = [
        f"{summary.folder}: {summary.done} captioned, {summary.skipped} already done, "
        f"{summary.failed} unreadable, {summary.written} written"
        + (f", {summary.write_failed} not written" if summary.write_failed else "")
        + f", {summary.renamed} renamed"
        + (f", {summary.embedded} embedded for search" if summary.embedded else "")
        + summary.decisions_text()
        + f" ({_pace(summary.rate)}scan {summary.scan_id})"
    ]
    lines += [f"  {notice.path}: {notice.message}" for notice in summary.notices]
    lines += list(summary.notes)
    if summary.gone:
        lines.append(f"  {len(summary.gone)} photo{'s' * (len(summary.gone) != 1)} no longer there "
                     "(left out of search and export; scan history keeps them): " + ", ".join(summary.gone[:20]))
    return "\n".join(lines)


_FOLDER = click.option("--folder", default=None, metavar="FOLDER", help="Only photos under FOLDER.")
_STATE = click.option("--state", type=click.Choice(REVIEW_STATES), default="all", show_default=True,
                      help="done: captioned and unchanged; failed: could not be read or written; changed: the file "
                           "changed or is gone since; edited: your own caption.")


@library.command(context_settings={"ignore_unknown_options": True})
@click.argument("words", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--by", type=click.Choice(["words", "meaning", "both"]), default="both", show_default=True,
              help="Rank by the words of captions, labels and names (FTS5), by meaning (the search "
                   "encoder: what the photo looks like), or both fused (reciprocal rank fusion).")
@_FOLDER
@_STATE
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="Most photos to list.")
@_DB
@_JSON
def search(words: tuple[str, ...], by: str, folder: str | None, state: str, limit: int, db: str | None,
           as_json: bool) -> int:
    """Photos for the WORDS, best first: by their words and by what they show.

    Any text is a query (a leading `-` included; after `--` even an option's name); a
    hyphenated word is a phrase. The first search by meaning loads the encoder's text side
    (said on stderr). --json gives each hit's word_rank, meaning_score and fused_rank.
    Exit 1 with "no photos match" when nothing matches."""
    from engine import library

    from engine.logs import note

    query = " ".join(words)
    answer = library.find(query, by=by, folder=folder, state=state, limit=limit, db_path=db,
                          loading=lambda: click.echo("Loading the search model (first search)...", err=True))
    note(hits=len(answer.hits), by=answer.by)
    for line in answer.notes:
        click.echo(line, err=True)
    if as_json:
        click.echo(json_text(json.dumps([h.to_dict() for h in answer.hits], indent=2, ensure_ascii=False)))
    if not answer.hits:  # like grep: nothing on stdout, a line on stderr, exit 1
        click.echo(f"loupe: {library.NO_MATCH.format(words=query)}", err=True)
        return 1
    for h in answer.hits if not as_json else ():
        _echo_hit(h)
    return 0


@library.command()
@click.argument("photo")
@_FOLDER
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True, help="Most photos to list.")
@_DB
@_JSON
def similar(photo: str, folder: str | None, limit: int, db: str | None, as_json: bool) -> int:
    """Photos that look like PHOTO (More like this), nearest first, by image embedding."""
    from engine import library

    hits = library.similar(photo, folder=folder, limit=limit, db_path=db)
    if as_json:
        click.echo(json_text(json.dumps([h.to_dict() for h in hits], indent=2, ensure_ascii=False)))
        return 0
    for h in hits:
        _echo_hit(h)
    if not hits:
        click.echo("loupe: no other photo has an embedding yet", err=True)
        return 1
    return 0


def _echo_hit(h: Any) -> None:
    labels = ", ".join(label.name for label in h.labels)
    click.echo(f"{h.path}\n    {h.caption}" + (f"  [{labels}]" if labels else ""))


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


@library.command()
@click.argument("path")
@click.argument("caption")
@scan_option(WRITE, help="Where it goes (default: the way the photo was last written, else the library_write "
                         "setting, else sidecar)")
@scan_option(SIDECAR_STYLE)
@click.option("--replace", is_flag=True,
              help="Replace a description someone else wrote (without it, such a photo is left as it is).")
@_DB
def edit(path: str, caption: str, write: str | None, sidecar_style: str | None, replace: bool, db: str | None) -> int:
    """Set your own CAPTION for the photo at PATH (a scan never replaces it)."""
    from engine import library

    try:
        result = library.set_caption(path, caption, write=write, sidecar_style=sidecar_style,
                                     replace_others=replace, db_path=db)
    except library.DescriptionExists as exc:
        from engine.errors import UsageError

        raise UsageError(
            f"{Path(path).name} already has a description someone wrote: “{exc.existing}”; "
            "add --replace to replace it with yours.") from None
    click.echo(result.message)
    return 0


@library.command()
@_FOLDER
@_STATE
@click.option("--text", default="", help="Only photos whose caption, labels or name hold these words.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True, help="Most photos to list.")
@click.option("--offset", type=click.IntRange(0), default=0, help="Skip this many first.")
@_DB
@_JSON
def photos(folder: str | None, state: str, text: str, limit: int, offset: int, db: str | None, as_json: bool) -> int:
    """List the photos in the index with their state (never-read photos first, then by folder and name)."""
    from engine import library

    page = library.photos(folder=folder, text=text, state=state, offset=offset, limit=limit, db_path=db)
    if as_json:
        click.echo(json_text(json.dumps({"total": page.total, "items": [item.to_dict() for item in page.items]},
                                        indent=2, ensure_ascii=False)))
        return 0
    for item in page.items:
        extra = f"  ({item.reason})" if item.reason else ""
        who = "  [your caption]" if item.caption_by == "person" else ""
        click.echo(f"{item.state:8} {item.path}{extra}\n    {item.caption}{who}")
    shown = f"{offset + 1}-{offset + len(page.items)} of " if page.items else "0 of "
    click.echo(f"{shown}{page.total} photos", err=True)
    return 0
