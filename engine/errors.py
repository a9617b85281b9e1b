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
    """A model's weights are not installed; the message says how to get them."""

    exit_code = 4


class DownloadError(LoupeError):
    """Weights could not be fetched (network, server, disk). Nothing half-written is left."""

    exit_code = 5


class IntegrityError(DownloadError):
    """Downloaded or imported bytes do not match the pinned sha256 or size."""

    exit_code = 6


class WeightsDamaged(LoupeError):
    """Installed weights no longer match their pins (a file missing, of the wrong size or hash)
    or cannot be loaded. The message names the model, the file and the reason, and what to do.

    Exit code 6, like IntegrityError: the same fault (bytes that are not the pinned ones), found
    on disk instead of during a download. Not a DownloadError: nothing was being fetched."""

    exit_code = 6


class Cancelled(LoupeError):
    """The person cancelled a long operation (download, scan)."""

    exit_code = 130
