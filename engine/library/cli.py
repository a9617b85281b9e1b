"""`loupe library ...`: thin argparse wiring over engine.library (hooked by engine.cli).

    loupe library scan FOLDER [--write sidecar|embed|none] [--sidecar-style darktable|lightroom]
                              [--rename] [--batch-size N] [--workers N] [--top K] [--db PATH] [--json]
    loupe library search WORDS... [--limit N] [--db PATH] [--json]
    loupe library export OUT.csv|OUT.json [--format csv|json] [--scan ID] [--db PATH]
    loupe library undo [--db PATH]
    loupe library scans [--db PATH] [--json]

Exit codes follow `loupe caption`: 0 all good, 3 some photos unreadable/unwritten (listed on
stderr as `loupe: PATH: reason`), 2 usage, 130 cancelled; LoupeErrors are handled by engine.cli.
`search` exits 1 when no photo matches, like grep (stdout keeps only results, so scripts see
nothing or `[]`; the "no photos match" line for people goes to stderr).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import UnreadableImage
from ..logs import note


def add_parser(sub: Any) -> None:
    lib = sub.add_parser("library", help="caption and label whole folders, write sidecars, search by words")
    lsub = lib.add_subparsers(dest="library_command", metavar="COMMAND", required=True, parser_class=_Parser)

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
    sc.add_argument("--db", default=None, help="index file (default: the data folder's library.db)")
    sc.add_argument("--json", action="store_true", help="print the summary as JSON")
    sc.set_defaults(handler=_scan)

    se = lsub.add_parser(
        "search", help="photos whose caption, labels or name hold all the words", words_dest="words",
        description="Any text is a query: -boat, t-shirt, NOT, * are plain words; green-boat is a phrase.",
        epilog="Exit codes: 0 photos found, 1 no photo matches (like grep), 2 usage.",
    )
    se.add_argument("words", nargs="*", metavar="WORDS")
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


class _Parser(argparse.ArgumentParser):
    """argparse's parser; with `words_dest`, every argument that is not one of the command's own
    options is a word of the query, in order: `-boat` too (argparse alone rejects it as an
    unknown option, exit 2). `--` makes all that follows words (`search -- --json`)."""

    def __init__(self, *args: Any, words_dest: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.words_dest = words_dest

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        if self.words_dest is None:
            return super().parse_known_args(args, namespace)
        rest = list(sys.argv[1:] if args is None else args)
        own = {name: action for action in self._actions for name in action.option_strings}
        options: list[str] = []
        words: list[str] = []
        while rest:
            arg = rest.pop(0)
            action = own.get(arg.split("=", 1)[0]) if arg.startswith("-") else None
            if arg == "--":
                words += rest
                break
            if action is None:
                words.append(arg)
                continue
            options.append(arg)
            if action.nargs != 0 and "=" not in arg and rest:
                options.append(rest.pop(0))  # the option's value, even one like "-3"
        ns, extras = super().parse_known_args(options, namespace)
        if not words:
            self.error("the following arguments are required: WORDS")
        setattr(ns, self.words_dest, words)
        return ns, extras


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
        )
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(
            f"{summary.folder}: {summary.done} captioned, {summary.skipped} already done, "
            f"{summary.failed} unreadable, {summary.written} written, {summary.renamed} renamed"
            f" ({summary.rate:.1f} photos/s, scan {summary.scan_id})"
        )
    note(done=summary.done, skipped=summary.skipped, failed=summary.failed, written=summary.written,
         renamed=summary.renamed, cancelled=summary.cancelled)
    for problem in summary.problems:
        print(f"loupe: {problem.path}: {problem.reason}", file=sys.stderr)
    if summary.cancelled:
        print("loupe: cancelled; run the same command again to resume", file=sys.stderr)
        return 130
    return UnreadableImage.exit_code if summary.problems else 0


def _search(args: argparse.Namespace) -> int:
    from . import NO_MATCH, search

    words = " ".join(args.words)
    hits = search(words, limit=args.limit, db_path=args.db)
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], indent=2, ensure_ascii=False))
    else:
        for h in hits:
            labels = ", ".join(l.name for l in h.labels)
            print(f"{h.path}\n    {h.caption}" + (f"  [{labels}]" if labels else ""))
    note(hits=len(hits))
    if not hits:
        print("loupe: " + NO_MATCH.format(words=words), file=sys.stderr)
        return 1
    return 0


def _export(args: argparse.Namespace) -> int:
    from . import export

    n = export(args.out, fmt=args.format, scan_id=args.scan, db_path=args.db)
    note(photos=n)
    print(f"{args.out}: {n} photos")
    return 0


def _undo(args: argparse.Namespace) -> int:
    from . import undo

    n = undo(db_path=args.db)
    note(put_back=n)
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
