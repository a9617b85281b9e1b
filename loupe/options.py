"""Click options made from the model registry: flags, defaults, limits and help written once."""
from __future__ import annotations

from typing import Any, Callable

import click

from engine.models.registry import Option, for_task


def _click_option(opt: Option) -> Callable[[Callable], Callable]:
    if opt.kind is int:
        kind: Any = click.IntRange(opt.minimum, opt.maximum)  # click shows the range itself
        help_text = opt.help
    else:
        kind = str
        help_text = f"{opt.help} (at most {opt.maximum} characters)"
    return click.option(opt.cli, opt.name, type=kind, default=opt.default, show_default=opt.default is not None,
                        help=help_text)


def model_options(*tasks: str) -> Callable[[Callable], Callable]:
    """Decorator adding every option of the models serving `tasks`, keyword = option name."""

    def decorate(fn: Callable) -> Callable:
        for task in reversed(tasks):
            for opt in reversed(for_task(task).options):
                fn = _click_option(opt)(fn)
        return fn

    return decorate


def pick(task: str, values: dict[str, Any]) -> dict[str, Any]:
    """The values of `task`'s options among a command's parameters."""
    names = {opt.name for opt in for_task(task).options}
    return {k: v for k, v in values.items() if k in names}
