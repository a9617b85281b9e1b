"""The same scan on a Ray cluster: `library.scan(folder, ray_address="local" | ADDRESS)`.

Only the compute stage changes (`RayCompute` for compute.LocalCompute); the driver (this
process) runs the scan's other stages, which touch the index or the person's files:

    driver   plan (walk, identify, decide), as a local scan
    CPU task decode + preprocess each photo to be done through `Engine.prepare` (the same
             tensor as a local scan; the models' preprocessing only, no weights loaded),
             one task per block of about a batch of photos
    actors   a pool of model actors, one loaded Engine each (GPUs where the cluster has
             them, the registry's precision on each node), through the engine's one batch
             loop (`Engine.stream`) a batch at a time
    driver   results stream back, a batch's worth at a time, into the write and record
             stages: sidecars / embeds / renames and one index transaction per batch

So photos live where every node can read them, and only the driver writes the person's files
and the index: atomic writes, resume and undo are the local scan's. Each worker gets its
weights from the same pinned table (`weights.install`, which verifies before anything is used;
a shared Loupe home or `weights_dir` means nothing is fetched). Stop / Ctrl-C stops feeding and
ends the Ray job; results already back are written and recorded, the rest is done next time.

Ray is an optional extra (`pip install 'loupe[ray]'`); nothing here imports it at module load.
"""
from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import socket
import sys
import tempfile
import threading
import time
import warnings
from typing import Any, Callable, Iterator, Mapping

from ..batching import Streak
from ..errors import LoupeError, ModelFailed, UnreadableImage, UsageError
from ..files import os_reason
from ..models.registry import MODELS, TASKS
from .options import Options
from .records import Decision

#: The driver's settings that reach the workers: Loupe's home and weights table, the
#: precision/device overrides, the hub's endpoint and offline mode. (Paths only this machine
#: has, such as its PYTHONPATH, stay here: a local cluster's workers inherit them anyway.)
WORKER_ENV_PREFIXES = ("LOUPE_", "HF_")
#: A local cluster: the size this machine affords next to the driver (memory: Ray's object
#: store holds about a batch or two of prepared photos per CPU, ~2.3 MB each at BLIP's size).
LOCAL_CPUS = 2
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024
#: What a decode worker holds: torch, torchvision and transformers imported, the models'
#: preprocessing (no weights: `Engine.prepare`) and a photo decoded at draft size. Measured on a
#: local cluster after a 12 MP JPEG: RSS 844 MB, of which 640 MB proportional (PSS: the
#: libraries' pages are shared with the node's other Ray workers) and 466 MB its own.
DECODE_MEMORY_BYTES = 700 * 1024 * 1024
#: How long `reach` waits for a cluster's port to answer; RAY_CLIENT_PORT: a ray:// address's default.
CONNECT_TIMEOUT_S = 5.0
RAY_CLIENT_PORT = 10001
GCS_PORT = 6379  # a Ray head's default address port (`ray start --head`)
#: The environment `ray.init` starts under (see `_quiet_init`).
QUIET_ENV = {"RAY_BACKEND_LOG_LEVEL": "fatal", "RAY_enable_output_error_log_if_still_retry": "0"}
#: After Stop, how long the driver waits for Ray Data's execution to end before leaving it.
STOP_WAIT_S = 10.0
INSTALL_HINT = "Ray is not installed: pip install 'loupe[ray]'"


class RayMissing(UsageError):
    """`--ray` was asked for without the optional Ray extra."""


def require_ray() -> Any:
    """The `ray` module, or RayMissing saying how to install it (one line).

    Ray's auto-connect is turned off: Loupe always connects itself (`connect`), and with it on,
    a Ray Data thread still running after a stopped scan's `ray.shutdown()` would start a new
    local cluster from that thread (with Ray's default logging, on the person's terminal)."""
    os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")  # read when ray is first imported
    try:
        import ray
        import ray.data  # noqa: F401  (the `data` extra: pandas, pyarrow)
    except ImportError:
        raise RayMissing(INSTALL_HINT) from None
    hook = getattr(getattr(ray, "_private", None), "auto_init_hook", None)
    if hook is not None and hasattr(hook, "enable_auto_connect"):  # imported before: set it there too
        hook.enable_auto_connect = False
    return ray


