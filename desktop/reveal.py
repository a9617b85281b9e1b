"""Show a photo in the system's file manager ("Show in folder")."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from engine.errors import LoupeError


OPENER_WAIT_S = 1.5  # how long to wait for the opener to say it could not open anything


class RevealFailed(LoupeError):
    """The file manager could not be opened; the message says why in plain words."""


def show_in_folder(path: str | Path) -> str:
    """Open the file manager at `path` and return one sentence saying what happened.

    macOS: `open -R` (Finder selects the file); Windows: `explorer /select,` (selects it);
    elsewhere: `xdg-open` on the folder (the freedesktop way; no standard way to select a file).
    The file manager is started and not waited for. Raises RevealFailed when the file is gone or
    no file manager can be started."""
    photo = Path(path)
    if not photo.exists():
        raise RevealFailed(f"{photo.name} is no longer at {photo.parent}; scan the folder again to find it.")
    if sys.platform == "darwin":
        command = ["open", "-R", str(photo)]
    elif sys.platform == "win32":
        command = ["explorer", f"/select,{photo}"]
    else:
        opener = shutil.which("xdg-open")
        if opener is None:
            raise RevealFailed(f"No file manager found (xdg-open is missing); the photo is in {photo.parent}.")
        command = [opener, str(photo.parent)]
    try:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        raise RevealFailed(f"Could not open the file manager ({exc.strerror or exc}); "
                           f"the photo is in {photo.parent}.") from None
    # xdg-open finds no file manager quickly and says so only by its exit status (3: no tool,
    # 4: the action failed); one that opens keeps running or exits 0.
    try:
        code = proc.wait(timeout=OPENER_WAIT_S)
    except subprocess.TimeoutExpired:
        code = 0
    if code:
        raise RevealFailed(f"No file manager opened (this system has none set up); the photo is in {photo.parent}.")
    where = "with the photo selected" if sys.platform in ("darwin", "win32") else ""
    return f"Opened {photo.parent.name or photo.parent} in the file manager {where}".rstrip() + "."
