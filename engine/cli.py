"""`loupe`: the command line, thin over the engine. Expected failures are one line on stderr
and a distinct exit code (see engine.errors); only a bug shows a traceback."""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from typing import Any, Sequence

from .errors import Cancelled, LoupeError

EXIT_PARTIAL = 3  # some photos failed; the others were processed


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("loupe")
    except Exception:
        return "dev"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loupe",
        description="Offline photo captioning and classification. With no command, opens the Loupe window.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 unreadable photo, 4 weights missing, "
        "5 download failed, 6 integrity check failed, 130 cancelled.",
    )
    parser.add_argument("--version", action="version", version=f"loupe {_version()}")
    parser.add_argument("--browser", action="store_true", help="serve the app for a web browser instead of opening a window; prints the URL")
    parser.add_argument("--port", type=int, default=None, help="port for the local server (default: a free one)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    cap = sub.add_parser("caption", help="describe photos in a sentence", description="Caption photos with BLIP.")
    cap.add_argument("photos", nargs="+", metavar="PHOTO")
    cap.add_argument("--prefix", default=None, help='start every caption with this text (conditional captioning), e.g. "a photograph of"')
    cap.add_argument("--max-tokens", type=int, default=30, help="longest caption in tokens (1-100, default 30)")
    cap.add_argument("--beams", type=int, default=3, help="beam search width (1-8, default 3; 1 is fastest)")
    cap.add_argument("--json", action="store_true", help="print JSON instead of text")

    cls = sub.add_parser("classify", help="name what is in photos (ImageNet classes)", description="Label photos with ResNet-18 (ImageNet-1k).")
    cls.add_argument("photos", nargs="+", metavar="PHOTO")
    cls.add_argument("--top", type=int, default=3, help="how many labels per photo (default 3)")
    cls.add_argument("--json", action="store_true", help="print JSON instead of text")

    models = sub.add_parser("models", help="install, import, check or remove model weights", description="Manage model weights.")
    msub = models.add_subparsers(dest="action", metavar="ACTION")
    msub.required = True
    st = msub.add_parser("status", help="what is installed, where, and how big")
    st.add_argument("--json", action="store_true")
    dl = msub.add_parser("download", help="download and verify weights (all models, or the ones named)")
    dl.add_argument("names", nargs="*", metavar="NAME")
    im = msub.add_parser("import", help="install weights from a folder (for machines that never go online)")
    im.add_argument("folder")
    rm = msub.add_parser("remove", help="delete installed weights")
    rm.add_argument("names", nargs="+", metavar="NAME")
    vf = msub.add_parser("verify", help="re-check the sha256 of installed weights")
    vf.add_argument("names", nargs="*", metavar="NAME")

    _add_library(sub)
    return parser


def _add_library(sub: Any) -> None:
    try:
        from .library.cli import add_parser
    except ImportError:
        return
    add_parser(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            return _open_app(args)
        if args.command == "caption":
            return _caption(args)
        if args.command == "classify":
            return _classify(args)
        if args.command == "models":
            return _models(args)
        handler = getattr(args, "handler", None)
        if handler is not None:
            return handler(args)
        parser.print_help()
        return 2
    except Cancelled as exc:
        print(f"loupe: {exc}", file=sys.stderr)
        return exc.exit_code
    except LoupeError as exc:
        print(f"loupe: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("loupe: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _open_app(args: argparse.Namespace) -> int:
    from desktop.__main__ import run

    argv = []
    if args.browser:
        argv.append("--browser")
    if args.port:
        argv += ["--port", str(args.port)]
    run(argv)  # exits the process once the window (or the browser server) is closed
    return 0


def _print_results(results: list[tuple[str, Any]], as_json: bool, render) -> int:
    failures = 0
    payload = []
    for path, result in results:
        if isinstance(result, LoupeError):
            failures += 1
            print(f"loupe: {result}", file=sys.stderr)
            payload.append({"path": path, "error": getattr(result, "reason", str(result))})
        else:
            payload.append({"path": path, **result.to_dict()})
            if not as_json:
                print(render(path, result, len(results) > 1))
    if as_json:
        print(json.dumps(payload, indent=2, ensure_ascii=False))
    return EXIT_PARTIAL if failures else 0


def _caption(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # captioning never downloads
    from .inference import caption_paths

    results = caption_paths(args.photos, prefix=args.prefix, max_new_tokens=args.max_tokens, num_beams=args.beams)
    return _print_results(results, args.json, lambda p, c, many: f"{p}: {c.text}" if many else c.text)


def _classify(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from .inference import classify_paths

    results = classify_paths(args.photos, top=args.top)

    def render(path, labels, many):
        lines = [f"{label.score:6.1%}  {label.name}" for label in labels.top]
        return (f"{path}\n" if many else "") + "\n".join(lines)

    return _print_results(results, args.json, render)


def _models(args: argparse.Namespace) -> int:
    from . import weights

    weights.cleanup_stale()
    if args.action == "status":
        rows = weights.status()
        if args.json:
            print(json.dumps([{"name": r.name, "title": r.title, "installed": r.installed, "path": str(r.path),
                               "bytes": r.size, "revision": r.revision} for r in rows], indent=2))
            return 0
        from .device import describe

        print(f"Weights folder: {weights.paths.weights_dir()}")
        print(describe())
        for r in rows:
            state = f"installed, {r.size / 1e6:,.0f} MB" if r.installed else f"not installed ({r.size / 1e6:,.0f} MB to download)"
            print(f"  {r.name:10} {state:34} {r.title}")
        return 0
    if args.action == "download":
        names = args.names or list(weights.sources())
        for name in names:
            weights.source(name)
        for name in names:
            if weights.is_installed(name):
                print(f"{name}: already installed")
                continue
            _download_with_bar(name)
            print(f"{name}: installed and verified")
        return 0
    if args.action == "import":
        names = weights.import_folder(args.folder)
        for name in names:
            print(f"{name}: imported and verified")
        return 0
    if args.action == "remove":
        for name in args.names:
            print(f"{name}: {'removed' if weights.remove(name) else 'was not installed'}")
        return 0
    if args.action == "verify":
        for name in args.names or [n for n in weights.sources() if weights.is_installed(n)]:
            weights.verify(name)
            print(f"{name}: ok")
        return 0
    return 2


def _download_with_bar(name: str) -> None:
    from tqdm import tqdm

    from . import weights

    src = weights.source(name)
    cancel = threading.Event()
    bar = tqdm(total=src.size, unit="B", unit_scale=True, unit_divisor=1024, desc=name, file=sys.stderr)

    def progress(p: "weights.Progress") -> None:
        bar.n = p.overall_done
        bar.refresh()

    try:
        weights.install(name, progress=progress, cancel=cancel)
    except KeyboardInterrupt:
        cancel.set()
        raise Cancelled("download cancelled; run the same command again to resume") from None
    finally:
        bar.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
