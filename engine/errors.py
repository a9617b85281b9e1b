"""User-facing errors: each becomes one line at the edge (CLI exit code, gr.Error in the UI)."""
from __future__ import annotations


class LoupeError(Exception):
    """Base of every error a person is meant to read. `str(err)` is the whole message."""

    exit_code = 1


class UsageError(LoupeError):
    """The request itself is wrong (bad option value, unknown model name, missing path)."""

    exit_code = 2


class UnreadableImage(LoupeError):
    """A file that is not a photo Loupe can read: empty, truncated, not an image, too big."""

    exit_code = 3

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class WeightsMissing(LoupeError):
    """A model's weights are not installed; the message says how to get them (on the command
    line). `model` names the model when one is meant, so a UI can offer its own way instead."""

    exit_code = 4

    def __init__(self, message: str, model: str = "") -> None:
        self.model = model
        super().__init__(message)


class DownloadError(LoupeError):
    """Weights could not be fetched (network, server, disk). Nothing half-written is left."""

    exit_code = 5


class Unreachable(DownloadError):
    """The download server could not be reached within a few seconds (no network, name not
    resolved, connection refused): the computer is likely offline. `host` names the server."""

    def __init__(self, message: str, host: str = "") -> None:
        self.host = host
        super().__init__(message)


class IntegrityError(DownloadError):
    """Downloaded or imported bytes do not match the pinned sha256 or size."""

    exit_code = 6


class WeightsDamaged(LoupeError):
    """Installed weights no longer match their pins (a file missing, of the wrong size or hash)
    or cannot be loaded. The message names the model, the file and the reason, and what to do.

    Exit code 6, like IntegrityError: the same fault (bytes that are not the pinned ones), found
    on disk instead of during a download. Not a DownloadError: nothing was being fetched.
    `model` names the model when known (a UI offers its repair button)."""

    exit_code = 6

    def __init__(self, message: str, model: str = "") -> None:
        self.model = model
        super().__init__(message)


class Cancelled(LoupeError):
    """The person cancelled a long operation (download, scan)."""

    exit_code = 130


class ModelFailed(LoupeError):
    """The models failed on one photo (found by running its batch one photo at a time); the
    others went on. `reason` names the exception; `path` the photo when known."""

    exit_code = 3

    def __init__(self, reason: str, path: str = "") -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)
