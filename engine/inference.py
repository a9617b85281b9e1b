"""The process-wide engine and its one request path: photos in, results out.

    engine = get_engine()
    engine.run("caption", ["a.jpg", "b.png"], max_new_tokens=20)  # [Caption | UnreadableImage, ...]
    engine.run_one("classify", "a.jpg")                              # Labels, or raises

Every entry point (the CLI, the UI, the library scanner, the bench) goes through the same two
steps, so a model gets the same tensor for the same file whoever asks:

    prepare(task, photo)  decode the file at the model's input size (`load_image` with the
                          model's own `input_size` as draft size) and run the model's own
                          per-photo `preprocess`, both from its preprocessing alone
                          (`Model.load_preprocessing`: no weights loaded); safe from several
                          threads
    infer(task, inputs)   `collate` -> `forward` -> `postprocess`, one forward at a time

Models are loaded lazily, once, thread-safely, from verified weights.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from PIL.Image import Image

from . import compute_thread, weights
from .cpu_share import one_thread_here
from .device import Placement, choose
from .batching import Stop, stream
from .errors import Cancelled, LoupeError, ModelFailed, UnreadableImage
from .images import load_image
from .models.registry import INSTALLABLE, MODELS, ModelSpec, for_task, lookup

Photo = str | os.PathLike[str] | Image


class Engine:
    """The process-wide engine; implements `batching.Inference` (model_ids, batch_size,
    prepare, infer) and runs every request through the one batch loop (`stream`)."""

    def __init__(self, placement: Placement | None = None, batch_sizes: Mapping[str, int] | None = None) -> None:
        self._placement = placement
        # task -> photos per forward pass; the registry's unless a bench sweep asks for others
        self.batch_sizes = {spec.task: spec.batch_size for spec in INSTALLABLE} | dict(batch_sizes or {})
        self._batch_asked = dict(batch_sizes or {})  # a bench sweep's sizes win over the registry's
        self._load_lock = threading.Lock()
        self._models: dict[str, Any] = {}
        # task -> the model class's preprocessing alone (Model.load_preprocessing); its own
        # lock: photos can be prepared while a model loads
        self._preparers: dict[str, Any] = {}
        self._prepare_lock = threading.Lock()
        self.load_seconds: dict[str, float] = {}
        self._text_encoder: Any = None  # the encoder's text side alone (search), loaded at the first query

    def batch_size(self, task: str, options: Mapping[str, Any] | None = None) -> int:
        """Photos per batch for `task` with these (checked) options: the one given for it, else
        the registry's per forward pass for the precision it runs in (`ModelSpec.batch_for`)
        times the passes run side by side (`side_by_side`); without options, the registry's size
        for the task."""
        if options is None or task in self._batch_asked:
            return self.batch_sizes[task]
        return self.pass_size(task, options) * self.side_by_side(task, options)

    def pass_size(self, task: str, options: Mapping[str, Any]) -> int:
        """Photos per forward pass: the one given for `task`, else the registry's for its
        precision and these options."""
        if task in self._batch_asked:
            return self.batch_sizes[task]
        spec = lookup(task)
        return spec.batch_for(self.placement_for(spec).precision, options)

    def side_by_side(self, task: str, options: Mapping[str, Any]) -> int:
        """Forward passes run at the same time, on one torch thread each: 2 where the registry
        runs this setting one photo per pass although the model batches otherwise (int8 with
        beams: its layers gain nothing from batches, and two photos beside each other on one
        thread each beat one photo on two: bench/README.md, "Photos side by side"), on a
        machine where torch uses 2 cores or more; else 1. LOUPE_THREADS=1 keeps it 1."""
        from .cpu_share import cores, fixed_threads

        if task in self._batch_asked or cores() < 2 or fixed_threads() == 1:
            return 1
        spec = lookup(task)
        return 2 if self.pass_size(task, options) == 1 < spec.batch_size else 1

    @property
    def placement(self) -> Placement:
        """The engine-wide placement: the one given, else the captioner's choice (`choose()`).
        Each model runs on `placement_for(spec)`."""
        if self._placement is None:
            self._placement = choose()
        return self._placement

    def placement_for(self, spec: ModelSpec) -> Placement:
        """Where and in what precision `spec`'s model runs: the registry's choice for this CPU
        class (`spec.precisions`) unless a placement was given or LOUPE_PRECISION names one;
        int8 for a model without an int8 path means fp32."""
        if self._placement is not None:
            given = self._placement
            if given.precision == "int8" and "int8" not in spec.supported:
                return Placement(given.device, "fp32")
            return given
        return choose(precisions=spec.precisions, supported=spec.supported)

    # ------------------------------------------------------------------ models
    def model(self, key: str) -> Any:
        """The loaded model for a task or model name; loads it on first use.
        WeightsMissing (or WeightsDamaged) when its weights are not installed intact."""
        spec = lookup(key)
        model = self._models.get(spec.task)
        if model is not None:
            return model
        with self._load_lock:
            if spec.task not in self._models:
                # its torch ops (int8 packing) on the compute thread too (compute_thread.py)
                self._models[spec.task] = compute_thread.call(self._load, spec)
            return self._models[spec.task]

    def holds_models(self) -> bool:
        """Whether any model (or the encoder's text tower) is loaded in this engine."""
        return bool(self._models) or self._text_encoder is not None

    def is_loaded(self, key: str) -> bool:
        """Whether the model for a task or model name is in memory (the next request skips the load)."""
        return lookup(key).task in self._models

    def _load(self, spec: ModelSpec) -> Any:
        folder = weights.model_dir(spec.name)  # WeightsMissing / WeightsDamaged say what to do
        from . import long_lived
        from .cpu_share import first_look, fit_threads

        model_class = spec.model_class()
        # on another core while torch imports; not where the person chose a precision other
        # than int8 (the placement itself needs torch: "auto" may still turn out not int8)
        ahead = model_class.read_ahead(folder) if self._may_run_int8(spec) else None
        first_look()  # the load is the window of the first thread choice (no extra wait)
        with long_lived.imports():
            import torch  # noqa: F401  (the first and longest import)
        fit_threads()  # as `_fitted`, after the first look (no 0.1 s window of its own)
        started = time.perf_counter()
        with weights.load_guard(spec.name, folder):  # any load failure: one LoupeError line
            model = model_class.load(folder, self.placement_for(spec), ahead=ahead)
        self.load_seconds[spec.name] = time.perf_counter() - started
        _release_freed_memory()
        return model

    def _may_run_int8(self, spec: ModelSpec) -> bool:
        """Whether `spec`'s model may load int8, known without importing torch: it has an int8
        path and neither the engine's placement nor the asked precision rules it out."""
        if "int8" not in spec.supported:
            return False
        if self._placement is not None:
            return self._placement.precision == "int8"
        from .device import asked_precision

        try:
            return asked_precision() in ("auto", "int8")
        except LoupeError:  # a bad name: the placement says so, on the load's own path
            return False

    def load(self, task: str) -> None:
        """`batching.Inference.load`: the model for `task` loaded now (WeightsMissing/Damaged)."""
        self.model(task)

    def preparer(self, key: str) -> Any:
        """The preprocessing of a task's (or model name's) model, without its weights: an
        instance from `Model.load_preprocessing` (`input_size`, `preprocess`), loaded once.
        WeightsMissing (or WeightsDamaged) when the model's files are not installed intact."""
        spec = lookup(key)
        found = self._preparers.get(spec.task)
        if found is not None:
            return found
        with self._prepare_lock:
            if spec.task not in self._preparers:
                folder = weights.model_dir(spec.name)
                with weights.load_guard(spec.name, folder):
                    self._preparers[spec.task] = spec.model_class().load_preprocessing(folder)
            return self._preparers[spec.task]

    def unload(self) -> None:
        """Drop the loaded models and preprocessing (their memory back to the OS)."""
        with self._load_lock:
            dropped = bool(self._models)
            self._models.clear()
        with self._prepare_lock:
            self._preparers.clear()
        from . import long_lived

        long_lived.release(dropped=dropped)
        _release_freed_memory()

    def model_ids(self) -> dict[str, str]:
        """What made a result: {task: "name@pin", "precision": ...}; part of the scan's settings key."""
        table = weights.sources()
        ids = {}
        for spec in MODELS:
            ids[spec.task] = f"{spec.name}@{table[spec.name].pin}"
        # One word when every model runs the same precision (as before per-model precisions):
        # existing indexes keep their key; "caption int8, classify fp32" otherwise.
        chosen = {spec.task: self.placement_for(spec).precision for spec in MODELS}
        ids["precision"] = (next(iter(chosen.values())) if len(set(chosen.values())) == 1
                            else ", ".join(f"{task} {p}" for task, p in chosen.items()))
        # The search encoder apart (its own precision key), so the keys of the captions and
        # labels stay as they were before it joined the scan.
        for spec in INSTALLABLE:
            if spec not in MODELS:
                ids[spec.task] = f"{spec.name}@{table[spec.name].pin}"
                ids[f"{spec.task} precision"] = self.placement_for(spec).precision
        return ids

    def embed_text(self, texts: Sequence[str]) -> Any:
        """Queries -> numpy float32 [N, D] unit rows in the image embeddings' space. Loads only
        the encoder's text tower, at the first call (`text_ready` says whether it is loaded);
        the vision tower is used when a scan in this process loaded it anyway.
        WeightsMissing / WeightsDamaged when the encoder is not installed intact."""
        encoder = self.text_encoder()
        return compute_thread.call(_fitted(encoder.embed_text), texts)

    @property
    def text_ready(self) -> bool:
        """Whether a query is answered without loading the text tower first."""
        enc = self._models.get("embed") or self._text_encoder
        return enc is not None and enc.text_loaded

    def text_encoder(self) -> Any:
        """The encoder whose text side answers queries (its vision tower only if loaded already)."""
        if self._models.get("embed") is not None:
            return self._models["embed"]
        with self._load_lock:
            if self._text_encoder is None:
                spec = lookup("embed")
                folder = weights.model_dir(spec.name)
                with weights.load_guard(spec.name, folder):
                    enc = spec.model_class().load_preprocessing(folder)
                    enc.placement = self.placement_for(spec)
                    compute_thread.call(_fitted(enc.load_text))
                self._text_encoder = enc
            return self._text_encoder

    # ------------------------------------------------------------------ the request path
    def prepare(self, task: str, photo: Photo, options: Mapping[str, Any]) -> Any:
        """One photo -> the model's input for it (CPU tensors). `photo` is a path (decoded by
        `load_image` at the model's input size) or an RGB image already decoded by it.
        Raises UnreadableImage naming the file; options must be checked (`check_options`).
        Loads no model: only its preprocessing (`preparer`)."""
        one_thread_here()  # a loader or UI thread: torch here makes no OpenMP team (compute_thread.py)
        if not isinstance(photo, Image):
            photo = self.decode(task, photo)
        return self.preparer(task).preprocess(photo, **options)

    def infer(self, task: str, inputs: Sequence[Any], options: Mapping[str, Any],
              cancel: Stop | None = None,
              on_step: Callable[[float], None] | None = None) -> list[Any]:
        """Prepared inputs -> one result per input, in order, in batches of the spec's size.
        Raises Cancelled soon after `cancel` is set: before each layer of the model's stacks
        (`_stoppable`: also inside the vision encoder, before generation starts) and at each
        generation step.
        `on_step(fraction)`: how far the inputs are, 0-1, after each generation step (captions);
        called on the calling thread, while the passes run on the compute thread."""
        model = self.model(task)  # loaded before the compute thread is asked (no lock held there)
        size, side = self.pass_size(task, options), self.side_by_side(task, options)
        # Ctrl-C reaches the main thread only: there the pass also stops when the wait is
        # interrupted, so it never runs on while the process exits (compute_thread.py)
        stop = _Interruptible(cancel) if threading.current_thread() is threading.main_thread() else None
        chunks = list(_chunks(inputs, size))
        out: list[Any] = []
        for group in _chunks(chunks, side):
            steps = None
            if on_step is not None:
                done, n, made = len(out), len(inputs), [0.0] * len(group)

                def steps(i: int, f: float, done=done, made=made, group=group) -> None:  # noqa: E306
                    made[i] = f * len(group[i])  # photos' worth made by each pass of the group
                    on_step((done + sum(made)) / n)
            # a job per pass (or side-by-side group): another tab's request waits for one, not all
            out += compute_thread.call_stopping(stop.set if stop else None, self._passes, task, model, group,
                                                options, stop or cancel, compute_thread.relayed(steps))
        _release_freed_memory()
        return out

    def _passes(self, task: str, model: Any, group: list[list[Any]], options: Mapping[str, Any],
                cancel: Stop | None, steps: Callable[[int, float], None] | None) -> list[Any]:
        """On the compute thread: one forward pass per chunk of `group`, side by side on one torch
        thread each when there are several (`compute_thread.side_by_side`), else one on the
        cores others leave free. Results in order."""
        import torch

        from .cpu_share import fit_threads

        fit_threads()  # torch on the cores other programs leave free (cpu_share.py)
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")

        def one(i: int, chunk: list[Any]) -> list[Any]:
            if len(group) > 1 and torch.get_num_threads() != 1:
                torch.set_num_threads(1)  # one each; the compute thread's count is put back after the pair
            step = None if steps is None else (lambda f: steps(i, f))
            outputs = model.forward(model.collate(chunk), cancel=cancel, on_step=step, **options)
            return model.postprocess(outputs, **options)

        threads = torch.get_num_threads()
        # the layers' Stop hooks are put on once for the group (hooks are not thread-safe to change)
        with _stoppable(model, cancel):
            if len(group) == 1:
                return one(0, group[0])
            try:
                parts = compute_thread.side_by_side([lambda i=i, c=c: one(i, c) for i, c in enumerate(group)])
            finally:  # the compute thread's fitted count back: a job after the pair may not fit first
                if torch.get_num_threads() != threads:
                    torch.set_num_threads(threads)
        return [result for part in parts for result in part]

    def decode(self, task: str, path: str | os.PathLike[str]) -> Image:
        """The photo at `path` decoded at `task`'s model input size (the size comes from its
        own processor config or transforms; no model is loaded). Raises UnreadableImage."""
        return load_photo(self.preparer(task).input_size, path)

    def run(self, task: str, photos: Sequence[Photo], **options: Any) -> list[Any]:
        """Results for `photos` in input order; a photo that cannot be read gets its
        UnreadableImage in its place, one the model fails on its ModelFailed. Options are
        checked before any file or model is touched (UsageError); the model is loaded at the
        first readable photo (WeightsMissing or WeightsDamaged then). Photos are decoded a
        batch at a time as the batch loop (`stream`) asks, so memory stays bounded."""
        checked = check_options(task, options)
        try:
            self.model(task)  # first: missing or damaged weights are every photo's problem
        except LoupeError as missing:
            return _unreadable_or_raise(photos, missing)
        results: list[Any] = [None] * len(photos)

        def prepared() -> Iterator[tuple[int, dict[str, Any]]]:
            for i, photo in enumerate(photos):
                try:
                    yield i, {task: self.prepare(task, photo, checked)}
                except UnreadableImage as exc:
                    results[i] = exc

        for i, out in self.stream(prepared(), {task: checked}, batch_size=self.batch_size(task, checked)):
            results[i] = ModelFailed(out.reason, _name(photos[i])) if isinstance(out, ModelFailed) else out[task]
        return results

    def stream(self, items: Iterable[tuple[Any, Mapping[str, Any]]], options: Mapping[str, Mapping[str, Any]], *,
               batch_size: int | Callable[[], int], cancel: Stop | None = None, **hooks: Any) -> Iterator[tuple[Any, Any]]:
        """`batching.stream` on this engine: (key, {task: input}) -> (key, {task: result} or
        ModelFailed), a batch at a time (see there for `on_batch`, `on_step`, `streak`)."""
        return stream(self, items, options, batch_size=batch_size, cancel=cancel, **hooks)

    def run_one(self, task: str, photo: Photo, **options: Any) -> Any:
        """The result for one photo; raises its UnreadableImage instead of returning it."""
        result = self.run(task, [photo], **options)[0]
        if isinstance(result, LoupeError):
            raise result
        return result

    def caption(self, photos: Sequence[Photo], **options: Any) -> list[Any]:
        """`run("caption", ...)`: Caption per photo (options: registry's blip-base spec)."""
        return self.run("caption", photos, **options)

    def classify(self, photos: Sequence[Photo], **options: Any) -> list[Any]:
        """`run("classify", ...)`: Labels per photo (options: registry's resnet18 spec)."""
        return self.run("classify", photos, **options)


def _fitted(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` run on the cores others leave free (`cpu_share.fit_threads` first): for compute-thread
    jobs that load or run a model (a new compute thread starts from torch's last count, maybe a
    loader's 1)."""
    def run(*args: Any, **kwargs: Any) -> Any:
        from .cpu_share import fit_threads

        fit_threads()
        return fn(*args, **kwargs)

    return run


class _Interruptible:
    """A Stop set by the caller's `cancel` or by `set()` (the caller's wait was interrupted)."""

    def __init__(self, cancel: Stop | None) -> None:
        self.cancel = cancel
        self.interrupted = threading.Event()

    def set(self) -> None:
        self.interrupted.set()

    def is_set(self) -> bool:
        return self.interrupted.is_set() or (self.cancel is not None and self.cancel.is_set())


@contextlib.contextmanager
def _stoppable(model: Any, cancel: Stop | None) -> Iterator[None]:
    """While inside: each layer of the model's layer stacks (the children of every
    torch.nn.ModuleList of its torch modules) first checks `cancel` and raises Cancelled, so
    Stop ends a long forward pass (a batch's vision encoder: seconds) within one layer."""
    if cancel is None:
        yield
        return
    import torch

    def check(module: Any, args: Any) -> None:
        if cancel.is_set():
            raise Cancelled("cancelled")

    handles = []
    for value in vars(model).values():
        if isinstance(value, torch.nn.Module):
            for sub in value.modules():
                if isinstance(sub, torch.nn.ModuleList):
                    handles += [layer.register_forward_pre_hook(check) for layer in sub]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _name(photo: Photo) -> str:
    return "" if isinstance(photo, Image) else str(photo)


def _unreadable_or_raise(photos: Sequence[Photo], missing: LoupeError) -> list[UnreadableImage]:
    """Without the model, still name the photos that cannot be read: when none can, those
    errors are the answer; when one can, the missing (or damaged) model is."""
    errors = []
    for photo in photos:
        try:
            if isinstance(photo, Image):
                raise missing
            load_image(photo)
        except UnreadableImage as exc:
            errors.append(exc)
            continue
        raise missing
    return errors


def check_options(task: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`task`'s options with defaults filled in and limits checked (UsageError otherwise)."""
    return (lookup(task) if task == "embed" else for_task(task)).check_options(options)


def load_photo(size: int, path: str | os.PathLike[str]) -> Image:
    """The photo at `path` decoded for a model whose input size is `size` pixels: JPEGs at a
    reduced scale that is still at least that size. The one decode every entry point uses."""
    return load_image(path, draft_size=(size, size))


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None).malloc_trim  # glibc only; musl has none
    except (OSError, AttributeError):
        return None


def _release_freed_memory() -> None:
    """Hand memory that is already freed back to the OS (glibc's malloc_trim; a no-op elsewhere).

    glibc keeps what torch, transformers and PIL free (loading temporaries, the decoder's
    per-step tensors, decode threads' own arenas) for reuse, so RSS only grows; bench/ measures
    what this saves and costs."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _chunks(items: Sequence, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield list(items[i : i + n])


_engine: Engine | None = None
_engine_guard = threading.Lock()


def get_engine() -> Engine:
    global _engine
    with _engine_guard:
        if _engine is None:
            _engine = Engine()
        return _engine


def reset_engine() -> None:
    """Forget loaded models (tests, a changed weights folder or precision setting)."""
    global _engine
    with _engine_guard:
        dropped = _engine is not None and _engine.holds_models()
        _engine = None
    from . import long_lived

    long_lived.release(dropped=dropped)  # the dropped engine's models, unless something still uses them
