"""What makes a result: a key per task, so a model added later fills in only its own results.

    keys = ResultKeys(engine.model_ids(), options.models)
    keys.per_task   {"caption": "3f…", "classify": "a1…"}: the model, its pin, its precision
                    and its options; a photo's record holds the one each result was made with
    keys.combined   every task's together (the settings key): stamped into what Loupe writes
                    (loupe:settings, the written key), so files follow any change
    keys.missing(row)  the tasks whose result `row` lacks or made otherwise: the work to do

Migration: a record from before per-task keys (`task_keys` empty) holds only the combined
key of the two first tasks, computed as it was then (`legacy_key`); when it equals this
scan's, both results count as made with this scan's keys and nothing is captioned again.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

from ..models.registry import TASKS
from .index import PhotoRow

#: the tasks of the scans that wrote one combined key per photo (index schema 2)
LEGACY_TASKS = ("caption", "classify")


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def precisions(model_ids: Mapping[str, str], tasks: tuple[str, ...]) -> dict[str, str]:
    """task -> precision, from `model_ids["precision"]` ("fp32", or "caption int8, classify fp32")."""
    said = str(model_ids.get("precision", ""))
    if ", " not in said and " " not in said:
        return {task: said for task in tasks}
    pairs = dict(part.split(" ", 1) for part in said.split(", ") if " " in part)
    return {task: pairs.get(task, "") for task in tasks}


def legacy_key(model_ids: Mapping[str, str], models: Mapping[str, Mapping[str, Any]],
               tasks: tuple[str, ...] = LEGACY_TASKS) -> str:
    """The settings key as one hash of `tasks`' models and options (schema 2's `settings_key`)."""
    chosen = precisions(model_ids, tasks)
    precision = (next(iter(chosen.values())) if len(set(chosen.values())) == 1
                 else ", ".join(f"{task} {p}" for task, p in chosen.items()))
    ids = {task: model_ids[task] for task in tasks} | {"precision": precision}
    return _digest({"models": ids, **{task: dict(models[task]) for task in tasks}})


class ResultKeys:
    def __init__(self, model_ids: Mapping[str, str], models: Mapping[str, Mapping[str, Any]],
                 tasks: tuple[str, ...] = TASKS) -> None:
        self.tasks = tuple(tasks)
        self.model_ids = {str(k): str(v) for k, v in model_ids.items()}
        chosen = precisions(self.model_ids, self.tasks)
        self.per_task = {task: _digest({"model": self.model_ids[task], "precision": chosen[task],
                                        "options": dict(models[task])}) for task in self.tasks}
        self.combined = legacy_key(self.model_ids, models, self.tasks)
        self.legacy = (legacy_key(self.model_ids, models) if set(LEGACY_TASKS) <= set(self.tasks)
                       else None)

    def done(self, row: PhotoRow) -> dict[str, str]:
        """task -> the key `row`'s result was made with (migrating a schema-2 record)."""
        if row.task_keys:
            return dict(row.task_keys)
        if self.legacy is not None and row.settings_key == self.legacy:
            return {task: self.per_task[task] for task in LEGACY_TASKS}
        return {}

    def missing(self, row: PhotoRow) -> tuple[str, ...]:
        """The tasks to run for `row`'s photo: none when everything is made with these keys."""
        done = self.done(row)
        return tuple(task for task in self.tasks if done.get(task) != self.per_task[task])