def available() -> bool:
    """Whether Ray (with Ray Data) can be imported here; the UI offers the option only then."""
    try:
        require_ray()
    except RayMissing:
        return False
    return True


# ---------------------------------------------------------------------- worker side
_worker: tuple[tuple, Any] | None = None
_worker_lock = threading.Lock()


def ensure_weights(name: str, wait_s: float = 600.0) -> None:
    """On a worker: `name`'s weights installed and verified in this node's weights folder.

    Installed ones are checked (size and time against their verified stamps, as every start
    does); missing or damaged ones are fetched and verified from the pinned table. When another
    worker of a node sharing the folder is installing them, wait for it (up to `wait_s`)."""
    from .. import weights
    from ..errors import DownloadError

    deadline = time.monotonic() + wait_s
    while True:
        try:
            weights.model_dir(name)
            return
        except LoupeError:
            pass
        try:
            weights.install(name)
            return
        except DownloadError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)  # another process holds the install lock: its result is ours


def worker_engine() -> Any:
    """This worker process's Engine, with its weights ensured; one per process and settings."""
    global _worker
    from ..inference import Engine

    key = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(WORKER_ENV_PREFIXES)))
    with _worker_lock:
        if _worker is None or _worker[0] != key:
            for spec in MODELS:
                ensure_weights(spec.name)
            _worker = (key, Engine())
        return _worker[1]


