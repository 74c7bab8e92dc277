"""`bootsrv` command line: thin click commands over config, runtime and the areas' services.

Every BootsrvError becomes one line on stderr ("error: <file>: <key>: <rule>") and its exit code;
no traceback for a user mistake.
"""

from __future__ import annotations

import sys

import click

from bootsrv import __version__
from bootsrv import config as configmod
from bootsrv.cli.common import Context, Group
from bootsrv.cli.guests import guest
from bootsrv.cli.leases import lease_group
from bootsrv.cli.machines import hypervisor_group, machine_group
from bootsrv.cli.profiles import profile_group
from bootsrv.cli.tftp import tftp_group


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "-c",
    "config_path",
    metavar="FILE",
    envvar=configmod.ENV_CONFIG,
    help="Site config (TOML), merged over the embedded default. Env: BOOTSRV_CONFIG.",
)
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
@click.option(
    "--log-format",
    default="kv",
    show_default=True,
    type=click.Choice(["kv", "json"]),
    help="One line per event: key=value or JSON.",
)
@click.version_option(__version__, prog_name="bootsrv")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, log_level: str, log_format: str) -> None:
    """Network-boot and hypervisor-bootstrap server."""
    from bootsrv import log

    log.setup(log_level, log_format)
    ctx.obj = Context(config_path)
    ctx.call_on_close(ctx.obj.close)


@main.command()
@click.pass_obj
def serve(obj: Context) -> None:
    """Run every service the config enables, until SIGTERM or SIGINT."""
    from bootsrv.app import runtime

    runtime.run(obj.config)


@main.command()
def demo() -> None:
    """Run the lab demo: bootsrv serving its own namespace segment (needs root)."""
    from bootsrv.lab import demo as demomod

    sys.exit(demomod.main())


@main.group("config")
def config_group() -> None:
    """Validate and show configuration."""


@config_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def config_check(file: str) -> None:
    """Validate FILE (merged over the embedded default); exit 2 with the key and rule if invalid."""
    cfg = configmod.load(file)
    click.echo(f"{file}: ok ({len(cfg.networks)} networks, server {cfg.server.name})")


@config_group.command("show")
@click.option("--default", "embedded", is_flag=True, help="Show the embedded default, not the effective config.")
@click.pass_obj
def config_show(obj: Context, embedded: bool) -> None:
    """Print the effective config as TOML."""
    cfg = configmod.load(None, env={}) if embedded else obj.config
    click.echo(cfg.to_toml(), nl=False)


for group in (machine_group, hypervisor_group, guest, tftp_group, lease_group, profile_group):
    main.add_command(group)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
