"""A local stand-in for huggingface.co and download.pytorch.org, for tests.

Serves, on 127.0.0.1, enough of the Hub's HTTP surface for the real huggingface_hub client
(`hf_hub_download`, `snapshot_download`, `http_get`): no mocking of the client.

    hub = FakeHub()
    url = hub.start()                                   # "http://127.0.0.1:PORT"
    hub.add_repo("Salesforce/blip-image-captioning-base", REVISION, blip_folder)
    hub.add_files("/models", resnet_folder)             # GET {url}/models/{name}
    hub.faults["pytorch_model.bin"] = "drop"            # see FAULTS
    ...
    hub.stop()

Routes (anything else: 404):
  HEAD/GET /{repo}/resolve/{revision}/{path}   revision: the pinned sha or "main"
      X-Repo-Commit, ETag (sha256 for LFS-like files, git blob sha1 otherwise, quoted),
      X-Linked-Etag/X-Linked-Size for LFS-like files, Content-Length, Accept-Ranges.
      Missing file: 404 + X-Error-Code: EntryNotFound; unknown repo: RepoNotFound;
      unknown revision: RevisionNotFound.
  GET /api/models/{repo}[/revision/{rev}]      model info (sha, siblings)
  GET /api/models/{repo}/tree/{rev}[/path]     file list (size, oid, lfs.oid = sha256)
  HEAD/GET {prefix}/{name}                     plain files added with add_files
  `Range: bytes=N-` / `bytes=N-M` -> 206 with Content-Range (416 past the end).

Faults, keyed by file name (the path in the repo, or its base name), settable at any time,
apply to GET bodies (HEAD still answers the true size and etag):
  "drop"      headers with the full Content-Length, about half the body, then a clean close
              (FIN). Fires once by default, so the client's own retry/resume succeeds.
  "reset"     like drop but the connection is reset (RST). Fires once by default.
  "tamper"    right length, one byte (the middle one) flipped; every time while set.
  "no-range"  ignore Range: 200 with the full body.
  "500"       answer 500.
  "404"       answer 404 EntryNotFound.
  "hang"      read the request and never answer until stop()/gone() (which do not block).
  "slow"      the body in `slow_chunk`-byte pieces with `slow_delay` s between them.
  "stall"     headers with the full Content-Length, `stall_after` bytes of the body (default:
              half), then nothing more, the connection held open, until stop()/gone()/
              release_stalls(). Fires once by default (a resume then succeeds).
`fault_times[name] = n` limits a fault to n firings (then it is removed); default 1 for drop
and reset, unlimited for the others. `head_faults[name]` takes "500", "404" or "hang" for the
HEAD (metadata) request. `fired` counts firings per name.

`gone()` closes the listening socket and every open connection (connection refused from then
on); `back()` listens again on the same port. `stop()` is final.
"""
from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

FAULTS = ("drop", "reset", "tamper", "no-range", "500", "404", "hang", "slow", "stall")
HEAD_FAULTS = ("500", "404", "hang")
LFS_SUFFIXES = (".bin", ".pth", ".pt", ".safetensors", ".ckpt", ".h5", ".msgpack", ".onnx", ".gguf")
_ONCE = ("drop", "reset", "stall")


@dataclass(frozen=True)
class _Blob:
    name: str
    data: bytes
    sha256: str
    git_sha1: str
    lfs: bool

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_sha1


def _blob(name: str, data: bytes) -> _Blob:
    git = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    lfs = name.endswith(LFS_SUFFIXES) or len(data) > 10 * 1024 * 1024
    return _Blob(name, data, hashlib.sha256(data).hexdigest(), git, lfs)


def _read_folder(folder: Path, recursive: bool) -> dict[str, _Blob]:
    folder = Path(folder)
    files = folder.rglob("*") if recursive else folder.iterdir()
    out = {}
    for p in sorted(files):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and not any(part.startswith(".") for part in rel.split("/")):
            out[rel] = _blob(rel, p.read_bytes())
    return out


@dataclass
class _Repo:
    repo_id: str
    revision: str
    files: dict[str, _Blob]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


