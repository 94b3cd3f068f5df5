"""The ``mailwatch`` command line: for on-call staff at a terminal on a mail host.

Every command reads one configuration (``-c FILE``, ``$MAILWATCH_CONFIG``, else
``./mailwatch.toml`` when present, else built-in defaults). This module builds the group and
registers every command explicitly; the commands live in modules by concern (:mod:`.inspection`,
:mod:`.service`, :mod:`.ops`, :mod:`.alerts`) and share :mod:`.common`. No command module
imports this one.
"""

from __future__ import annotations

from pathlib import Path

import click

from mailwatch.cli import alerts, fleet, inspection, ops, service, shape
from mailwatch.cli.common import CONFIG_ENV, Context, MailwatchGroup, config_path

__all__ = ["cli", "main"]


@click.group(cls=MailwatchGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


for command in (
    inspection.stuck, inspection.show, inspection.classify, inspection.list_classes,
    inspection.check, shape.shape,
    service.scan, service.run, service.demo, service.config_group,
    ops.prune, ops.backlog, ops.retry, ops.hold, ops.release, ops.flush, ops.audit,
    alerts.alerts, alerts.ack, alerts.silence, alerts.unsilence, fleet.fleet_group,
):  # fmt: skip
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="mailwatch")
