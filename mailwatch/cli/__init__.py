"""The ``mailwatch`` command line: for on-call staff at a terminal on a mail host.

Every command reads one configuration (``-c FILE``, ``$MAILWATCH_CONFIG``, else
``./mailwatch.toml`` when present, else built-in defaults). This module builds the group and
registers every command explicitly, by name (:data:`COMMANDS`); the commands live in modules
by concern (:mod:`.inspection`, :mod:`.service`, :mod:`.ops`, :mod:`.alerts`) and share
:mod:`.common`. No command module imports this one.

A command's module is imported only when that command runs (or ``--help`` lists them all):
``mailwatch stuck`` must answer in well under half a second at 100,000 stuck, and importing
every command's dependencies (the service, the fleet database driver, the alert engine) was
most of its start-up. ``tests/unit/test_read_commands.py`` checks what a read command imports.
"""

from __future__ import annotations

from pathlib import Path

import click

from mailwatch.cli.common import CONFIG_ENV, Context, MailwatchGroup, config_path

__all__ = ["COMMANDS", "cli", "main"]

COMMANDS: dict[str, str] = {
    "stuck": "inspection:stuck", "show": "inspection:show", "classify": "inspection:classify",
    "classes": "inspection:list_classes", "check": "inspection:check", "shape": "shape:shape",
    "scan": "service:scan", "run": "service:run", "demo": "service:demo",
    "config": "service:config_group",
    "prune": "ops:prune", "backlog": "ops:backlog", "retry": "ops:retry", "hold": "ops:hold",
    "release": "ops:release", "flush": "ops:flush", "audit": "ops:audit",
    "alerts": "alerts:alerts", "ack": "alerts:ack", "silence": "alerts:silence",
    "unsilence": "alerts:unsilence", "fleet": "fleet:fleet_group",
}  # fmt: skip
"""Every command: its name and where it is defined (``module:attribute`` under ``cli``)."""


class LazyGroup(MailwatchGroup):
    """The top-level group: each command is imported from :data:`COMMANDS` when first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, sorted (imports nothing)."""
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command ``cmd_name``, its module imported now; ``None`` if there is none."""
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.add_command(load_command(cmd_name), cmd_name)
        return self.commands.get(cmd_name)


def load_command(name: str) -> click.Command:
    """Import and return the command registered as ``name`` in :data:`COMMANDS`."""
    import importlib

    module, attribute = COMMANDS[name].split(":")
    command = getattr(importlib.import_module(f"mailwatch.cli.{module}"), attribute)
    if not isinstance(command, click.Command):  # pragma: no cover - a wrong COMMANDS entry
        raise TypeError(f"mailwatch.cli.{COMMANDS[name]} is not a click command")
    return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c", "--config", "path", type=click.Path(path_type=Path), envvar=CONFIG_ENV,
    help=f"Configuration file (default: ./mailwatch.toml if present; env {CONFIG_ENV}).",
)  # fmt: skip
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@click.version_option(package_name="mailwatch")
@click.pass_context
def cli(ctx: click.Context, path: Path | None, debug: bool) -> None:
    """Watch mail queues and say when high-priority mail is stuck."""
    ctx.obj = Context(config_path(path))


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="mailwatch")