class FakeHub:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.repos: dict[str, _Repo] = {}
        self.plain: dict[str, _Blob] = {}  # url path -> blob
        self.faults: dict[str, str] = {}
        self.head_faults: dict[str, str] = {}
        self.fault_times: dict[str, int] = {}
        self.fired: dict[str, int] = {}
        self.slow_chunk = 256 * 1024
        self.slow_delay = 0.02
        self.stall_after: int | None = None  # bytes sent before a "stall"; None: half the body
        self.requests: list[tuple[str, str, dict]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._release = threading.Event()  # set by stop()/gone(): wakes "hang" handlers
        self._stopped = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("FakeHub not started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        if self._server is not None:
            return self.url
        self._stopped = False
        self._release = threading.Event()
        server = _Server((self.host, self.port), _make_handler(self))
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fakehub-{self.port}", daemon=True)
        self._thread.start()
        return self.url

    def back(self) -> str:
        """Listen again on the same port after gone()."""
        return self.start()

    def gone(self) -> None:
        """Stop answering: close the listener and every open connection (port kept for back())."""
        server, self._server = self._server, None
        self._release.set()
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                conn.close()
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def stop(self) -> None:
        self._stopped = True
        self.gone()

    def __enter__(self) -> "FakeHub":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ content

    def add_repo(self, repo_id: str, revision: str, folder: Path) -> None:
        """Serve `folder` (recursively) as model repo `repo_id` at commit `revision` (40 hex)."""
        self.repos[repo_id] = _Repo(repo_id, revision, _read_folder(Path(folder), recursive=True))

    def add_files(self, url_prefix: str, folder: Path) -> None:
        """Serve each file of `folder` at `{url_prefix}/{name}`."""
        prefix = "/" + url_prefix.strip("/")
        for name, blob in _read_folder(Path(folder), recursive=False).items():
            self.plain[f"{prefix}/{name}"] = blob

    def release_stalls(self) -> None:
        """End every "hang" and "stall" now (their connections close); the hub keeps serving."""
        self._release.set()
        self._release = threading.Event()

    def clear_faults(self) -> None:
        self.faults.clear()
        self.head_faults.clear()
        self.fault_times.clear()

    def paths_requested(self, method: str | None = None) -> list[str]:
        return [p for m, p, _h in list(self.requests) if method is None or m == method]

    # ------------------------------------------------------------------ internals

    def _take_fault(self, table: dict[str, str], name: str) -> str | None:
        """The fault set for `name` (or its base name), counted as fired."""
        with self._lock:
            key = name if name in table else name.rsplit("/", 1)[-1]
            fault = table.get(key)
            if fault is None:
                return None
            limit = self.fault_times.get(key, 1 if fault in _ONCE else None)
            self.fired[key] = self.fired.get(key, 0) + 1
            if limit is not None:
                if limit <= 1:
                    table.pop(key, None)
                    self.fault_times.pop(key, None)
                else:
                    self.fault_times[key] = limit - 1
            return fault


def _make_handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "FakeHub/1.0"
        timeout = 60  # an idle keep-alive connection is dropped after this

        def setup(self):
            super().setup()
            with hub._lock:
                hub._conns.add(self.connection)

        def finish(self):
            try:
                super().finish()
            except OSError:
                pass
            with hub._lock:
                hub._conns.discard(self.connection)

        def log_message(self, *args):  # quiet
            pass

        # -------------------------------------------------------------- dispatch

        def do_HEAD(self):
            self._handle(head=True)

        def do_GET(self):
            self._handle(head=False)

        def do_POST(self):
            self._log()
            self._error(404, "NotFound", "no such route")

        def _log(self):
            hub.requests.append((self.command, self.path, dict(self.headers.items())))

        def _handle(self, head: bool):
            self._log()
            try:
                path = unquote(urlsplit(self.path).path)
                if path.startswith("/api/models/"):
                    return self._api(path[len("/api/models/"):], head)
                if path in hub.plain:
                    return self._serve(hub.plain[path], head, {})
                if "/resolve/" in path:
                    return self._resolve(path, head)
                self._error(404, "NotFound", "no such route")
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                self.close_connection = True

        def _resolve(self, path: str, head: bool):
            repo_part, _, rest = path.lstrip("/").partition("/resolve/")
            revision, _, filename = rest.partition("/")
            repo = hub.repos.get(repo_part)
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_part} not found")
            if revision not in (repo.revision, "main"):
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            extra = {"X-Repo-Commit": repo.revision}
            blob = repo.files.get(filename)
            if blob is None:
                return self._error(404, "EntryNotFound", f"{filename} does not exist", extra)
            if blob.lfs:
                extra["X-Linked-Etag"] = f'"{blob.sha256}"'
                extra["X-Linked-Size"] = str(len(blob.data))
            self._serve(blob, head, extra)

        # -------------------------------------------------------------- api

        def _api(self, rest: str, head: bool):
            repo = None
            for repo_id in sorted(hub.repos, key=len, reverse=True):
                if rest == repo_id or rest.startswith(repo_id + "/"):
                    repo = hub.repos[repo_id]
                    rest = rest[len(repo_id):].lstrip("/")
                    break
            if repo is None:
                return self._error(404, "RepoNotFound", "Repository not found")
            kind, _, tail = rest.partition("/")
            revision, _, sub = tail.partition("/")
            if kind in ("revision", "tree") and revision not in (repo.revision, "main"):
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            if kind in ("", "revision"):
                body = {
                    "id": repo.repo_id, "modelId": repo.repo_id, "sha": repo.revision, "private": False,
                    "siblings": [{"rfilename": n} for n in repo.files],
                }
            elif kind == "tree":
                sub = sub.strip("/")
                recursive = "recursive=true" in (urlsplit(self.path).query or "").lower()
                body = []
                dirs = set()
                for name, blob in repo.files.items():
                    if sub and not name.startswith(sub + "/"):
                        continue
                    rel = name[len(sub) + 1:] if sub else name
                    if "/" in rel and not recursive:
                        dirs.add(rel.split("/", 1)[0])
                        continue
                    entry = {"type": "file", "oid": blob.git_sha1, "size": len(blob.data), "path": name}
                    if blob.lfs:
                        entry["lfs"] = {"oid": blob.sha256, "size": len(blob.data), "pointerSize": 134}
                    body.append(entry)
                for d in sorted(dirs):
                    body.append({"type": "directory", "oid": "0" * 40, "size": 0,
                                 "path": f"{sub}/{d}" if sub else d})
            else:
                return self._error(404, "NotFound", "no such route")
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Repo-Commit", repo.revision)
            self.end_headers()
            if not head:
                self.wfile.write(data)

        # -------------------------------------------------------------- files

        def _serve(self, blob: _Blob, head: bool, extra: dict):
            if head:
                fault = hub._take_fault(hub.head_faults, blob.name)
            else:
                fault = hub._take_fault(hub.faults, blob.name)
            if fault == "hang":
                return self._hang()
            if fault == "500":
                return self._error(500, None, "Internal Server Error (injected)", extra)
            if fault == "404":
                return self._error(404, "EntryNotFound", f"{blob.name} does not exist", extra)

            data = blob.data
            total = len(data)
            if fault == "tamper":
                tampered = bytearray(data)
                tampered[total // 2] ^= 0xFF
                data = bytes(tampered)
            start, end = 0, total  # end exclusive
            status = 200
            rng = self.headers.get("Range")
            if rng and fault != "no-range":
                parsed = _parse_range(rng, total)
                if parsed is None:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{total}")
                    self.send_header("Content-Length", "0")
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.end_headers()
                    return
                start, end = parsed
                status = 206

            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(end - start))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{blob.etag}"')
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{total}")
            for k, v in extra.items():
                self.send_header(k, v)
            if fault in ("drop", "reset", "stall"):
                self.send_header("Connection", "close")
            self.end_headers()
            if head:
                return

            body = memoryview(data)[start:end]
            if fault in ("drop", "reset"):
                half = max(1, len(body) // 2) if len(body) > 1 else 0
                self._write(body[:half], 1 << 20)
                self.wfile.flush()
                self.close_connection = True
                if fault == "reset":
                    # SO_LINGER 0: close() sends RST instead of FIN.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    self.connection.close()
                else:
                    try:
                        self.connection.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                return
            if fault == "stall":
                release = hub._release
                cut = len(body) // 2 if hub.stall_after is None else min(hub.stall_after, len(body))
                self._write(body[:cut], 1 << 20)
                self.wfile.flush()
                release.wait()
                self.close_connection = True
                return
            if fault == "slow":
                self._write(body, max(1, hub.slow_chunk), delay=hub.slow_delay)
            else:
                self._write(body, 1 << 20)

        def _write(self, body: memoryview, chunk: int, delay: float = 0.0):
            for i in range(0, len(body), chunk):
                if delay and i:
                    if hub._release.wait(delay):  # stopping: give up mid-body
                        self.close_connection = True
                        return
                self.wfile.write(body[i:i + chunk])

        def _hang(self):
            release = hub._release
            release.wait()
            self.close_connection = True

        def _error(self, code: int, error_code: str | None, message: str, extra: dict | None = None):
            data = json.dumps({"error": message}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if error_code:
                self.send_header("X-Error-Code", error_code)
            self.send_header("X-Error-Message", message)
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

    return Handler


def _parse_range(value: str, total: int) -> tuple[int, int] | None:
    """`bytes=N-`, `bytes=N-M` or `bytes=-K` -> (start, end exclusive); None if unsatisfiable."""
    try:
        unit, _, spec = value.partition("=")
        if unit.strip().lower() != "bytes" or "," in spec:
            return None
        first, _, last = spec.strip().partition("-")
        if first == "":
            k = int(last)
            return (max(0, total - k), total) if k > 0 and total else None
        start = int(first)
        end = min(int(last) + 1, total) if last else total
        if start >= total or end <= start:
            return None
        return start, end
    except ValueError:
        return None
