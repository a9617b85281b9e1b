"""Model weights: where they come from, and installing, verifying, importing and removing them.

The name -> source table comes from the model registry (`engine.models.registry`), each
source pinned to a revision and every file to its size and sha256 (the types: models/spec.py).
Downloads go to a per-model staging folder under the weights folder, are checked against the
pins, and only then is the folder renamed into place: the final path never holds a half or
unverified file. A retry resumes from what is staged. Each model folder's manifest
(`.loupe-weights.json`) carries a verified stamp per file (size, mtime_ns, sha256): a start
costs a few stat calls, not a hash of 1 GB; `verify()` re-hashes everything. A model is
"installed" only when every pinned file is there and verified; loading a damaged one is refused.

One job per module (each imports only those above it in this list):
    table.py     the registry's sources with the LOUPE_SOURCES overlay (a mirror, the tests' hub)
    stamps.py    status: check / verify / model_dir, the verified stamps, hashing with Cancel
    transfer.py  one pinned file over HTTP: Range resumes, timeouts, Cancel, offline in seconds
    install.py   install (staging -> verify -> rename into place), repair, remove
    imports.py   import from a folder (offline installs); drop what killed runs left behind
    guard.py     a load failure -> one LoupeError line
A new source kind (another hub, a file share) is a branch of `Source.url_for` (models/spec.py)
and, if it speaks other than HTTP GET with Range, a transfer of its own beside transfer.py.
"""
from __future__ import annotations

from ..files import sha256_file
from ..models.spec import HF_ENDPOINT, Source, WeightFile
from .guard import load_guard
from .imports import IMPORT_PREFIX, drop_leftovers, import_folder
from .install import _commit, install, remove
from .stamps import (
    DAMAGED, INSTALLED, MANIFEST, NOT_INSTALLED, PARTIAL, POLL_S, FileProblem, Status, check, damaged_message,
    disk_usage, is_installed, model_dir, model_path, status, verify,
)
from .table import source, sources
from .transfer import CONNECT_TIMEOUT_S, CONNECTING, DOWNLOADING, STALL_TIMEOUT_S, VERIFYING, DownloadProgress, ProgressFn

__all__ = [
    "HF_ENDPOINT", "Source", "WeightFile", "sha256_file", "load_guard", "IMPORT_PREFIX", "drop_leftovers",
    "import_folder", "install", "remove", "_commit", "DAMAGED", "INSTALLED", "MANIFEST", "NOT_INSTALLED", "PARTIAL",
    "POLL_S", "FileProblem", "Status", "check", "damaged_message", "disk_usage", "is_installed", "model_dir",
    "model_path", "status", "verify", "source", "sources", "CONNECT_TIMEOUT_S", "CONNECTING", "DOWNLOADING",
    "STALL_TIMEOUT_S", "VERIFYING", "DownloadProgress", "ProgressFn",
]
