"""`python -m desktop` and the frozen app's entry: the window, or `--browser`.

    python -m desktop              open the Loupe window
    python -m desktop --browser    serve only; print the URL (with its one-time token); Ctrl-C stops
    python -m desktop --port N     serve on port N instead of a free one
    python -m desktop --browser --share [ADDRESS]
                                   also share Caption and Classify on this network (desktop.share)
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Callable

from desktop.logs import Timings, process_start

_START = process_start()
log = logging.getLogger("loupe.desktop")


def build_loupe_ui() -> Any:
    """Loupe's Blocks (the default factory). Its module is imported only when this is called (in
    the start-up thread, after the window is up), so a UI module importing gradio at its top costs
    no window time. In the window, the Library tab gets the window's native folder chooser."""
    from engine import long_lived

    with long_lived.imports():
        import desktop.ui as ui
        from desktop.share.panel import add_share_panel
        from desktop.window import folder_dialog

    # None when serving to a browser: the Browse… button stays hidden
    return add_share_panel(ui.build_ui(folder_picker=folder_dialog()))


def _icon() -> str | None:
    """icons/loupe-256.png: the repo's icons/ in development, _internal/icons/ in the bundle."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "icons" / "loupe-256.png"
    return str(path) if path.is_file() else None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="loupe", description="Loupe: offline photo captions and labels.")
    p.add_argument("--browser", action="store_true",
                   help="do not open a window: serve and print the URL to open in a browser")
    p.add_argument("--port", type=int, default=None, help="serve on this port (default: a free one)")
    p.add_argument("--share", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="with --browser: also share the Caption and Classify tabs on this network "
                        "(on ADDRESS when this computer has several) for one hour; prints the link")
    return p


def serve_in_browser(factory: Callable[[], Any], port: int | None, timings: Timings,
                     share: str | None = None) -> int:
    """Serve until Ctrl-C/SIGTERM; print the URL with the token once (never logged). `share`
    (not None): also share on that address ("" = the only one), printing its link and QR code."""
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        from desktop.server import PortUnavailable, serve

        try:
            server = serve(factory, port=port)
        except PortUnavailable as exc:
            log.error("%s", exc)
            print(f"loupe: {exc}", file=sys.stderr if sys.stderr is not None else sys.stdout)
            return 1
        timings.mark("server_up")
        try:
            out = sys.__stdout__ or sys.stdout
            if out is not None:
                print(f"Loupe is running. Open this address in your browser:\n\n  {server.url}\n\n"
                      "Press Ctrl-C to stop.", file=out, flush=True)
            if share is not None and not _start_share(share, out):
                return 1
            while not stop.wait(0.2):
                pass
        finally:
            server.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _start_share(address: str, out: Any) -> bool:
    """Start the share for `--share` on `address`, print its link and QR code; False (said on
    stderr) when it cannot start."""
    from desktop.share import session
    from desktop.share.qr import qr_terminal

    try:
        share = session.start_share(address)
    except session.ShareError as exc:
        print(f"loupe: cannot share: {exc}", file=sys.stderr if sys.stderr is not None else out)
        return False
    if out is not None:
        until = time.strftime("%H:%M", time.localtime(share.ends_at))
        print(f"Sharing Caption and Classify on this network until {until}. The link (give it only "
              f"to whom you mean; plain HTTP, so others on this network could read what is "
              f"sent):\n\n  {share.url}\n\n{qr_terminal(share.url)}", file=out, flush=True)
    return True


def main(argv: list[str] | None = None, factory: Callable[[], Any] | None = None) -> int:
    """Open the window (or serve, with `--browser`) for `factory()`'s Blocks; the exit code.

    `factory` builds the gradio Blocks to serve, called once in the start-up thread; default
    `build_loupe_ui`. Exit codes: 0 closed normally, 1 could not start or serve (the message is in
    the window / on stderr and in the log; also a `--share` address that cannot be used), 2 no
    display (use `--browser`) or `--share` without `--browser`; bad arguments raise
    argparse's SystemExit(2).
    """
    args = _parser().parse_args(argv)
    # torch imports triton when it is installed, and triton crashes the process when Mesa's
    # LLVM (loaded by Qt's GL) is already there. Loupe never compiles kernels: hide it.
    sys.modules.setdefault("triton", None)
    # gradio's pydub import needs PATH; a desktop launcher may start us without one.
    os.environ.setdefault("PATH", os.defpath)
    from desktop.logs import setup_logging

    from desktop.server import gradio_env

    gradio_env()  # before anything can import gradio
    path = setup_logging()
    timings = Timings(_START)
    log.info("Loupe desktop starting (pid %d, %s mode); log: %s", os.getpid(),
             "browser" if args.browser else "window", path)
    factory = factory or build_loupe_ui
    err = sys.stderr if sys.stderr is not None else sys.stdout
    share = None
    if args.share is not None:
        if not args.browser:
            print("loupe: --share goes with --browser; in the window, use “Share on this network”.",
                  file=err)
            return 2
        from desktop.share.session import ShareError, choose_address

        try:  # before anything starts: a wrong address is said at once
            share = choose_address(args.share or None)
        except ShareError as exc:
            print(f"loupe: cannot share: {exc}", file=err)
            return 1
    if args.browser:
        return serve_in_browser(factory, args.port, timings, share=share)
    from desktop.window import NoDisplay, run_window

    try:
        return run_window(factory, port=args.port, timings=timings, icon=_icon())
    except NoDisplay as exc:
        log.error("%s", exc)
        print(exc, file=sys.stderr if sys.stderr is not None else sys.stdout)
        return 2


def run(argv: list[str] | None = None, factory: Callable[[], Any] | None = None) -> None:
    """The process entry (python -m desktop, the frozen app): main(), then a prompt exit."""
    _exit(main(argv, factory))


def _exit(code: int) -> None:
    """Exit promptly once everything of ours is closed.

    Interpreter teardown with gradio and Qt WebEngine loaded takes ~1 s or more (module and Qt
    object finalisation); the server, temp folder and window are already closed by now, so run
    the atexit handlers, flush the log and leave. QtWebEngine's helper processes exit on their own
    when the browser process is gone. A start-up thread still importing gradio (window closed
    during start-up) does not hold the process either.
    """
    import atexit

    t0 = time.perf_counter()
    stragglers = [t for t in threading.enumerate()
                  if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    for t in stragglers:
        t.join(timeout=max(0.0, 1.0 - (time.perf_counter() - t0)))
    if any(t.is_alive() for t in stragglers):
        log.warning("exiting with start-up work still running: %s",
                    [t.name for t in stragglers if t.is_alive()])
    try:
        atexit._run_exitfuncs()
    except Exception:  # pragma: no cover
        log.exception("atexit")
    log.info("exit %d", code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
