"""The frozen app's entry point (build/loupe.spec): the same code path as the `loupe` command.

Double-clicked (no arguments) it opens the window; from a terminal it answers every `loupe`
command: `Loupe caption PHOTO`, `Loupe classify PHOTO`, `Loupe models status`, `Loupe --browser`.
"""
from __future__ import annotations

import multiprocessing
import os
import sys


def run() -> None:
    # Before anything else: a child started by multiprocessing (spawn/forkserver) re-runs this
    # executable, and must become that child instead of a second Loupe.
    multiprocessing.freeze_support()
    # Started with an empty environment (some launchers, `env -i`), gradio's import of pydub
    # dies on os.environ["PATH"] (KeyError): give it the system default.
    os.environ.setdefault("PATH", os.defpath)
    from loupe.cli import main

    # The window path exits the process itself (desktop.__main__.run) once the window closes.
    sys.exit(main())  # argv None: sys.argv[1:], and the quick exit of a real process


if __name__ == "__main__":
    run()
