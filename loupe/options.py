"""Click options made from the declared options (the model registry's and the scan's,
engine/library/options.py): flags, choices, defaults, limits and help written once."""
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


def scan_option(opt: Option, *, help: str | None = None) -> Callable[[Callable], Callable]:
    """A click option for a declared scan option (engine/library/options.py): its choices,
    its flag; an option backed by a setting defaults to None (the scan falls back on the
    setting, then the default), the others show their default."""
    text = help or opt.help
    if opt.kind is bool:
        return click.option(opt.cli, opt.name, is_flag=True, default=False, help=f"{text}.")
    if opt.setting:
        text += f" (default: the {opt.setting} setting" + (f", else {opt.default})" if opt.default is not None else ")")
        default, show = None, False
    else:
        default, show = opt.default, True
    metavar = None
    if opt.choices:
        kind: Any = click.Choice(opt.values())
    elif opt.kind is str:
        kind = str
    else:
        kind, metavar = click.IntRange(opt.minimum, opt.maximum), "PCT"
    return click.option(opt.cli, opt.name, type=kind, default=default, show_default=show,
                        metavar=metavar, help=f"{text}.")