def decode_row(row: dict[str, Any], *, models: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """CPU task: one photo -> each needed model's prepared input (pickled), or why it cannot be read."""
    engine = worker_engine()
    try:
        inputs = {task: engine.prepare(task, row["path"], models[task]) for task in row["tasks"]}
    except UnreadableImage as exc:
        return {"id": row["id"], "inputs": b"", "error": exc.reason, "stage": "read"}
    return {"id": row["id"], "inputs": pickle.dumps(inputs, protocol=5), "error": "", "stage": ""}


class ModelActor:
    """One loaded Engine; a batch of prepared photos in, {task: result} per photo out, through
    the engine's batch loop (a photo the models choke on gets its reason instead)."""

    def __init__(self, models: Mapping[str, Mapping[str, Any]], threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.models = {task: dict(models[task]) for task in TASKS}
        self.engine = worker_engine()
        for task in TASKS:
            self.engine.model(task)  # load now: a pool member is ready when it takes work

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        ids, blobs = list(batch["id"]), list(batch["inputs"])
        errors, stages = [str(e) for e in batch["error"]], [str(s) for s in batch["stage"]]
        ok = [i for i, e in enumerate(errors) if not e]
        started = time.perf_counter()
        results: list[bytes] = [b""] * len(ids)
        items = ((i, pickle.loads(blobs[i])) for i in ok)
        for i, out in self.engine.stream(items, self.models, batch_size=max(1, len(ok))):
            if isinstance(out, ModelFailed):
                errors[i], stages[i] = out.reason, "models"
            else:
                results[i] = pickle.dumps(out, protocol=5)
        seconds = (time.perf_counter() - started) / max(1, len(ok))
        return {"id": ids, "result": results, "error": errors, "stage": stages,
                "seconds": [seconds if i in ok else 0.0 for i in range(len(ids))]}


def probe_model_ids() -> dict[str, str]:
    """Task on a node like the actors' ({task: name@pin, precision}): the scan's settings key."""
    from ..inference import Engine

    return Engine().model_ids()


# ---------------------------------------------------------------------- driver side
class Cluster:
    """A connection to Ray and the shape of the model pool on it."""

    def __init__(self, ray: Any, actors: int | None = None, actor_cpus: int | None = None) -> None:
        self.ray = ray
        res = ray.cluster_resources()
        self.cpus = int(res.get("CPU", 1))
        self.gpus = int(res.get("GPU", 0))
        if self.gpus:
            # one model per GPU; the CPUs are left to decoding
            self.actor_gpus, self.actor_cpus = 1, actor_cpus or 1
            self.actors = actors or self.gpus
        else:
            # half the CPUs to the models, in actors of a quarter of them; the rest decode
            self.actor_gpus, self.actor_cpus = 0, actor_cpus or max(1, self.cpus // 4)
            self.actors = actors or max(1, (self.cpus // 2) // self.actor_cpus)
        if self.actors * self.actor_cpus >= self.cpus and not self.gpus:
            raise UsageError(f"The Ray cluster has {self.cpus} CPUs: {self.actors} model actors of "
                             f"{self.actor_cpus} would leave none to read photos.")
        env = {k: v for k, v in os.environ.items() if k.startswith(WORKER_ENV_PREFIXES)}
        self.runtime_env = {"env_vars": env}

    def model_ids(self) -> dict[str, str]:
        fn = self.ray.remote(num_cpus=0, num_gpus=self.actor_gpus, runtime_env=self.runtime_env)(probe_model_ids)
        return {str(k): str(v) for k, v in self.ray.get(fn.remote()).items()}

    def results(self, photos: list[tuple[str, tuple[str, ...]]], options: Options) -> "Results":
        """(path, tasks) per photo -> rows {id, result, error, stage, seconds} as the actors
        finish them, in any order; `id` is the photo's place in `photos`."""
        import ray.data

        models = {task: dict(options.models[task]) for task in TASKS}
        ds = ray.data.from_items([{"id": i, "path": p, "tasks": list(tasks)} for i, (p, tasks) in enumerate(photos)],
                                 override_num_blocks=max(1, -(-len(photos) // options.batch_size)))
        # The memory a decode worker holds also keeps decoding in tasks of its own: with
        # resources equal to the actors', Ray Data would fuse it into them, and they would
        # decode photo by photo between batches while the other CPUs idle.
        ds = ds.map(decode_row, fn_kwargs={"models": models}, num_cpus=1, memory=DECODE_MEMORY_BYTES,
                    runtime_env=self.runtime_env)
        ds = ds.map_batches(
            ModelActor, fn_constructor_kwargs={"models": models, "threads": self.actor_cpus},
            batch_size=options.batch_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self.actors),
            num_cpus=self.actor_cpus, num_gpus=self.actor_gpus, runtime_env=self.runtime_env,
        )
        return Results(ds)


class Results:
    """A Ray Data execution's rows, and a way to end it from another thread.

    `rows` blocks until the next row; a generator cannot be closed while another thread is
    inside it, so Stop ends the execution itself (`stop`): its tasks and model actors end and
    `rows` runs out. Ray Data 2.60 hands its executor to the iterator only through
    `DataIterator._to_ref_bundle_iterator`, so that is where it is picked up (the `ray`
    extra pins 2.60.0); without it, `stop` waits for the next row instead."""

    def __init__(self, ds: Any) -> None:
        self._executor: Any = None
        self._stopped = False
        self._lock = threading.Lock()
        it = ds.iterator()
        make = getattr(it, "_to_ref_bundle_iterator", None)
        if make is not None:
            def capture(*args: Any, **kwargs: Any) -> Any:
                bundles, stats, executor = make(*args, **kwargs)
                with self._lock:
                    self._executor, stopped = executor, self._stopped
                if stopped:  # Stop came while the execution was starting
                    executor.shutdown(force=True)
                return bundles, stats, executor

            it._to_ref_bundle_iterator = capture
        self.rows: Iterator[dict[str, Any]] = iter(it.iter_rows())

    def stop(self) -> None:
        """End the execution (idempotent; from any thread, also before it has started): no
        more rows come."""
        with self._lock:
            self._stopped, executor = True, self._executor
        if executor is not None:
            executor.shutdown(force=True)


def reach(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """UsageError "Cannot reach the Ray cluster at ADDRESS: reason" unless something accepts a
    connection at the host and port of `address` ("head:6379", "ray://head[:10001]") within
    `timeout_s`; "local", "auto" and addresses without a port are left to Ray.

    Why a probe of our own: for a GCS address Ray 2.60 retries 20 times, each try waiting
    RAY_gcs_rpc_server_connect_timeout_s (5 s) and then RAY_py_gcs_connect_timeout_s (30 s) for
    the cluster id: ~14 minutes. Those knobs (and RAY_gcs_server_port_wait_time_s, the number
    of tries) are read from this process's environment, which a local cluster started later
    from the same process inherits, where a 1-try GCS wait breaks its own start; and a ray://
    address has no knob at all in `ray.init` (3 client tries of growing length, ~30 s)."""
    if address in ("local", "auto"):
        return
    scheme, _, rest = address.rpartition("://")
    host, _, port = rest.rpartition(":")
    if not port.isdigit():
        if scheme != "ray":
            return
        host, port = rest, str(RAY_CLIENT_PORT)
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as conn:
            if _speaks_grpc(conn, timeout_s):
                return
        reason = (f"something answers on port {port} of {host}, but not Ray (a Ray head listens on "
                  f"HOST:{GCS_PORT}, or ray://HOST:{RAY_CLIENT_PORT})")
    except socket.gaierror:
        reason = f"no computer named {host} was found"
    except (socket.timeout, TimeoutError):
        reason = f"no answer from {host} within {timeout_s:g} s"
    except ConnectionRefusedError:
        reason = f"nothing accepts connections on port {port} of {host}"
    except OSError as exc:
        reason = os_reason(exc)
    raise UsageError(f"Cannot reach the Ray cluster at {address}: {reason}.")


def _speaks_grpc(conn: socket.socket, timeout_s: float) -> bool:
    """Whether the server on `conn` speaks HTTP/2, as every Ray endpoint does (gRPC): after the
    client's connection preface an HTTP/2 server's first frame is SETTINGS (type 4). A web
    server, SSH or a dashboard answers otherwise or not at all, and Ray would retry it for
    ~14 minutes."""
    conn.settimeout(timeout_s)
    try:
        conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        head = b""
        while len(head) < 9:
            chunk = conn.recv(9 - len(head))
            if not chunk:
                return False
            head += chunk
    except OSError:
        return False
    return head[3] == 0x04


@contextlib.contextmanager
def connect(address: str, num_cpus: int = LOCAL_CPUS,
            object_store_memory: int = LOCAL_OBJECT_STORE_BYTES) -> Iterator[Any]:
    """Ray, connected: reuses a connection this process already has; otherwise `address`
    "local" starts a local cluster of `num_cpus` (ended on exit), anything else ("auto",
    "ray://head:10001", "head:6379") joins that cluster (left on exit, which ends this job's
    tasks and actors). Raises RayMissing without Ray, UsageError when it cannot connect
    (within CONNECT_TIMEOUT_S when the address names a port).

    While connected, Ray's own notices stay off the scan's stderr (they are in Ray's log
    files): its Python loggers and warnings, and its C++ core's log lines in this process."""
    ray = require_ray()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"ray(\.|$)")
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the scan's own progress is the one shown
        if ray.is_initialized():
            _quiet(ray)
            yield ray
            return
        reach(address)
        kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False,
                                  "include_dashboard": False}
        try:
            with _quiet_init():
                if address == "local":
                    # address="local": a new cluster of our own even when this machine already
                    # runs one (`ray start --head`), which ray.init() would join instead, and
                    # refuse: "num_cpus and num_gpus must not be provided"
                    ray.init(address="local", num_cpus=num_cpus, object_store_memory=object_store_memory, **kwargs)
                else:
                    ray.init(address=address, **kwargs)
        except Exception as exc:  # Ray raises ConnectionError, ValueError, RuntimeError...
            raise UsageError(f"Cannot reach the Ray cluster at {address}: {exc}".splitlines()[0]) from None
        _quiet(ray)
        try:
            yield ray
        finally:
            ray.shutdown()


def _quiet(ray: Any) -> None:
    """Ray's and Ray Data's Python loggers: errors only (`ray.init` sets "ray"'s level again)."""
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def _quiet_init() -> Iterator[None]:
    """Around `ray.init`: QUIET_ENV set while it starts this process's Ray core (and a local
    cluster's processes), so their C++ lines reach stderr only for fatal errors; and stderr
    (fd 2, which the C++ core writes to directly) set aside, since the core announces that
    very setting on it. What was set aside goes to Loupe's log file; the environment is put
    back afterwards."""
    saved = {k: os.environ.get(k) for k in QUIET_ENV}
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    sys.stderr.flush()
    stderr = os.dup(2)
    try:
        with tempfile.TemporaryFile() as aside:
            os.dup2(aside.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(stderr, 2)
                aside.seek(0)
                said = aside.read().decode(errors="replace").strip()
                if said:
                    logging.getLogger(__name__).info("Ray's start said: %s", said)
    finally:
        os.close(stderr)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _loupe_error(exc: BaseException) -> LoupeError | None:
    """The LoupeError a worker raised, out of Ray's wrappers (RayTaskError, its causes)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, LoupeError):
            return exc
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return None


class RayCompute:
    """The compute stage on a Ray cluster (the same contract as compute.LocalCompute):
    decisions "todo" in, (decision, {task: result} | ModelFailed | UnreadableImage) back, a
    batch's worth at a time, in the order the cluster finishes them. On Stop the results
    already back are handed on (written and kept) and the Ray job is ended."""

    def __init__(self, cluster: Cluster, options: Options, cancel: threading.Event,
                 on_batch: Callable[[list[Decision]], None] | None = None) -> None:
        self.cluster = cluster
        self.on_batch = on_batch
        self.options = options
        self.cancel = cancel
        self.inference_s = 0.0
        self.streak = Streak()

    def __call__(self, decisions: Any) -> Iterator[list[tuple[Decision, Any]]]:
        todo = list(decisions)
        if not todo or self.cancel.is_set():  # stopped already: start nothing on the cluster
            return
        if self.on_batch is not None:
            self.on_batch(todo[: self.options.batch_size])
        pending = dict(enumerate(todo))
        rows: queue.Queue = queue.Queue()
        stream = self.cluster.results([(d.path, d.tasks) for d in todo], self.options)

        def pump() -> None:
            try:
                for row in stream.rows:
                    rows.put(("row", row))
                rows.put(("end", None))
            except BaseException as exc:  # noqa: BLE001  (handed to the driver's thread)
                rows.put(("error", exc))

        thread = threading.Thread(target=pump, name="loupe-ray-results", daemon=True)
        thread.start()
        group: list[tuple[Decision, Any]] = []
        try:
            while pending and not self.cancel.is_set():
                try:
                    kind, item = rows.get(timeout=0.1)
                except queue.Empty:
                    continue
                if kind == "error":
                    raise _loupe_error(item) or LoupeError(f"The Ray job failed: {str(item).splitlines()[0]}")
                if kind == "end":
                    break
                decision = pending.pop(int(item["id"]), None)
                if decision is None:
                    continue  # a result seen already (a retried block): each photo once
                self.inference_s += float(item["seconds"])
                group.append((decision, self.out(decision, item)))
                if len(group) >= self.options.batch_size:
                    yield group
                    group = []
        finally:
            # Ray Data's threads must be done before Ray is shut down (they would report the
            # lost connection, or even start a new local cluster): end the execution, wait.
            stream.stop()
            thread.join(timeout=STOP_WAIT_S)
        if group:  # results already computed are kept, even when stopping
            yield group
        if pending and not self.cancel.is_set():
            raise LoupeError(f"The Ray job ended with {len(pending)} photos unanswered; scan again to resume.")

    def out(self, decision: Decision, row: dict[str, Any]) -> Any:
        """One row -> the photo's results, or its problem (three model failures in a row stop)."""
        if not row["error"]:
            self.streak.ok()
            return pickle.loads(row["result"])
        if row["stage"] == "models":
            self.streak.failed(str(row["error"]))
            return ModelFailed(str(row["error"]), decision.path)
        return UnreadableImage(decision.path, str(row["error"]))


def run(
    address: str, folder: Any, options: Options, index: Any, log: Any,
    progress: Any = None, cancel: threading.Event | None = None,
    actors: int | None = None, actor_cpus: int | None = None,
) -> Any:
    """`scanner.run_scan` with its compute stage on the cluster at `address` ("local": start
    one). Raises RayMissing without Ray; a worker's LoupeError (weights missing or damaged) as is."""
    from .scanner import run_scan

    with connect(address) as ray:
        cluster = Cluster(ray, actors, actor_cpus)

        def model_ids() -> dict[str, str]:
            """Asked of a node like the actors', whose precision may differ from this machine's."""
            try:
                return cluster.model_ids()
            except Exception as exc:
                found = _loupe_error(exc)
                if found is None:
                    raise
                raise found from None

        def compute(scan: Any) -> RayCompute:
            return RayCompute(cluster, options, scan.cancel, lambda ds: scan.report.batch([d.path for d in ds]))

        return run_scan(folder, model_ids, compute,
                        options, index, log, progress, cancel)
