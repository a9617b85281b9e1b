"""The one batch loop: prepared photos in, one result (or one photo's problem) per photo out.

    for key, out in stream(engine, items, {"caption": opts, "classify": opts}, batch_size=8):
        out  # {task: Caption | Labels | ...}, or ModelFailed for a photo the models choke on

Every caller goes through it: `Engine.run` (the CLI, the Caption tab), the library scan's
local compute stage (library/compute.py) and the Ray model actors (library/ray_scan.py). A
batch that raises is run again one photo at a time, so only the photo that breaks it is lost;
three such photos in a row mean the models themselves are broken and the loop stops
(LoupeError). Stop (`cancel`: an Event, or anything with its `is_set`, such as the scan's
`stopping.GracefulStop`) is checked before each batch and, in the models, at each layer and
generation step (Cancelled). The engine's own errors (weights missing, Cancelled) concern every photo and
pass through.

`Inference` is what the loop (and the scan) needs of an engine: `engine.inference.Engine`
implements it, and so do the tests' fakes, in full.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence, TypeVar

from .errors import Cancelled, LoupeError, ModelFailed

K = TypeVar("K")
#: how many photos failing one after another mean the models themselves are broken
FAILURES_IN_A_ROW = 3


class Stop(Protocol):
    """What the loop and the models poll to stop: a threading.Event, or the scan's
    `stopping.GracefulStop` (which lets a batch about to end finish first)."""

    def is_set(self) -> bool: ...


class Inference(Protocol):
    """An engine as the batch loop and the scan use it."""

    def model_ids(self) -> dict[str, str]:
        """{task: "name@pin", "precision": ...}: what makes a result (the scan's result keys)."""

    def batch_size(self, task: str, options: Mapping[str, Any] | None = None) -> int:
        """Photos per forward pass for `task` with these options (the registry's for the
        precision it runs in, `ModelSpec.batch_for`, unless set otherwise)."""

    def load(self, task: str) -> None:
        """Load `task`'s model now (else its first `infer` does): a caller timing its batches
        (the scan's time left) keeps the one-off load out of them."""

    def prepare(self, task: str, photo: Any, options: Mapping[str, Any]) -> Any:
        """One photo (a path, or an image decoded by `load_image`) -> the model's input for it.
        Raises UnreadableImage. Safe from several threads; loads no model weights."""

    def infer(self, task: str, inputs: Sequence[Any], options: Mapping[str, Any],
              cancel: Stop | None = None,
              on_step: Callable[[float], None] | None = None) -> list[Any]:
        """Prepared inputs -> one result each, in order. Raises Cancelled soon after `cancel`
        is set; `on_step(fraction 0-1)` after each generation step where the model has steps."""


@dataclass
class Streak:
    """Photos the models failed on one after another; the third in a row stops everything."""

    count: int = 0
    limit: int = FAILURES_IN_A_ROW

    def ok(self) -> None:
        self.count = 0

    def failed(self, reason: str) -> None:
        """Count one failure; LoupeError when the models keep failing."""
        self.count += 1
        if self.count >= self.limit:
            raise LoupeError(f"The models keep failing ({reason}); scan stopped.")


def stream(
    engine: Inference, items: Iterable[tuple[K, Mapping[str, Any]]], options: Mapping[str, Mapping[str, Any]], *,
    batch_size: int | Callable[[], int], cancel: Stop | None = None,
    on_batch: Callable[[list[K]], None] | None = None,
    on_step: Callable[[float], None] | None = None, streak: Streak | None = None,
) -> Iterator[tuple[K, dict[str, Any] | ModelFailed]]:
    """(key, {task: input}) pairs -> (key, {task: result}) or (key, ModelFailed), in order.

    Items are taken `batch_size` at a time (lazily: memory stays bounded; a callable is asked
    the size of each batch before it is filled, after the previous one's results are taken);
    each task named in
    `options` runs over the items that have an input for it. `on_batch(keys)` is told when a
    batch starts, `on_step(fraction)` how far its generation is. Raises LoupeError when
    FAILURES_IN_A_ROW photos fail in a row, and the engine's own LoupeErrors as they come."""
    streak = streak or Streak()
    size: Callable[[], int] = batch_size if callable(batch_size) else (lambda: batch_size)  # type: ignore[assignment]
    chunk: list[tuple[K, Mapping[str, Any]]] = []
    want = max(1, size())
    for pair in items:
        chunk.append(pair)
        if len(chunk) >= want:
            yield from _batch(engine, chunk, options, cancel, on_batch, on_step, streak)
            chunk = []
            want = max(1, size())
    if chunk:
        yield from _batch(engine, chunk, options, cancel, on_batch, on_step, streak)


def _batch(engine: Inference, chunk: list, options: Mapping[str, Mapping[str, Any]], cancel: Any,
           on_batch: Any, on_step: Any, streak: Streak) -> Iterator[tuple[Any, Any]]:
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled")
    if on_batch is not None:
        on_batch([key for key, _ in chunk])
    try:
        results = _forward(engine, chunk, options, cancel, on_step)
    except (LoupeError, KeyboardInterrupt):
        raise  # weights, settings, Cancelled: every photo's problem
    except Exception as exc:  # noqa: BLE001  (a model choking on a photo; found below)
        if len(chunk) > 1:  # find the photo the models choke on; the others go on
            for one in chunk:
                yield from _batch(engine, [one], options, cancel, None, on_step, streak)
            return
        reason = f"the models failed on it ({type(exc).__name__}: {exc})"
        streak.failed(f"{type(exc).__name__}: {exc}")
        yield chunk[0][0], ModelFailed(reason)
        return
    streak.ok()
    yield from zip((key for key, _ in chunk), results)


def _forward(engine: Inference, chunk: list, options: Mapping[str, Mapping[str, Any]], cancel: Any,
             on_step: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{} for _ in chunk]
    for task, task_options in options.items():
        rows = [i for i, (_, inputs) in enumerate(chunk) if task in inputs]
        if not rows:
            continue
        results = engine.infer(task, [chunk[i][1][task] for i in rows], task_options, cancel=cancel, on_step=on_step)
        if len(results) != len(rows):
            raise LoupeError("The engine returned a different number of results than photos given.")
        for i, result in zip(rows, results):
            out[i][task] = result
    return out
