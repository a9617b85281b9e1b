"""`loupe`: the command line. Thin over the engine: parse, call, print.

Expected failures are `LoupeError`s: one line on stderr and the error class's exit code;
click's own usage errors are one line too (exit 2). Only a bug shows a traceback.
"""
from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any, Sequence

import click

from engine.errors import Cancelled, LoupeError, UsageError
from engine.models.registry import MODELS, ModelSpec
from engine.results import Labels

from .logged import LoggedGroup
from .options import model_options, pick

EXIT_CODES = ("Exit codes: 0 ok, 1 error, 2 usage, 3 a photo unreadable (or unwritten, in a scan; the others are still done), "
              "4 weights missing, 5 download failed, 6 weights damaged or integrity check failed, 130 cancelled.")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("loupe")
    except Exception:
        return "dev"


class _Loupe(LoggedGroup):
    """The top group; `library` (its options import engine.library, ~0.1 s that `loupe caption`
    and `loupe classify` never use) is added the first time it is asked for or listed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | {"library"})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "library" and name not in self.commands:
            _register_library()
        return super().get_command(ctx, name)


@click.group(cls=_Loupe, invoke_without_command=True, epilog=EXIT_CODES,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="loupe", message="%(prog)s %(version)s")
@click.option("--browser", is_flag=True, help="Serve the app for a web browser instead of opening a window; prints the URL.")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port for the local server (default: a free one).")
@click.option("--share", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
              help="With --browser: also share the Caption and Classify tabs on this network for "
                   "one hour (on ADDRESS when this computer has several); prints the link and a QR code.")
@click.pass_context
def cli(ctx: click.Context, browser: bool, port: int | None, share: str | None) -> None:
    """Offline photo captioning and classification. With no command, opens the Loupe window."""
    if ctx.invoked_subcommand is not None:
        return
    from desktop.__main__ import run  # the window's imports (gradio, Qt) only on this path

    argv = (["--browser"] if browser else []) + (["--port", str(port)] if port else [])
    if share is not None:
        argv += ["--share"] + ([share] if share else [])
    run(argv)  # exits the process once the window (or the browser server) is closed


def _offline() -> None:
    # Captioning never downloads: huggingface_hub must not even try (it reads this at import).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _task_command(spec: ModelSpec) -> click.Command:
    """`loupe caption` / `loupe classify`: one command per task in the registry, its options
    (flags, defaults, limits, help) read from the model's spec."""

    @click.argument("photos", nargs=-1, required=True, metavar="PHOTO...")
    @model_options(spec.task)
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
    def command(photos: tuple[str, ...], as_json: bool, **options: Any) -> int:
        _offline()
        from engine import get_engine

        results = get_engine().run(spec.task, list(photos), **pick(spec.task, options))
        return _print_results(list(photos), results, as_json)

    command.__doc__ = spec.summary
    return cli.command(spec.task)(command)


def _print_results(photos: Sequence[str], results: list[Any], as_json: bool) -> int:
    failures = 0
    payload = []
    for path, result in zip(photos, results):
        if isinstance(result, LoupeError):
            failures += 1
            click.echo(f"loupe: {result}", err=True)
            payload.append({"path": path, "error": getattr(result, "reason", str(result))})
            continue
        payload.append({"path": path, **result.to_dict()})
        if not as_json:
            text = result.to_text()
            if len(photos) > 1:  # name the photo: "path: caption", or the path above the labels
                text = f"{path}\n{text}" if "\n" in text or isinstance(result, Labels) else f"{path}: {text}"
            click.echo(text)
    if as_json:
        from engine.names import json_text

        click.echo(json_text(json.dumps(payload, indent=2, ensure_ascii=False)))
    from engine.logs import note

    note(photos=len(results), failed=failures)
    return 3 if failures else 0


for _spec in MODELS:
    _task_command(_spec)


# ---------------------------------------------------------------------------- models


@cli.group()
def models() -> None:
    """Install, import, check or remove model weights."""
    from engine import weights

    weights.drop_leftovers()


@models.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def status(as_json: bool) -> int:
    """What is installed (verified), damaged or missing, where, and how big."""
    from engine import weights, weights_report

    rows = weights.status()
    if as_json:
        click.echo(json.dumps(weights_report.status_json(rows), indent=2))
    else:
        from engine.device import describe

        click.echo("\n".join(weights_report.status_lines(rows) + describe()))
    return 0


@models.command()
@click.argument("names", nargs=-1, metavar="[NAME]...")
def download(names: tuple[str, ...]) -> int:
    """Download and verify weights (all models, or the ones named); repairs damaged ones."""
    from engine import weights

    chosen = list(names) or list(weights.sources())
    for name in chosen:
        weights.source(name)  # an unknown name fails before anything is fetched
    for name in chosen:
        before = weights.check(name)
        if before.installed:
            click.echo(f"{name}: already installed")
            continue
        _download_with_bar(name)
        click.echo(f"{name}: {'repaired' if before.state == weights.DAMAGED else 'installed'} and verified")
    return 0


