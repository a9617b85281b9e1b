"""The compute stage, on this machine: decode + infer, photo results in batches.

    compute = LocalCompute(engine, options, cancel)
    for group in compute(decisions):        # Decision "todo" in, in order
        for decision, out in group:          # out: {task: result}, ModelFailed or UnreadableImage
            ...

Loader threads decode each photo once per model it needs, through `Engine.prepare` (the same
decode and preprocessing as `loupe caption` and the Caption tab: same tensor, same answer), a
few photos ahead; the engine's one batch loop (`batching.stream`) runs them a batch at a time.
A group is one batch's results, recorded together. Batches grow from one photo to what Stop
can wait for or lose little of, and Stop near a batch's end keeps it (engine/stopping.py). `ray_scan.RayCompute` is the other compute
stage (the same contract, on a cluster); a new backend is one class like these.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol

from ..batching import Inference, stream
from ..errors import ModelFailed, UnreadableImage
from ..stopping import GracefulStop
from .readahead import readahead
from .records import Decision

Out = Mapping[str, Any] | ModelFailed | UnreadableImage


class Compute(Protocol):
    """A compute stage: decisions "todo" in, groups of (decision, out) back, a batch each."""

    inference_s: float  # seconds spent computing

    def __call__(self, decisions: Iterable[Decision]) -> Iterator[list[tuple[Decision, Out]]]: ...


class LocalCompute:
    """Decode in `workers` threads, infer in the engine's batch loop; see the module.

    `batch_size` is the most photos a batch may hold; the batches themselves are sized and
    stopped by `stopping.GracefulStop` over `cancel`: the first holds one photo, the next as
    many (up to the models' forward size for these options) as Stop can still wait for or
    lose about one photo of; a Stop near a batch's end keeps that batch."""

    def __init__(self, engine: Inference, models: Mapping[str, Mapping[str, Any]], *, batch_size: int,
                 workers: int, cancel: threading.Event,
                 on_batch: Callable[[list[Decision]], None] | None = None,
                 on_step: Callable[[float], None] | None = None) -> None:
        self.engine = engine
        self.models = models
        self.batch_size = batch_size
        self.workers = workers
        self.cancel = cancel
        self.stop = GracefulStop(cancel)  # what the batch loop and the models poll
        self.on_batch = on_batch
        self.on_step = on_step
        self.inference_s = 0.0  # from each batch's start to its results
        self._batch_started = 0.0
        self._batch_len = 0
        self._cap: int | None = None

    def _started(self, decisions: list[Decision]) -> None:
        self._batch_started = time.perf_counter()
        self._batch_len = len(decisions)
        self.stop.started(len(decisions))
        if self.on_batch is not None:
            self.on_batch(decisions)

    def _step(self, fraction: float) -> None:
        self.stop.step(fraction)
        if self.on_step is not None:
            self.on_step(fraction)

    def _finished(self, group: list[tuple[Decision, Out]]) -> None:
        self.inference_s += time.perf_counter() - self._batch_started
        self.stop.finished(sum(not isinstance(out, (ModelFailed, UnreadableImage)) for _, out in group))

    def plan(self, photos: int) -> list[int]:
        """The batch sizes `photos` not yet in a batch would come in (`GracefulStop.plan`): what
        the scan's time left prices them at."""
        return self.stop.plan(photos, self.cap())

    def next_batch(self) -> int:
        """Photos for the next batch (`GracefulStop.next_batch`), at most `cap()`."""
        return self.stop.next_batch(self.cap())

    def cap(self) -> int:
        """The most photos a batch may hold: `batch_size` and each model's forward size for its
        options (a larger batch would run as several passes that Stop throws away together)."""
        if self._cap is None:
            self._cap = min([self.batch_size] + [self.engine.batch_size(task, opts) for task, opts in self.models.items()])
        return self._cap

    def prepare(self, decision: Decision) -> Mapping[str, Any] | UnreadableImage:
        """In a loader thread: each needed model's input for the photo, or why it cannot be read."""
        try:
            return {task: self.engine.prepare(task, decision.found.path, self.models[task]) for task in decision.tasks}
        except UnreadableImage as exc:
            return exc

    def __call__(self, decisions: Iterable[Decision]) -> Iterator[list[tuple[Decision, Out]]]:
        unreadable: dict[int, UnreadableImage] = {}
        loaded: list[bool] = []

        def items() -> Iterator[tuple[Decision, Mapping[str, Any]]]:
            ahead = self.batch_size * 2 + self.workers
            for decision, inputs in readahead(self.prepare, decisions, workers=self.workers, ahead=ahead,
                                              cancel=self.cancel):
                if inputs is None:  # stopped while it loaded
                    return
                if isinstance(inputs, UnreadableImage):
                    unreadable[id(decision)] = inputs
                    inputs = {}  # rides along in its batch (no task runs on it), so order is kept
                elif not loaded:  # the first photo to compute: load its models before timing any batch
                    for task in decision.tasks:
                        self.engine.load(task)
                    loaded.append(True)
                yield decision, inputs

        tasks = {task: self.models[task] for task in self.models}
        group: list[tuple[Decision, Out]] = []
        for decision, out in stream(self.engine, items(), tasks, batch_size=self.next_batch, cancel=self.stop,
                                    on_batch=self._started, on_step=self._step):
            group.append((decision, unreadable.pop(id(decision), out)))
            if len(group) >= self._batch_len:
                self._finished(group)
                yield group
                group = []
        if group:
            self._finished(group)
            yield group
