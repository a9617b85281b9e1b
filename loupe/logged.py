"""Click command classes that leave one line per command run in Loupe's log file."""
from __future__ import annotations

from typing import Any

import click

from engine.errors import LoupeError


class LoggedCommand(click.Command):
    """Logs "loupe NAME: exit N in S s; options {...}; counts" when the command ends."""

    def invoke(self, ctx: click.Context) -> Any:
        from engine.logs import command_run

        name = ctx.command_path.split(" ", 1)[-1]
        with command_run(name, dict(ctx.params)) as run:
            try:
                result = super().invoke(ctx)
            except LoupeError as exc:
                run.exit_code = exc.exit_code
                raise
            except KeyboardInterrupt:
                run.exit_code = 130
                raise
            except click.ClickException as exc:
                run.exit_code = exc.exit_code
                raise
            except Exception:  # a bug: `loupe.cli.main` logs its traceback next
                run.exit_code = 1
                raise
            run.exit_code = result if isinstance(result, int) else 0
            return result


class LoggedGroup(click.Group):
    """A group whose commands (and subgroups' commands) are LoggedCommands."""

    command_class = LoggedCommand
    group_class = type  # subgroups are LoggedGroups too