@models.command("import")
@click.argument("folder")
def import_(folder: str) -> int:
    """Install weights from a folder (for machines that never go online)."""
    from engine import weights

    for name in weights.import_folder(folder):
        click.echo(f"{name}: imported and verified")
    return 0


@models.command()
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
def remove(names: tuple[str, ...]) -> int:
    """Delete installed weights."""
    from engine import weights

    for name in names:
        click.echo(f"{name}: {'removed' if weights.remove(name) else 'was not installed'}")
    return 0


@models.command()
@click.argument("names", nargs=-1, metavar="[NAME]...")
def verify(names: tuple[str, ...]) -> int:
    """Re-hash the files of every model that has any (or the ones named); exit 6 if one is damaged."""
    from engine import weights_report

    results = weights_report.verify(names)
    if not results:
        click.echo(weights_report.nothing_to_verify())
    for s in results:
        click.echo(weights_report.verify_line(s))
    weights_report.raise_if_bad(results)  # one line, exit 6 (damaged) or 4 (not installed)
    return 0


def _download_with_bar(name: str) -> None:
    from tqdm import tqdm

    from engine import weights

    src = weights.source(name)
    cancel = threading.Event()
    bar = tqdm(total=src.size, unit="B", unit_scale=True, unit_divisor=1000, desc=name, file=sys.stderr)

    def progress(p: "weights.DownloadProgress") -> None:
        bar.n = p.overall_done
        bar.refresh()

    try:
        weights.install(name, progress=progress, cancel=cancel)
    except KeyboardInterrupt:
        cancel.set()
        raise Cancelled("download cancelled; run the same command again to resume") from None
    finally:
        bar.close()


def _register_library() -> None:
    from .library import library

    cli.add_command(library)


# ---------------------------------------------------------------------------- the edge


def main(argv: Sequence[str] | None = None) -> int:
    """Run `loupe` with `argv` (default: sys.argv[1:]); returns the exit code. Each command
    leaves one line in the log file the app also writes (engine.logs); the window logs itself."""
    code = _invoke(list(sys.argv[1:] if argv is None else argv))
    if argv is None:
        _leave_now(code)
    return code


def _leave_now(code: int) -> None:
    """End the `loupe` process as soon as its command is done: output flushed, the atexit
    handlers run (the log file closed, a Ray session ended), then `os._exit`. Python's own
    teardown would then free torch's and transformers' modules one object at a time and run
    the native libraries' destructors: ~0.3 s of a 2.5 s `loupe classify` (bench.startup),
    with nothing left to save. Only when no other thread could still be writing (every one
    left is a daemon: the compute thread, idle); else the process ends as usual. Except when
    interrupted (a second Ctrl-C stops waiting for the model load or pass in flight) while the
    compute thread is still inside torch: then at once, whatever runs, because Python's exit
    would tear the interpreter down around it (SIGABRT, "terminate called without an active
    exception", exit 134 instead of 130) after waiting for the int8 cache's read-ahead thread."""
    import atexit

    from engine import compute_thread

    torch_busy = code == 130 and compute_thread.busy()
    others = any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread())
    if others and not torch_busy:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # `loupe ... | head` read what it wanted
            pass
        except OSError as exc:  # a full disk: the output is lost, which must not exit 0
            code = code or 1
            try:
                sys.stderr.write(f"loupe: the output could not be written ({exc.strerror or exc})\n")
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
    atexit._run_exitfuncs()  # what Python's exit runs first (logging.shutdown, ray.shutdown, ...)
    os._exit(code)


def _preparing(folder: Any) -> None:
    """The wait of a first int8 load, said where the person waits (engine.quantize.building);
    through tqdm, which lifts a scan's progress bar for the line and draws it again below."""
    from tqdm import tqdm

    tqdm.write(f"Preparing {folder.name} for this computer (int8; once, about 20 s)...", file=sys.stderr)


def _invoke(args: list[str]) -> int:
    from engine import quantize
    from engine.names import show_names_on

    show_names_on(sys.stdout)  # a name that is not UTF-8 prints with U+FFFD, never a traceback
    show_names_on(sys.stderr)
    if _preparing not in quantize.building:
        quantize.building.append(_preparing)
    try:
        result = cli.main(args=args, prog_name="loupe", standalone_mode=False)
    except click.exceptions.Exit as exc:  # --help, --version
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("loupe: interrupted", err=True)
        return 130
    except click.ClickException as exc:  # usage: one line, with where to look
        hint = f" (see `{exc.ctx.command_path} --help`)" if getattr(exc, "ctx", None) else ""
        click.echo(f"loupe: {exc.format_message()}{hint}", err=True)
        return exc.exit_code
    except LoupeError as exc:
        click.echo(f"loupe: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("loupe: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: one line here, the traceback in the log file
        from engine.logs import report_unexpected

        return report_unexpected(exc)
    return result if isinstance(result, int) else 0


__all__ = ["cli", "main", "UsageError"]
