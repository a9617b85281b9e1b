"""`loupe library ...`: thin argparse wiring over engine.library (hooked by engine.cli).

    loupe library scan FOLDER [--write sidecar|embed|none] [--sidecar-style darktable|lightroom]
                              [--rename] [--batch-size N] [--workers N] [--top K] [--db PATH] [--json]
    loupe library search WORDS... [--limit N] [--db PATH] [--json]
    loupe library export OUT.csv|OUT.json [--format csv|json] [--scan ID] [--db PATH]
    loupe library undo [--db PATH]
    loupe library scans [--db PATH] [--json]

Exit codes follow `loupe caption`: 0 all good, 3 some photos unreadable/unwritten (listed on
stderr as `loupe: PATH: reason`), 2 usage, 130 cancelled; LoupeErrors are handled by engine.cli.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import UnreadableImage


def add_parser(sub: Any) -> None:
    lib = sub.add_parser("library", help="caption and label whole folders, write sidecars, search by words")
    lsub = lib.add_subparsers(dest="library_command", metavar="COMMAND", required=True)

    sc = lsub.add_parser("scan", help="caption and label every new photo under FOLDER (resumable)")
    sc.add_argument("folder")
    sc.add_argument("--write", choices=("sidecar", "embed", "none"), default=None,
                    help="where results go (default: the library_write setting, else sidecar)")
    sc.add_argument("--sidecar-style", choices=("darktable", "lightroom"), default=None,
                    help="photo.jpg.xmp (darktable, digiKam) or photo.xmp (Lightroom)")
    sc.add_argument("--rename", action="store_true", help="rename photos after their captions (undo: loupe library undo)")
    sc.add_argument("--batch-size", type=_positive, default=None)
    sc.add_argument("--workers", type=_natural, default=2, help="photo loader threads (0: load inline)")
    sc.add_argument("--top", type=_positive, default=3, help="labels per photo")
    sc.add_argument("--beams", type=int, choices=range(1, 9), default=3, metavar="1-8",
                    help="caption beam search width (default 3; 1 is about twice as fast in a scan)")
    sc.add_argument("--db", default=None, help="index file (default: the data folder's library.db)")
    sc.add_argument("--json", action="store_true", help="print the summary as JSON")
    sc.set_defaults(handler=_scan)

    se = lsub.add_parser("search", help="photos whose caption, labels or name hold all the words")
    se.add_argument("words", nargs="+")
    se.add_argument("--limit", type=_positive, default=50)
    se.add_argument("--db", default=None)
    se.add_argument("--json", action="store_true")
    se.set_defaults(handler=_search)

    ex = lsub.add_parser("export", help="write the index (or one scan) as CSV or JSON")
    ex.add_argument("out")
    ex.add_argument("--format", choices=("csv", "json"), default=None, help="default: from the extension")
    ex.add_argument("--scan", type=_positive, default=None, metavar="ID", help="only this scan (see: loupe library scans)")
    ex.add_argument("--db", default=None)
    ex.set_defaults(handler=_export)

    un = lsub.add_parser("undo", help="put back the photos renamed by the last scan")
    un.add_argument("--db", default=None)
    un.set_defaults(handler=_undo)

    ls = lsub.add_parser("scans", help="list past scans")
    ls.add_argument("--db", default=None)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=_scans)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _natural(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _scan(args: argparse.Namespace) -> int:
    from . import progress_bar, scan

    with progress_bar() as bar:  # on stderr, only when it is a terminal
        summary = scan(
            args.folder, write=args.write, sidecar_style=args.sidecar_style, rename=args.rename,
            db_path=args.db, progress=bar, batch_size=args.batch_size, workers=args.workers, top=args.top,
            num_beams=args.beams,
        )
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(
            f"{summary.folder}: {summary.done} captioned, {summary.skipped} already done, "
            f"{summary.failed} unreadable, {summary.written} written, {summary.renamed} renamed"
            f" ({summary.rate:.1f} photos/s, scan {summary.scan_id})"
        )
    for problem in summary.problems:
        print(f"loupe: {problem.path}: {problem.reason}", file=sys.stderr)
    if summary.cancelled:
        print("loupe: cancelled; run the same command again to resume", file=sys.stderr)
        return 130
    return UnreadableImage.exit_code if summary.problems else 0


def _search(args: argparse.Namespace) -> int:
    from . import search

    hits = search(" ".join(args.words), limit=args.limit, db_path=args.db)
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], indent=2, ensure_ascii=False))
    else:
        for h in hits:
            labels = ", ".join(l.name for l in h.labels)
            print(f"{h.path}\n    {h.caption}" + (f"  [{labels}]" if labels else ""))
    return 0


def _export(args: argparse.Namespace) -> int:
    from . import export

    n = export(args.out, fmt=args.format, scan_id=args.scan, db_path=args.db)
    print(f"{args.out}: {n} photos")
    return 0


def _undo(args: argparse.Namespace) -> int:
    from . import undo

    n = undo(db_path=args.db)
    print(f"{n} photos put back" if n else "nothing to undo")
    return 0


def _scans(args: argparse.Namespace) -> int:
    import time

    from . import scans

    rows = scans(db_path=args.db)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["started"]))
        print(f"{r['id']:4}  {when}  {r['status']:11} {r['done']:6} done {r['failed']:4} failed  {r['folder']}")
    return 0
